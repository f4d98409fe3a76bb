"""Every call of an audit, planned before any is made: `--dry-run` prices this list and the audit
sends it, so the two never disagree.

Per judge and sampled batch: the batch as the run graded it (the same call, so answered from the
run's cache when the run graded it with this judge), a second draw of it (only where a second draw
is a different call: above temperature 0, or where the provider takes none), the batch reversed,
and the batch with a filler paragraph, a note to the grader, or a neutral aside of the note's length
appended to every answer. Per judge and sampled answer: one identification call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from personagym import defaults
from personagym.audit.sample import Batch, Item, batches_of, candidates, first_order, stratified
from personagym.errors import UserError
from personagym.llm import Gateway, Request, Sampling, parse_spec
from personagym.llm.cache import cache_key
from personagym.llm.gateway import BoundModel
from personagym.method import PROMPTS_VERSION, get_task, prompts
from personagym.method.audit_prompts import (
    ASIDES,
    AUDIT_PROMPTS_VERSION,
    FILLER,
    INJECTIONS,
    appended,
    choice_schema,
    identification,
)
from personagym.pipeline.judging import verdicts_schema
from personagym.pipeline.roles import JUDGE, JUDGE_SAMPLING, Role

AUDIT_ROLE = "audit"  # how audit calls are counted in usage tables
# What each call is for: the probes read the scores of one kind against another.
BASE, REDRAW, REVERSED, FILLED, INJECTED, CONTROL, IDENTIFY = (
    "as graded", "second draw", "reversed", "filler", "injected", "aside", "identify",
)  # fmt: skip
KINDS = (BASE, REDRAW, REVERSED, FILLED, INJECTED, CONTROL, IDENTIFY)


@dataclass(frozen=True)
class Call:
    judge: Role
    kind: str
    request: Request
    items: tuple[Item, ...]  # in the order sent; one item for an identification call
    author: int = 0  # identification: the right candidate, 1-based


@dataclass
class Plan:
    run: str
    judges: tuple[Role, ...]
    batches: list[Batch]
    candidates: int  # k as used: at most the run's personas
    calls: list[Call]
    redraws: dict[str, bool]  # judge -> whether a second draw is a call of its own
    models: dict[Role, BoundModel]
    settings: dict[str, Any]  # stored with the audit: what makes two audits comparable

    @property
    def items(self) -> list[Item]:
        return [item for batch in self.batches for item in batch.items]


def injection_of(item: Item) -> int:
    """Which phrasing (and matching aside) an item gets: they take turns over the sample."""
    return item.key % len(INJECTIONS)


def judge_roles(config: dict[str, Any], specs: tuple | None) -> tuple[Role, ...]:
    """The judges to audit, sampled as the run sampled its judges: the run's own by default."""
    names = [str(s) for s in specs] if specs else [str(j) for j in config.get("judges") or []]
    if not names:
        raise UserError("the run names no judges: pass --judges SPEC,... to say which to audit")
    stored = config.get("sampling") or {}
    run_judges = [str(j) for j in config.get("judges") or []]
    fallback = stored.get(f"judge {run_judges[0]}") if run_judges else None
    return tuple(
        Role(JUDGE, parse_spec(name), _sampling(stored.get(f"judge {name}") or fallback)) for name in dict.fromkeys(names)
    )


def _sampling(sent: Any) -> Sampling:
    """The Sampling a run asked for, from what it recorded as sent ("provider default" where a model
    takes no temperature: the request's own value is then unknown, and only the cache key needs it)."""
    if not isinstance(sent, dict):
        return JUDGE_SAMPLING

    def number(key: str, default: Any) -> Any:
        value = sent.get(key, default)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else default

    return Sampling(
        temperature=number("temperature", JUDGE_SAMPLING.temperature),
        top_p=number("top_p", None),
        max_tokens=int(number("max_tokens", JUDGE_SAMPLING.max_tokens)),
        seed=number("seed", None),
    )


