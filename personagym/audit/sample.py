"""What an audit grades: a run's answers as items, in the judge batches the run formed, and a seeded
sample of them stratified by task.

The unit sampled is a whole judge batch, as the run made it (a persona's questions of one task, in
order, `judge_batch` at a time, leaving out those without an answer or score examples): order can
only be reversed in a batch, and a batch the judge already graded in the run, asked again in the
same order, is the same call, answered from the run's cache for free. The order a run judge saw is
read back from the places its verdicts stored; a judge new to the run gets a seeded shuffle.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Sequence


@dataclass(frozen=True)
class Item:
    """One answered question of the run."""

    key: int  # its place in the run's export (results["questions"]): unique within the run
    persona: str
    task: str  # the task's display name, as exported
    index: int  # 1-based place among the persona's questions of the task
    question: str
    answer: str
    examples: dict[int, str] = field(hash=False, compare=False)
    positions: dict[str, int] = field(default_factory=dict, hash=False, compare=False)  # judge -> place, draw 0


@dataclass(frozen=True)
class Batch:
    persona: str
    task: str
    items: tuple[Item, ...]  # in question order


def _seed(*parts: Any) -> bytes:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()


def _positions(question: dict[str, Any]) -> dict[str, int]:
    found = {}
    for v in question.get("verdicts") or []:
        place = v.get("position")
        if v.get("sample", 0) == 0 and isinstance(place, int) and not isinstance(place, bool):
            found[str(v.get("judge"))] = place
    return found


def batches_of(results: dict[str, Any], judge_batch: int) -> list[Batch]:
    """The run's judge batches, as the run formed them: only answered questions with score examples."""
    groups: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = {}
    for key, q in enumerate(results["questions"]):
        groups.setdefault((q["persona"], q["task"]), []).append((key, q))
    out = []
    for (persona, task), questions in groups.items():
        questions.sort(key=lambda kq: kq[1]["index"])
        for start in range(0, len(questions), judge_batch):
            items = tuple(
                Item(
                    key, persona, task, q["index"], q["question"], q["answer"],
                    {int(level): text for level, text in q["examples"].items() if text is not None},
                    _positions(q),
                )
                for key, q in questions[start : start + judge_batch]
                if q.get("answer") is not None and q.get("examples")
            )
            if items:
                out.append(Batch(persona, task, items))
    return out


def stratified(batches: Sequence[Batch], n: int, seed: int) -> list[Batch]:
    """About `n` questions in whole batches, each task's share in proportion to its questions (at
    least one batch per task), the same for the same seed; returned in the run's order."""
    total = sum(len(b.items) for b in batches)
    if n >= total:
        return list(batches)
    by_task: dict[str, list[Batch]] = {}
    for b in batches:
        by_task.setdefault(b.task, []).append(b)
    # Largest remainder: quotas that add up to n exactly.
    exact = {t: n * sum(len(b.items) for b in bs) / total for t, bs in by_task.items()}
    quota = {t: int(v) for t, v in exact.items()}
    for t in sorted(exact, key=lambda t: (quota[t] - exact[t], t))[: n - sum(quota.values())]:
        quota[t] += 1
    chosen: set[int] = set()
    for task, task_batches in by_task.items():
        order = list(task_batches)
        random.Random(_seed("audit-sample", seed, task)).shuffle(order)
        taken = 0
        for b in order:
            if taken + len(b.items) <= quota[task]:
                chosen.add(id(b))
                taken += len(b.items)
        if not taken:
            chosen.add(id(min(order, key=lambda b: len(b.items))))
    return [b for b in batches if id(b) in chosen]


def first_order(batch: Batch, judge: str, shuffled: bool) -> tuple[Item, ...]:
    """The items in the order `judge` saw them in the run's first draw, when its stored places say
    so; otherwise as a run would show them to a new judge (a seeded shuffle, or question order)."""
    items = batch.items
    places = [item.positions.get(judge) for item in items]
    if None not in places and sorted(places) == list(range(1, len(items) + 1)):  # type: ignore[type-var]
        return tuple(sorted(items, key=lambda item: item.positions[judge]))
    if not shuffled or len(items) < 2:
        return items
    order = list(items)
    random.Random(_seed(judge, batch.persona, batch.task, [i.index for i in items])).shuffle(order)
    return tuple(order)


def candidates(item: Item, personas: Sequence[str], k: int, seed: int) -> tuple[list[str], int]:
    """k personas for the identification probe, the author among them: (texts, the author's 1-based
    place). The others and the order are drawn per item from the seed, so every judge sees the same."""
    rng = random.Random(_seed("audit-candidates", seed, item.persona, item.task, item.index))
    others = sorted(p for p in set(personas) if p != item.persona)
    chosen = rng.sample(others, k - 1) + [item.persona]
    rng.shuffle(chosen)
    return chosen, chosen.index(item.persona) + 1
