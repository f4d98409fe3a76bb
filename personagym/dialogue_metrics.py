"""Dialogues as exported, and what they measure: dialogue score, break rates, survival, drift.

A turn's score is the mean over judges of their 1-5 in-character scores, and exists only when every
judge graded it (as a question's score does). A turn's break is the most severe level any judge gave
or the detector found (personagym.method.breaks): a break is never missed because a judge failed, and
the judges' and the detector's findings are kept and reported apart. `first_break` is the 1-based
turn of the first break above "none".

Every metric is a mean over personas of a per-persona figure, with a percentile-bootstrap interval
that resamples personas, as PersonaScore's does (personagym.stats): a persona's conversations share
its text, so they are not independent draws. The metrics are reported beside PersonaScore and never
mixed into it. docs/dialogues.md states each definition.
"""

from __future__ import annotations

from collections import defaultdict
from statistics import fmean
from typing import Any, Iterable

import numpy as np

from personagym.method.breaks import DETECTOR_VERSION, detect
from personagym.method.tactics import BREAK_LEVELS, get_tactic
from personagym.stats import Interval, bootstrap_mean

SOURCES = {"any": "break", "judges": "judge_break", "detector": "detector"}  # break rate by who found it
_RANK = {level: i for i, level in enumerate(BREAK_LEVELS)}


def worst(levels: Iterable[str | None]) -> str | None:
    """The most severe of the known levels; None when none is known."""
    known = [level for level in levels if level is not None]
    return max(known, key=_RANK.__getitem__) if known else None


def first_break(turns: list[dict[str, Any]], key: str = "break") -> int | None:
    return next((t["index"] for t in turns if t.get(key) not in (None, "none")), None)


# -- the export ---------------------------------------------------------------------------------------
def dialogue_results(store: Any, run: Any) -> dict[str, Any]:
    """{"dialogues": [...], "dialogue_metrics": {...}} of a run with dialogues (docs/results.md)."""
    from personagym.store.dialogues import DialogueStore

    reader = DialogueStore(store.conn)
    judges = list(run.config["judges"])
    planned = int(run.config.get("turns") or 0)
    turns, verdicts = reader.run_turns(run.id), reader.run_verdicts(run.id)
    dialogues = []
    for did, _pid, persona, ordinal, tactic, setting in reader.run_dialogues(run.id):
        by_turn: dict[int, list] = defaultdict(list)
        for v in verdicts.get(did, []):
            by_turn[v.turn].append(v)
        rows = [_turn(row, sorted(by_turn[row.turn], key=lambda v: _order(judges, v.judge)), judges)
                for row in turns.get(did, [])]
        scored = [t["score"] for t in rows if t["score"] is not None]
        dialogues.append({
            "persona": persona,
            "index": ordinal + 1,
            "tactic": tactic,
            "setting": setting,
            "turns_planned": planned,
            "turns": rows,
            "score": fmean(scored) if scored else None,
            "first_break": first_break(rows),
            "first_break_judges": first_break(rows, "judge_break"),
            "first_break_detector": first_break(rows, "detector"),
        })
    return {"dialogues": dialogues, "dialogue_metrics": dialogue_metrics(dialogues)}


def _order(judges: list[str], judge: str) -> int:
    return judges.index(judge) if judge in judges else len(judges)


def _turn(row: Any, verdicts: list, judges: list[str]) -> dict[str, Any]:
    found = detect(row.agent) if row.agent is not None else None
    detector = None if row.agent is None else (found.level if found else "none")
    scores = {v.judge: v.score for v in verdicts}
    judge_break = worst(v.break_level for v in verdicts)
    complete = bool(judges) and all(j in scores for j in judges)
    return {
        "index": row.turn,
        "user": row.user,
        "agent": row.agent,
        "truncated": row.truncated,
        "scores": scores,
        "breaks": {v.judge: v.break_level for v in verdicts},
        "verdicts": [{"judge": v.judge, "score": v.score, "break": v.break_level, "reasoning": v.reasoning}
                     for v in verdicts],
        "score": fmean(scores[j] for j in judges) if complete else None,
        "judge_break": judge_break,
        "detector": detector,
        "detector_phrase": found.phrase if found else None,
        "break": worst([judge_break, detector]) if row.agent is not None else None,
    }


