"""How much to trust a PersonaScore: intervals, paired comparisons, rank correlations.

A run's score is a mean over personas, so its uncertainty is the sampling of personas: intervals
resample personas (percentile bootstrap). Two runs on the same personas and questions are compared
pairwise: the difference's interval resamples shared personas, and its p-value flips the sign of
per-question differences (a paired permutation test). Judges are checked against each other
(Krippendorff's alpha) and runs against human ratings (rank correlations, see personagym.alignment).
Everything random takes a seed; the same seed gives the same numbers.
docs/statistics.md says what each number means.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from statistics import NormalDist, fmean
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = [
    "Interval",
    "Comparison",
    "bootstrap_mean",
    "run_intervals",
    "compare",
    "leaderboard",
    "krippendorff_alpha",
    "spearman",
    "kendall_tau",
    "correlation_interval",
]

# Resampling works in blocks of at most this many numbers, so memory stays bounded (~32 MB of float64)
# however many personas, questions or resamples there are.
_BLOCK = 4_000_000


@dataclass(frozen=True)
class Interval:
    value: float | None  # the estimate; None when n == 0
    low: float | None  # None when undefined (n < 2)
    high: float | None
    n: int  # how many units were resampled


def _present(values: Iterable[float | None]) -> np.ndarray:
    return np.array([v for v in values if v is not None], dtype=float)


def _percentile(values: np.ndarray, rng: np.random.Generator, resamples: int, level: float) -> tuple[float, float]:
    """Percentile bootstrap of the mean of `values` (at least two of them)."""
    n = len(values)
    means = np.empty(resamples)
    step = max(1, _BLOCK // n)
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def _check(resamples: int, level: float) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, not {resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, not {level}")


def _interval(values: np.ndarray, value: float | None, rng: np.random.Generator, resamples: int, level: float):
    if len(values) < 2:
        return Interval(value, None, None, len(values))
    return Interval(value, *_percentile(values, rng, resamples, level), len(values))


def bootstrap_mean(
    values: Iterable[float | None], *, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> Interval:
    """The mean of `values` (None entries left out) with a percentile-bootstrap interval."""
    _check(resamples, level)
    data = _present(values)
    value = fmean(data.tolist()) if len(data) else None
    return _interval(data, value, np.random.default_rng(seed), resamples, level)


def run_intervals(results: dict[str, Any], *, resamples: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """{"persona_score": Interval, "tasks": {task: Interval}} for a results export, resampling personas.

    Each value is the same mean the export reports (over personas that have the score); the interval
    says how much it would move with another draw of personas of the same kind.
    """
    personas = results["personas"]
    return {
        "persona_score": bootstrap_mean(
            (p["persona_score"] for p in personas), resamples=resamples, level=level, seed=seed
        ),
        "tasks": {
            task: bootstrap_mean((p["tasks"].get(task) for p in personas), resamples=resamples, level=level, seed=seed)
            for task in results["scores"]["tasks"]
        },
    }


@dataclass(frozen=True)
class Comparison:
    a: str  # run names
    b: str
    personas: int  # shared personas used (those with a shared scored question in every common task)
    questions: int  # shared questions scored in both runs, of those personas and tasks
    a_score: float | None  # PersonaScores over the shared, restricted set
    b_score: float | None
    difference: Interval  # a - b, bootstrap over shared personas
    p_value: float | None  # paired sign-flip permutation over shared questions, two-sided, (k+1)/(R+1)


def _question_scores(results: dict[str, Any], tasks: set[str]) -> dict[tuple, float]:
    """Scored questions of `tasks`, keyed by what identifies the same question in another run."""
    return {
        (q["persona"], q["task"], q["index"], q["question"]): q["score"]
        for q in results["questions"]
        if q["score"] is not None and q["task"] in tasks
    }


def _paired(a: dict[str, Any], b: dict[str, Any]):
    """Per shared persona: task -> list of (a score, b score) over questions scored in both runs."""
    tasks = [t for t in a["scores"]["tasks"] if t in b["scores"]["tasks"]]
    qa, qb = _question_scores(a, set(tasks)), _question_scores(b, set(tasks))
    b_personas = {p["persona"] for p in b["personas"]}
    shared: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for key, score in qa.items():
        if key in qb and key[0] in b_personas:
            shared[key[0]][key[1]].append((score, qb[key]))
    order = [p["persona"] for p in a["personas"]]
    # A persona's score needs every task, exactly as in a run's own PersonaScore.
    used = [p for p in order if p in shared and all(shared[p].get(t) for t in tasks)]
    return tasks, [shared[p] for p in used]


def _persona_score(by_task: dict[str, list[tuple[float, float]]], tasks: list[str], side: int) -> float:
    return fmean(fmean(pair[side] for pair in by_task[t]) for t in tasks)


def _sign_flip_p(wd: np.ndarray, rng: np.random.Generator, permutations: int) -> float:
    """Two-sided p of sum(wd) under random sign flips of each term: (k + 1) / (R + 1)."""
    wd = wd[wd != 0]  # a zero difference flips to itself
    observed = abs(float(wd.sum()))
    # Sums reordered by the matrix product differ in the last bits; a tie must count as a tie.
    tol = 1e-9 * float(np.abs(wd).sum())
    q = len(wd)
    if q == 0:
        return 1.0
    k = 0
    step = max(8, (_BLOCK // q) // 8 * 8)
    total = wd.sum()
    for start in range(0, permutations, step):
        rows = min(step, permutations - start)
        # One random bit per sign: 8 signs per random byte, far cheaper than drawing integers.
        bits = np.unpackbits(np.frombuffer(rng.bytes((rows * q + 7) // 8), dtype=np.uint8))[: rows * q]
        flipped = bits.reshape(rows, q).astype(np.float64) @ wd
        # Flipping the terms in set S turns the total T into T - 2 * sum(S).
        k += int(np.count_nonzero(np.abs(total - 2 * flipped) >= observed - tol))
    return (k + 1) / (permutations + 1)


def compare(
    a: dict[str, Any],
    b: dict[str, Any],
    *,
    resamples: int = 2000,
    permutations: int = 10000,
    level: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Run a against run b on what both scored: the same personas, tasks and questions.

    Both scores are recomputed on that shared set the way a run's PersonaScore is (question -> task ->
    persona -> mean), so their difference reflects the agents, not which questions happened to fail.
    """
    _check(resamples, level)
    if permutations < 1:
        raise ValueError(f"permutations must be at least 1, not {permutations}")
    tasks, personas = _paired(a, b)
    names = a["run"]["name"], b["run"]["name"]
    questions = sum(len(pairs) for p in personas for pairs in p.values())
    if not personas:
        return Comparison(*names, 0, 0, None, None, Interval(None, None, None, 0), None)
    score_a = np.array([_persona_score(p, tasks, 0) for p in personas])
    score_b = np.array([_persona_score(p, tasks, 1) for p in personas])
    a_score, b_score = fmean(score_a.tolist()), fmean(score_b.tolist())
    rng = np.random.default_rng(seed)
    difference = _interval(score_a - score_b, a_score - b_score, rng, resamples, level)
    # a_score - b_score = sum over questions of w_q * d_q with w_q = 1 / (P * T * n_pt): linear in each
    # question's difference, so flipping signs of d_q draws from the no-difference null directly.
    scale = len(personas) * len(tasks)
    wd = np.array([(x - y) / (scale * len(pairs)) for p in personas for pairs in p.values() for x, y in pairs])
    return Comparison(
        *names, len(personas), questions, a_score, b_score, difference, _sign_flip_p(wd, rng, permutations)
    )


