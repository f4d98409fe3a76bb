"""What a run is made of: the model in each role, its sampling, the tasks and the counts.

The config is stored with the run; resuming with a different one is refused, naming the field.
"Recipes" name what an agent-independent artifact was made with, so any run that would make it
the same way reuses it instead of paying for it again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from personagym.errors import UserError
from personagym.llm import Sampling
from personagym.llm.spec import public_url
from personagym.method import MAX_BATCH, MAX_ENVIRONMENTS, MAX_QUESTIONS, PROMPTS_VERSION, Task

DEFAULT_JUDGES = ("openai:gpt-4o", "anthropic:claude-sonnet-4-5")
DEFAULT_GENERATOR = "openai:gpt-4o"

# Paper: the agent samples at temperature 0.9 and top_p 0.9; examples and judges at 0.
AGENT_SAMPLING = Sampling(temperature=0.9, top_p=0.9, max_tokens=600)
GENERATOR_SAMPLING = Sampling(temperature=0.0, max_tokens=2500)
EXAMPLE_SAMPLING = Sampling(temperature=0.0, max_tokens=2500)
JUDGE_SAMPLING = Sampling(temperature=0.0, max_tokens=3000)


@dataclass(frozen=True)
class RunConfig:
    agent: str  # a model spec, or the name of the user's endpoint or callable
    tasks: tuple[Task, ...]
    judges: tuple[str, ...] = DEFAULT_JUDGES
    generator: str = DEFAULT_GENERATOR  # environments and questions
    example_model: str = DEFAULT_GENERATOR
    questions_per_task: int = 10
    max_environments: int = 5
    judge_batch: int = 5  # question/answer pairs per judge call, as in the paper
    agent_sampling: Sampling = AGENT_SAMPLING
    generator_sampling: Sampling = GENERATOR_SAMPLING
    example_sampling: Sampling = EXAMPLE_SAMPLING
    judge_sampling: Sampling = JUDGE_SAMPLING
    agent_template: str | None = None  # system prompt with {persona}; None = the default
    agent_base_url: str | None = None  # the user's own OpenAI-compatible endpoint
    persona_field: str | None = None  # send the persona in this body field, not a system message
    benchmark: str | None = None  # "benchmark-v1" when the fixed questions are used
    # Whatever else identifies the run's inputs (the catalog's identity, say); stored and compared.
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for flag, value, most, paper in (
            ("--questions-per-task", self.questions_per_task, MAX_QUESTIONS, 10),
            ("--judge-batch", self.judge_batch, MAX_BATCH, 5),
            ("--environments", self.max_environments, MAX_ENVIRONMENTS, 5),
        ):
            if not 1 <= value <= most:
                raise UserError(f"{flag} must be between 1 and {most} (the paper uses {paper}); got {value}")
        if not self.judges:
            raise UserError("--judges needs at least one model spec (the paper uses two)")
        if not self.tasks:
            raise UserError("--tasks names no task: use e.g. expected_action,linguistic_habits")

    def stored(self) -> dict[str, Any]:
        """The part of the config that defines the run: compared on resume, exported with results."""
        return {
            "agent": self.agent,
            "agent_base_url": public_url(self.agent_base_url),  # never a user:password@ in the store
            "agent_template": self.agent_template,
            "persona_field": self.persona_field,
            "judges": list(self.judges),
            "generator": self.generator,
            "example_model": self.example_model,
            "tasks": [t.key for t in self.tasks],
            "task_versions": {t.key: t.version for t in self.tasks},
            "questions_per_task": self.questions_per_task,
            "max_environments": self.max_environments,
            "judge_batch": self.judge_batch,
            "sampling": {
                "agent": asdict(self.agent_sampling),
                "generator": asdict(self.generator_sampling),
                "examples": asdict(self.example_sampling),
                "judges": asdict(self.judge_sampling),
            },
            "prompts_version": PROMPTS_VERSION,
            "benchmark": self.benchmark,
            # Derived, but stored so readers of the run find its score examples without this code.
            "examples_recipes": {t.name: self.examples_recipe(t) for t in self.tasks},
            **self.extra,
        }

    # -- recipes of agent-independent artifacts ---------------------------------------------
    def environments_recipe(self, catalog_id: str) -> str:
        return _recipe(self.generator, self.generator_sampling, PROMPTS_VERSION, catalog_id, self.max_environments)

    def questions_recipe(self, task: Task, environments_recipe: str) -> str:
        if self.benchmark:
            return self.benchmark
        return _recipe(
            self.generator, self.generator_sampling, PROMPTS_VERSION, task.version, self.questions_per_task,
            environments_recipe,
        )

    def examples_recipe(self, task: Task) -> str:
        return _recipe(self.example_model, self.example_sampling, PROMPTS_VERSION, task.version)


def _recipe(*parts: Any) -> str:
    return json.dumps([asdict(p) if isinstance(p, Sampling) else p for p in parts], separators=(",", ":"))
