"""`personagym runs`, `show` and `export`: what runs there are and what they found."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import click

from personagym.cli import cli, db_option, db_path
from personagym.errors import UserError
from personagym.files import write_atomic


def _open(ctx: click.Context, db: str | None):
    from personagym.store import connect
    from personagym.store.runs import RunStore

    path = db_path(ctx, db)
    if not Path(path).exists():
        raise UserError(f"no database at {path}: run an evaluation first, or pass --db PATH")
    return RunStore(connect(path))


def _results(ctx: click.Context, db: str | None, name: str) -> dict[str, Any]:
    from personagym.score import run_results

    store = _open(ctx, db)
    run = store.find_run(name)
    if run is None:
        known = ", ".join(r.name for r in store.runs()) or "none yet"
        raise UserError(f"no run named {name!r} in {db_path(ctx, db)}: known runs are {known}")
    return run_results(store, run)


def load_results(ctx: click.Context, db: str | None, ref: str) -> dict[str, Any]:
    """A run's results from a reference: a run name in the database, or the path of a JSON file
    written by `personagym export` (so runs from other machines can be compared and reported)."""
    if ref.endswith(".json") and Path(ref).is_file():
        from personagym.score import RESULTS_SCHEMA

        try:
            data = json.loads(Path(ref).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{ref} is not readable JSON ({exc}): pass a file written by `personagym export`")
        if not isinstance(data, dict) or data.get("schema") != RESULTS_SCHEMA:
            raise UserError(f"{ref} is not a {RESULTS_SCHEMA} export: write one with `personagym export RUN -o FILE`")
        return data
    return _results(ctx, db, ref)


@cli.command("runs")
@db_option
@click.pass_context
def runs_command(ctx: click.Context, db: str | None) -> None:
    """List runs with their state and PersonaScore.

    \b
    Examples:
      personagym runs
      personagym runs --db runs/personagym.db
    """
    from personagym.score import run_results

    store = _open(ctx, db)
    runs = store.runs()
    if not runs:
        click.echo("no runs yet")
    for run in runs:
        scores = run_results(store, run)["scores"]
        score = "-" if scores["persona_score"] is None else f"{scores['persona_score']:.2f}"
        click.echo(
            f"{run.name:<32} {run.status:<12} PersonaScore {score:<5} {scores['personas']} personas  "
            f"agent {run.config['agent']}"
        )


@cli.command("show")
@click.argument("run")
@db_option
@click.pass_context
def show_command(ctx: click.Context, run: str, db: str | None) -> None:
    """Print a run's summary: PersonaScore, task scores, failures, usage.

    \b
    Examples:
      personagym show mini-v1
    """
    from personagym.summary import summary_lines

    for line in summary_lines(_results(ctx, db, run)):
        click.echo(line)


CSV_COLUMNS = ["run", "persona", "task", "index", "question", "answer", "score", "judges"]


def to_csv(results: dict[str, Any]) -> str:
    """One row per question; judge verdicts as `judge=score` pairs; an empty score is a failure."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for q in results["questions"]:
        writer.writerow(
            [
                results["run"]["name"],
                q["persona"],
                q["task"],
                q["index"],
                q["question"],
                q["answer"] or "",
                "" if q["score"] is None else f"{q['score']:.4g}",
                "; ".join(f"{v['judge']}={v['score']}" for v in q["verdicts"]),
            ]
        )
    return out.getvalue()


@cli.command("export")
@click.argument("run")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True)
@click.option("-o", "--output", metavar="FILE", help="Write here instead of standard output.")
@db_option
@click.pass_context
def export_command(ctx: click.Context, run: str, fmt: str, output: str | None, db: str | None) -> None:
    """Export a run's results (JSON schema personagym.results/1, documented in docs/results.md).

    \b
    Examples:
      personagym export mini-v1 -o mini-v1.json
      personagym export mini-v1 --format csv -o mini-v1.csv
    """
    results = _results(ctx, db, run)
    text = json.dumps(results, indent=2, ensure_ascii=False) + "\n" if fmt == "json" else to_csv(results)
    if output is None:
        click.echo(text, nl=False)
        return
    target = Path(output)
    if not target.parent.exists():
        raise UserError(f"the folder of {target} does not exist: create it or choose another -o path")
    write_atomic(target, text)
    click.echo(f"wrote {target}", err=True)
