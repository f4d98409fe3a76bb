"""Do the judges rank answers the way people do? A run's scores against human ratings.

PersonaGym's case for its judges is agreement with human ratings (Spearman and Kendall correlations in
the paper). This module reads ratings people gave, matches each to the run's question (or persona and
task), and reports rank correlations with intervals, per task and overall. The CSV format is in
docs/statistics.md.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from statistics import fmean
from typing import Any, Iterable

from personagym.errors import UserError
from personagym.method import get_task

REQUIRED = ("persona", "task", "score")


def _norm(text: str) -> str:
    """Whitespace-insensitive text: spreadsheets rewrap cells and trim ends."""
    return " ".join(text.split())


def read_ratings(path: str | Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The CSV's (lower-cased) columns and its rows, each with its row number as a spreadsheet shows it."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # -sig: Excel's byte-order mark is not a column name
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path} ({exc}): pass a UTF-8 CSV file of human ratings")
    reader = csv.reader(text.splitlines())
    try:
        header = next(reader, None)
        if not header:
            raise UserError(f"{path} is empty: it needs a header row with columns {', '.join(REQUIRED)}")
        columns = [c.strip().lower() for c in header]
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise UserError(
                f"{path} has no {', '.join(missing)} column (found: {', '.join(columns)[:200]}): "
                f"add columns {', '.join(REQUIRED)}, and optionally index or question"
            )
        rows = []
        for number, cells in enumerate(reader, start=2):  # the header is row 1
            if any(c.strip() for c in cells):
                rows.append((number, {c: (cells[i] if i < len(cells) else "") for i, c in enumerate(columns)}))
    except csv.Error as exc:  # a cell over the csv module's size limit, a NUL byte...
        raise UserError(
            f"{path} line {reader.line_num} cannot be read as CSV ({exc}): fix that line (a rating's cells are short "
            "texts and a number)"
        ) from None
    return columns, rows


def _score(path: str | Path, number: int, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise UserError(f"{path} row {number}: score {raw.strip()!r} is not a number: give a number, or delete the row")
    return value


class _Index:
    """What a rating can point at in one run: personas, tasks, questions by index or by text."""

    def __init__(self, results: dict[str, Any]):
        self.tasks = list(results["scores"]["tasks"])
        self.personas = {_norm(p["persona"]): p for p in results["personas"]}
        self.by_index: dict[tuple[str, str, int], dict] = {}
        self.by_text: dict[tuple[str, str, str], dict] = {}
        for q in results["questions"]:
            self.by_index[(_norm(q["persona"]), q["task"], q["index"])] = q
            self.by_text[(_norm(q["persona"]), q["task"], _norm(q["question"]))] = q

    def match(self, row: dict[str, str], per_question: bool) -> tuple[tuple | None, float | None, str | None]:
        """(item key, the run's score for it, None) or (None, None, why nothing matched)."""
        persona = _norm(row["persona"])
        if persona not in self.personas:
            return None, None, f"unknown persona {_clip(persona)!r}"
        try:
            task = get_task(row["task"]).name
        except UserError:
            return None, None, f"unknown task {_clip(row['task'])!r}"
        if task not in self.tasks:
            return None, None, f"task {task!r} is not in this run"
        if not per_question:
            return (persona, task), self.personas[persona]["tasks"].get(task), None
        index, text = row.get("index", "").strip(), _norm(row.get("question", ""))
        if index:
            question = self.by_index.get((persona, task, _whole(index)))
            if question is None:
                return None, None, f"unknown question: no {task} question {index!r} for this persona"
        elif text:
            question = self.by_text.get((persona, task, text))
            if question is None:
                return None, None, f"unknown question {_clip(text)!r}"
        else:
            return None, None, "no index or question given"
        return (persona, task, question["index"]), question["score"], None


def _whole(text: str) -> int | None:
    """An index as typed, or as a spreadsheet saves it ("3.0"); None if it is not a whole number."""
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def _clip(text: str, width: int = 50) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _correlations(pairs: list[tuple[float, float]]) -> dict[str, Any]:
    from personagym.stats import correlation_interval, kendall_tau, spearman

    human = [h for h, _ in pairs]
    auto = [a for _, a in pairs]
    rho = spearman(human, auto) if pairs else None
    tau = kendall_tau(human, auto) if pairs else None
    n = len(pairs)
    return {
        "n": n,
        "spearman": rho,
        "spearman_ci": correlation_interval(rho, n, "spearman"),
        "kendall": tau,
        "kendall_ci": correlation_interval(tau, n, "kendall"),
    }


def align(results: dict[str, Any], columns: list[str], rows: Iterable[tuple[int, dict[str, str]]], path="ratings"):
    """Rank agreement of a run's scores with human ratings (rows as read_ratings returns them).

    Returns {"run", "level" ("question" or "task"), "rows", "matched_rows", "items", "excluded" (items
    whose automatic score is null: failures are never compared), "unmatched" [{"row", "reason"}],
    "tasks" {task: correlations}, "overall": correlations}; correlations are {"n", "spearman",
    "spearman_ci", "kendall", "kendall_ci"}, None where undefined (a constant side, too few items).
    """
    per_question = "index" in columns or "question" in columns
    index = _Index(results)
    human: dict[tuple, list[float]] = defaultdict(list)
    automatic: dict[tuple, float | None] = {}
    unmatched = []
    total = 0
    for number, row in rows:
        total += 1
        score = _score(path, number, row["score"])  # a bad number is an error even on a row that matches nothing
        key, auto, reason = index.match(row, per_question)
        if key is None:
            unmatched.append({"row": number, "reason": reason})
            continue
        human[key].append(score)  # several raters of one item are averaged
        automatic[key] = auto
    if not human:
        first = f"; row {unmatched[0]['row']}: {unmatched[0]['reason']}" if unmatched else ""
        raise UserError(
            f"no rating in {path} matches run {results['run']['name']!r}{first}: "
            "personas must be the run's persona texts, tasks its task names or keys"
        )
    by_task: dict[str, list[tuple[float, float]]] = defaultdict(list)
    rated = {key[1] for key in human}  # tasks shown even when every item in them was excluded
    excluded = 0
    for key, scores in human.items():
        if automatic[key] is None:
            excluded += 1
            continue
        by_task[key[1]].append((fmean(scores), automatic[key]))
    return {
        "run": results["run"]["name"],
        "level": "question" if per_question else "task",
        "rows": total,
        "matched_rows": total - len(unmatched),
        "items": len(human),
        "excluded": excluded,
        "unmatched": unmatched,
        "tasks": {t: _correlations(by_task[t]) for t in index.tasks if t in rated},
        "overall": _correlations([pair for t in index.tasks for pair in by_task[t]]),
    }


def human_alignment(results: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """align() on the ratings in the CSV file at `path`."""
    columns, rows = read_ratings(path)
    return align(results, columns, rows, path=str(path))