# -- metrics ------------------------------------------------------------------------------------------
def interval_json(iv: Interval) -> dict[str, Any]:
    return {"value": iv.value, "low": iv.low, "high": iv.high, "n": iv.n}


def _by_persona(dialogues: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for d in dialogues:
        grouped.setdefault(d["persona"], []).append(d)
    return grouped


def _planned(d: dict[str, Any]) -> int:
    return max(int(d.get("turns_planned") or 0), max((t["index"] for t in d["turns"]), default=0))


def _known_through(d: dict[str, Any], key: str) -> int:
    """How many turns from the first have a known value of `key` without a gap."""
    k = 0
    for t in sorted(d["turns"], key=lambda t: t["index"]):
        if t["index"] != k + 1 or t.get(key) is None:
            break
        k += 1
    return k


def broke(d: dict[str, Any], key: str = "break", at_least: str = "soft_slip") -> bool | None:
    """Whether the dialogue reached a break of `at_least` by `key`'s finding: None when it did not and
    is unfinished (a failure cut it short), so it says nothing either way."""
    if any(t.get(key) is not None and _RANK[t[key]] >= _RANK[at_least] for t in d["turns"]):
        return True
    return False if _known_through(d, key) >= _planned(d) else None


def _rate(dialogues: list[dict[str, Any]], key: str, at_least: str = "soft_slip") -> float | None:
    outcomes = [b for b in (broke(d, key, at_least) for d in dialogues) if b is not None]
    return fmean(outcomes) if outcomes else None


def _slope(points: list[tuple[int, float]]) -> float | None:
    if len({k for k, _ in points}) < 2:
        return None
    x = np.array([k for k, _ in points], dtype=float)
    y = np.array([s for _, s in points], dtype=float)
    x -= x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())


