"""The library entry point: evaluate an agent on personas (or on the benchmark) and get results.

    results = asyncio.run(evaluate(["A 72-year-old doctor from Tokyo who loves hiking"],
                                   agent="openai:gpt-4o-mini", run="doctor"))

Everything the CLI does goes through here. Inputs are checked before the database is touched, so
bad input leaves no file behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from personagym.benchmark import Benchmark
from personagym.errors import InvalidParameter, UserError
from personagym.llm import Gateway, Limits
from personagym.llm.cache import Cache, learned_shapes, remember_shape
from personagym.llm.gateway import BoundModel
from personagym.llm.usage import Usage
from personagym.method import CATALOG_VERSION, Environment, Stage, load_catalog, prompts
from personagym.personas import clean_persona
from personagym.pipeline.agents import Agent, AnswerFn, CallableAgent, ModelAgent
from personagym.pipeline.config import RunConfig
from personagym.pipeline.context import Context, Persona
from personagym.pipeline.preflight import preflight
from personagym.pipeline.roles import Role
from personagym.pipeline.run import evaluate_all
from personagym.pipeline.shards import SHARD_KEY, parse_shard, shard_positions, shard_suffix, shard_text
from personagym.progress import Progress
from personagym.score import run_results
from personagym.store import connect
from personagym.store.runs import RunStore


@dataclass
class Prepared:
    """A run checked and ready: nothing has been written yet."""

    config: RunConfig
    personas: list[str]
    fixed: dict[str, dict[str, tuple[str, ...]]] | None
    catalog: tuple[Environment, ...]
    catalog_id: str
    gateway: Gateway
    models: dict[Role, BoundModel]
    agent: Agent
    name: str
    positions: list[int] | None = None  # a shard's personas' places in the whole list (0-based)

    @property
    def shard(self) -> tuple[int, int] | None:
        return self.config.shard

    def models_used(self) -> list[str]:
        return [role.model for role in self.models]


def prepare(
    personas: Sequence[str] | None,
    config: RunConfig,
    benchmark: Benchmark | None = None,
    run: str | None = None,
) -> Prepared:
    """Check every input and bind the models (a missing key fails here, before any I/O)."""
    if benchmark is not None:
        texts = list(benchmark.personas)
        fixed = {p: benchmark.questions[p] for p in texts}
        if config.questions_per_task > min(len(qs) for p in fixed.values() for qs in p.values()):
            raise InvalidParameter("questions_per_task", "is larger than the benchmark's 10 questions per task: use 10 or fewer")
    else:
        texts = list(dict.fromkeys(clean_persona(p) for p in (personas or [])))
        fixed = None
        if not texts:
            raise UserError("no personas given: pass --persona TEXT or --personas FILE")
    if config.agent_template is not None:
        prompts.check_template(config.agent_template)
    if config.rubrics == "upstream":  # its modules are loaded only by the runs that use them
        from personagym.pipeline.judging_upstream import upstream_method

        upstream_method(config)  # a missing or modified copy of upstream's files: refused before any I/O
    catalog = load_catalog(config.catalog)
    catalog_id = CATALOG_VERSION if config.catalog is None else "custom:" + _digest([(e.name, e.description) for e in catalog])
    shard = config.shard
    config = dataclasses.replace(
        config,
        benchmark=benchmark.name if benchmark is not None else None,
        extra={**config.extra, "catalog": catalog_id, **({SHARD_KEY: shard_text(*shard)} if shard else {})},
    )
    batch = None
    if config.batch:  # the batch machinery is imported by --batch runs only
        from personagym.llm.batch.runner import Batcher, BatchSettings

        poll = config.batch_poll
        batch = Batcher(BatchSettings(quiet=min(2.0, poll), poll_first=poll, poll_max=max(60.0, poll)))
    gateway = Gateway(
        limits=Limits(config.concurrency, config.rpm, config.tpm),
        retry=config.retry,
        usage=Usage(config.prices),
        settings=dict(config.settings),
        batch=batch,
    )
    models = {role: gateway.model(role.spec, role.base_url) for role in config.model_roles(benchmark is None)}
    if config.agent_fn is None:
        agent: Agent = ModelAgent(gateway, config.agent, models[config.agent], config.agent_template, config.persona_field)
    else:
        agent = CallableAgent(config.agent_fn, config.agent_name)
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
    return Prepared(config, texts, fixed, catalog, catalog_id, gateway, models, agent, name, positions)


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


async def execute(prepared: Prepared, db: str | Path) -> dict[str, Any]:
    """Run (or resume) a prepared evaluation; returns its results as exported."""
    from personagym.store.locks import check_before_run

    check_before_run(db, prepared.name)  # a read-only db, or a second process on the run, stops here: nothing paid
    opened: list[sqlite3.Connection] = []
    try:
        return await _execute(prepared, db, opened)
    finally:
        # Closed here, not left to the garbage collector: closing is what folds the write-ahead log
        # back into the file, so a copy of the .db alone holds the whole run.
        for conn in opened:
            conn.close()


async def _execute(prepared: Prepared, db: str | Path, opened: list[sqlite3.Connection]) -> dict[str, Any]:
    config = prepared.config
    run_id = None
    try:
        await preflight(prepared.gateway, prepared.models)  # before anything is written
        conn = connect(db)
        opened.append(conn)
        store = RunStore(conn)
        gateway = prepared.gateway
        run_id = store.open_run(prepared.name, config.stored())  # and takes its lock: one writer per run
        gateway.cache = Cache(conn)
        gateway.on_call = lambda call: store.save_call(run_id, call)
        prices = gateway.usage.prices
        store.set_prices(run_id, {m: p for m in {*prepared.models_used()} if (p := prices.lookup(m)) is not None})
        gateway.use_shapes(learned_shapes(conn))
        gateway.on_shape = lambda server, shape: remember_shape(conn, server, shape)
        if gateway.batch is not None:
            from personagym.llm.batch.runner import JobStore

            gateway.batch.jobs = JobStore(conn)  # job ids outlive the process: a restart polls them again
        personas = [Persona(store.persona_id(text), text) for text in prepared.personas]
        # A shard keeps each persona's place in the whole list, so a merge restores its order.
        store.add_run_personas(run_id, [p.id for p in personas], prepared.positions)
        progress = Progress(_totals(prepared, len(personas)), usage=gateway.usage, quiet=not config.progress)
        gateway.on_note = progress.note
        if gateway.batch is not None:
            gateway.batch.on_event = progress.note
        ctx = Context(
            gateway, store, run_id, config, prepared.catalog, prepared.catalog_id, prepared.agent, progress,
            prepared.models,
        )
    except BaseException:  # a dead model, a locked run, a full disk: the gateway's connections close
        await prepared.gateway.aclose()
        if run_id is not None:
            store.close_run(run_id, "interrupted")  # and releases the lock
        raise
    ended: BaseException | None = None  # what ended the run early, for the last progress line
    try:
        async with gateway, store.keeping(run_id):
            # A batch job should carry a stage for every persona, so in batch mode all go at once.
            in_flight = len(personas) if gateway.batch is not None else max(4, config.concurrency)
            await evaluate_all(ctx, personas, prepared.fixed, in_flight=max(1, in_flight))
    except BaseException as exc:
        ended = exc
        store.close_run(run_id, "interrupted")  # and releases the lock
        raise
    finally:
        progress.close(ended)
    store.close_run(run_id, "done")
    run = store.find_run(prepared.name)
    assert run is not None
    return run_results(store, run, config.prices)


def _totals(prepared: Prepared, personas: int) -> dict[Stage, int]:
    c = prepared.config
    questions = personas * len(c.tasks) * c.questions_per_task
    dynamic = prepared.fixed is None
    return {
        Stage.ENVIRONMENTS: personas if dynamic else 0,
        Stage.QUESTIONS: personas * len(c.tasks) if dynamic else 0,
        Stage.ANSWERS: questions,
        Stage.EXAMPLES: questions,
        Stage.VERDICTS: questions * len(c.judges) * c.judge_samples,
        Stage.DIALOGUES: personas * c.dialogues * c.turns,  # agent turns
    }


async def evaluate(
    personas: Sequence[str] | None = None,
    *,
    agent: str | AnswerFn,
    run: str | None = None,
    db: str | Path = "personagym.db",
    benchmark: Benchmark | None = None,
    config: RunConfig | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Evaluate `agent` (a model spec, or ``async (persona, question) -> str``) on personas or a benchmark.

    Settings are keywords as `RunConfig.of` takes them (``judges=[...]``, ``questions_per_task=2``),
    or a whole `config`. Returns the results as `personagym export` writes them (schema
    personagym.results/1).
    """
    config = config or RunConfig.of(agent, **settings)
    return await execute(prepare(personas, config, benchmark, run), db)
