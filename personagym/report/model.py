"""The report's view model: runs' results and their statistics as plain data, ready to render.

Kept apart from the markup so the numbers can be checked without parsing HTML, and so the renderer
never computes anything: every figure on the page is either copied from a run's results (the export's
exact value) or comes from `personagym.stats`.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

from personagym.report.dialogues import dialogue_view
from personagym.report.questions import question_data

# Only these configuration fields are shown: a config may grow fields we have not vetted (a base URL
# with a token in its query string, say), and a report is meant to be passed around.
CONFIG_FIELDS = [
    "agent", "judges", "generator", "example_model", "prompts_version", "task_versions", "catalog", "benchmark",
    "tasks", "questions_per_task", "max_environments", "judge_batch", "rubrics",
]
SAMPLING_FIELDS = ["temperature", "top_p", "max_tokens", "seed"]
USAGE_FIELDS = ["calls", "cached", "failures", "attempts", "prompt_tokens", "completion_tokens", "cost"]


def interval(iv: Any) -> dict[str, Any]:
    return {"value": iv.value, "low": iv.low, "high": iv.high, "n": iv.n}


def run_labels(results_list: list[dict[str, Any]]) -> list[str]:
    """Names that tell runs apart on the page: two exports of different databases may share a name."""
    seen: Counter[str] = Counter()
    labels = []
    for results in results_list:
        name = str(results["run"]["name"])
        seen[name] += 1
        labels.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return labels


def task_order(results_list: list[dict[str, Any]]) -> list[str]:
    tasks: list[str] = []
    for results in results_list:
        tasks += [t for t in results["scores"]["tasks"] if t not in tasks]
    return tasks


def rubrics_of(results: dict[str, Any]) -> str:
    """The rubrics a run was graded with: "own" or "upstream" (runs from before the choice: "own")."""
    return str((results["run"].get("config") or {}).get("rubrics") or "own")


def rubric_warnings(names: list[str], results_list: list[dict[str, Any]]) -> list[str]:
    """One line per pair of runs graded with different rubrics: their scores are on different scales."""
    used = [rubrics_of(r) for r in results_list]
    return [
        f"warning: {names[i]} was graded with --rubrics {used[i]} and {names[j]} with --rubrics {used[j]}; "
        "scores from different rubrics are not comparable"
        for i in range(len(names))
        for j in range(i + 1, len(names))
        if used[i] != used[j]
    ]


def provenance(results: dict[str, Any]) -> dict[str, Any]:
    config = results["run"].get("config") or {}
    sampling = config.get("sampling") or {}
    return {
        "config": {key: config.get(key) for key in CONFIG_FIELDS},
        "sampling": {
            role: {key: (values or {}).get(key) for key in SAMPLING_FIELDS} for role, values in sorted(sampling.items())
        },
        "answered_by": {
            str(model): [str(i) for i in ids] for model, ids in (results["run"].get("answered_by") or {}).items()
        },
    }


def usage(results: dict[str, Any]) -> dict[str, Any]:
    raw = results.get("usage") or {}

    def pick(row: dict[str, Any]) -> dict[str, Any]:
        return {key: row.get(key) for key in USAGE_FIELDS}

    return {
        "by_role": {role: pick(row) for role, row in (raw.get("by_role") or {}).items()},
        "by_model": {model: pick(row) for model, row in (raw.get("by_model") or {}).items()},
        "total": pick(raw.get("total") or {}),
    }


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return value if ok else None


def audit_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's judge audit (`personagym audit`), one row per judge and probe; none if never audited.
    An export file is untrusted: only numbers are taken as numbers, and everything else as text."""
    from personagym.audit.probes import PROBES

    audit = results.get("audit")
    judges = audit.get("judges") if isinstance(audit, dict) else None
    listed = [str(j) for j in (results["run"].get("config") or {}).get("judges") or []]
    rows = []
    for judge, entry in sorted((judges if isinstance(judges, dict) else {}).items(),
                               key=lambda je: (listed.index(je[0]) if je[0] in listed else len(listed), str(je[0]))):
        probes = entry.get("probes") if isinstance(entry, dict) else None
        for probe, p in sorted((probes if isinstance(probes, dict) else {}).items(),
                               key=lambda pp: (PROBES.index(pp[0]) if pp[0] in PROBES else len(PROBES), str(pp[0]))):
            if not isinstance(p, dict):
                continue
            ci = p.get("ci") if isinstance(p.get("ci"), list) and len(p["ci"]) == 2 else [None, None]
            n = p.get("n") if isinstance(p.get("n"), int) and not isinstance(p.get("n"), bool) else None
            rows.append({
                "judge": str(judge), "probe": str(probe), "value": _number(p.get("value")), "low": _number(ci[0]),
                "high": _number(ci[1]), "n": n, "baseline": _number(p.get("baseline")),
                "status": str(p.get("status") or ""), "verdict": str(p.get("verdict") or ""),
            })
    return rows


