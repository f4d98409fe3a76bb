"""Agents under test: a model with the persona in its system prompt, the user's own chat endpoint,
or any Python callable. Whatever the kind, a failure is reported as a failure, never as an answer."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Protocol

from personagym.llm import CallFailed, CallFailure, Cause, Gateway, Request
from personagym.llm.gateway import BoundModel
from personagym.method import prompts
from personagym.pipeline.config import AnswerFn
from personagym.pipeline.roles import Role


class Agent(Protocol):
    name: str

    async def answer(self, persona: str, question: str) -> str:
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
            request = Request.of(("user", question), sampling=sampling, role=kind, extra_body={self.persona_field: persona})
        else:
            request = Request.of(*prompts.agent_messages(persona, question, self.template), sampling=sampling, role=kind)
        return (await self.gateway.complete(self.model, request)).text


@dataclass
class CallableAgent:
    """The user's own code: ``async def agent(persona, question) -> str``."""

    fn: AnswerFn
    name: str

    async def answer(self, persona: str, question: str) -> str:
        try:
            reply = self.fn(persona, question)
            if inspect.isawaitable(reply):
                reply = await reply
        except Exception as exc:  # noqa: BLE001 - the user's code: any error is that answer's failure
            raise CallFailed(CallFailure(self.name, Cause.SERVER_ERROR, f"{type(exc).__name__}: {exc}", 1, "agent"))
        if not isinstance(reply, str) or not reply.strip():
            raise CallFailed(CallFailure(self.name, Cause.INVALID_OUTPUT, "the callable returned no text", 1, "agent"))
        return reply
