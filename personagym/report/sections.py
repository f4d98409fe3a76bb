"""The sections rendered on the server, readable with scripts off: overview, leaderboard, personas.

Cells are HTML: every run-supplied string is escaped here, where it is placed, and numbers come from
`fmt` so each keeps its exact value. `data-k` names a number for tests: `run{i}.…` by run position.
"""

from __future__ import annotations

from typing import Any

from personagym.report.chart import color, legend, score_chart
from personagym.report.fmt import NONE, count, esc, interval, num, pvalue, table


def _run_cell(model: dict[str, Any], r: int) -> str:
    swatch = f'<span class="swatch" style="background:{color(r)}"></span>'
    return f'<span class="run-name">{swatch}{esc(model["runs"][r]["label"])}</span>'


def overview(model: dict[str, Any]) -> str:
    level = round(model["level"] * 100)
    head = ["Run", "PersonaScore"] + [esc(t) for t in model["tasks"]] + ["Personas scored", "Questions scored"]
    rows = []
    for r, run in enumerate(model["runs"]):
        scores, ivs = run["scores"], run["intervals"]
        row = [_run_cell(model, r), interval(scores["persona_score"], ivs["persona_score"], f"run{r}.persona_score")]
        for task in model["tasks"]:
            row.append(interval(scores["tasks"].get(task), ivs["tasks"].get(task), f"run{r}.tasks.{task}"))
        row.append(f'{count(scores["personas_scored"])} / {count(scores["personas"])}')
        row.append(f'{count(scores["questions_scored"])} / {count(scores["questions"])}')
        rows.append(row)
    failure_rows = [
        [
            _run_cell(model, r),
            count(run["failures"]["total"], f"run{r}.failures"),
            esc(", ".join(f"{k} {v}" for k, v in run["failures"]["by_stage"].items()) or NONE),
            esc(", ".join(f"{k} {v}" for k, v in run["failures"]["by_cause"].items()) or NONE),
        ]
        for r, run in enumerate(model["runs"])
    ]
    return (
        '<section id="overview"><h2>Overview</h2>'
        f"<p>Scores run from 1 to 5. Beside each score, its {level}% confidence interval from a bootstrap over "
        f"personas ({model['resamples']:,} resamples, seed {model['seed']}): the range the score would likely take "
        "with another sample of personas like these. A dash means no score: its work failed or was not done.</p>"
        + table(head, rows, caption="PersonaScore and task scores")
        + legend(model)
        + f'<div class="scroll chart-box">{score_chart(model)}</div>'
        + "<h3>Failures</h3><p>Work that failed after its retries; it is counted here and never scored.</p>"
        + table(["Run", "Failures", "By stage", "By cause"], failure_rows)
        + "</section>"
    )


def leaderboard(model: dict[str, Any]) -> str:
    level = round(model["level"] * 100)
    runs = model["runs"]
    ranking = [
        [
            str(rank + 1),
            _run_cell(model, r),
            interval(runs[r]["scores"]["persona_score"], runs[r]["intervals"]["persona_score"], f"rank{rank}"),
            esc(runs[r]["provenance"]["config"].get("agent")),
        ]
        for rank, r in enumerate(model["ranking"])
    ]
    parts = [
        '<section id="leaderboard"><h2>Leaderboard</h2>',
        table(["#", "Run", "PersonaScore", "Agent"], ranking, caption="Runs by PersonaScore"),
        *(f'<p class="warning">{esc(line)}</p>' for line in model.get("warnings", [])),
    ]
    if len(runs) < 2:
        parts.append("<p>One run: give <code>personagym report</code> two or more runs to compare them.</p>")
    else:
        parts.append(
            "<p>Each pair of runs compared on the personas and questions they share: the difference in "
            f"PersonaScore (A minus B) with its {level}% bootstrap interval over shared personas, and a paired "
            "p-value over the shared questions. An interval that excludes 0 and a small p-value mean the "
            "difference is unlikely to be chance; runs on different personas cannot be compared.</p>"
        )
        rows = []
        for k, c in enumerate(model["comparisons"]):
            key = f"pair{k}"
            shared = c["personas"] > 0
            rows.append(
                [
                    _run_cell(model, c["a"]),
                    _run_cell(model, c["b"]),
                    count(c["personas"], f"{key}.personas"),
                    count(c["questions"], f"{key}.questions"),
                    num(c["a_score"], f"{key}.a_score"),
                    num(c["b_score"], f"{key}.b_score"),
                    interval(c["difference"]["value"], c["difference"], f"{key}.difference")
                    if shared
                    else "no shared personas",
                    pvalue(c["p_value"], f"{key}.p_value"),
                ]
            )
        head = ["A", "B", "Shared personas", "Shared questions", "A score", "B score", "A \u2212 B", "p-value"]
        parts.append(table(head, rows, caption="Pairwise differences"))
    parts.append("</section>")
    return "".join(parts)


def _persona_failures(row: dict[str, Any]) -> str:
    whole = ", ".join(f"{f['stage']}{' (' + f['task'] + ')' if f['task'] else ''}: {f['cause']}"
                      for f in row["persona_failures"])
    return count(row["failures"]) + (f'<div class="note">{esc(whole)}</div>' if whole else "")


def personas(model: dict[str, Any]) -> str:
    """One row per persona and run, grouped by persona so the runs of one persona sit together."""
    several = len(model["runs"]) > 1
    order: dict[str, list[tuple[int, int]]] = {}
    for r, run in enumerate(model["runs"]):
        for j, row in enumerate(run["personas"]):
            order.setdefault(row["persona"], []).append((r, j))
    browse = {text: i for i, text in enumerate(model["questions"]["personas"])}
    rows = []
    for text, places in order.items():
        for r, j in places:
            row = model["runs"][r]["personas"][j]
            key = f"run{r}.persona{j}"
            persona = f'<div class="persona">{esc(text)}</div>'
            if text in browse:
                persona += (
                    f'<button type="button" class="to-questions" data-run="{r}" data-persona="{browse[text]}" '
                    'hidden>its questions</button>'
                )
            cells = [persona] + ([_run_cell(model, r)] if several else [])
            cells.append(esc(", ".join(row["environments"])) if row["environments"] else NONE)
            cells += [num(row["tasks"].get(task), f"{key}.tasks.{task}") for task in model["tasks"]]
            cells += [num(row["persona_score"], f"{key}.persona_score"), _persona_failures(row)]
            rows.append(cells)
    head = ["Persona"] + (["Run"] if several else []) + ["Environments"] + [esc(t) for t in model["tasks"]]
    head += ["PersonaScore", "Failures"]
    return (
        '<section id="personas"><h2>Personas</h2>'
        "<p>Each persona's environments (the settings its questions were set in; none in benchmark mode), its "
        "task scores (the mean over its scored questions) and its PersonaScore (the mean of its task scores, "
        "shown only when every task has one). Click a column heading to sort.</p>"
        + table(head, rows, sortable=True)
        + "</section>"
    )
