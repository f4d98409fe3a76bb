"""How far judges agree: with each other on a run's questions, and each with itself over repeated
draws (--judge-samples). Krippendorff's alpha itself is in personagym.stats."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from personagym.stats import krippendorff_alpha


def disagreement(question: dict[str, Any]) -> int | None:
    """Spread of a question's verdicts (highest - lowest); None with fewer than two verdicts."""
    scores = [v["score"] for v in question["verdicts"]]
    return max(scores) - min(scores) if len(scores) >= 2 else None


def retest_agreement(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """How far each judge agrees with itself over repeated draws of the same verdict (--judge-samples).

    Per judge with two or more draws of some question: "draws" (most per question), "n" (questions
    with two or more), "exact" and "within_one" (fractions of pairs of draws of one question that
    agree exactly, or within one point), "alpha" (Krippendorff's ordinal alpha, draws as coders).
    """
    by_judge: dict[str, list[list[float]]] = defaultdict(list)
    for q in results["questions"]:
        draws: dict[str, list[float]] = defaultdict(list)
        for v in q["verdicts"]:
            draws[v["judge"]].append(v["score"])
        for judge, scores in draws.items():
            if len(scores) >= 2:
                by_judge[judge].append(scores)
    out = {}
    for judge, units in by_judge.items():
        gaps = [abs(a - b) for scores in units for i, a in enumerate(scores) for b in scores[i + 1 :]]
        width = max(len(u) for u in units)
        grid = [list(u) + [None] * (width - len(u)) for u in units]
        out[judge] = {
            "draws": width,
            "n": len(units),
            "exact": float(np.mean([g == 0 for g in gaps])),
            "within_one": float(np.mean([g <= 1 for g in gaps])),
            "alpha": krippendorff_alpha(grid, "ordinal"),
        }
    return out


def judge_agreement(results: dict[str, Any]) -> dict[str, Any]:
    """How far a run's judges agree, and how often each failed to give a verdict.

    Returns {"judges", "alpha" (ordinal, over questions), "units" (questions with >= 2 verdicts), "pairs"
    (per two judges: n questions both judged, fractions exact and within one point), "distribution"
    (judge -> score -> count), "failures" (judge -> failed verdicts and their rate per question)}.
    """
    judges = list(results["run"]["config"]["judges"])
    for q in results["questions"]:  # a verdict from a judge the config does not list still counts
        judges += [v["judge"] for v in q["verdicts"] if v["judge"] not in judges]
    column = {j: i for i, j in enumerate(judges)}
    grid = np.full((len(results["questions"]), len(judges)), np.nan)
    for row, q in enumerate(results["questions"]):
        for v in q["verdicts"]:
            grid[row, column[v["judge"]]] = v["score"]
    present = ~np.isnan(grid)
    pairs = []
    for i in range(len(judges)):
        for j in range(i + 1, len(judges)):
            both = present[:, i] & present[:, j]
            gap = np.abs(grid[both, i] - grid[both, j])
            n = int(both.sum())
            pairs.append(
                {
                    "a": judges[i],
                    "b": judges[j],
                    "n": n,
                    "exact": float(np.mean(gap == 0)) if n else None,
                    "within_one": float(np.mean(gap <= 1)) if n else None,
                }
            )
    failed = defaultdict(int)
    for item in results["failures"]["items"]:
        if item["stage"] == "verdicts":
            failed[item["model"]] += 1
    asked = len(results["questions"])
    return {
        "judges": judges,
        "alpha": krippendorff_alpha(grid, "ordinal"),
        "units": int((present.sum(axis=1) >= 2).sum()),
        "pairs": pairs,
        "distribution": {
            j: {str(s): int(np.count_nonzero(grid[:, c] == s)) for s in range(1, 6)} for j, c in column.items()
        },
        "failures": {j: {"failed": failed[j], "rate": failed[j] / asked if asked else None} for j in judges},
        "retest": retest_agreement(results),
    }
