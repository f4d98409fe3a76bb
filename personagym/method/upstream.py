"""Grading as upstream PersonaGym grades (`--rubrics upstream`): its files, filled in and read back.

Upstream's rubric and grading-prompt files (github.com/vsamuel2003/PersonaGym, MIT) are not in this
package: `personagym benchmark download` fetches them at the pinned commit, and every file is checked
against the sha256 sums the package does ship (`upstream_method.sha256`) before it is used. This module
reads such a copy, fills a rubric's `str.format` placeholders for each graded item, pastes up to five
filled rubrics into upstream's grading prompt, and reads each item's score from upstream's closing
sentence "Therefore, the final score is N".

Where upstream's code went wrong, this does what upstream meant (docs/upstream-rubrics.md):
- the score examples are filled in whole, all five levels (upstream passed one character of them);
- the filled rubrics are pasted as numbered text, not as the repr of a Python list;
- a verdict whose score is missing, outside 1..5 or not a whole number makes the reply invalid, to be
  asked again and then recorded as a failure (upstream scored it 0 and left it out of the mean).
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar, Mapping, NamedTuple, Sequence

from personagym.errors import UserError
from personagym.method.prompts import Messages

__all__ = [
    "METHOD_DIR",
    "RUBRIC_FILES",
    "UpstreamMethod",
    "UpstreamVerdict",
    "VerdictParser",
    "load_method",
    "method_sums",
    "parse_verdicts",
    "score_examples_text",
]

METHOD_DIR = "upstream-method"  # beside the benchmark's files in a downloaded copy
_SUMS_RESOURCE = "upstream_method.sha256"
# Upstream's file per task, by this project's task names (upstream calls the fifth task "Toxicity").
RUBRIC_FILES = {
    "Expected Action": "rubrics/Expected Action.txt",
    "Action Justification": "rubrics/Action Justification.txt",
    "Linguistic Habits": "rubrics/Linguistic Habits.txt",
    "Persona Consistency": "rubrics/Persona Consistency.txt",
    "Toxicity Control": "rubrics/Toxicity.txt",
}
GRADING_PROMPT = "prompts/rubric_grading/prompt.txt"
GRADING_SYSTEM = "prompts/rubric_grading/sys_prompt.txt"
_RUBRIC_FIELDS = {"persona", "question", "response", "score_example"}
_LEVELS = (1, 2, 3, 4, 5)
_FIX = "run `personagym benchmark download`, or pass --rubrics-dir with a copy of upstream's method files"


@lru_cache(maxsize=1)
def method_sums() -> dict[str, str]:
    """The packaged sha256 of each of upstream's method files, by path relative to the method folder."""
    text = Path(__file__).parent.parent.joinpath(_SUMS_RESOURCE).read_text(encoding="utf-8")
    sums = {}
    for line in text.splitlines():
        if line.strip():
            digest, rel = line.split("  ", 1)
            sums[rel.removeprefix("./")] = digest.lower()
    return sums


# -- loading ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpstreamMethod:
    """Upstream's grading files, verified: a rubric template per task, the grading prompt and its system prompt."""

    rubrics: Mapping[str, str]  # task name (ours) -> template with {persona} {question} {response} {score_example}
    prompt: str  # with {rubrics}
    system: str

    def messages(self, persona: str, task: str, items: Sequence[tuple[str, str, Mapping[int, str]]]) -> Messages:
        """One judge call as upstream makes it: its system prompt, and its grading prompt holding the task's
        rubric filled in for each (question, answer, score examples), numbered in item order."""
        if not 1 <= len(items) <= 5:
            raise ValueError(f"upstream's grading prompt holds 1 to 5 items, not {len(items)}")
        template = self.rubrics[task]
        filled = [
            template.format(
                persona=persona, question=question, response=answer, score_example=score_examples_text(examples)
            )
            for question, answer, examples in items
        ]
        rubrics = "\n\n".join(f"Rubric ({i}):\n{text.strip()}" for i, text in enumerate(filled, start=1))
        return [("system", self.system), ("user", self.prompt.format(rubrics=rubrics))]


