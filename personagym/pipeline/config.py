"""Everything a run is made of, with every default and every check in one place.

`RunConfig` holds the models in their roles, the tasks and counts that define the run (stored with
it; resuming with a different one is refused, naming the field), and the knobs that only say how
to run it (limits, retries, prices, batch mode, a shard). `RunConfig.of(...)` takes what users type
(spec strings, comma lists, loose sampling knobs) and is the one place they are parsed; the CLI
and the Python API therefore refuse the same things with the same messages.

"Recipes" name what an agent-independent artifact was made with, so any run that would make it the
same way reuses it instead of paying for it again.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Sequence

from personagym import defaults
from personagym.errors import InvalidParameter
from personagym.llm import ModelSpec, ProviderSettings, RetryPolicy, Sampling, parse_spec
from personagym.llm.usage import PriceTable
from personagym.method import MAX_BATCH, MAX_ENVIRONMENTS, MAX_QUESTIONS, PROMPTS_VERSION, TASKS, Task, parse_tasks
from personagym.pipeline import roles
from personagym.pipeline.roles import Role, check_sampling, spec_of, specs_of
from personagym.pipeline.shards import parse_shard

AnswerFn = Callable[[str, str], Awaitable[str]]

# Request body fields the product itself sends: a persona field of the same name would overwrite one.
RESERVED_BODY_FIELDS = frozenset({
    "model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens", "seed", "stream",
    "response_format", "tools", "tool_choice", "n", "stop", "system", "output_config", "metadata",
})


def _role(kind: str, spec: str, sampling: Sampling) -> Role:
    return Role(kind, parse_spec(spec), sampling)


@dataclass(frozen=True)
class RunConfig:
    agent: Role  # for a Python callable: spec callable:<name>, never sent to the gateway
    tasks: tuple[Task, ...] = TASKS
    judges: tuple[Role, ...] = tuple(_role(roles.JUDGE, s, roles.JUDGE_SAMPLING) for s in defaults.JUDGES)
    generator: Role = _role(roles.GENERATOR, defaults.GENERATOR, roles.GENERATOR_SAMPLING)
    example_model: Role = _role(roles.EXAMPLES, defaults.EXAMPLE_MODEL, roles.EXAMPLE_SAMPLING)
    questions_per_task: int = defaults.QUESTIONS_PER_TASK
    max_environments: int = defaults.ENVIRONMENTS
    judge_batch: int = defaults.JUDGE_BATCH  # question/answer pairs per judge call, as in the paper
    example_batch: int = defaults.EXAMPLE_BATCH  # questions per score-example call, as upstream
    rubrics: str = defaults.RUBRICS  # "own" (personagym/method/tasks.toml) or "upstream" (downloaded)
    rubrics_dir: str | Path | None = None  # a local copy of upstream's method files (--rubrics upstream)
    judge_samples: int = defaults.JUDGE_SAMPLES  # draws per judge and item, averaged
    judge_order: str = defaults.JUDGE_ORDER  # "shuffled" (seeded, stored with the verdicts) or "fixed"
    agent_template: str | None = None  # system prompt with {persona}; None = the default
    persona_field: str | None = None  # send the persona in this body field, not a system message
    catalog: str | Path | None = None  # the user's environment catalog file; None = the packaged one
    dialogues: int = defaults.DIALOGUES  # conversations per persona (docs/dialogues.md); 0: none
    turns: int = defaults.TURNS  # user turns per conversation
    interlocutor: Role | None = None  # the user side of dialogues; None: the generator's model, sampled warmer
    benchmark: str | None = None  # "benchmark-v1" when the fixed questions are used (set by prepare)
    # Whatever else identifies the run's inputs (the catalog's identity, a shard); stored and compared.
    extra: dict[str, Any] = field(default_factory=dict)
    # -- how to run it: never stored, free to change between a run and its resumption -----------
    agent_fn: AnswerFn | None = field(default=None, compare=False)  # the user's own code as the agent
    concurrency: int = defaults.CONCURRENCY  # calls in flight per model and endpoint
    rpm: float | None = None  # requests per minute per model; None: unlimited
    tpm: float | None = None
    settings: Mapping[str, ProviderSettings] = field(default_factory=dict)  # per provider: base URL, key
    retry: RetryPolicy = RetryPolicy()
    prices: PriceTable | None = None
    progress: bool = True
    batch: bool = False  # every call through the providers' batch APIs: half price, slower
    batch_poll: float = defaults.BATCH_POLL  # seconds before the first look at a batch job (then up to a minute apart)
    shard: tuple[int, int] | None = None  # (K, N): only personas K, K+N, K+2N... (docs/sharding.md)

    def __post_init__(self) -> None:
        for param, value, most, paper in (
            ("questions_per_task", self.questions_per_task, MAX_QUESTIONS, defaults.QUESTIONS_PER_TASK),
            ("judge_batch", self.judge_batch, MAX_BATCH, defaults.JUDGE_BATCH),
            ("example_batch", self.example_batch, MAX_BATCH, defaults.EXAMPLE_BATCH),
            ("max_environments", self.max_environments, MAX_ENVIRONMENTS, defaults.ENVIRONMENTS),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
                raise InvalidParameter(param, f"must be between 1 and {most} (the paper uses {paper}); got {value!r}")
        if not self.judges:
            raise InvalidParameter("judges", "needs at least one model spec (the paper uses two)")
        if self.rubrics not in ("own", "upstream"):
            raise InvalidParameter("rubrics", f"must be own or upstream; got {self.rubrics!r}")
        if self.judge_order not in ("shuffled", "fixed"):
            raise InvalidParameter("judge_order", f"must be shuffled or fixed; got {self.judge_order!r}")
        if isinstance(self.judge_samples, bool) or not isinstance(self.judge_samples, int) or not 1 <= self.judge_samples <= 10:
            raise InvalidParameter("judge_samples", f"must be a whole number from 1 to 10; got {self.judge_samples!r}")
        _check_dialogues(self.dialogues, self.turns)
        if not self.tasks:
            raise InvalidParameter("tasks", "names no task: use e.g. expected_action,linguistic_habits")
        for role in (self.agent, self.generator, self.example_model, *self.judges, self.interlocutor_role):
            check_sampling(role.sampling, {roles.EXAMPLES: "example"}.get(role.kind, role.kind))
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise InvalidParameter("concurrency", f"must be a whole number of at least 1; got {self.concurrency!r}")
        for param, rate in (("rpm", self.rpm), ("tpm", self.tpm)):
            if rate is not None and not _positive(rate):
                raise InvalidParameter(param, f"must be a positive number (leave it out for no limit); got {rate!r}")
        if not _positive(self.batch_poll):
            raise InvalidParameter("batch_poll", f"must be a positive number of seconds; got {self.batch_poll!r}")
        if isinstance(self.retry.max_attempts, bool) or not isinstance(self.retry.max_attempts, int) or self.retry.max_attempts < 1:
            raise InvalidParameter("max_attempts", f"must be a whole number of at least 1; got {self.retry.max_attempts!r}")
        if not _positive(self.retry.timeout):
            raise InvalidParameter("timeout", f"must be a positive number of seconds; got {self.retry.timeout!r}")
        if self.persona_field is not None and (not self.persona_field.strip() or self.persona_field in RESERVED_BODY_FIELDS):
            raise InvalidParameter(
                "persona_field", f"{self.persona_field!r} is a field personagym sends itself: choose another name, e.g. persona"
            )

    @classmethod
    def of(
        cls,
        agent: str | ModelSpec | AnswerFn,
        *,
        models: str | None = None,
        judges: str | Sequence[str | ModelSpec] | None = None,
        generator: str | ModelSpec | None = None,
        example_model: str | ModelSpec | None = None,
        tasks: str | Sequence[str] | None = None,
        agent_base_url: str | Sequence[str] | None = None,
        agent_sampling: Sampling | None = None,
        agent_temperature: float | None = None,
        agent_top_p: float | None = None,
        agent_max_tokens: int | None = None,
        generator_sampling: Sampling | None = None,
        example_sampling: Sampling | None = None,
        judge_sampling: Sampling | None = None,
        interlocutor: str | ModelSpec | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        shard: str | Sequence[int] | None = None,
        **fields: Any,
    ) -> "RunConfig":
        """A config from what users type: specs as strings (`models` fills every role not given),
        judges as a comma list or a list, tasks by name, loose agent sampling knobs. Anything else
        goes to the field of the same name; an unknown name is refused."""
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls)} - {"agent", "agent_fn"})
        if unknown:
            raise InvalidParameter(unknown[0], "is not a setting of a run: see `personagym run --help` for the list")
        defaults = cls.__dataclass_fields__
        if callable(agent) and not isinstance(agent, (str, ModelSpec)):
            name = getattr(agent, "__qualname__", "agent")
            fields["agent_fn"] = agent
            agent_spec = ModelSpec("callable", name)
        elif agent or models:
            agent_spec = spec_of(agent or models, "agent")
        else:
            raise InvalidParameter("agent", "is missing: give a model spec (e.g. openai:gpt-4o-mini, or local)")

        sampling = agent_sampling or roles.AGENT_SAMPLING
        loose = {"temperature": agent_temperature, "top_p": agent_top_p, "max_tokens": agent_max_tokens}
        sampling = dataclasses.replace(sampling, **{k: v for k, v in loose.items() if v is not None})
        urls = ",".join(agent_base_url) if isinstance(agent_base_url, (list, tuple)) else agent_base_url
        fields["agent"] = Role(roles.AGENT, agent_spec, sampling, urls or None)

        def one(kind: str, value: Any, name: str, sampling: Sampling | None) -> None:
            default: Role = defaults[name].default
            spec = spec_of(value or models, name) if (value or models) else default.spec
            fields[name] = Role(kind, spec, sampling or default.sampling)

        one(roles.GENERATOR, generator, "generator", generator_sampling)
        one(roles.EXAMPLES, example_model, "example_model", example_sampling)
        given = judges if judges is not None else models
        judge_specs = specs_of(given, "judges") if given is not None else None
        default_judges: tuple[Role, ...] = defaults["judges"].default
        fields["judges"] = tuple(
            Role(roles.JUDGE, spec, judge_sampling or roles.JUDGE_SAMPLING)
            for spec in (judge_specs if judge_specs is not None else [r.spec for r in default_judges])
        )
        if interlocutor:
            spec = spec_of(interlocutor, "interlocutor")
            fields["interlocutor"] = Role(roles.INTERLOCUTOR, spec, roles.INTERLOCUTOR_SAMPLING)
        if tasks is not None:
            fields["tasks"] = parse_tasks(tasks if isinstance(tasks, str) else ",".join(tasks))
        if max_attempts is not None or timeout is not None:
            retry = fields.get("retry") or RetryPolicy()
            fields["retry"] = dataclasses.replace(
                retry,
                **{k: v for k, v in (("max_attempts", max_attempts), ("timeout", timeout)) if v is not None},
            )
        if shard is not None:
            fields["shard"] = parse_shard(shard)
        return cls(**fields)

    @property
    def agent_name(self) -> str:
        return self.agent.model

    def model_roles(self, with_generator: bool = True) -> list[Role]:
        """Every role the gateway serves (the agent only when it is a model)."""
        found = [*self.judges, self.example_model, *([self.generator] if with_generator else [])]
        found += [self.interlocutor_role] if self.dialogues else []
        return found + ([self.agent] if self.agent_fn is None else [])

    def stored(self) -> dict[str, Any]:
        """The part of the config that defines the run: compared on resume, exported with results."""
        from personagym.llm.spec import public_url

        return {
            "agent": self.agent.model,
            "agent_base_url": public_url(self.agent.base_url),  # never a user:password@ in the store
            "agent_template": self.agent_template,
            "persona_field": self.persona_field,
            "judges": [j.model for j in self.judges],
            "generator": self.generator.model,
            "example_model": self.example_model.model,
            "tasks": [t.key for t in self.tasks],
            "task_versions": {t.key: t.version for t in self.tasks},
            "questions_per_task": self.questions_per_task,
            "max_environments": self.max_environments,
            "judge_batch": self.judge_batch,
            "example_batch": self.example_batch,
            "rubrics": self.rubrics,
            "judge_samples": self.judge_samples,
            "judge_order": self.judge_order,
            # As each model receives it: "provider default" where a provider takes no temperature.
            "sampling": {
                "agent": self.sent_sampling(self.agent),
                "generator": self.sent_sampling(self.generator),
                "examples": self.sent_sampling(self.example_model),
                **{f"judge {j.model}": self.sent_sampling(j) for j in self.judges},
                **({"interlocutor": self.sent_sampling(self.interlocutor_role)} if self.dialogues else {}),
            },
            "prompts_version": PROMPTS_VERSION,
            "benchmark": self.benchmark,
            # Derived, but stored so readers of the run find its score examples without this code.
            "examples_recipes": {t.name: self.examples_recipe(t) for t in self.tasks},
            **self.extra,
            **self.dialogue_fields(),
        }

    @property
    def interlocutor_role(self) -> Role:
        """Who plays the user in dialogues: --interlocutor, else the generator's model, sampled warmer."""
        return self.interlocutor or Role(roles.INTERLOCUTOR, self.generator.spec, roles.INTERLOCUTOR_SAMPLING)

    def dialogue_fields(self) -> dict[str, Any]:
        """What defines a run's dialogues, stored only when it has some: a run without keeps the config
        (and the default name) it had before dialogues existed."""
        if not self.dialogues:
            return {}
        from personagym.method.dialogues import DIALOGUE_PROMPTS_VERSION, RUBRIC_VERSION
        from personagym.method.tactics import TACTICS, TACTICS_VERSION

        return {
            "dialogues": self.dialogues,
            "turns": self.turns,
            "interlocutor": self.interlocutor_role.model,
            "dialogue_versions": {
                "prompts": DIALOGUE_PROMPTS_VERSION,
                "rubric": RUBRIC_VERSION,
                "tactics": TACTICS_VERSION,
                **{t.key: t.version for t in TACTICS},
            },
        }

    def sent_sampling(self, role: Role) -> dict[str, Any]:
        from personagym.llm.sampling import sent

        settings = self.settings.get(role.spec.provider)
        base_url = role.base_url or (settings.base_url if settings else None)
        return sent(role.spec.provider, role.spec.model, base_url, role.sampling)

    # -- recipes of agent-independent artifacts ---------------------------------------------
    def environments_recipe(self, catalog_id: str) -> str:
        g = self.generator
        return _recipe(g.model, g.sampling, PROMPTS_VERSION, catalog_id, self.max_environments)

    def questions_recipe(self, task: Task, environments_recipe: str) -> str:
        if self.benchmark:
            return self.benchmark
        g = self.generator
        return _recipe(g.model, g.sampling, PROMPTS_VERSION, task.version, self.questions_per_task, environments_recipe)

    def examples_recipe(self, task: Task) -> str:
        e = self.example_model
        # The batch size is part of the recipe: examples written five to a prompt are not the ones
        # written alone (a set asked again alone after a bad reply still belongs to its batch's recipe).
        return _recipe(e.model, e.sampling, PROMPTS_VERSION, task.version, self.example_batch)


def _check_dialogues(dialogues: Any, turns: Any) -> None:
    limits = (("dialogues", dialogues, 0, defaults.MAX_DIALOGUES), ("turns", turns, 1, defaults.MAX_TURNS))
    for param, value, low, high in limits:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidParameter(param, f"must be a whole number from {low} to {high}; got {value!r}")


def _positive(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _recipe(*parts: Any) -> str:
    return json.dumps([asdict(p) if isinstance(p, Sampling) else p for p in parts], separators=(",", ":"))
