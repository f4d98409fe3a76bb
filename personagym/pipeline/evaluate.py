"""The library entry point: evaluate an agent on personas (or on the benchmark) and get results.

    results = asyncio.run(evaluate(["A 72-year-old doctor from Tokyo who loves hiking"],
                                   agent="openai:gpt-4o-mini", run="doctor"))

Everything the CLI does goes through here. Inputs are checked before the database is touched, so
bad input leaves no file behind.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from personagym.benchmark import Benchmark
from personagym.errors import UserError
from personagym.llm import Gateway, Limits, ProviderSettings, RetryPolicy, Sampling
from personagym.llm.batch.runner import Batcher, BatchSettings, JobStore
from personagym.llm.cache import Cache
from personagym.llm.usage import PriceTable, Usage
from personagym.method import CATALOG_VERSION, Environment, load_catalog, parse_tasks, prompts
from personagym.personas import clean_persona
from personagym.pipeline.agents import Agent, AnswerFn, CallableAgent, ModelAgent
from personagym.pipeline.config import (
    AGENT_SAMPLING,
    DEFAULT_GENERATOR,
    DEFAULT_JUDGES,
    EXAMPLE_SAMPLING,
    GENERATOR_SAMPLING,
    JUDGE_SAMPLING,
    RunConfig,
)
from personagym.pipeline.context import Context, Persona
from personagym.pipeline.run import evaluate_all
from personagym.progress import Progress
from personagym.score import run_results
from personagym.store import connect
from personagym.store.merge import SHARD_KEY, add_personas_at, parse_shard, shard_positions, shard_suffix, shard_text
from personagym.store.runs import RunStore


@dataclass
class Options:
    """Everything besides personas and agent; every field has the paper's default."""

    judges: Sequence[str] = DEFAULT_JUDGES
    generator: str = DEFAULT_GENERATOR
    example_model: str = DEFAULT_GENERATOR
    tasks: str | Sequence[str] | None = None  # None: all five
    questions_per_task: int = 10
    max_environments: int = 5
    judge_batch: int = 5
    agent_sampling: Sampling = AGENT_SAMPLING
    generator_sampling: Sampling = GENERATOR_SAMPLING
    example_sampling: Sampling = EXAMPLE_SAMPLING
    judge_sampling: Sampling = JUDGE_SAMPLING
    agent_template: str | None = None
    agent_base_url: str | None = None
    persona_field: str | None = None
    catalog: str | Path | None = None
    concurrency: int = 16
    rpm: float | None = None
    tpm: float | None = None
    settings: dict[str, ProviderSettings] = field(default_factory=dict)
    retry: RetryPolicy | None = None
    prices: PriceTable | None = None
    progress: bool = True
    batch: bool = False  # every call through the providers' batch APIs: half price, slower
    batch_poll: float = 5.0  # seconds before the first look at a batch job (then up to a minute apart)
    shard: str | tuple[int, int] | None = None  # "K/N": only personas K, K+N, K+2N... (docs/sharding.md)


# Options that pass into the run's config unchanged.
_SHARED_FIELDS = (
    "generator", "example_model", "questions_per_task", "max_environments", "judge_batch",
    "agent_sampling", "generator_sampling", "example_sampling", "judge_sampling",
    "agent_template", "agent_base_url", "persona_field",
)


@dataclass
class Prepared:
    """A run checked and ready: nothing has been written yet."""

    config: RunConfig
    personas: list[str]
    fixed: dict[str, dict[str, tuple[str, ...]]] | None
    catalog: tuple[Environment, ...]
    catalog_id: str
    gateway: Gateway
    agent: Agent
    name: str
    shard: tuple[int, int] | None = None
    positions: list[int] | None = None  # a shard's personas' places in the whole list (0-based)