def load_method(directory: str | Path) -> UpstreamMethod:
    """Read upstream's grading files from `directory`, each verified against its packaged sum."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise UserError(f"upstream's method files are not in {_flat(root)}: {_FIX}")
    rubrics = {task: _read(root, rel) for task, rel in RUBRIC_FILES.items()}
    method = UpstreamMethod(rubrics, _read(root, GRADING_PROMPT), _read(root, GRADING_SYSTEM))
    # The sums fix the text, so these hold for every copy that loads: they guard this module's assumptions.
    for task, template in rubrics.items():
        _check_fields(template, _RUBRIC_FIELDS, RUBRIC_FILES[task])
    _check_fields(method.prompt, {"rubrics"}, GRADING_PROMPT)
    return method


def _read(root: Path, rel: str) -> str:
    path = root / rel
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"upstream's method file {_flat(path)} is missing: {_FIX}") from None
    except OSError as exc:
        raise UserError(f"cannot read upstream's method file {_flat(path)} ({_flat(exc)}): check its permissions") from None
    if hashlib.sha256(data).hexdigest() != method_sums()[rel]:
        raise UserError(f"upstream's method file {_flat(path)} is corrupt or modified (sha256 mismatch): delete it and {_FIX}")
    return data.decode("utf-8")


def _check_fields(template: str, expected: set[str], rel: str) -> None:
    found = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    if found != expected:
        raise RuntimeError(f"{rel} has placeholders {sorted(found)}, expected {sorted(expected)}")


def _flat(value: object) -> str:
    return " ".join(str(value).splitlines())


# -- rendering -------------------------------------------------------------------------------------


def score_examples_text(examples: Mapping[int, str]) -> str:
    """All five score examples, one paragraph per level, in the shape upstream's example writer is asked
    for ("Score N:  Response - ..."), for a rubric's {score_example}."""
    if tuple(sorted(examples)) != _LEVELS:
        raise ValueError(f"score examples must cover levels 1 to 5, not {sorted(examples)}")
    return "\n\n".join(f"Score {level}: Response - {examples[level].strip()}" for level in _LEVELS)


# -- parsing ---------------------------------------------------------------------------------------


class UpstreamVerdict(NamedTuple):
    index: int  # 1-based place of the item in the judge call
    score: int  # 1..5
    evaluation: str  # the judge's whole "(i) Evaluation:" section, stored as its reasoning


_SECTION = re.compile(r"\((\d+)\)\s*Evaluation\s*:", re.IGNORECASE)
_FINAL = re.compile(r"Therefore,?\s+the\s+final\s+score\s+is\b", re.IGNORECASE)
# What may stand between the sentence and its number: a colon, Markdown emphasis, a quote or bracket.
_NUMBER = re.compile(r"\s*:?\s*[*_\"'`\[(]*\s*(-?\d+(?:\.\d+)?)")


def parse_verdicts(text: str, count: int) -> tuple[UpstreamVerdict, ...]:
    """The verdicts of `count` items from a judge's reply, in item order; ValueError for a reply that is
    not usable, naming the item.

    The rules, decided where upstream's code left them open:
    - item i is the text from the marker "(i) Evaluation:" to the next marker; every item needs exactly
      one such section; sections numbered past `count` are ignored (upstream's format always lists five);
    - the score is the number after the section's last "Therefore, the final score is" (upstream's
      rubric asks for it in the final sentence, so a judge that quotes the answer or corrects itself is
      read by its conclusion; upstream's code took the first);
    - it must be a whole number from 1 to 5: "4.5" or "4.0", 0, 7, or no number at all is invalid;
      Markdown emphasis round it and a "/5" or "out of 5" after it are fine.
    """
    markers = list(_SECTION.finditer(text))
    sections: dict[int, list[str]] = {}
    for k, marker in enumerate(markers):
        end = markers[k + 1].start() if k + 1 < len(markers) else len(text)
        sections.setdefault(int(marker.group(1)), []).append(text[marker.end() : end])
    verdicts = []
    for index in range(1, count + 1):
        found = sections.get(index, [])
        if len(found) != 1:
            problem = "no" if not found else f"{len(found)}"
            raise ValueError(f"item {index} has {problem} '({index}) Evaluation:' sections; each item needs one")
        evaluation = found[0].strip().lstrip("*").strip()
        verdicts.append(UpstreamVerdict(index, _final_score(evaluation, index), evaluation))
    return tuple(verdicts)


def _final_score(evaluation: str, index: int) -> int:
    sentences = list(_FINAL.finditer(evaluation))
    if not sentences:
        raise ValueError(f"item {index} has no closing 'Therefore, the final score is N' sentence")
    number = _NUMBER.match(evaluation, sentences[-1].end())
    value = number.group(1) if number else None
    if value is None or "." in value or not 1 <= int(value) <= 5:
        raise ValueError(f"item {index}'s final score is {_shown(value, evaluation, sentences[-1].end())}, not a whole number from 1 to 5")
    return int(value)


def _shown(value: str | None, text: str, at: int) -> str:
    return repr(value) if value is not None else repr(" ".join(text[at : at + 20].split()) or "missing")


@dataclass(frozen=True)
class VerdictParser:
    """The gateway's parser for one upstream judge call of `count` items (see `llm.types.Request.parser`):
    a ValueError makes the reply invalid, so it is asked again and, if never valid, recorded as a failure."""

    count: int
    version: ClassVar[str] = "upstream-final-score/1"  # in the cache key: bump it when the rules change

    def __call__(self, text: str) -> tuple[UpstreamVerdict, ...]:
        return parse_verdicts(text, self.count)
