"""Persona descriptions from the user: one on the command line, or a file of many.

A persona is a short free-text description ("A 72-year-old doctor from Tokyo who loves hiking").
`clean_persona` normalises one; `load_personas` reads a file in one of four formats, chosen by the
file's extension:

* ``.txt``   one persona per line; blank lines and lines starting with ``#`` are skipped;
* ``.json``  a list of strings, or a list of objects with a ``"persona"`` field;
* ``.jsonl`` one object with a ``"persona"`` field per line (blank lines skipped);
* ``.csv``   a header row with a ``persona`` column; other columns are ignored.

Files are read as UTF-8 (a byte-order mark is tolerated). Exact duplicates (after cleaning) are
dropped, keeping the first. Every problem is a one-line `UserError` naming the file, the place in it
and the fix.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

from personagym.errors import UserError

__all__ = ["MAX_PERSONA_CHARS", "SUPPORTED_EXTENSIONS", "clean_persona", "load_personas"]

MAX_PERSONA_CHARS = 2000
SUPPORTED_EXTENSIONS = (".txt", ".json", ".jsonl", ".csv")

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_EXAMPLE = "'A 72-year-old doctor from Tokyo who loves hiking'"


def _one_line(text: str) -> str:
    """Collapse any line breaks (e.g. in a file name) so an error message stays on one line."""
    return " ".join(str(text).splitlines())


def clean_persona(text: str, where: str = "persona") -> str:
    """Strip `text`, collapse runs of whitespace to single spaces, and check it is usable.

    `where` names the persona's origin in error messages (e.g. ``"personas.csv line 4"``).
    """
    where = _one_line(where)
    if not isinstance(text, str):
        raise UserError(f"{where} is not text (got {type(text).__name__}): give a description such as {_EXAMPLE}")
    cleaned = " ".join(text.split())
    if not cleaned:
        raise UserError(f"{where} is blank: give a description such as {_EXAMPLE}")
    if len(cleaned) > MAX_PERSONA_CHARS:
        raise UserError(
            f"{where} is {len(cleaned)} characters long, more than the {MAX_PERSONA_CHARS} allowed: "
            "shorten it to a description of a few sentences"
        )
    return cleaned


def load_personas(path: str | Path) -> list[str]:
    """Read the personas in `path` (format by extension), cleaned and de-duplicated, in file order."""
    path = Path(path)
    name = _one_line(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise UserError(f"persona file {name} does not exist: check the path, or pass a persona directly")
    if not path.is_file():
        raise UserError(f"persona file {name} is not a file: pass the path of a persona file")
    if suffix not in SUPPORTED_EXTENSIONS:
        shown = f"extension '{path.suffix}'" if path.suffix else "no extension"
        raise UserError(
            f"persona file {name} has {shown}: rename it to one of {', '.join(SUPPORTED_EXTENSIONS)} "
            "(one persona per line in .txt, a list in .json, one object per line in .jsonl, a 'persona' column in .csv)"
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read persona file {name} ({_one_line(exc.strerror or exc)}): check its permissions")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"persona file {name} is not valid UTF-8 (bad byte at offset {exc.start}): save it with UTF-8 encoding"
        ) from None

    reader = {".txt": _read_txt, ".json": _read_json, ".jsonl": _read_jsonl, ".csv": _read_csv}[suffix]
    personas = reader(text, name) if text.strip() else []
    if not personas:
        raise UserError(f"persona file {name} holds no personas: {_HOW_TO_FILL[suffix]}")
    return list(dict.fromkeys(personas))


_HOW_TO_FILL = {
    ".txt": f"write one persona per line, such as {_EXAMPLE}",
    ".json": 'write a list such as ["A 72-year-old doctor from Tokyo who loves hiking"]',
    ".jsonl": 'write one object per line such as {"persona": "A 72-year-old doctor from Tokyo who loves hiking"}',
    ".csv": "write a header row with a 'persona' column and one persona per row below it",
}


def _read_txt(text: str, name: str) -> list[str]:
    personas = []
    for number, line in enumerate(_lines(text), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        personas.append(clean_persona(stripped, f"{name} line {number}"))
    return personas


def _json_error(name: str, exc: json.JSONDecodeError, line: int | None = None) -> UserError:
    where = f"line {line}" if line is not None else f"line {exc.lineno} column {exc.colno}"
    return UserError(f"persona file {name} is not valid JSON at {where} ({exc.msg}): fix the syntax there")


def _read_json(text: str, name: str) -> list[str]:
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _json_error(name, exc) from None
    if not isinstance(data, list):
        raise UserError(
            f"persona file {name} holds a JSON {_json_type(data)}, not a list: "
            'write a list of strings or of objects like {"persona": "..."}'
        )
    personas = []
    for index, item in enumerate(data):
        where = f"{name} item {index} (counting from 0)"
        if isinstance(item, dict):
            if "persona" not in item:
                keys = ", ".join(map(str, item)) or "none"
                raise UserError(f'{where} has no "persona" field (its fields: {keys}): add one holding the description')
            item = item["persona"]
        elif not isinstance(item, str):
            raise UserError(
                f"{where} is a JSON {_json_type(item)}: each item must be a string or an object with a \"persona\" field"
            )
        if not isinstance(item, str):
            raise UserError(f'{where} has a "persona" that is a JSON {_json_type(item)}: make it a string')
        personas.append(clean_persona(item, where))
    return personas


def _read_jsonl(text: str, name: str) -> list[str]:
    personas = []
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        try:
            item: Any = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _json_error(name, exc, line=number) from None
        where = f"{name} line {number}"
        if not isinstance(item, dict):
            raise UserError(
                f'{where} is a JSON {_json_type(item)}, not an object: write {{"persona": "..."}} on each line'
            )
        if "persona" not in item:
            keys = ", ".join(map(str, item)) or "none"
            raise UserError(f'{where} has no "persona" field (its fields: {keys}): add one holding the description')
        value = item["persona"]
        if not isinstance(value, str):
            raise UserError(f'{where} has a "persona" that is a JSON {_json_type(value)}: make it a string')
        personas.append(clean_persona(value, where))
    return personas


def _read_csv(text: str, name: str) -> list[str]:
    import csv  # here: only a .csv persona file needs it, and every run imports this module

    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            return []
        columns = [column.strip() for column in header]
        matches = [i for i, column in enumerate(columns) if column.lower() == "persona"]
        if not matches:
            shown = ", ".join(repr(c) for c in columns) if any(columns) else "none"
            raise UserError(
                f"persona file {name} has no 'persona' column (its columns: {shown}): "
                "add a header row whose persona column is named 'persona'"
            )
        column = matches[0]
        personas = []
        while True:
            start_line = reader.line_num + 1
            row = next(reader, None)
            if row is None:
                break
            if not any(cell.strip() for cell in row):
                continue  # an empty row (or one of bare commas) holds nothing
            where = f"{name} line {start_line}"
            value = row[column] if column < len(row) else ""
            if not value.strip():
                raise UserError(f"{where} has a blank persona: fill in its 'persona' column or delete the row")
            personas.append(clean_persona(value, where))
    except csv.Error as exc:
        raise UserError(
            f"persona file {name} is not valid CSV at line {reader.line_num} ({_one_line(exc)}): "
            "fix the quoting there (wrap fields holding commas or quotes in double quotes)"
        ) from None
    return personas


def _lines(text: str) -> list[str]:
    """Split on real line breaks only (str.splitlines also splits on U+2028 and friends inside JSON strings)."""
    return _LINE_BREAK.split(text)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return {dict: "object", list: "list", str: "string", int: "number", float: "number"}.get(type(value), "value")
