"""Running an audit: its options, parsed once; its calls through the gateway (cached in the run's
database, so a stopped audit resumes without paying twice, and counted with the run's calls); the
probes computed from the replies; the result stored with the run.

    result = asyncio.run(audit("luna-v1", db="personagym.db", sample=50))
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from personagym import defaults
from personagym.audit import probes
from personagym.audit.calls import BASE, CONTROL, FILLED, IDENTIFY, INJECTED, REDRAW, REVERSED, Call, Plan, plan_calls
from personagym.audit.probes import Boot, Result
from personagym.audit.verdicts import verdict
from personagym.errors import InvalidParameter, UserError
from personagym.llm import CallFailed, Gateway, Limits, ModelSpec, ProviderSettings, RetryPolicy
from personagym.llm.cache import Cache, cache_key, learned_shapes, remember_shape
from personagym.llm.usage import PriceTable, Usage
from personagym.method import Stage
from personagym.method.audit_prompts import MAX_CANDIDATES
from personagym.pipeline.plan import SIZES
from personagym.pipeline.preflight import HOPELESS, RunStopped, explain, preflight
from personagym.pipeline.roles import specs_of
from personagym.pipeline.together import all_or_stop

if TYPE_CHECKING:
    from personagym.progress import Progress

AUDIT_SCHEMA = "personagym.audit/1"
IDENTIFY_REPLY_TOKENS = 150  # reasoning and a choice, for the --dry-run estimate


@dataclass(frozen=True)
class AuditOptions:
    """Everything an audit takes besides the run. `AuditOptions.of` parses what users type."""

    judges: tuple[ModelSpec, ...] | None = None  # None: the run's own
    sample: int = 100  # questions, in whole judge batches, stratified by task
    candidates: int = 4  # personas the judge chooses from in the identification probe
    seed: int = 0  # the sample, the candidates and the bootstrap
    resamples: int = 2000
    level: float = 0.95
    # -- how to call: free to change between an audit and its resumption ---------------------
    concurrency: int = defaults.CONCURRENCY
    rpm: float | None = None
    tpm: float | None = None
    retry: RetryPolicy = RetryPolicy()
    settings: Mapping[str, ProviderSettings] = field(default_factory=dict)
    prices: PriceTable | None = None

    def __post_init__(self) -> None:
        for param, value, low, high in (
            ("sample", self.sample, 2, 100_000), ("candidates", self.candidates, 2, MAX_CANDIDATES),
            ("resamples", self.resamples, 100, 1_000_000), ("concurrency", self.concurrency, 1, 10_000),
        ):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidParameter(param, f"must be a whole number from {low:,} to {high:,}; got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InvalidParameter("seed", f"must be a whole number; got {self.seed!r}")
        if not 0 < self.level < 1:
            raise InvalidParameter("level", f"must be between 0 and 1, e.g. 0.95; got {self.level!r}")

    @classmethod
    def of(
        cls,
        *,
        judges: str | Sequence[str | ModelSpec] | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        **fields: Any,
    ) -> "AuditOptions":
        """Options from what users type: judges as a comma list or a list of specs; the rest by name."""
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise InvalidParameter(unknown[0], "is not a setting of an audit: see `personagym audit --help`")
        if judges is not None:
            fields["judges"] = specs_of(judges, "judges") or None
        if max_attempts is not None or timeout is not None:
            changed = {k: v for k, v in (("max_attempts", max_attempts), ("timeout", timeout)) if v is not None}
            fields["retry"] = dataclasses.replace(fields.get("retry") or RetryPolicy(), **changed)
        return cls(**fields)

    def gateway(self) -> Gateway:
        return Gateway(
            limits=Limits(self.concurrency, self.rpm, self.tpm), retry=self.retry, usage=Usage(self.prices),
            settings=dict(self.settings),
        )  # fmt: skip

    def boot(self) -> Boot:
        return Boot(self.resamples, self.level, self.seed)


def prepare_audit(results: dict[str, Any], options: AuditOptions, gateway: Gateway | None = None) -> tuple[Plan, Gateway]:
    """The audit's plan for a run's results (as exported), its models bound on a gateway (a missing
    key fails here). Nothing is called or written."""
    gateway = gateway or options.gateway()
    plan = plan_calls(
        results, gateway, judges=options.judges, sample=options.sample, candidates_per_item=options.candidates,
        seed=options.seed,
    )  # fmt: skip
    plan.settings.update(resamples=options.resamples, level=options.level)
    return plan, gateway


@dataclass
class Replies:
    """What came back, per judge: scores per call kind and item, and identification hits."""

    scores: dict[tuple[str, str], dict[int, int]] = field(default_factory=lambda: defaultdict(dict))
    correct: dict[str, dict[int, bool]] = field(default_factory=lambda: defaultdict(dict))
    failed: Counter = field(default_factory=Counter)  # (judge, kind) -> calls that failed


async def _send(plan: Plan, gateway: Gateway, progress: "Progress | None" = None) -> Replies:
    replies = Replies()

    async def one(call: Call) -> None:
        judge = call.judge.model
        try:
            completion = await gateway.complete(plan.models[call.judge], call.request)
        except CallFailed as exc:
            if exc.failure.cause in HOPELESS:  # an unknown model, a refused key, no server: stop now
                raise RunStopped(explain(call.judge, exc.failure)) from None
            replies.failed[(judge, call.kind)] += 1
            if progress is not None:
                progress.failed(Stage.VERDICTS)
            return
        if progress is not None:
            progress.done(Stage.VERDICTS)
        if call.kind == IDENTIFY:
            replies.correct[judge][call.items[0].key] = completion.parsed.choice == call.author
            return
        by_index = {v.index: v.score for v in completion.parsed.verdicts}
        for place, item in enumerate(call.items, start=1):
            replies.scores[(judge, call.kind)][item.key] = by_index[place]

    await all_or_stop([one(call) for call in plan.calls])
    return replies


def summarise(plan: Plan, replies: Replies, boot: Boot = Boot()) -> dict[str, dict[str, Any]]:
    """Per judge: {"probes": {probe: result with its status and verdict}}."""
    out = {}
    for role in plan.judges:
        judge = role.model
        found = _probes(plan, replies, judge, boot)
        out[judge] = {"probes": {r.probe: {**r.as_dict(), **dict(zip(("status", "verdict"), verdict(r)))} for r in found}}
    return out


def _probes(plan: Plan, replies: Replies, judge: str, boot: Boot) -> list[Result]:
    def got(kind: str) -> dict[int, int]:
        return replies.scores.get((judge, kind), {})

    def failed(*kinds: str) -> int:
        return sum(replies.failed[(judge, k)] for k in (BASE, *kinds))

    base, redraw = got(BASE), got(REDRAW)
    distinct = plan.redraws.get(judge, False)
    items = plan.items
    found: list[Result] = []
    if plan.candidates >= 2:
        hits = replies.correct.get(judge, {})
        found.append(probes.identification([hits[i.key] for i in items if i.key in hits], plan.candidates, boot,
                                           failed=replies.failed[(judge, IDENTIFY)]))  # fmt: skip
    else:
        found.append(probes.not_measured(probes.IDENTIFICATION, "the run has one persona: there is nothing to tell apart"))

    multi = [i for b in plan.batches if len(b.items) > 1 for i in b.items]
    keys = [i.key for i in multi if i.key in base and i.key in got(REVERSED) and (not distinct or i.key in redraw)]
    found.append(probes.order([base[k] for k in keys], [got(REVERSED)[k] for k in keys],
                              [redraw[k] for k in keys] if distinct else None, boot, failed(REVERSED, REDRAW)))
    chosen = [i for i in items if i.key in base and i.key in got(FILLED)]
    found.append(probes.length([base[i.key] for i in chosen], [got(FILLED)[i.key] for i in chosen],
                               [len(i.answer.split()) for i in chosen], [i.task for i in chosen], boot,
                               failed(FILLED)))
    keys = [i.key for i in items if i.key in base and i.key in got(INJECTED) and i.key in got(CONTROL)]
    found.append(probes.injection([base[k] for k in keys], [got(INJECTED)[k] for k in keys],
                                  [got(CONTROL)[k] for k in keys], boot, failed(INJECTED, CONTROL)))
    if distinct:
        keys = [i.key for i in items if i.key in base and i.key in redraw]
        found.append(probes.consistency([base[k] for k in keys], [redraw[k] for k in keys], boot, failed(REDRAW)))
    else:
        found.append(probes.not_measured(
            probes.CONSISTENCY,
            "the judge samples at temperature 0, where a second draw is the same call (answered from the cache), so "
            "it cannot disagree with itself and neither can the run",
        ))  # fmt: skip
    return found


async def execute_audit(
    plan: Plan, gateway: Gateway, conn: sqlite3.Connection | None = None, run_id: int | None = None,
    boot: Boot = Boot(), progress: bool = False,
) -> dict[str, Any]:
    """Make the plan's calls (cached in `conn`'s database when given; counted with run `run_id`'s calls
    and the result stored with it when given) and return the audit as `--json` writes it. With
    `progress`, a progress line on stderr (every judge call counts as a verdict)."""
    from personagym.progress import Progress
    from personagym.store.audits import save_audit
    from personagym.store.runs import RunStore

    async with gateway:
        await preflight(gateway, plan.models)  # a dead model stops here, before anything is paid or written
        if conn is not None:
            gateway.cache = Cache(conn)
            gateway.use_shapes(learned_shapes(conn))
            gateway.on_shape = lambda server, shape: remember_shape(conn, server, shape)
            if run_id is not None:
                store = RunStore(conn)
                gateway.on_call = lambda call: store.save_call(run_id, call)
        shown = Progress({Stage.VERDICTS: len(plan.calls)}, usage=gateway.usage, quiet=not progress)
        try:
            replies = await _send(plan, gateway, shown)
        finally:
            shown.close()
    judges = summarise(plan, replies, boot)
    if conn is not None and run_id is not None:
        now = time.time()
        save_audit(conn, run_id, {j: {"settings": plan.settings, "created_at": now, **v} for j, v in judges.items()})
    return {
        "schema": AUDIT_SCHEMA, "run": plan.run, "settings": plan.settings,
        "judges": {r.model: {"sampling": dataclasses.asdict(r.sampling), **judges[r.model]} for r in plan.judges},
        "usage": gateway.usage.as_dict(),
    }  # fmt: skip


def open_run(db: str | Path, name: str, *, write: bool = True):
    """(connection, run id, results as exported) of run `name` in database `db`; read-only when not
    `write` (nothing created or changed, for --dry-run)."""
    from personagym.score import run_results
    from personagym.store import connect
    from personagym.store.db import connect_read
    from personagym.store.runs import RunStore

    conn = connect(db, create=False) if write else connect_read(db)
    store = RunStore(conn)
    row = store.find_run(name)
    if row is None:
        known = ", ".join(repr(r.name) for r in store.runs()) or "none yet"
        conn.close()
        raise UserError(f"no run named {name!r} in {db}: known runs are {known}")
    return conn, row.id, run_results(store, row)


async def audit(run: str, *, db: str | Path = "personagym.db", progress: bool = True, **options: Any) -> dict[str, Any]:
    """Audit the judges of run `run` in database `db` (or others: ``judges="openai:gpt-4o,..."``) and
    store the result with the run. Options as `AuditOptions.of` takes them."""
    parsed = AuditOptions.of(**options)
    conn, run_id, results = open_run(db, run)
    try:
        plan, gateway = prepare_audit(results, parsed)
        return await execute_audit(plan, gateway, conn, run_id, parsed.boot(), progress)
    finally:
        conn.close()


def plan_lines(plan: Plan, conn: sqlite3.Connection | None, prices: PriceTable | None = None) -> list[str]:
    """`--dry-run`: the calls per judge and kind, how many the cache already holds, tokens and cost."""
    prices = prices or PriceTable.load()
    cache = Cache(conn) if conn is not None else None
    per_item = SIZES[Stage.VERDICTS][1]
    lines = [
        f"dry run of the audit of {plan.run!r}: {len(plan.items)} questions in {len(plan.batches)} judge batches, "
        f"{len(plan.judges)} judge(s), {plan.candidates} candidates per identification; nothing will be called",
        f"{'judge':<34}{'calls for':<13}{'calls':>7}{'cached':>8}{'prompt tok':>12}{'reply tok':>11}{'cost':>11}",
    ]
    rows: dict[tuple[str, str], list[int]] = {}
    for call in plan.calls:
        key = cache_key(plan.models[call.judge].identity, call.request)
        cached = cache is not None and cache.get(key) is not None
        row = rows.setdefault((call.judge.model, call.kind), [0, 0, 0, 0])
        row[0] += 1
        row[1] += cached
        if not cached:
            row[2] += sum(len(m.content) for m in call.request.messages) // 4
            row[3] += IDENTIFY_REPLY_TOKENS if call.kind == IDENTIFY else per_item * len(call.items)
    total_calls = total_cached = 0
    total_cost, unknown = 0.0, False
    for (judge, kind), (calls, cached, pt, ct) in rows.items():
        cost = prices.cost(judge, pt, ct) if pt or ct else 0.0
        unknown |= cost is None
        total_calls, total_cached, total_cost = total_calls + calls, total_cached + cached, total_cost + (cost or 0.0)
        shown = "unknown" if cost is None else f"${cost:,.2f}"
        lines.append(f"{judge[:33]:<34}{kind:<13}{calls:>7,}{cached:>8,}{pt:>12,}{ct:>11,}{shown:>11}")
    tail = " (plus models without a known price)" if unknown else ""
    lines.append(
        f"total: {total_calls:,} calls, {total_cached:,} already in the cache (free), about ${total_cost:,.2f} for the "
        f"rest{tail}"
    )
    return lines
