"""`personagym runs`, `show` and `export`: what runs there are and what they found."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Callable

import click

from personagym.cli import db_option, db_path
from personagym.errors import UserError
from personagym.files import write_atomic


def _open(ctx: click.Context, db: str | None):
    """The database, opened only to read: nothing is created, and a read-only copy reads as well."""
    from personagym.store.db import connect_read
    from personagym.store.runs import RunStore

    return RunStore(connect_read(db_path(ctx, db)))


def _results(ctx: click.Context, db: str | None, name: str) -> dict[str, Any]:
    from personagym.score import run_results

    store = _open(ctx, db)
    run = store.find_run(name)
    if run is None:
        known = ", ".join(repr(r.name) for r in store.runs()) or "none yet"
        raise UserError(f"no run named {name!r} in {db_path(ctx, db)}: known runs are {known}")
    return run_results(store, run)


def load_results(ctx: click.Context, db: str | None, ref: str) -> dict[str, Any]:
    """A run's results from a reference: a run name in the database, or the path of a JSON file
    written by `personagym export` (so runs from other machines can be compared and reported)."""
    if ref.endswith(".json") and Path(ref).is_file():
        from personagym.score import RESULTS_SCHEMA

        try:
            data = json.loads(Path(ref).read_text(encoding="utf-8"), parse_constant=_no_constant, parse_float=_finite)
        except ValueError as exc:  # not UTF-8, not JSON, or a NaN or infinity
            raise UserError(f"{ref} is not readable JSON ({exc}): pass a file written by `personagym export`") from None
        except OSError as exc:
            raise UserError(f"{ref} cannot be read ({exc.strerror or exc}): pass a file written by `personagym export`")
        if not isinstance(data, dict) or data.get("schema") != RESULTS_SCHEMA:
            raise UserError(f"{ref} is not a {RESULTS_SCHEMA} export: write one with `personagym export RUN -o FILE`")
        check_results(data, ref)
        return data
    return _results(ctx, db, ref)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large for a number")
    return value


# -- the shape of an export, as far as report, compare and alignment read it -----------------------
class _Leaf:
    def __init__(self, name: str, test: Callable[[Any], bool]):
        self.name, self.test = name, test


class _Null:
    """null, or what `spec` says."""

    def __init__(self, spec: Any):
        self.spec = spec


class _MapOf:
    """An object with any keys, each value as `spec` says."""

    def __init__(self, spec: Any):
        self.spec = spec


_STR = _Leaf("a string", lambda v: isinstance(v, str))
_INT = _Leaf("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool))
_NUM = _Leaf("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool))
_BREAK = _Leaf("a break level (none, soft_slip, talks_about_ai or admits_ai)",
               lambda v: v in ("none", "soft_slip", "talks_about_ai", "admits_ai"))
_USAGE_ROW = {f"{k}?": _Null(_NUM) for k in ("calls", "cached", "failures", "attempts", "prompt_tokens",
                                            "completion_tokens", "cost")}
# A key ending in "?" may be absent; every other one must be there.
RESULTS_SHAPE = {
    "run": {
        "name": _STR, "status?": _STR, "created_at?": _Null(_NUM), "updated_at?": _Null(_NUM),
        "config": {"judges": [_STR], "agent?": _STR},
    },
    "scores": {
        "persona_score": _Null(_NUM), "tasks": _MapOf(_Null(_NUM)),
        "personas_scored": _INT, "personas": _INT, "questions_scored": _INT, "questions": _INT,
    },
    "personas": [{"persona": _STR, "environments?": _Null([_STR]), "tasks": _MapOf(_Null(_NUM)),
                  "persona_score": _Null(_NUM)}],
    "questions": [{
        "persona": _STR, "task": _STR, "index": _INT, "question": _STR, "answer": _Null(_STR),
        "examples": _Null(_MapOf(_Null(_STR))), "verdicts": [{"judge": _STR, "score": _NUM, "reasoning": _STR}],
        "score": _Null(_NUM),
    }],
    "failures": {
        "total": _INT, "by_cause": _MapOf(_INT), "by_stage": _MapOf(_INT),
        "items": [{"stage": _STR, "persona": _STR, "task": _Null(_STR), "question_index": _Null(_INT),
                   "model": _STR, "cause": _STR, "detail": _STR}],
    },
    "usage?": {"by_role?": _MapOf(_USAGE_ROW), "by_model?": _MapOf(_USAGE_ROW), "total?": _USAGE_ROW},
    # --dialogues (docs/dialogues.md): what the report and compare read of them.
    "dialogues?": [{
        "persona": _STR, "index": _INT, "tactic": _STR, "score": _Null(_NUM), "first_break": _Null(_INT),
        "turns": [{"index": _INT, "user": _STR, "agent": _Null(_STR), "score": _Null(_NUM), "break": _Null(_BREAK),
                   "judge_break": _Null(_BREAK), "detector": _Null(_BREAK),
                   "verdicts": [{"judge": _STR, "score": _NUM, "break": _BREAK, "reasoning": _STR}]}],
    }],
}  # fmt: skip


def check_results(data: dict[str, Any], where: str) -> None:
    """Refuse, naming the field, an export that report, compare or alignment would trip over: a field
    missing, or of another type (extra fields are fine: later versions add some)."""
    problem = _misfit(data, RESULTS_SHAPE, "")
    if problem:
        raise UserError(
            f"{where} is not a whole personagym export: {problem}: pass a file written by `personagym export` "
            "(the format is in docs/results.md)"
        )


def _misfit(value: Any, spec: Any, path: str) -> str | None:
    if isinstance(spec, _Null):
        return None if value is None else _misfit(value, spec.spec, path)
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return _wrong(path, value, "an object")
        for key, inner in spec.items():
            name = key.removesuffix("?")
            if name not in value:
                if key.endswith("?"):
                    continue
                return f"field {_join(path, name)} is missing"
            found = _misfit(value[name], inner, _join(path, name))
            if found:
                return found
        return None
    if isinstance(spec, _MapOf):
        if not isinstance(value, dict):
            return _wrong(path, value, "an object")
        for name, item in value.items():
            found = _misfit(item, spec.spec, f"{path}[{json.dumps(name, ensure_ascii=False)}]")
            if found:
                return found
        return None
    if isinstance(spec, list):
        if not isinstance(value, list):
            return _wrong(path, value, "a list")
        for i, item in enumerate(value):
            found = _misfit(item, spec[0], f"{path}[{i}]")
            if found:
                return found
        return None
    return None if spec.test(value) else _wrong(path, value, spec.name)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _wrong(path: str, value: Any, wanted: str) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a whole number",
             float: "a number", type(None): "null"}
    return f"field {path or '(the whole file)'} is {kinds.get(type(value), type(value).__name__)}, not {wanted}"


@click.command("runs")
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
    from personagym.summary import printable, run_label

    store = _open(ctx, db)
    runs = store.runs()
    if not runs:
        click.echo("no runs yet")
    for run in runs:
        results = run_results(store, run)
        scores, status = results["scores"], run_label(run.status, results["failures"]["total"])
        score = "-" if scores["persona_score"] is None else f"{scores['persona_score']:.2f}"
        click.echo(
            printable(
                f"{run.name:<32} {status:<12} PersonaScore {score:<5} {scores['personas']} personas  "
                f"agent {run.config['agent']}"
            )
        )


@click.command("show")
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
    """One row per question; judge verdicts as `judge=score` pairs; an empty score is a failure.

    A text cell that a spreadsheet would take for a formula (starting with = + - @, or a tab or
    carriage return before one) gets a leading single quote: personas, questions and answers are
    untrusted, and a formula can fetch URLs or run commands when the file is opened.
    """
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for q in results["questions"]:
        writer.writerow(
            [
                _cell(results["run"]["name"]),
                _cell(q["persona"]),
                _cell(q["task"]),
                q["index"],
                _cell(q["question"]),
                _cell(q["answer"] or ""),
                "" if q["score"] is None else f"{q['score']:.4g}",
                _cell("; ".join(f"{v['judge']}={v['score']}" for v in q["verdicts"])),
            ]
        )
    return out.getvalue()


DIALOGUE_COLUMNS = ["run", "persona", "dialogue", "tactic", "turn", "user", "agent", "score", "break", "judge_break",
                    "detector", "judges"]


def dialogues_csv(results: dict[str, Any]) -> str:
    """One row per turn of every dialogue (--dialogues); judges as `judge=score/break` pairs; an empty
    score or break is a failure or a turn never reached. Cells are guarded as in `to_csv`."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(DIALOGUE_COLUMNS)
    for d in results.get("dialogues") or []:
        for t in d["turns"]:
            judges = "; ".join(f"{v['judge']}={v['score']}/{v['break']}" for v in t["verdicts"])
            writer.writerow([
                _cell(results["run"]["name"]), _cell(d["persona"]), d["index"], _cell(d["tactic"]), t["index"],
                _cell(t["user"]), _cell(t["agent"] or ""), "" if t["score"] is None else f"{t['score']:.4g}",
                t["break"] or "", t["judge_break"] or "", t["detector"] or "", _cell(judges),
            ])
    return out.getvalue()


