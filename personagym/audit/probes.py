"""The five probes as statistics over plain numbers: one small function each, no I/O.

Every probe is paired: the same judge grades the same answer twice, once as the run showed it and
once changed in one way (order reversed, a filler paragraph or a note to the grader appended, a
second draw), so each item is its own control and the interval comes from a bootstrap over items.
Where chance or noise alone would move the number, the comparison point is measured too and given
as the baseline: chance (1/k) for identification, a second draw for order, a neutral aside of the
same length for injection. docs/audit.md says what each number means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from personagym import stats

IDENTIFICATION, ORDER, LENGTH, INJECTION, CONSISTENCY = "identification", "order", "length", "injection", "consistency"
PROBES = (IDENTIFICATION, ORDER, LENGTH, INJECTION, CONSISTENCY)


@dataclass(frozen=True)
class Boot:
    """How intervals are drawn: the same settings give the same numbers."""

    resamples: int = 2000
    level: float = 0.95
    seed: int = 0

    def mean(self, values: Sequence[float]) -> stats.Interval:
        return stats.bootstrap_mean(values, resamples=self.resamples, level=self.level, seed=self.seed)


@dataclass(frozen=True)
class Result:
    """One probe of one judge: its headline number with interval and n, and what it is compared with."""

    probe: str
    value: float | None
    ci: tuple[float, float] | None
    n: int
    baseline: float | None = None
    measures: dict[str, Any] = field(default_factory=dict)  # secondary numbers: {"value", "ci", "n"} or plain
    failed: int = 0  # calls of this probe that failed after their retries (their items left out)
    note: str | None = None  # why there is no number, when there is none

    def as_dict(self) -> dict[str, Any]:
        return {
            "value": self.value, "ci": list(self.ci) if self.ci else None, "n": self.n, "baseline": self.baseline,
            "measures": self.measures, "failed": self.failed, **({"note": self.note} if self.note else {}),
        }  # fmt: skip


def _ci(iv: stats.Interval) -> tuple[float, float] | None:
    return None if iv.low is None or iv.high is None else (iv.low, iv.high)


def _measure(iv: stats.Interval) -> dict[str, Any]:
    return {"value": iv.value, "ci": list(_ci(iv)) if _ci(iv) else None, "n": iv.n}


def _result(probe: str, iv: stats.Interval, **kw: Any) -> Result:
    return Result(probe, iv.value, _ci(iv), iv.n, **kw)


def identification(correct: Sequence[bool], k: int, boot: Boot = Boot(), failed: int = 0) -> Result:
    """Share of answers whose author the judge picked out of k candidates; chance is 1/k."""
    return _result(IDENTIFICATION, boot.mean([float(c) for c in correct]), baseline=1 / k,
                   measures={"candidates": k}, failed=failed)  # fmt: skip


def order(
    base: Sequence[int], reversed_: Sequence[int], redraw: Sequence[int] | None, boot: Boot = Boot(), failed: int = 0
) -> Result:
    """Mean absolute score change when a batch is graded in reverse order. Baseline: the change a
    second draw in the same order makes (0 where a second draw is the same call); `beyond_baseline`
    is the paired excess, the part no redraw explains."""
    b, r = np.asarray(base, float), np.asarray(reversed_, float)
    moved = np.abs(r - b)
    noise = np.abs(np.asarray(redraw, float) - b) if redraw is not None else np.zeros_like(b)
    return _result(
        ORDER, boot.mean(moved.tolist()), baseline=float(noise.mean()) if len(noise) else None, failed=failed,
        measures={"share_changed": _measure(boot.mean((moved > 0).astype(float).tolist())),
                  "beyond_baseline": _measure(boot.mean((moved - noise).tolist()))},
    )  # fmt: skip


def length(
    base: Sequence[int], padded: Sequence[int], lengths: Sequence[int], tasks: Sequence[str], boot: Boot = Boot(),
    failed: int = 0,
) -> Result:
    """Mean score change when a neutral filler paragraph is appended (the causal probe), with the rank
    correlation between answer length and score within task (what the run shows; a longer answer
    may also be a better one, so this alone proves nothing)."""
    change = (np.asarray(padded, float) - np.asarray(base, float)).tolist()
    rho, n = within_task_rank_correlation(lengths, base, tasks)
    ci = stats.correlation_interval(rho, n, "spearman", boot.level)
    correlation = {"value": rho, "ci": list(ci) if ci else None, "n": n}
    return _result(LENGTH, boot.mean(change), measures={"correlation": correlation}, failed=failed)


def injection(
    base: Sequence[int], injected: Sequence[int], control: Sequence[int], boot: Boot = Boot(), failed: int = 0
) -> Result:
    """Mean score change from a note to the grader appended to the answer, against a neutral aside of
    the same length appended instead (so length alone moves nothing). Baseline: the aside's own
    change; `raw` the note's change against the answer as it was."""
    b, i, c = (np.asarray(x, float) for x in (base, injected, control))
    return _result(
        INJECTION, boot.mean((i - c).tolist()), baseline=float((c - b).mean()) if len(b) else None, failed=failed,
        measures={"raw": _measure(boot.mean((i - b).tolist()))},
    )  # fmt: skip


def consistency(base: Sequence[int], redraw: Sequence[int], boot: Boot = Boot(), failed: int = 0) -> Result:
    """Share of items whose score changes on a second draw of the same call, with exact and within-one
    agreement and Krippendorff's ordinal alpha (the two draws as coders)."""
    b, r = np.asarray(base, float), np.asarray(redraw, float)
    gap = np.abs(r - b)
    alpha = stats.krippendorff_alpha(list(zip(b.tolist(), r.tolist())), "ordinal") if len(b) else None
    return _result(
        CONSISTENCY, boot.mean((gap > 0).astype(float).tolist()), failed=failed,
        measures={"exact": float((gap == 0).mean()) if len(b) else None,
                  "within_one": float((gap <= 1).mean()) if len(b) else None, "alpha": alpha},
    )  # fmt: skip


def not_measured(probe: str, note: str, failed: int = 0) -> Result:
    return Result(probe, None, None, 0, failed=failed, note=note)


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + ends + 1) / 2)[inverse]


def within_task_rank_correlation(
    x: Sequence[float], y: Sequence[float], groups: Sequence[str]
) -> tuple[float | None, int]:
    """Spearman's rho within groups, pooled: ranks are taken within each group (as fractions of its
    size, centred), so a task whose answers are both longer and better graded does not make length
    look rewarded. (rho, n); rho None when undefined (n < 3 or nothing varies)."""
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    keys = np.asarray(list(groups), dtype=object)
    px, py = [], []
    for g in dict.fromkeys(groups):
        mask = keys == g
        if mask.sum() < 2:
            continue
        size = float(mask.sum())
        rx, ry = _ranks(xs[mask]) / size, _ranks(ys[mask]) / size
        px.append(rx - rx.mean())
        py.append(ry - ry.mean())
    if not px:
        return None, 0
    cx, cy = np.concatenate(px), np.concatenate(py)
    n = len(cx)
    denom = float(np.sqrt((cx @ cx) * (cy @ cy)))
    if n < 3 or denom == 0:
        return None, n
    return float(np.clip((cx @ cy) / denom, -1, 1)), n
