"""The catalog of settings (environments) a persona can be placed in.

The packaged catalog holds the 150 settings upstream PersonaGym selects from, each with a one-line
description of who is there and what happens, so that question writers can picture it. Users may
supply their own catalog:

* JSON: a list whose entries are names (strings) or `{"name": ..., "description": ...}` objects;
* text: one setting per line, optionally followed by ` - description` or `: description`;
  blank lines and lines starting with `#` are skipped.

A `.json` file is read as JSON, a `.txt` file as text, and any other file by its first character
(`[` means JSON). A user setting without a description borrows the packaged one when the names match
(ignoring case), so a plain list of upstream names still gets descriptions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from personagym.errors import UserError

__all__ = ["Environment", "CATALOG_VERSION", "MAX_NAME_CHARS", "load_catalog"]

CATALOG_VERSION = "environments/1"
#: Longest setting name accepted: the environment-choice schema bounds each chosen name to this.
MAX_NAME_CHARS = 80


@dataclass(frozen=True)
class Environment:
    name: str
    description: str = ""


def load_catalog(path: str | Path | None = None) -> tuple[Environment, ...]:
    """The packaged catalog (`path=None`) or a user's catalog file, in file order."""
    if path is None:
        return _packaged()
    path = Path(path)
    where = f"environment catalog {path}"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"{where} not found: give the path of an existing .json or .txt file") from None
    except IsADirectoryError:
        raise UserError(f"{where} is a directory: give the path of a .json or .txt file") from None
    except UnicodeDecodeError:
        raise UserError(f"{where} is not UTF-8 text: save it as UTF-8") from None
    except OSError as exc:
        raise UserError(f"{where} cannot be read ({exc.strerror}): check its permissions") from None

    suffix = path.suffix.lower()
    as_json = suffix == ".json" or (suffix != ".txt" and text.lstrip()[:1] in ("[", "{"))
    rows = _from_json(text, where) if as_json else _from_text(text, where)
    if not rows:
        raise UserError(f"{where} is empty: list at least one setting name")
    return _finish(rows, where)


# A row is (name, description, position) where position names the entry in messages: "entry 3" / "line 7".
_Row = tuple[str, str, str]


def _from_json(text: str, where: str) -> list[_Row]:
    try:
        data = json.loads(text) if text.strip() else []
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{where} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}): fix it, "
            "or use a .txt file with one setting per line"
        ) from None
    if not isinstance(data, list):
        raise UserError(
            f'{where} must hold a JSON list of names or of {{"name": ..., "description": ...}} objects, '
            f"not a JSON {type(data).__name__}: wrap the entries in [ ]"
        )
    rows = []
    for index, entry in enumerate(data):
        position = f"the entry at index {index}"
        name: Any
        description: Any = ""
        if isinstance(entry, str):
            name = entry
        elif isinstance(entry, dict):
            name = entry.get("name")
            description = entry.get("description") or ""
        else:
            name = None
        if not isinstance(name, str) or not name.strip():
            raise UserError(f'{where}: {position} has no name: give it a non-empty "name" string')
        if not isinstance(description, str):
            raise UserError(f'{where}: {position} has a "description" that is not a string: quote it')
        rows.append((name, description, position))
    return rows


def _from_text(text: str, where: str) -> list[_Row]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, description = _split_line(stripped)
        if not name.strip():
            raise UserError(f"{where}: line {number} has no name before its description: start it with the name")
        rows.append((name, description, f"line {number}"))
    return rows


_SEPARATOR = re.compile(r"(?:^|\s)-(?:\s|$)|:(?:\s|$)")


def _split_line(line: str) -> tuple[str, str]:
    """`Name - description`, `Name: description` (the first separator wins) or just `Name`.

    A hyphen only separates when it stands alone, so `Left-Hand Drive` stays one name.
    """
    match = _SEPARATOR.search(line)
    if match is None:
        return line, ""
    return line[: match.start()].strip(), line[match.end() :].strip()


def _finish(rows: list[_Row], where: str) -> tuple[Environment, ...]:
    known = {env.name.casefold(): env.description for env in _packaged()}
    seen: dict[str, str] = {}
    catalog = []
    for raw_name, raw_description, position in rows:
        name = " ".join(raw_name.split())
        description = " ".join(raw_description.split())
        if len(name) > MAX_NAME_CHARS:
            raise UserError(
                f"{where}: {position} has a name of {len(name)} characters: shorten it to at most {MAX_NAME_CHARS}"
            )
        folded = name.casefold()
        if folded in seen:
            raise UserError(
                f"{where}: setting {name!r} appears twice ({seen[folded]} and {position}, ignoring case): "
                "keep one of them"
            )
        seen[folded] = position
        catalog.append(Environment(name, description or known.get(folded, "")))
    return tuple(catalog)


@lru_cache(maxsize=1)
def _packaged() -> tuple[Environment, ...]:
    text = Path(__file__).with_name("environments.json").read_text(encoding="utf-8")
    return tuple(Environment(entry["name"], entry["description"]) for entry in json.loads(text))
