"""`personagym compare` and `alignment`: is one agent really better, and do the judges agree with people?

Thin wrappers over personagym.stats and personagym.alignment; the numbers are explained in
docs/statistics.md.
"""

from __future__ import annotations

import json
from typing import Any

import click

from personagym.cli import db_option
from personagym.cli.results import load_results
from personagym.errors import UserError
from personagym.summary import printable

UNMATCHED_SHOWN = 20


def _num(value: float | None, digits: int = 2, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _ci(low: float | None, high: float | None, sign: bool = False) -> str:
    return "-" if low is None else f"[{_num(low, sign=sign)}, {_num(high, sign=sign)}]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Plain columns, left-aligned, two spaces apart: readable in a terminal and easy to grep."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(str(cell).ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [header, *rows]]


def _interval_json(iv) -> dict[str, Any]:
    return {"value": iv.value, "low": iv.low, "high": iv.high, "n": iv.n}


def _load_runs(ctx: click.Context, db: str | None, refs: tuple[str, ...]) -> list[dict[str, Any]]:
    runs = [load_results(ctx, db, ref) for ref in refs]
    names = [r["run"]["name"] for r in runs]
    # Two exports of same-named runs (say, from two machines) are told apart by what the user typed.
    return [
        r if names.count(r["run"]["name"]) == 1 else {**r, "run": {**r["run"], "name": ref}}
        for r, ref in zip(runs, refs)
    ]


@click.command("compare")
@click.argument("runs", nargs=-1, metavar="RUN RUN...")
@db_option
@click.option("--resamples", default=2000, show_default=True, type=click.IntRange(min=100), help="Bootstrap resamples.")
@click.option(
    "--permutations", default=10000, show_default=True, type=click.IntRange(min=100), help="Sign-flip permutations."
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for resampling: same seed, same numbers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.pass_context
def compare_command(
    ctx: click.Context,
    runs: tuple[str, ...],
    db: str | None,
    resamples: int,
    permutations: int,
    seed: int,
    as_json: bool,
) -> None:
    """Compare runs: PersonaScores with 95% intervals, and each pair's difference on what both scored.

    RUN is a run name in the database or a JSON file from `personagym export`. Intervals resample
    personas; each pair is compared on its shared personas and questions, with a paired permutation
    p-value (docs/statistics.md).

    \b
    Examples:
      personagym compare gpt4o-bench haiku-bench
      personagym compare gpt4o-bench.json haiku-bench.json mini-bench --seed 1 --json
    """
    if len(runs) < 2:
        raise UserError("compare needs at least two runs: personagym compare RUN RUN [RUN...]")
    from personagym.report.model import rubric_warnings
    from personagym.stats import leaderboard, run_intervals

    results = _load_runs(ctx, db, runs)
    for line in rubric_warnings([r["run"]["name"] for r in results], results):
        click.echo(printable(line), err=True)
    intervals = [run_intervals(r, resamples=resamples, seed=seed) for r in results]
    from personagym.dialogue_metrics import dialogue_comparison

    talks = dialogue_comparison(results, resamples=resamples, seed=seed)  # None unless a run has dialogues
    pairs = leaderboard(results, resamples=resamples, permutations=permutations, seed=seed)
    if not any(c.personas for c in pairs):
        raise UserError(
            "no two of these runs share a scored persona in every common task: "
            "compare runs of the same personas (benchmark mode gives every run the same ones)"
        )
    if as_json:
        found = _compare_json(results, intervals, pairs, resamples, permutations, seed)
        click.echo(json.dumps({**found, **({"dialogues": talks} if talks else {})}, indent=2, allow_nan=False))
        return
    for line in _compare_lines(results, intervals, pairs) + (_dialogue_lines(talks) if talks else []):
        click.echo(printable(line))


def _compare_json(results, intervals, pairs, resamples, permutations, seed) -> dict[str, Any]:
    return {
        "level": 0.95,
        "resamples": resamples,
        "permutations": permutations,
        "seed": seed,
        "runs": [
            {
                "name": r["run"]["name"],
                "personas": r["scores"]["personas"],
                "persona_score": _interval_json(iv["persona_score"]),
                "tasks": {t: _interval_json(t_iv) for t, t_iv in iv["tasks"].items()},
            }
            for r, iv in zip(results, intervals)
        ],
        "comparisons": [
            {
                "a": c.a,
                "b": c.b,
                "personas": c.personas,
                "questions": c.questions,
                "a_score": c.a_score,
                "b_score": c.b_score,
                "difference": _interval_json(c.difference),
                "p_value": c.p_value,
            }
            for c in pairs
        ],
    }


def _compare_lines(results, intervals, pairs) -> list[str]:
    names = [r["run"]["name"] for r in results]
    lines = _table(
        ["run", "PersonaScore", "95% CI", "personas"],
        [
            [
                name,
                _num(iv["persona_score"].value),
                _ci(iv["persona_score"].low, iv["persona_score"].high),
                f"{r['scores']['personas_scored']}/{r['scores']['personas']}",
            ]
            for name, r, iv in zip(names, results, intervals)
        ],
    )
    tasks = list(dict.fromkeys(t for r in results for t in r["scores"]["tasks"]))
    lines += [""] + _table(
        ["task", *names], [[t, *(_num(r["scores"]["tasks"].get(t)) for r in results)] for t in tasks]
    )
    rows = [
        [c.a, c.b, str(c.personas), str(c.questions), _num(c.a_score), _num(c.b_score),
         _num(c.difference.value, sign=True), _ci(c.difference.low, c.difference.high, sign=True), _num(c.p_value, 4)]
        for c in pairs
        if c.personas
    ]  # fmt: skip
    lines += [""] + _table(["a", "b", "personas", "questions", "a score", "b score", "a - b", "95% CI", "p"], rows)
    lines += [f"{c.a} vs {c.b}: no shared personas" for c in pairs if not c.personas]
    lines += ["", "Pairs are scored on shared personas and questions only; p: paired sign-flip permutation test."]
    return lines


def _dialogue_lines(talks: dict[str, Any]) -> list[str]:
    """Dialogue metrics beside PersonaScore (docs/dialogues.md), and each pair's differences on shared personas."""
    def iv(x: dict[str, Any], sign: bool = False) -> str:
        return f"{_num(x['value'], sign=sign)} {_ci(x['low'], x['high'], sign=sign)}"

    rows = [[r["name"], iv(r["score"]), iv(r["break_rate"]), iv(r["drift"]["slope"], sign=True),
             str(r["survival"]["median_turns_to_break"] or "-"), f"{r['dialogues_complete']}/{r['dialogues']}"]
            for r in talks["runs"]]
    lines = ["", "Dialogues (beside PersonaScore, never in it):"]
    lines += _table(["run", "Dialogue score", "break rate", "drift per turn", "median turns to break", "complete"],
                    rows)
    pairs = [[p["a"], p["b"], str(p["personas"]), iv(p["score"], sign=True), iv(p["break_rate"], sign=True)]
             for p in talks["pairs"] if p["personas"]]
    if pairs:
        lines += [""] + _table(["a", "b", "personas", "score a - b", "break rate a - b"], pairs)
    return lines


@click.command("alignment")
@click.argument("run")
@click.option("--human", "human", required=True, metavar="CSV", help="Human ratings: persona, task, score columns.")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def alignment_command(ctx: click.Context, run: str, human: str, db: str | None, as_json: bool) -> None:
    """How well a run's scores rank answers the way human raters do (Spearman and Kendall, per task).

    The CSV needs columns persona, task, score; with an index or question column it rates single
    questions, without one a persona's whole task (format: docs/statistics.md).

    \b
    Examples:
      personagym alignment mini-v1 --human ratings.csv
      personagym alignment mini-v1.json --human ratings.csv --json
    """
    from personagym.alignment import human_alignment

    report = human_alignment(load_results(ctx, db, run), human)
    if report["unmatched"]:
        _echo_unmatched(human, report["unmatched"])
    if as_json:
        click.echo(json.dumps(report, indent=2, allow_nan=False))
        return
    for line in _alignment_lines(report):
        click.echo(printable(line))


def _echo_unmatched(path: str, unmatched: list[dict[str, Any]]) -> None:
    click.echo(f"{len(unmatched)} rows of {path} match nothing in the run:", err=True)
    for item in unmatched[:UNMATCHED_SHOWN]:
        click.echo(printable(f"  row {item['row']}: {item['reason']}"), err=True)
    if len(unmatched) > UNMATCHED_SHOWN:
        click.echo(f"  ... and {len(unmatched) - UNMATCHED_SHOWN} more (--json lists them all)", err=True)


def _corr(value: float | None, n: int) -> str:
    return "-" if n == 0 else "undefined" if value is None else _num(value)


def _alignment_lines(report: dict[str, Any]) -> list[str]:
    unit = "questions" if report["level"] == "question" else "persona tasks"
    lines = [
        f"run {report['run']}: {report['items']} {unit} rated, from {report['matched_rows']} of {report['rows']} rows; "
        f"{report['excluded']} left out (no automatic score)",
        "",
    ]
    rows = []
    for name, c in [*report["tasks"].items(), ("overall", report["overall"])]:
        rows.append(
            [
                name,
                str(c["n"]),
                _corr(c["spearman"], c["n"]),
                _ci(*(c["spearman_ci"] or (None, None))),
                _corr(c["kendall"], c["n"]),
                _ci(*(c["kendall_ci"] or (None, None))),
            ]
        )
    lines += _table(["task", "n", "Spearman", "95% CI", "Kendall tau-b", "95% CI"], rows)
    lines += ["", "undefined: fewer than 3 items, or the human or the automatic scores do not vary."]
    return lines
