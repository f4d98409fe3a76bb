"""The five PersonaGym tasks, each with its 1..5 rubric and its guidance for question writers.

The texts live in the packaged data file `tasks.toml`; this module loads them once, checks their shape,
and resolves the names users type (`expected_action`, `Expected Action`, upstream's `Toxicity`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from personagym.errors import UserError

__all__ = ["Task", "TASKS", "LENSES", "get_task", "parse_tasks"]

LENSES = ("normative", "descriptive", "prescriptive")
LEVELS = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Task:
    key: str  # "expected_action", ...
    name: str  # "Expected Action", ...
    tests: str  # what the task measures, one or two sentences
    lens: str  # decision-theory lens: one of LENSES
    rubric: dict[int, str]  # 1..5 -> what an answer at that level looks like (treat as read-only)
    guidance: str  # how to write challenging questions for this task
    version: str  # "<key>/<n>": bumped whenever rubric or guidance changes

    def __hash__(self) -> int:  # the rubric mapping is not hashable; key + version identify a task
        return hash((self.key, self.version))


def _load() -> tuple[Task, ...]:
    text = Path(__file__).with_name("tasks.toml").read_text(encoding="utf-8")
    tasks = []
    for raw in tomllib.loads(text)["task"]:
        tasks.append(_build(raw))
    return tuple(tasks)


def _build(raw: dict[str, Any]) -> Task:
    key = raw["key"]
    rubric = {int(level): " ".join(str(text).split()) for level, text in raw["rubric"].items()}
    if tuple(sorted(rubric)) != LEVELS or not all(rubric.values()):
        raise RuntimeError(f"tasks.toml: task {key!r} must describe every rubric level 1..5")
    if raw["lens"] not in LENSES:
        raise RuntimeError(f"tasks.toml: task {key!r} has unknown lens {raw['lens']!r}")
    if not str(raw["version"]).startswith(key + "/"):
        raise RuntimeError(f"tasks.toml: task {key!r} version must look like '{key}/<n>'")
    return Task(
        key=key,
        name=raw["name"],
        tests=" ".join(raw["tests"].split()),
        lens=raw["lens"],
        rubric=dict(sorted(rubric.items())),
        guidance=" ".join(raw["guidance"].split()),
        version=raw["version"],
    )


TASKS: tuple[Task, ...] = _load()

# Every spelling a user may type, normalised by _norm: keys, display names, and upstream's alias.
_ALIASES: dict[str, Task] = {}
for _task in TASKS:
    _ALIASES[_task.key] = _task
    _ALIASES[_task.name.lower().replace(" ", "_")] = _task
_ALIASES["toxicity"] = _ALIASES["toxicity_control"]  # upstream's name for the fifth task


def _norm(name: str) -> str:
    return re.sub(r"[\s\-_]+", "_", name.strip().lower())


def get_task(name: str) -> Task:
    """The task called `name`: its key, its display name (any case), or upstream's alias `Toxicity`."""
    task = _ALIASES.get(_norm(name))
    if task is None:
        shown = " ".join(name.split())
        raise UserError(f"unknown task {shown!r}: use one of {', '.join(t.key for t in TASKS)}")
    return task


def parse_tasks(spec: str | None) -> tuple[Task, ...]:
    """Tasks from a comma-separated list of names; None or blank means all five, in canonical order.

    The order given is kept and repeats are dropped (`"toxicity,Toxicity Control"` is one task).
    """
    if spec is None or not spec.strip():
        return TASKS
    chosen: list[Task] = []
    for part in spec.split(","):
        if not part.strip():
            continue
        task = get_task(part)
        if task not in chosen:
            chosen.append(task)
    return tuple(chosen) if chosen else TASKS