def _graded(judge: Role, kind: str, batch: Batch, items: tuple[Item, ...], answers: list[str], sample: int = 0) -> Call:
    messages = prompts.judging(
        batch.persona, get_task(batch.task), [(i.question, a) for i, a in zip(items, answers)], [i.examples for i in items]
    )
    request = Request.of(
        *messages, schema=verdicts_schema(len(items)), sampling=judge.sampling, role=AUDIT_ROLE, sample=sample
    )
    return Call(judge, kind, request, items)


def _batch_calls(judge: Role, model: BoundModel, batch: Batch, shuffled: bool) -> tuple[list[Call], bool]:
    order = first_order(batch, judge.model, shuffled)
    answers = [i.answer for i in order]
    base = _graded(judge, BASE, batch, order, answers)
    again = _graded(judge, REDRAW, batch, order, answers, sample=1)
    distinct = cache_key(model.identity, again.request) != cache_key(model.identity, base.request)
    calls = [base] + ([again] if distinct else [])
    if len(order) > 1:
        calls.append(_graded(judge, REVERSED, batch, order[::-1], answers[::-1]))
    calls.append(_graded(judge, FILLED, batch, order, [appended(a, FILLER) for a in answers]))
    calls.append(_graded(judge, INJECTED, batch, order, [appended(i.answer, INJECTIONS[injection_of(i)]) for i in order]))
    calls.append(_graded(judge, CONTROL, batch, order, [appended(i.answer, ASIDES[injection_of(i)]) for i in order]))
    return calls, distinct


def plan_calls(
    results: dict[str, Any],
    gateway: Gateway,
    *,
    judges: tuple | None = None,
    sample: int = 100,
    candidates_per_item: int = 4,
    seed: int = 0,
) -> Plan:
    """The audit of a run's results (as exported) with these judges; models are bound on `gateway`
    (a missing key fails here, before anything is called)."""
    config = results["run"].get("config") or {}
    name = str(results["run"]["name"])
    if (config.get("rubrics") or "own") != "own":
        raise UserError(
            f"run {name!r} was graded with --rubrics {config.get('rubrics')}; the audit re-grades with this project's "
            "judging prompt, so its numbers would not describe that run: audit a run graded with --rubrics own"
        )
    batch_size = config.get("judge_batch", defaults.JUDGE_BATCH)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        batch_size = defaults.JUDGE_BATCH
    shuffled = config.get("judge_order", defaults.JUDGE_ORDER) == "shuffled"
    sampled = stratified(batches_of(results, batch_size), sample, seed)
    if not sampled:
        raise UserError(
            f"run {name!r} has no answered questions with score examples to audit: finish it first (run the same "
            "command again to resume it)"
        )
    personas = list(dict.fromkeys([p["persona"] for p in results.get("personas") or []] +
                                  [q["persona"] for q in results["questions"]]))  # fmt: skip
    k = min(candidates_per_item, len(personas))
    roles = judge_roles(config, judges)
    models = {role: gateway.model(role.spec) for role in roles}
    calls: list[Call] = []
    redraws = {}
    for role in roles:
        for batch in sampled:
            made, redraws[role.model] = _batch_calls(role, models[role], batch, shuffled)
            calls += made
        if k >= 2:
            for item in (i for b in sampled for i in b.items):
                texts, author = candidates(item, personas, k, seed)
                request = Request.of(
                    *identification(texts, item.question, item.answer), schema=choice_schema(k),
                    sampling=role.sampling, role=AUDIT_ROLE,
                )  # fmt: skip
                calls.append(Call(role, IDENTIFY, request, (item,), author))
    settings = {
        "sample": sample, "questions": sum(len(b.items) for b in sampled), "batches": len(sampled),
        "candidates": k, "seed": seed, "prompts_version": PROMPTS_VERSION,
        "audit_prompts_version": AUDIT_PROMPTS_VERSION,
    }  # fmt: skip
    return Plan(name, roles, sampled, k, calls, redraws, models, settings)