def _cell(text: str) -> str:
    return "'" + text if text[:1] in _FORMULA_STARTS else text


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@click.command("export")
@click.argument("run")
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "dialogues-csv"]), default="json", show_default=True,
              help="csv: one row per question (with -o, a run's dialogues go to FILE.dialogues.csv beside it); "
              "dialogues-csv: one row per dialogue turn.")
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
    if fmt == "json":
        try:
            text = json.dumps(results, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        except ValueError:  # NaN is not JSON: such a file would be unreadable to every JSON reader
            raise UserError(
                f"run {run!r} holds a number that is not finite (NaN or infinity), which JSON cannot carry: "
                "export it with --format csv, or rerun it with finite settings"
            ) from None
    else:
        text = dialogues_csv(results) if fmt == "dialogues-csv" else to_csv(results)
    if output is None:
        click.echo(text, nl=False)
        return
    target = Path(output)
    if not target.parent.exists():
        raise UserError(f"the folder of {target} does not exist: create it or choose another -o path")
    write_atomic(target, text)
    click.echo(f"wrote {target}", err=True)
    if fmt == "csv" and results.get("dialogues"):
        beside = target.with_name(target.stem + ".dialogues.csv")
        write_atomic(beside, dialogues_csv(results))
        click.echo(f"wrote {beside}", err=True)
