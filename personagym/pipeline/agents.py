"""Agents under test: a model with the persona in its system prompt, the user's own chat endpoint,
or any Python callable. Whatever the kind, a failure is reported as a failure, never as an answer.

Each answers a single question (`answer`) and, in dialogues, the latest message of a conversation
given all of it (`converse`; the history is ("user" | "assistant", text) pairs, the user first and
last)."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from personagym.llm import CallFailed, CallFailure, Cause, Completion, Gateway, Request
from personagym.llm.gateway import BoundModel
from personagym.method import prompts
from personagym.pipeline.config import AnswerFn
from personagym.pipeline.roles import Role


@dataclass(frozen=True)
class Answer:
    """What the agent said, as it said it: cut at its token budget or not, and the reasoning it wrote
    before answering (kept in the store, never shown to judges)."""

    text: str
    truncated: bool = False
    reasoning: str | None = None


# Reasoning models served by open servers write their thinking inline before the answer.
_THINK = re.compile(r"<think(?:ing)?>(.*?)(?:</think(?:ing)?>|\Z)", re.DOTALL | re.IGNORECASE)


def split_reasoning(text: str) -> tuple[str, str | None]:
    """(the answer, the reasoning) of a reply that may hold <think>...</think> blocks."""
    thoughts = [m.strip() for m in _THINK.findall(text)]
    if not thoughts:
        return text, None
    return _THINK.sub("", text).strip(), "\n\n".join(t for t in thoughts if t) or None


Keep = Callable[[Answer], None]


class Agent(Protocol):
    name: str

    async def answer(self, persona: str, question: str, keep: Keep | None = None) -> Answer:
        """The agent's reply; raises CallFailed when there is none. `keep` stores it: for a model,
        in the transaction that records the call (Gateway.complete)."""

    async def converse(self, persona: str, history: Sequence[tuple[str, str]]) -> Answer:
        """The agent's reply to the last message of a conversation, given all of it; raises CallFailed."""


@dataclass
class ModelAgent:
    """A model told to be the persona: by a system prompt, or by a body field its endpoint reads."""

    gateway: Gateway
    role: Role
    model: BoundModel
    template: str | None = None
    persona_field: str | None = None

    @property
    def name(self) -> str:
        return self.role.model

    async def answer(self, persona: str, question: str, keep: Keep | None = None) -> Answer:
        sampling, kind = self.role.sampling, self.role.kind
        if self.persona_field:
            messages = [("user", question)]
            extra = {self.persona_field: persona}
        else:
            messages, extra = prompts.agent_messages(persona, question, self.template), None
        request = Request.of(*messages, sampling=sampling, role=kind, extra_body=extra, accept_truncated=True)
        answered: list[Answer] = []

        def read(completion: Completion) -> None:  # inside the call's transaction
            answered.append(_answer(self.name, completion.text, completion.truncated))
            if keep is not None:
                keep(answered[0])

        await self.gateway.complete(self.model, request, read)
        return answered[0]

    async def converse(self, persona: str, history: Sequence[tuple[str, str]]) -> Answer:
        """The whole conversation as chat messages: after the persona's system prompt, or alone with the
        persona in its body field (the user's own endpoint receives the full list either way)."""
        from personagym.method.dialogues import agent_conversation

        if self.persona_field:
            messages, extra = list(history), {self.persona_field: persona}
        else:
            messages, extra = agent_conversation(persona, history, self.template), None
        request = Request.of(*messages, sampling=self.role.sampling, role=self.role.kind, extra_body=extra,
                             accept_truncated=True)
        completion = await self.gateway.complete(self.model, request)
        return _answer(self.name, completion.text, completion.truncated)


def _answer(name: str, reply: str, truncated: bool = False) -> Answer:
    text, reasoning = split_reasoning(reply)
    if not text.strip():
        detail = "the reply holds reasoning but no answer" if reasoning else "the reply is empty"
        if truncated:
            detail += " (cut at the token budget: raise --agent-max-tokens)"
        raise CallFailed(CallFailure(name, Cause.TRUNCATED if truncated else Cause.INVALID_OUTPUT, detail, 1, "agent"))
    return Answer(text, truncated, reasoning)


@dataclass
class CallableAgent:
    """The user's own code: ``async def agent(persona, question) -> str``.

    In dialogues, a callable that takes a third parameter (or one named `history`) is called as
    ``agent(persona, message, history)`` with the conversation so far as OpenAI-style
    ``{"role": "user" | "assistant", "content": ...}`` dicts, the latest message last. One that takes
    only two gets the latest message alone, as a fresh question: it cannot see the conversation, and
    the consistency tactics will show that (docs/dialogues.md)."""

    fn: AnswerFn
    name: str

    async def answer(self, persona: str, question: str, keep: Keep | None = None) -> Answer:
        answer = await self._call(persona, question)
        if keep is not None:
            keep(answer)
        return answer

    async def converse(self, persona: str, history: Sequence[tuple[str, str]]) -> Answer:
        passed = [{"role": role, "content": text} for role, text in history]
        takes = _takes_history(self.fn)
        if takes == "keyword":
            return await self._call(persona, history[-1][1], history=passed)
        return await self._call(persona, history[-1][1], *([passed] if takes == "positional" else []))

    async def _call(self, *args: Any, **kwargs: Any) -> Answer:
        try:
            reply = self.fn(*args, **kwargs)
            if inspect.isawaitable(reply):
                reply = await reply
        except Exception as exc:  # noqa: BLE001 - the user's code: any error is that answer's failure
            raise CallFailed(CallFailure(self.name, Cause.SERVER_ERROR, f"{type(exc).__name__}: {exc}", 1, "agent"))
        if not isinstance(reply, str) or not reply.strip():
            raise CallFailed(CallFailure(self.name, Cause.INVALID_OUTPUT, "the callable returned no text", 1, "agent"))
        return _answer(self.name, reply)


def _takes_history(fn: Any) -> str | None:
    """How a callable takes the conversation: "positional" (a third positional parameter or *args),
    "keyword" (a keyword-only `history`), or None (only persona and question)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a builtin or C callable without a signature: assume two
        return None
    kinds = inspect.Parameter
    positional = [p for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 3 or any(p.kind == kinds.VAR_POSITIONAL for p in params):
        return "positional"
    if any(p.name == "history" and p.kind == kinds.KEYWORD_ONLY for p in params):
        return "keyword"
    return None
