"""The optional TOML config file: anything a flag sets can live here; flags win.

Looked for at --config, then $PERSONAGYM_CONFIG, then ./personagym.toml. Example:

    db = "runs/personagym.db"
    concurrency = 32
    prices = "my-prices.toml"

    [openai]
    base_url = "http://localhost:8000/v1"   # vLLM, Ollama, llama.cpp server, ...
    api_key_env = "TOGETHER_API_KEY"        # read the key from another variable

    [anthropic]
    api_key_env = "ANTHROPIC_API_KEY"

The file is checked as a whole when it is read, before anything runs: a key nobody reads (a typo of
`judges` would otherwise run the default, paid judges) or a value of the wrong type (`dry_run =
"false"`, which a loose reading would take for true) is refused with the file, the key and the fix.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from personagym.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_FILE = "personagym.toml"
TABLES = ("openai", "anthropic")


@dataclass(frozen=True)
class Key:
    """What a config key takes. kind: "bool", "int", "number", "text", "texts" (a string or a list of
    strings, joined with commas as the flag takes them) or "choice"."""

    kind: str
    choices: tuple[str, ...] = ()
    param: str | None = None  # the setting it fills, when spelled as its flag (environments -> max_environments)


def _structured_choices() -> tuple[str, ...]:
    from personagym.llm.structured import CHOICES

    return tuple(CHOICES)


def table_keys() -> dict[str, Key]:
    """The keys of the [openai] and [anthropic] tables."""
    return {
        "base_url": Key("texts"),
        "api_key": Key("text"),
        "api_key_env": Key("text"),
        "timeout": Key("number"),
        "structured_output": Key("choice", _structured_choices()),
        "max_reply_bytes": Key("int"),  # the cap on a reply's size (personagym.llm.spec)
    }


def load_config(path: str | Path | None = None, keys: Mapping[str, Key] | None = None) -> dict[str, Any]:
    """The config file's settings, checked against `keys` (the top-level keys it may hold; the CLI
    passes every run flag's) and with the provider tables' keys; names use underscores."""
    explicit = path or os.environ.get("PERSONAGYM_CONFIG")
    candidate = Path(explicit) if explicit else Path(DEFAULT_FILE)
    if not candidate.exists():
        if explicit:
            raise UserError(f"config file {candidate} does not exist: fix the path given to --config")
        return {}
    try:
        data = tomllib.loads(candidate.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"config file {candidate} is not valid TOML ({exc}): fix it or pass another --config") from None
    return check_config(data, candidate, keys)


def check_config(data: dict[str, Any], where: str | Path, keys: Mapping[str, Key] | None = None) -> dict[str, Any]:
    """The settings of a parsed config file, normalised (underscores, lists of specs as comma strings,
    flag spellings as the setting they fill); every problem found is named in one UserError."""
    problems: list[str] = []
    out: dict[str, Any] = {}
    top = dict(keys) if keys is not None else None
    for raw, value in data.items():
        name = raw.replace("-", "_")
        if name in TABLES:
            if not isinstance(value, dict):
                problems.append(f"`{raw}` must be a table ([{name}]), not a value")
                continue
            out[name] = _check_table(name, value, problems)
            continue
        if top is None:
            out[name] = value
            continue
        key = top.get(name)
        if key is None:
            problems.append(_unknown(raw, [*top, *TABLES]))
            continue
        checked = _check_value(raw, value, key, problems)
        if checked is not _BAD:
            out[key.param or name] = checked
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise UserError(f"config file {where}: {'; '.join(problems[:3])}{more}")
    return out


def _check_table(table: str, values: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    allowed = table_keys()
    out: dict[str, Any] = {}
    for raw, value in values.items():
        name = raw.replace("-", "_")
        key = allowed.get(name)
        if key is None:
            problems.append(_unknown(f"{table}.{raw}", [f"{table}.{k}" for k in allowed]))
            continue
        checked = _check_value(f"{table}.{raw}", value, key, problems)
        if checked is not _BAD:
            out[name] = checked
    return out


def _unknown(raw: str, valid: list[str]) -> str:
    import difflib  # only for a misspelt key: every command reads the config, few files misspell one

    near = difflib.get_close_matches(raw.replace("-", "_"), valid, n=1, cutoff=0.6)
    hint = f"did you mean `{near[0]}`?" if near else "see `personagym run --help` for the settings (dashes as underscores)"
    return f"unknown key `{raw}`: {hint}"


_BAD = object()
_TYPE = {
    "bool": "true or false (no quotes)",
    "int": "a whole number",
    "number": "a number",
    "text": "a string in quotes",
    "texts": "a string or a list of strings",
}


def _check_value(raw: str, value: Any, key: Key, problems: list[str]) -> Any:
    kind = key.kind
    ok: Any = _BAD
    if kind == "bool":
        ok = value if isinstance(value, bool) else _BAD
    elif kind == "int":
        ok = value if isinstance(value, int) and not isinstance(value, bool) else _BAD
    elif kind == "number":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                problems.append(f"`{raw}` is {value}: give a finite number")
                return _BAD
            ok = value
    elif kind == "text":
        ok = value if isinstance(value, str) else _BAD
    elif kind == "texts":
        if isinstance(value, str):
            ok = value
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            ok = ",".join(value)
    elif kind == "choice":
        if isinstance(value, str):
            if value.strip().lower() not in key.choices:
                problems.append(f"`{raw}` is {value!r}: use one of {', '.join(key.choices)}")
                return _BAD
            ok = value.strip().lower()
    if ok is _BAD:
        wanted = _TYPE.get(kind, f"one of {', '.join(key.choices)}")
        problems.append(f"`{raw}` is {_shown(value)}: it takes {wanted}")
    return ok


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, bool) else str(value).lower()
    kind = {str: "a string", bool: "a boolean", int: "a whole number", float: "a number", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)
    return f"{kind} ({text if len(text) <= 40 else text[:37] + '...'})"
