"""The plain data the stages pass along, and the context they share within one run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from personagym.llm import CallFailure, Gateway
from personagym.method import Environment, Task
from personagym.pipeline.config import RunConfig
from personagym.store.runs import RunStore

if TYPE_CHECKING:
    from personagym.pipeline.agents import Agent
    from personagym.progress import Progress


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

    def fail(
        self, stage: str, persona: Persona, failure: CallFailure, task: Task | None = None, question: Question | None = None
    ) -> None:
        """Record work that failed after its retries: stored with its cause, counted, never scored."""
        self.store.save_failure(
            self.run_id,
            stage,
            persona.id,
            failure.model,
            failure.cause.value,
            failure.detail,
            task=task.name if task else None,
            question_id=question.id if question else None,
        )
        self.progress.failed(stage)