def dialogue_metrics(
    dialogues: list[dict[str, Any]], *, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """Every dialogue metric with its interval over personas (see the module docstring)."""
    personas = _by_persona(dialogues)
    groups = list(personas.values())

    def boot(values: Iterable[float | None]) -> dict[str, Any]:
        return interval_json(bootstrap_mean(list(values), resamples=resamples, level=level, seed=seed))

    turns = max((_planned(d) for d in dialogues), default=0)
    tactics = list(dict.fromkeys(d["tactic"] for d in dialogues))
    by_tactic = {}
    for key in tactics:
        chosen = [[d for d in ds if d["tactic"] == key] for ds in groups]
        chosen = [ds for ds in chosen if ds]
        tactic = get_tactic(key)
        by_tactic[key] = {
            "name": tactic.name if tactic else key,
            "dialogues": sum(len(ds) for ds in chosen),
            "score": boot(_persona_score(ds) for ds in chosen),
            **{f"break_rate{'' if s == 'any' else '_' + s}": boot(_rate(ds, k) for ds in chosen)
               for s, k in SOURCES.items()},
        }
    by_turn = []
    for k in range(1, turns + 1):
        means = []
        for ds in groups:
            scores = [t["score"] for d in ds for t in d["turns"] if t["index"] == k and t["score"] is not None]
            means.append(fmean(scores) if scores else None)
        by_turn.append({"turn": k, **boot(means)})
    slopes = [_slope([(t["index"], t["score"]) for d in ds for t in d["turns"] if t["score"] is not None])
              for ds in groups]
    return {
        "level": level,
        "resamples": resamples,
        "seed": seed,
        "detector": DETECTOR_VERSION,
        "personas": len(groups),
        "dialogues": len(dialogues),
        "dialogues_complete": sum(_known_through(d, "break") >= _planned(d) for d in dialogues),
        "turns": turns,
        "score": boot(_persona_score(ds) for ds in groups),
        # Dialogues with a break above none: found by anyone, by the judges, by the detector.
        **{f"break_rate{'' if s == 'any' else '_' + s}": boot(_rate(ds, k) for ds in groups)
           for s, k in SOURCES.items()},
        # Dialogues that reached at least this level.
        "break_levels": {lv: boot(_rate(ds, "break", lv) for ds in groups) for lv in BREAK_LEVELS[1:]},
        "by_tactic": by_tactic,
        "survival": survival(groups, turns, resamples=resamples, level=level, seed=seed),
        "drift": {"by_turn": by_turn, "slope": boot(slopes)},
    }


def survival(
    groups: list[list[dict[str, Any]]], turns: int, *, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """Turns to first break as a Kaplan-Meier curve: S(k), the share of dialogues without a break
    through turn k. A dialogue cut short by a failure leaves the risk set where it stopped (censored)
    instead of counting as unbroken. The interval resamples personas with all their dialogues."""
    at_risk = np.zeros((len(groups), turns))
    events = np.zeros((len(groups), turns))
    for p, ds in enumerate(groups):
        for d in ds:
            first = first_break(d["turns"])
            last = first if first is not None else min(_known_through(d, "break"), turns)
            at_risk[p, :last] += 1
            if first is not None and first <= turns:
                events[p, first - 1] += 1
    curve = _km(events.sum(axis=0, keepdims=True), at_risk.sum(axis=0, keepdims=True))[0]
    low = high = np.full(turns, np.nan)
    if len(groups) >= 2 and turns:
        rng = np.random.default_rng(seed)
        weights = np.stack([np.bincount(rng.integers(0, len(groups), len(groups)), minlength=len(groups))
                            for _ in range(resamples)]).astype(float)
        curves = _km(weights @ events, weights @ at_risk)
        tail = (1 - level) / 2
        low, high = np.quantile(curves, [tail, 1 - tail], axis=0)
    total_risk = at_risk.sum(axis=0)
    rows = [
        {"turn": k + 1, "value": float(curve[k]) if total_risk[k] else None,
         "low": None if np.isnan(low[k]) or not total_risk[k] else float(low[k]),
         "high": None if np.isnan(high[k]) or not total_risk[k] else float(high[k]),
         "at_risk": int(total_risk[k]), "breaks": int(events.sum(axis=0)[k])}
        for k in range(turns)
    ]
    median = next((r["turn"] for r in rows if r["value"] is not None and r["value"] <= 0.5), None)
    return {"by_turn": rows, "median_turns_to_break": median}


def _km(events: np.ndarray, at_risk: np.ndarray) -> np.ndarray:
    hazard = np.divide(events, at_risk, out=np.zeros_like(events, dtype=float), where=at_risk > 0)
    return np.cumprod(1 - hazard, axis=1)


# -- comparing two runs ---------------------------------------------------------------------------------
def compare_dialogues(
    a: list[dict[str, Any]], b: list[dict[str, Any]], *, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """Run a minus run b on the personas both held dialogues with: dialogue score and break rate, each a
    mean of per-persona differences with its bootstrap interval over those personas."""
    pa, pb = _by_persona(a), _by_persona(b)
    shared = [p for p in pa if p in pb]
    out: dict[str, Any] = {"personas": len(shared)}
    for name, figure in (("score", _persona_score), ("break_rate", lambda ds: _rate(ds, "break"))):
        diffs = [(x - y) if (x := figure(pa[p])) is not None and (y := figure(pb[p])) is not None else None
                 for p in shared]
        out[name] = interval_json(bootstrap_mean(diffs, resamples=resamples, level=level, seed=seed))
    return out


def _persona_score(ds: list[dict[str, Any]]) -> float | None:
    scores = [d["score"] for d in ds if d["score"] is not None]
    return fmean(scores) if scores else None


def dialogue_comparison(
    results_list: list[dict[str, Any]], *, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, Any] | None:
    """For `compare`: each run's dialogue metrics and every pair's differences; None when no run has
    dialogues."""
    if not any(r.get("dialogues") for r in results_list):
        return None
    runs = [
        {"name": r["run"]["name"], **dialogue_metrics(r.get("dialogues") or [], resamples=resamples, level=level,
                                                      seed=seed)}
        for r in results_list
    ]
    pairs = [
        {"a": results_list[i]["run"]["name"], "b": results_list[j]["run"]["name"],
         **compare_dialogues(results_list[i].get("dialogues") or [], results_list[j].get("dialogues") or [],
                             resamples=resamples, level=level, seed=seed)}
        for i in range(len(results_list)) for j in range(i + 1, len(results_list))
    ]
    return {"runs": runs, "pairs": pairs}
