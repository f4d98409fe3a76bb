"""Pydantic models for the structured replies of the evaluator LLM calls.

Every string and list is bounded. A small local model that decodes under a grammar built from these
schemas cannot then run on forever, and a provider that ignores the bounds still has its reply
checked against them by the gateway. The models stay plain (no optional fields, no unions) so that
every provider's structured-output mode accepts them.

Validation is strict: a score of `true`, `"5"` or `4.0` is not a score, it is an invalid reply
(asked again, then a recorded failure), where pydantic's default lax mode would read 1, 5 and 4.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "EnvironmentChoice",
    "Questions",
    "ScoreExamples",
    "Verdict",
    "Verdicts",
    "MAX_ENVIRONMENTS",
    "MAX_QUESTIONS",
    "MAX_BATCH",
]

#: Most settings one environment-selection call may return.
MAX_ENVIRONMENTS = 10
#: Most questions one question-writing call may return (PersonaGym asks for 10 per task).
MAX_QUESTIONS = 20
#: Most question/answer pairs one judge call may grade (PersonaGym grades 5 at a time).
MAX_BATCH = 20

EnvironmentName = Annotated[str, Field(min_length=1, max_length=80)]
QuestionText = Annotated[str, Field(min_length=1, max_length=400)]
ExampleText = Annotated[str, Field(max_length=600)]


class Reply(BaseModel):
    """What every structured reply shares: strict types."""

    model_config = ConfigDict(strict=True)


class EnvironmentChoice(Reply):
    """Settings picked for a persona, each an exact name from the catalog."""

    environments: list[EnvironmentName] = Field(min_length=1, max_length=MAX_ENVIRONMENTS)


class Questions(Reply):
    """Questions written for one persona and one task."""

    questions: list[QuestionText] = Field(min_length=1, max_length=MAX_QUESTIONS)


class ScoreExamples(Reply):
    """One example answer per rubric level, written as the persona answering one question."""

    score_1: ExampleText
    score_2: ExampleText
    score_3: ExampleText
    score_4: ExampleText
    score_5: ExampleText

    def by_level(self) -> dict[int, str]:
        """The examples keyed by rubric level, as `prompts.judging` takes them."""
        return {1: self.score_1, 2: self.score_2, 3: self.score_3, 4: self.score_4, 5: self.score_5}


class Verdict(Reply):
    """A judge's grade for one numbered item: reasoning first, so the score follows from it."""

    index: int = Field(ge=1, le=MAX_BATCH)
    reasoning: str = Field(max_length=800)
    score: int = Field(ge=1, le=5)


class Verdicts(Reply):
    """A judge's grades for every item of one call, one verdict per item."""

    verdicts: list[Verdict] = Field(min_length=1, max_length=MAX_BATCH)
