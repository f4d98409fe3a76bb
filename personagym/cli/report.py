"""`personagym report`: one offline HTML file for one or more runs (docs/report.md)."""

from __future__ import annotations

from pathlib import Path

import click

from personagym.cli import db_option
from personagym.errors import UserError
from personagym.files import write_atomic


@click.command("report")
@click.argument("runs", nargs=-1, required=True, metavar="RUN [RUN...]")
@click.option("-o", "--output", metavar="FILE", required=True, help="The HTML file to write.")
@click.option("--resamples", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Bootstrap resamples for the confidence intervals.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the resampling (the same seed gives the same numbers).")
@db_option
@click.pass_context
def report_command(ctx: click.Context, runs: tuple[str, ...], output: str, resamples: int, seed: int,
                   db: str | None) -> None:
    """Write an HTML report of runs: scores with confidence intervals, pairwise comparisons, every
    question with its verdicts, judge agreement and provenance. One self-contained file, no network.

    RUN is a run name in the database or a JSON file written by `personagym export`.

    \b
    Examples:
      personagym report mini-v1 -o report.html
      personagym report mini-v1 mini-v2 other-machine.json -o compare.html
    """
    from personagym.cli.results import load_results
    from personagym.report import render_report

    target = Path(output)
    if target.is_dir():
        raise UserError(f"{target} is a folder: pass a file name such as {target / 'report.html'}")
    if not target.parent.exists():
        raise UserError(f"the folder of {target} does not exist: create it or choose another -o path")
    results = [load_results(ctx, db, ref) for ref in runs]
    html = render_report(results, resamples=resamples, seed=seed)
    # "replace": a lone surrogate in a model's output must not cost the whole report.
    write_atomic(target, html.encode("utf-8", errors="replace"))
    click.echo(f"wrote {target}", err=True)
