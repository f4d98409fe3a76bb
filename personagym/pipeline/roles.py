"""The models of a run, one object per role: which model, sampled how, reached where.

A role is parsed once, where the user's input enters (the CLI, the config file or a keyword of
`evaluate`), and then carried as it is through the pipeline to the gateway: no stage ever reads a
model spec from a string again, so `OpenAI:gpt-4o` and `openai:gpt-4o` are one model everywhere
(config, recipes, verdicts, usage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from personagym import defaults
from personagym.errors import InvalidParameter
from personagym.llm import ModelSpec, Sampling, parse_spec

# Who does what. The values name the role in usage tables and in each request's accounting.
AGENT = "agent"
GENERATOR = "generator"  # environments and questions
EXAMPLES = "examples"  # score examples
JUDGE = "judge"
INTERLOCUTOR = "interlocutor"  # the user side of dialogues (--dialogues)

AGENT_SAMPLING = Sampling(
    temperature=defaults.AGENT_TEMPERATURE, top_p=defaults.AGENT_TOP_P, max_tokens=defaults.AGENT_MAX_TOKENS
)
GENERATOR_SAMPLING = Sampling(temperature=0.0, max_tokens=defaults.GENERATOR_MAX_TOKENS)
EXAMPLE_SAMPLING = Sampling(temperature=0.0, max_tokens=defaults.EXAMPLE_MAX_TOKENS)
JUDGE_SAMPLING = Sampling(temperature=0.0, max_tokens=defaults.JUDGE_MAX_TOKENS)
INTERLOCUTOR_SAMPLING = Sampling(
    temperature=defaults.INTERLOCUTOR_TEMPERATURE, max_tokens=defaults.INTERLOCUTOR_MAX_TOKENS
)


@dataclass(frozen=True)
class Role:
    kind: str  # AGENT, GENERATOR, EXAMPLES, JUDGE or INTERLOCUTOR
    spec: ModelSpec
    sampling: Sampling
    base_url: str | None = None  # endpoint(s) other than the provider's: the user's own agent

    @property
    def model(self) -> str:
        """The normalised spec, as stored with verdicts, usage and the run's config."""
        return str(self.spec)


def spec_of(value: str | ModelSpec, param: str) -> ModelSpec:
    if isinstance(value, ModelSpec):
        return value
    if not isinstance(value, str):
        raise InvalidParameter(param, f"must be a model spec such as openai:gpt-4o, not {type(value).__name__}")
    return parse_spec(value)


def specs_of(value: str | Sequence[str | ModelSpec], param: str) -> tuple[ModelSpec, ...]:
    """A comma-separated string or a list of specs; a model named twice counts once."""
    items = value.split(",") if isinstance(value, str) else list(value)
    specs = [spec_of(item.strip() if isinstance(item, str) else item, param) for item in items]
    specs = [s for s in specs if str(s)]
    return tuple(dict.fromkeys(specs))


def check_sampling(sampling: Sampling, prefix: str) -> None:
    """Refuse sampling no provider accepts, naming the parameter (e.g. agent_temperature)."""
    t, p, n = sampling.temperature, sampling.top_p, sampling.max_tokens
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0 <= t <= 2:
        raise InvalidParameter(f"{prefix}_temperature", f"must be a number from 0 to 2; got {t!r}")
    if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1):
        raise InvalidParameter(f"{prefix}_top_p", f"must be a number above 0 and at most 1; got {p!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidParameter(f"{prefix}_max_tokens", f"must be a whole number of at least 1; got {n!r}")
