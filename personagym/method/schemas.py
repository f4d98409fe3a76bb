"""Pydantic models for the structured replies of the evaluator LLM calls.

Every string and list is bounded. A small local model that decodes under a grammar built from these
schemas cannot then run on forever, and a provider that ignores the bounds still has its reply
checked against them by the gateway. The models stay plain (no optional fields, no unions) so that
every provider's structured-output mode accepts them.

Validation is strict: a score of `true`, `"5"` or `4.0` is not a score, it is an invalid reply
(asked again, then a recorded failure), where pydantic's default lax mode would read 1, 5 and 4.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

__all__ = [
    "EnvironmentChoice",
    "Questions",
    "ScoreExamples",
    "ScoreExampleBatch",
    "ExampleSet",
    "score_example_batch",
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


class ExampleSet(Reply):
    """The score examples of one question in a batch: its number, then one example per level."""

    index: int = Field(ge=1, le=MAX_BATCH)
    score_1: ExampleText
    score_2: ExampleText
    score_3: ExampleText
    score_4: ExampleText
    score_5: ExampleText

    def by_level(self) -> dict[int, str]:
        return {1: self.score_1, 2: self.score_2, 3: self.score_3, 4: self.score_4, 5: self.score_5}


class ScoreExampleBatch(Reply):
    """Score examples for several questions of one task in one reply, a set per question.

    Accepted as a whole when it is a list of at most MAX_BATCH things; each set is then checked on
    its own (`valid_sets`), so one bad set is asked again alone instead of the whole batch. What a
    server is sent is stricter: see `score_example_batch`.
    """

    examples: list[Any] = Field(min_length=1, max_length=MAX_BATCH)

    def valid_sets(self, k: int) -> dict[int, ExampleSet]:
        """The valid sets for questions 1..k by number; the first of two with one number wins."""
        found: dict[int, ExampleSet] = {}
        for item in self.examples:
            try:
                one = ExampleSet.model_validate(item)
            except ValidationError:
                continue
            if one.index <= k:
                found.setdefault(one.index, one)
        return found


@functools.lru_cache(maxsize=MAX_BATCH)
def score_example_batch(k: int) -> type[ScoreExampleBatch]:
    """The batch schema for k questions. Its JSON schema, which servers and constrained decoders
    see, asks for exactly k sets, set i with index i (prefixItems with a const index); the gateway
    checks only the outer shape, and `valid_sets` each set."""
    sets = tuple(create_model(f"ExampleSet{i}", __base__=ExampleSet, index=(Literal[i], ...)) for i in range(1, k + 1))
    strict = create_model("ScoreExampleBatch", __base__=Reply, examples=(tuple[sets], ...))  # type: ignore[valid-type]

    class Batch(ScoreExampleBatch):
        @classmethod
        def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
            return strict.model_json_schema(*args, **kwargs)

    Batch.__name__ = Batch.__qualname__ = "ScoreExampleBatch"
    return Batch


class Verdict(Reply):
    """A judge's grade for one numbered item: reasoning first, so the score follows from it."""

    index: int = Field(ge=1, le=MAX_BATCH)
    reasoning: str = Field(max_length=800)
    score: int = Field(ge=1, le=5)


class Verdicts(Reply):
    """A judge's grades for every item of one call, one verdict per item."""

    verdicts: list[Verdict] = Field(min_length=1, max_length=MAX_BATCH)
