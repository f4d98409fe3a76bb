"""The judges and provenance sections: how far the grading can be trusted, and what produced the run."""

from __future__ import annotations

from typing import Any

from personagym.report.fmt import NONE, cost, count, esc, num, pct, table, when

SCORES = ["1", "2", "3", "4", "5"]
USAGE_HEAD = ["Calls", "Cached", "Failed", "Attempts", "Prompt tokens", "Completion tokens", "Cost (USD)"]


def _judges_of_run(r: int, run: dict[str, Any]) -> str:
    agreement = run["judges"]
    judges = agreement["judges"]
    alpha = num(agreement["alpha"], f"run{r}.alpha", digits=3)
    note = "" if len(judges) > 1 else " (agreement needs two or more judges)"
    parts = [
        f"<h3>{esc(run['label'])}</h3>",
        f"<p>Krippendorff's alpha (ordinal): {alpha} over {count(agreement['units'], f'run{r}.units')} "
        f"questions with two or more verdicts{note}.</p>",
    ]
    if agreement["pairs"]:
        rows = [
            [esc(p["a"]), esc(p["b"]), count(p["n"]), pct(p["exact"], f"run{r}.pair{k}.exact"),
             pct(p["within_one"], f"run{r}.pair{k}.within_one")]
            for k, p in enumerate(agreement["pairs"])
        ]
        parts.append(table(["Judge", "Judge", "Questions", "Exact", "Within one"], rows, caption="Pairwise agreement"))
    rows = []
    for j in judges:
        dist = agreement["distribution"].get(j, {})
        total = sum(dist.get(s, 0) for s in SCORES)
        cells = [esc(j)]
        for s in SCORES:
            n = dist.get(s, 0)
            share = n / total if total else 0
            bar = f'<span class="bar" style="width:{100 * share:.0f}%"></span>'
            cells.append(f'{count(n, f"run{r}.dist.{j}.{s}")}{bar}')
        failed = agreement["failures"].get(j, {})
        cells += [count(total), count(failed.get("failed")), pct(failed.get("rate"), f"run{r}.fail.{j}")]
        rows.append(cells)
    parts.append(table(["Judge"] + SCORES + ["Verdicts", "Failed", "Failure rate"], rows,
                       caption="Scores given and calls failed, per judge"))
    retest = agreement.get("retest") or {}
    if retest:
        rows = [
            [esc(j), count(t["draws"]), count(t["n"]), pct(t["exact"], f"run{r}.retest.{j}.exact"),
             pct(t["within_one"], f"run{r}.retest.{j}.within_one"),
             num(t["alpha"], f"run{r}.retest.{j}.alpha", digits=3)]
            for j, t in retest.items()
        ]
        parts.append(table(["Judge", "Draws", "Questions", "Exact", "Within one", "Alpha"], rows,
                           caption="Test-retest: each judge against itself over repeated draws (--judge-samples)"))
    if run.get("audit"):  # `personagym audit`: five probes per judge, no human labels (docs/audit.md)
        rows = []
        for a in run["audit"]:
            key = f"run{r}.audit.{a['judge']}.{a['probe']}"
            show = pct if a["probe"] in ("identification", "consistency") else num
            ci = (f'<span class="ci">{show(a["low"], key + ".low")}\u2013{show(a["high"], key + ".high")}</span>'
                  if a["low"] is not None and a["high"] is not None else f'<span class="ci">{NONE}</span>')
            status = esc(a["status"])
            rows.append([esc(a["judge"]), esc(a["probe"]), f"{show(a['value'], key)} {ci}", count(a["n"], key + ".n"),
                         show(a["baseline"], key + ".baseline"),
                         (f'<span class="warning">{status}</span>' if a["status"] == "flag" else status)
                         + f": {esc(a['verdict'])}"])
        parts.append(table(["Judge", "Probe", "Value (95% CI)", "n", "Baseline", "Verdict"], rows,
                           caption="Audit: how far each judge can be trusted, without human labels "
                           "(personagym audit; docs/audit.md)"))
    return "".join(parts)