def persona_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each persona with its scores and the failures that belong to it, split by whether they hit one
    question (shown with that question) or the persona as a whole (its environments or questions)."""
    questions = {(q["persona"], q["task"], q["index"]) for q in results["questions"]}
    failed: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in results["failures"]["items"]:
        failed[item["persona"]].append(item)
    rows = []
    for persona in results["personas"]:
        items = failed.get(persona["persona"], [])
        whole = [f for f in items if (f["persona"], f["task"], f["question_index"]) not in questions]
        rows.append(
            {
                **persona,
                "failures": len(items),
                "persona_failures": [{"stage": f["stage"], "task": f["task"], "cause": f["cause"]} for f in whole],
            }
        )
    return rows


def build_model(
    results_list: list[dict[str, Any]], *, resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, Any]:
    """Everything the report shows, for one or more runs, in the order given."""
    from personagym import agreement, stats

    labels = run_labels(results_list)
    runs = []
    for label, results in zip(labels, results_list):
        ivs = stats.run_intervals(results, resamples=resamples, level=level, seed=seed)
        run = results["run"]
        runs.append(
            {
                "label": label,
                "name": run["name"],
                "status": run.get("status"),
                "created_at": run.get("created_at"),
                "updated_at": run.get("updated_at"),
                "scores": results["scores"],
                "intervals": {
                    "persona_score": interval(ivs["persona_score"]),
                    "tasks": {task: interval(iv) for task, iv in ivs["tasks"].items()},
                },
                "personas": persona_rows(results),
                "failures": {k: results["failures"][k] for k in ("total", "by_cause", "by_stage")},
                "judges": agreement.judge_agreement(results),
                "audit": audit_rows(results),
                "provenance": provenance(results),
                "usage": usage(results),
            }
        )
    comparisons = []
    if len(results_list) > 1:
        pairs = [(i, j) for i in range(len(results_list)) for j in range(i + 1, len(results_list))]
        # leaderboard() yields every pair i<j in this order; pairing by position keeps labels unique.
        for (i, j), c in zip(pairs, stats.leaderboard(results_list, resamples=resamples, level=level, seed=seed)):
            comparisons.append(
                {
                    "a": i, "b": j, "personas": c.personas, "questions": c.questions, "a_score": c.a_score,
                    "b_score": c.b_score, "difference": interval(c.difference), "p_value": c.p_value,
                }
            )
    ranking = sorted(
        range(len(runs)),
        key=lambda i: (runs[i]["scores"]["persona_score"] is None, -(runs[i]["scores"]["persona_score"] or 0)),
    )
    return {
        "level": level,
        "resamples": resamples,
        "seed": seed,
        "tasks": task_order(results_list),
        "runs": runs,
        "ranking": ranking,
        "comparisons": comparisons,
        "warnings": rubric_warnings(labels, results_list),
        "questions": question_data(results_list, labels, agreement.disagreement),
        "dialogues": dialogue_view(results_list, labels, resamples=resamples, level=level, seed=seed),
    }
