"""The plain data the stages pass along, the context they share within one run, and the one way a
stage calls a model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence, TypeVar

from personagym.llm import CallFailed, Completion, Gateway, Request
from personagym.llm.gateway import BoundModel
from personagym.method import Environment, Messages, Stage, Task
from personagym.pipeline.config import RunConfig
from personagym.pipeline.preflight import HOPELESS, RunStopped, explain
from personagym.pipeline.roles import Role
from personagym.store.runs import RunStore

if TYPE_CHECKING:
    from personagym.pipeline.agents import Agent
    from personagym.progress import Progress

T = TypeVar("T")


@dataclass(frozen=True)
class Persona:
    id: int
    text: str


@dataclass(frozen=True)
class Question:
    id: int
    persona: Persona
    task: Task
    text: str


@dataclass
class Context:
    gateway: Gateway
    store: RunStore
    run_id: int
    config: RunConfig
    catalog: tuple[Environment, ...]
    catalog_id: str
    agent: "Agent"
    progress: "Progress"
    models: dict[Role, BoundModel]  # every role the gateway serves, bound once when the run was prepared

    async def ask(
        self,
        stage: Stage,
        role: Role,
        messages: Messages,
        *,
        persona: Persona,
        schema: Any = None,
        task: Task | None = None,
        questions: Sequence[Question] = (),
        sample: int = 0,
        keep: Callable[[Completion], None] | None = None,
    ) -> Completion | None:
        """One call of `role`'s model for `stage` (draw `sample` of it): its reply, or None once the
        failure is recorded. `keep` stores what the stage makes of the reply, in the transaction
        that records the call (Gateway.complete)."""
        request = Request.of(*messages, schema=schema, sampling=role.sampling, role=role.kind, sample=sample)
        return await self.attempt(
            stage, self.gateway.complete(self.models[role], request, keep), persona, task, questions, role
        )

    async def attempt(
        self,
        stage: Stage,
        call: Awaitable[T],
        persona: Persona,
        task: Task | None = None,
        questions: Sequence[Question] = (),
        role: Role | None = None,
    ) -> T | None:
        """Await a call; a failure after its retries is stored with its cause for each question it
        leaves unanswered (or for the persona), counted, and never scored: the result is None.
        A failure no rerun can fix (an unknown model, a refused key, no server) stops the run."""
        try:
            return await call
        except CallFailed as exc:
            failure = exc.failure
            for question in questions or [None]:
                self.store.save_failure(
                    self.run_id,
                    stage.value,
                    persona.id,
                    failure.model,
                    failure.cause.value,
                    failure.detail,
                    task=task.name if task else None,
                    question_id=question.id if question else None,
                )
                self.progress.failed(stage)
            if failure.cause in HOPELESS:
                raise RunStopped(explain(role or self.config.agent, failure)) from None
            return None