def judges(model: dict[str, Any]) -> str:
    return (
        '<section id="judges"><h2>Judges</h2>'
        "<p>How much the judges agree on the same answers. Alpha is 1 for perfect agreement and 0 for agreement "
        "no better than chance (below 0.67 is usually read as unreliable). Exact and within-one count the "
        "questions where two judges gave the same score, or scores at most one apart. A judge that gives one "
        "score to everything, or fails often, weakens the ensemble.</p>"
        + "".join(_judges_of_run(r, run) for r, run in enumerate(model["runs"]))
        + "</section>"
    )


def _value(value: Any) -> str:
    """Config values are strings, numbers, lists or flat maps of strings: shown plainly, escaped."""
    if value is None:
        return NONE
    if isinstance(value, list):
        return esc(", ".join(str(v) for v in value)) or NONE
    if isinstance(value, dict):
        return "<br>".join(f"{esc(k)}: {esc(v)}" for k, v in value.items()) or NONE
    return esc(value)


CONFIG_LABELS = {
    "agent": "Agent", "judges": "Judges", "generator": "Generator", "example_model": "Score examples model",
    "prompts_version": "Prompts", "task_versions": "Rubrics", "catalog": "Environment catalog",
    "benchmark": "Benchmark", "tasks": "Tasks", "questions_per_task": "Questions per task",
    "max_environments": "Environments per persona", "judge_batch": "Answers per judge call",
}


def _usage_rows(prefix: str, rows: dict[str, dict[str, Any]], total: dict[str, Any]) -> list[list[str]]:
    def cells(name: str, u: dict[str, Any], key: str) -> list[str]:
        return [name] + [count(u.get(k)) for k in ("calls", "cached", "failures", "attempts")] + [
            count(u.get("prompt_tokens"), f"{key}.prompt_tokens"),
            count(u.get("completion_tokens"), f"{key}.completion_tokens"),
            cost(u.get("cost"), f"{key}.cost"),
        ]

    out = [cells(esc(name), u, f"{prefix}.{name}") for name, u in rows.items()]
    return out + [cells("<strong>total</strong>", total, f"{prefix}.total")]


def provenance(model: dict[str, Any]) -> str:
    runs = model["runs"]
    head = [""] + [esc(run["label"]) for run in runs]
    rows = [
        ["Status"] + [esc(run["status"]) for run in runs],
        ["Created"] + [when(run["created_at"], f"run{r}.created_at") for r, run in enumerate(runs)],
        ["Last updated"] + [when(run["updated_at"], f"run{r}.updated_at") for r, run in enumerate(runs)],
    ]
    for field, label in CONFIG_LABELS.items():
        rows.append([label] + [_value(run["provenance"]["config"].get(field)) for run in runs])
    roles = sorted({role for run in runs for role in run["provenance"]["sampling"]})
    for role in roles:
        cells = []
        for run in runs:
            s = run["provenance"]["sampling"].get(role)
            cells.append(_value({k: "default" if v is None else v for k, v in s.items()}) if s else NONE)
        rows.append([f"Sampling: {esc(role)}"] + cells)
    for spec in sorted({m for run in runs for m in run["provenance"].get("answered_by", {})}):
        ids = [run["provenance"].get("answered_by", {}).get(spec) for run in runs]
        rows.append([f"Answered by: {esc(spec)}"] + [esc(", ".join(i)) if i else NONE for i in ids])
    parts = [
        '<section id="provenance"><h2>Provenance</h2>',
        "<p>What produced each run: models per role, the versions of the prompts and rubrics, sampling settings "
        "(a seed shown as default means none was sent), and what the calls cost. Tokens include retries, "
        "which are paid; cost is unknown for models without a known price.</p>",
        table(head, rows, caption="Runs"),
    ]
    for r, run in enumerate(runs):
        usage = run["usage"]
        parts.append(f"<h3>Usage: {esc(run['label'])}</h3>")
        parts.append(table(["Role"] + USAGE_HEAD, _usage_rows(f"run{r}.role", usage["by_role"], usage["total"]),
                           caption="By role"))
        parts.append(table(["Model"] + USAGE_HEAD, _usage_rows(f"run{r}.model", usage["by_model"], usage["total"]),
                           caption="By model"))
    parts.append(
        f"<p>Report statistics: {model['resamples']:,} bootstrap resamples, seed {model['seed']}, "
        f"{round(model['level'] * 100)}% intervals.</p></section>"
    )
    return "".join(parts)
