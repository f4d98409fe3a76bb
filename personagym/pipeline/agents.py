"""Agents under test: a model with the persona in its system prompt, the user's own chat endpoint,
or any Python callable. Whatever the kind, a failure is reported as a failure, never as an answer."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Protocol

from personagym.llm import CallFailed, CallFailure, Cause, Gateway, Request
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


class Agent(Protocol):
    name: str

    async def answer(self, persona: str, question: str) -> Answer:
        """The agent's reply; raises CallFailed when there is none."""


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

    async def answer(self, persona: str, question: str) -> str:
        sampling, kind = self.role.sampling, self.role.kind
        if self.persona_field:
            messages = [("user", question)]
            extra = {self.persona_field: persona}
        else:
            messages, extra = prompts.agent_messages(persona, question, self.template), None
        request = Request.of(*messages, sampling=sampling, role=kind, extra_body=extra, accept_truncated=True)
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
    """The user's own code: ``async def agent(persona, question) -> str``."""

    fn: AnswerFn
    name: str

    async def answer(self, persona: str, question: str) -> Answer:
        try:
            reply = self.fn(persona, question)
            if inspect.isawaitable(reply):
                reply = await reply
        except Exception as exc:  # noqa: BLE001 - the user's code: any error is that answer's failure
            raise CallFailed(CallFailure(self.name, Cause.SERVER_ERROR, f"{type(exc).__name__}: {exc}", 1, "agent"))
        if not isinstance(reply, str) or not reply.strip():
            raise CallFailed(CallFailure(self.name, Cause.INVALID_OUTPUT, "the callable returned no text", 1, "agent"))
        return _answer(self.name, reply)