def prepare(
    personas: Sequence[str] | None,
    agent: str | AnswerFn,
    options: Options,
    benchmark: Benchmark | None = None,
    run: str | None = None,
) -> Prepared:
    """Check every input and build the models (a bad spec or missing key fails here, before any I/O)."""
    shard = parse_shard(options.shard) if options.shard is not None else None
    tasks = parse_tasks(options.tasks if isinstance(options.tasks, str) or options.tasks is None else ",".join(options.tasks))
    if benchmark is not None:
        texts = list(benchmark.personas)
        fixed = {p: benchmark.questions[p] for p in texts}
        if options.questions_per_task > min(len(qs) for p in fixed.values() for qs in p.values()):
            raise UserError("--questions-per-task is larger than the benchmark's 10 questions per task: use 10 or fewer")
    else:
        texts = list(dict.fromkeys(clean_persona(p) for p in (personas or [])))
        fixed = None
        if not texts:
            raise UserError("no personas given: pass --persona TEXT or --personas FILE")
    if options.agent_template is not None:
        prompts.check_template(options.agent_template)
    catalog = load_catalog(options.catalog)
    catalog_id = CATALOG_VERSION if options.catalog is None else "custom:" + _digest([(e.name, e.description) for e in catalog])
    agent_name = agent if isinstance(agent, str) else f"callable:{getattr(agent, '__qualname__', 'agent')}"
    config = RunConfig(
        agent=agent_name,
        tasks=tasks,
        judges=tuple(options.judges),
        benchmark=benchmark.name if benchmark is not None else None,
        extra={"catalog": catalog_id, **({SHARD_KEY: shard_text(*shard)} if shard else {})},
        **{name: getattr(options, name) for name in _SHARED_FIELDS},
    )
    try:
        limits = Limits(options.concurrency, options.rpm, options.tpm)
    except ValueError:
        raise UserError("--concurrency must be at least 1") from None
    batch = None
    if options.batch:
        poll = options.batch_poll
        batch = Batcher(BatchSettings(quiet=min(2.0, poll), poll_first=poll, poll_max=max(60.0, poll)))
    gateway = Gateway(
        limits=limits, retry=options.retry, usage=Usage(options.prices), settings=options.settings, batch=batch
    )
    for spec in {*config.judges, config.example_model, *([] if benchmark else [config.generator])}:
        gateway.model(spec)
    if isinstance(agent, str):
        runner: Agent = ModelAgent(
            gateway, agent, options.agent_sampling, options.agent_template, options.agent_base_url, options.persona_field
        )
    else:
        runner = CallableAgent(agent, agent_name)
    name = run or default_run_name(config, texts)  # of the whole list, also for a shard
    positions = None
    if shard is not None:
        positions = shard_positions(len(texts), *shard)
        if not positions:
            raise UserError(
                f"--shard {shard_text(*shard)} selects no persona: there are only {len(texts)}; "
                f"split them into at most {len(texts)} shards"
            )
        texts = [texts[i] for i in positions]
        fixed = {p: fixed[p] for p in texts} if fixed is not None else None
    return Prepared(config, texts, fixed, catalog, catalog_id, gateway, runner, name, shard, positions)


def default_run_name(config: RunConfig, personas: Sequence[str]) -> str:
    """Deterministic, so the same command run twice resumes instead of starting over."""
    return run_name_for(config.stored(), personas)


def run_name_for(stored: dict[str, Any], personas: Sequence[str]) -> str:
    """The default name of a run with this stored config on these personas (the whole list, for a
    shard): a shard's is the whole run's plus -shard-K-of-N, so a merge can name the merged run as
    the unsharded command would and that command resumes it."""
    whole = {k: v for k, v in stored.items() if k != SHARD_KEY}
    name = f"{stored['agent'].split('/')[-1]}-{_digest([whole, list(personas)])}"
    return name + shard_suffix(*parse_shard(stored[SHARD_KEY])) if SHARD_KEY in stored else name


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]


async def execute(prepared: Prepared, db: str | Path, options: Options) -> dict[str, Any]:
    """Run (or resume) a prepared evaluation; returns its results as exported."""
    conn = connect(db)
    store = RunStore(conn)
    gateway = prepared.gateway
    run_id = store.open_run(prepared.name, prepared.config.stored())
    gateway.cache = Cache(conn)
    gateway.on_call = lambda call: store.save_call(run_id, call)
    if gateway.batch is not None:
        gateway.batch.jobs = JobStore(conn)  # job ids outlive the process: a restart polls them again
    personas = [Persona(store.persona_id(text), text) for text in prepared.personas]
    if prepared.positions is None:
        store.add_run_personas(run_id, [p.id for p in personas])
    else:  # a shard keeps each persona's place in the whole list, so a merge restores its order
        add_personas_at(store, run_id, [p.id for p in personas], prepared.positions)
    progress = Progress(_totals(prepared, len(personas)), usage=gateway.usage, quiet=not options.progress)
    if gateway.batch is not None:
        gateway.batch.on_event = progress.note
    ctx = Context(gateway, store, run_id, prepared.config, prepared.catalog, prepared.catalog_id, prepared.agent, progress)
    try:
        async with gateway:
            # A batch job should carry a stage for every persona, so in batch mode all go at once.
            in_flight = len(personas) if gateway.batch is not None else max(4, options.concurrency)
            await evaluate_all(ctx, personas, prepared.fixed, in_flight=max(1, in_flight))
    except BaseException:
        store.set_status(run_id, "interrupted")
        raise
    finally:
        progress.close()
    store.set_status(run_id, "done")
    run = store.find_run(prepared.name)
    assert run is not None
    return run_results(store, run, options.prices)


def _totals(prepared: Prepared, personas: int) -> dict[str, int]:
    c = prepared.config
    questions = personas * len(c.tasks) * c.questions_per_task
    dynamic = prepared.fixed is None
    return {
        "environments": personas if dynamic else 0,
        "questions": personas * len(c.tasks) if dynamic else 0,
        "answers": questions,
        "examples": questions,
        "verdicts": questions * len(c.judges),
    }


async def evaluate(
    personas: Sequence[str] | None = None,
    *,
    agent: str | AnswerFn,
    run: str | None = None,
    db: str | Path = "personagym.db",
    benchmark: Benchmark | None = None,
    options: Options | None = None,
    **option_fields: Any,
) -> dict[str, Any]:
    """Evaluate `agent` (a model spec, or ``async (persona, question) -> str``) on personas or a benchmark.

    Options may be given as an Options object or as keywords (``judges=[...]``, ``questions_per_task=2``).
    Returns the results as `personagym export` writes them (schema personagym.results/1).
    """
    options = options or Options(**option_fields)
    prepared = prepare(personas, agent, options, benchmark, run)
    return await execute(prepared, db, options)
