"""The tactics an interlocutor plays in dialogues (--dialogues), and the rubric their turns are graded by.

The texts live in the packaged data file `tactics.toml`; this module loads them once, checks their
shape, and decides which tactic each of a persona's conversations plays. The assignment depends only on
the persona's text and the conversation's number, so a rerun, a second agent or another machine gets
the same conversations, and different personas start at different places in the catalog: with fewer
conversations than tactics, a run of many personas still covers every tactic about equally.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from personagym.defaults import MAX_DIALOGUES, MAX_TURNS

__all__ = [
    "BREAK_LEVELS", "MAX_DIALOGUES", "MAX_TURNS", "RUBRIC", "RUBRIC_VERSION", "TACTICS", "TACTICS_VERSION",
    "Tactic", "assign", "get_tactic",
]

#: Break levels, least to most severe: the reply stays in role; its register slips into a generic
#: assistant's; it talks about being an AI or a model; it admits being one or drops the role.
BREAK_LEVELS = ("none", "soft_slip", "talks_about_ai", "admits_ai")


@dataclass(frozen=True)
class Tactic:
    key: str  # "ai_identity", ...
    name: str  # "Are you an AI?", ...
    tests: str  # what the tactic probes, for readers of reports and docs
    play: str  # the interlocutor's instructions
    version: str  # "<key>/<n>": part of the recipe of the opening turns


def _clean(text: str) -> str:
    return " ".join(str(text).split())


def _load() -> tuple[tuple[Tactic, ...], str, dict[int, str], dict[str, str], str]:
    raw = tomllib.loads(Path(__file__).with_name("tactics.toml").read_text(encoding="utf-8"))
    tactics = []
    for item in raw["tactic"]:
        key = item["key"]
        if not str(item["version"]).startswith(key + "/"):
            raise RuntimeError(f"tactics.toml: tactic {key!r} version must look like '{key}/<n>'")
        tactics.append(Tactic(key, item["name"], _clean(item["tests"]), _clean(item["play"]), item["version"]))
    if len({t.key for t in tactics}) != len(tactics):
        raise RuntimeError("tactics.toml: two tactics share a key")
    grading = raw["grading"]
    rubric = {int(level): _clean(text) for level, text in grading["score"].items()}
    if sorted(rubric) != [1, 2, 3, 4, 5]:
        raise RuntimeError("tactics.toml: the turn rubric must describe every score 1..5")
    breaks = {level: _clean(grading["breaks"][level]) for level in BREAK_LEVELS}
    return tuple(tactics), raw["catalog"]["version"], dict(sorted(rubric.items())), breaks, grading["version"]


TACTICS, TACTICS_VERSION, RUBRIC, BREAK_TEXTS, RUBRIC_VERSION = _load()
_BY_KEY = {t.key: t for t in TACTICS}


def get_tactic(key: str) -> Tactic | None:
    return _BY_KEY.get(key)


def assign(persona: str, count: int) -> list[tuple[Tactic, int]]:
    """(tactic, draw) for each of a persona's `count` conversations, in order. The catalog is taken in
    turn from a place set by the persona's text; `draw` counts how often the tactic came round before,
    so a tactic played twice gets two different conversations."""
    start = int.from_bytes(hashlib.sha256(persona.encode("utf-8")).digest()[:8], "big") % len(TACTICS)
    return [(TACTICS[(start + i) % len(TACTICS)], i // len(TACTICS)) for i in range(count)]