def leaderboard(results_list: Sequence[dict[str, Any]], **kw: Any) -> list[Comparison]:
    """compare() for every pair i < j, in the order given."""
    return [
        compare(results_list[i], results_list[j], **kw)
        for i in range(len(results_list))
        for j in range(i + 1, len(results_list))
    ]


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    ordered = x[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    first = np.flatnonzero(starts)
    sizes = np.diff(np.r_[first, len(x)])
    ranks = np.empty(len(x))
    ranks[order] = (first + (sizes + 1) / 2)[np.cumsum(starts) - 1]
    return ranks


def _pairs(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError(f"x and y must be two equally long sequences, not shapes {xs.shape} and {ys.shape}")
    return xs, ys


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho (Pearson correlation of average ranks); None if a side is constant or n < 3."""
    xs, ys = _pairs(x, y)
    if len(xs) < 3:
        return None
    rx, ry = _ranks(xs) - (len(xs) + 1) / 2, _ranks(ys) - (len(ys) + 1) / 2
    denom = float(np.sqrt((rx @ rx) * (ry @ ry)))
    return None if denom == 0 else float(np.clip((rx @ ry) / denom, -1, 1))


def _tie_pairs(x: np.ndarray) -> int:
    _, counts = np.unique(x, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b, which corrects for ties on either side; None if a side is constant or n < 3.

    Counts concordant minus discordant pairs directly, in blocks: O(n^2) work, under half a second
    at n = 10,000, which is more items than human raters grade.
    """
    xs, ys = _pairs(x, y)
    n = len(xs)
    if n < 3:
        return None
    pairs = n * (n - 1) // 2
    denom = float(np.sqrt(float(pairs - _tie_pairs(xs)) * float(pairs - _tie_pairs(ys))))
    if denom == 0:
        return None
    step = max(1, _BLOCK // n)
    s = 0
    for start in range(0, n, step):
        block = slice(start, min(n, start + step))
        above = xs[block, None] > xs[None, :]
        # Over ordered pairs (i, j) with x_i > x_j: concordant if y_i > y_j, discordant if y_i < y_j.
        # Each unordered pair with distinct x is met exactly once that way round.
        s += int(np.count_nonzero(above & (ys[block, None] > ys[None, :])))
        s -= int(np.count_nonzero(above & (ys[block, None] < ys[None, :])))
    return float(np.clip(s / denom, -1, 1))


# Standard errors of Fisher's z for each coefficient (Fieller, Hartley & Pearson 1957 for the rank ones).
_FISHER = {"pearson": (1.0, 3), "spearman": (1.06, 3), "kendall": (0.437, 4)}


def correlation_interval(r: float | None, n: int, kind: str, level: float = 0.95) -> tuple[float, float] | None:
    """Fisher-z interval for a correlation `r` from `n` pairs: tanh(atanh(r) +- z * se).

    se = sqrt(c / (n - m)) with (c, m) = (1, 3) for Pearson, (1.06, 3) for Spearman and (0.437, 4) for
    Kendall (Fieller et al. 1957). None when r is undefined or +-1, or n is too small for the formula.
    """
    if kind not in _FISHER:
        raise ValueError(f"kind must be one of {', '.join(_FISHER)}, not {kind!r}")
    c, m = _FISHER[kind]
    if r is None or n <= m or abs(r) >= 1:
        return None
    half = NormalDist().inv_cdf((1 + level) / 2) * np.sqrt(c / (n - m))
    z = np.arctanh(r)
    return float(np.tanh(z - half)), float(np.tanh(z + half))


_LEVELS = ("nominal", "ordinal", "interval")


def _delta(values: np.ndarray, totals: np.ndarray, level: str) -> np.ndarray:
    """Squared distance between every two values, by level of measurement (Krippendorff 2011)."""
    if level == "nominal":
        return 1.0 - np.eye(len(values))
    if level == "interval":
        return (values[:, None] - values[None, :]) ** 2
    # Ordinal: how many pairable values lie between c and k, ends counted half.
    cum = np.cumsum(totals)
    upper = cum[None, :] - cum[:, None] + (totals[:, None] - totals[None, :]) / 2
    return np.where(np.triu(np.ones_like(upper, dtype=bool)), upper, upper.T) ** 2


def krippendorff_alpha(units: Iterable[Sequence[float | None]], level: str = "ordinal") -> float | None:
    """Krippendorff's alpha: 1 - observed / expected disagreement, from the coincidence matrix.

    `units` has one row per item and one value per coder (None or NaN = missing). None when undefined:
    fewer than two pairable values (in items with at least two), or no variation at all.
    """
    if level not in _LEVELS:
        raise ValueError(f"level must be one of {', '.join(_LEVELS)}, not {level!r}")
    rows = [[np.nan if v is None else float(v) for v in row] for row in units]
    width = max((len(r) for r in rows), default=0)
    table = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        table[i, : len(row)] = row
    table = table[(~np.isnan(table)).sum(axis=1) >= 2]  # a lone value has nobody to agree with
    present = ~np.isnan(table)
    if not present.any():
        return None
    values, which = np.unique(table[present], return_inverse=True)
    counts = np.zeros((len(table), len(values)))
    np.add.at(counts, (np.nonzero(present)[0], which), 1)
    share = counts / (counts.sum(axis=1, keepdims=True) - 1)
    # o[c, k]: pairs of values c, k from different coders of one item, each item weighted 1 / (m - 1).
    coincidences = share.T @ counts - np.diag(share.sum(axis=0))
    totals = coincidences.sum(axis=1)
    delta = _delta(values, totals, level)
    expected = float((totals[:, None] * totals[None, :] * delta).sum())
    if expected == 0:
        return None
    return 1.0 - (totals.sum() - 1) * float((coincidences * delta).sum()) / expected
