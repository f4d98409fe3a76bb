"""`personagym audit`: can a run's judges be trusted? A thin wrapper over personagym.audit (docs/audit.md)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from personagym import defaults
from personagym.cli import db_option, db_path, settings_from
from personagym.errors import UserError
from personagym.summary import printable

SHARES = ("identification", "consistency")  # probes whose value is a share, shown as a percentage


@click.command("audit")
@click.argument("run")
@click.option("--judges", metavar="SPEC,SPEC", help="Judges to audit (default: the run's own); others are vetted on the run's answers.")
@click.option("--sample", type=int, default=100, show_default=True, metavar="N", help="Questions to re-grade, in whole judge batches, stratified by task.")
@click.option("--candidates", type=int, default=4, show_default=True, metavar="K", help="Personas to choose from in the identification probe.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample, the candidates and the intervals.")
@click.option("--json", "json_path", metavar="FILE", help="Also write the audit as JSON (per judge, per probe: value, ci, n, baseline).")
@click.option("--dry-run", is_flag=True, help="Print the calls, how many are cached, and a cost estimate; call nothing.")
@db_option
@click.option("--concurrency", type=int, metavar="N", help=f"Calls in flight per model (default {defaults.CONCURRENCY}).")
@click.option("--max-attempts", type=int, metavar="N", help=f"Attempts per call (default {defaults.MAX_ATTEMPTS}).")
@click.option("--timeout", type=float, metavar="SECONDS", help=f"Longest wait for one attempt (default {defaults.TIMEOUT:g}).")
@click.option("--prices", metavar="FILE", help="TOML price table adding to or overriding the built-in one.")
@click.option("--openai-base-url", metavar="URL[,URL]", help="Base URL(s) for openai: specs.")
@click.option("--anthropic-base-url", metavar="URL", help="Base URL for anthropic: specs.")
@click.option("--quiet", is_flag=True, help="No progress line.")
@click.pass_context
def audit_command(ctx: click.Context, run: str, judges: str | None, sample: int, candidates: int, seed: int,
                  json_path: str | None, dry_run: bool, db: str | None, concurrency: int | None,
                  max_attempts: int | None, timeout: float | None, prices: str | None, openai_base_url: str | None,
                  anthropic_base_url: str | None, quiet: bool) -> None:  # fmt: skip
    """Audit a run's judges without human labels: persona identification, order sensitivity, length
    bias, injection resistance and self-consistency, each a number with its 95% interval, n and a
    plain verdict. Stored with the run (the report's Judges section shows it).

    RUN is a run name in the database, or a JSON file from `personagym export` (its audit is not
    stored: keep it with --json). Every call goes through the cache: a stopped audit resumes free.

    \b
    Examples:
      personagym audit luna-v1
      personagym audit luna-v1 --judges openai:gpt-6.2-sol,anthropic:claude-haiku-5-5 --sample 50
      personagym audit luna-v1 --dry-run
      personagym audit luna-v1.json --json luna-v1-audit.json
    """
    from personagym.audit import AuditOptions, execute_audit, plan_lines, prepare_audit
    from personagym.llm.usage import PriceTable

    target = _json_target(json_path)
    given = {k: v for k, v in (("concurrency", concurrency), ("max_attempts", max_attempts), ("timeout", timeout))
             if v is not None}  # fmt: skip
    options = AuditOptions.of(
        judges=judges, sample=sample, candidates=candidates, seed=seed, prices=PriceTable.load(prices),
        settings=settings_from(ctx.obj["config"], openai_base_url, anthropic_base_url), **given,
    )  # fmt: skip
    path = db_path(ctx, db)
    conn, run_id, results = _open(ctx, db, path, run, dry_run)
    try:
        plan, gateway = prepare_audit(results, options)
        if dry_run:
            for line in plan_lines(plan, conn, options.prices):
                click.echo(printable(line))
            return
        result = asyncio.run(execute_audit(plan, gateway, conn, run_id, options.boot(), progress=not quiet))
    finally:
        if conn is not None:
            conn.close()
    for line in audit_lines(result):
        click.echo(printable(line))
    if target is not None:
        from personagym.files import write_atomic

        write_atomic(target, json.dumps(result, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
        click.echo(f"wrote {target}", err=True)
    elif run_id is None:
        click.echo("this audit of an export file is stored nowhere: pass --json FILE to keep it", err=True)
    failed = sum(p["failed"] for j in result["judges"].values() for p in j["probes"].values())
    if failed:
        click.echo(f"{failed} audit call(s) failed after their retries and were left out: run the same command "
                   "again to retry them (the rest comes from the cache)", err=True)  # fmt: skip
        sys.exit(1)


def _json_target(json_path: str | None) -> Path | None:
    if json_path is None:
        return None
    target = Path(json_path)
    if target.is_dir():
        raise UserError(f"--json {target} is a folder: pass a file name such as {target / 'audit.json'}")
    if not target.parent.exists():
        raise UserError(f"the folder of --json {target} does not exist: create it or choose another path")
    return target


def _open(ctx: click.Context, db: str | None, path: str, ref: str, dry_run: bool):
    """(connection or None, run id or None, results): a run in the database, or an export file whose
    calls are cached in the database (created if need be) but whose audit is not stored there."""
    from personagym.audit import open_run

    if ref.endswith(".json") and Path(ref).is_file():
        from personagym.cli.results import load_results
        from personagym.store import connect
        from personagym.store.db import connect_read

        results = load_results(ctx, db, ref)
        if dry_run:
            return (connect_read(path) if Path(path).is_file() else None), None, results
        return connect(path), None, results
    return open_run(path, ref, write=not dry_run)


def _share(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _points(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def audit_lines(result: dict[str, Any]) -> list[str]:
    """The audit as a table: per judge and probe, the value, its interval, n, the baseline, the verdict."""
    from personagym.cli.compare import _table

    s = result["settings"]
    lines = [
        f"audit of run {result['run']}: {s['questions']} questions in {s['batches']} judge batches (seed {s['seed']}), "
        f"{round(100 * s.get('level', 0.95))}% intervals",
        "",
    ]
    rows = []
    for judge, entry in result["judges"].items():
        for probe, p in entry["probes"].items():
            shown = _share if probe in SHARES else _points
            ci = f"[{shown(p['ci'][0])}, {shown(p['ci'][1])}]" if p["ci"] else "-"
            rows.append([judge, probe, shown(p["value"]), ci, str(p["n"]), shown(p["baseline"]),
                         f"{p['status']}: {p['verdict']}"])  # fmt: skip
    lines += _table(["judge", "probe", "value", "95% CI", "n", "baseline", "verdict"], rows)
    total = result["usage"]["by_role"].get("audit") or {"calls": 0, "cached": 0, "cost": 0.0}
    cost = "unknown" if total.get("cost") is None else f"${total['cost']:,.4f}"
    lines += ["", f"audit calls: {total['calls']:,} ({total['cached']:,} from the cache), cost {cost}; "
                  "what each probe means and what to do: docs/audit.md"]  # fmt: skip
    return lines
