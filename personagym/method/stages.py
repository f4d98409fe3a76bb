"""The stages of an evaluation, in the order they run for each persona.

One enum names them everywhere: the progress line, the failures in the store and the export, and
the `--dry-run` plan. Values are the words stored in databases, so they never change.
"""

from __future__ import annotations

import enum


class Stage(str, enum.Enum):
    ENVIRONMENTS = "environments"  # stage 1: settings chosen from the catalog (dynamic mode)
    QUESTIONS = "questions"  # stage 2: questions written per task (dynamic mode)
    ANSWERS = "answers"  # stage 3: the agent under test answers
    EXAMPLES = "examples"  # stage 4: example answers per rubric level, to anchor the judges
    VERDICTS = "verdicts"  # stage 5: the judges grade
    DIALOGUES = "dialogues"  # optional (--dialogues): conversations, each turn graded by the judges

    def __str__(self) -> str:
        return self.value


STAGES = tuple(Stage)
