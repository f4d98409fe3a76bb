"""The structured replies of the evaluator LLM calls, as msgspec Structs.

Every string and list is bounded. A small local model that decodes under a grammar built from these
schemas cannot then run on forever, and a provider that ignores the bounds still has its reply
checked against them by the gateway. The types stay plain (no optional fields, no unions) so that
every provider's structured-output mode accepts them; their JSON schema is personagym/llm/jsonschema.py's.

Validation is strict, msgspec's only mode: a score of `true`, `"5"` or `4.0` is not a score, it is an
invalid reply (asked again, then a recorded failure). msgspec rather than pydantic: importing pydantic
and building these types cost about 0.2 s of CPU at every start (bench/RESULTS.md, "Fifth session").
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

__all__ = [
    "EnvironmentChoice",
    "Questions",
    "ScoreExamples",
    "ScoreExampleBatch",
    "ExampleSet",
    "score_example_batch",
    "numbered",
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

EnvironmentName = Annotated[str, Meta(min_length=1, max_length=80)]
QuestionText = Annotated[str, Meta(min_length=1, max_length=400)]
ExampleText = Annotated[str, Meta(max_length=600)]
Index = Annotated[int, Meta(ge=1, le=MAX_BATCH)]
Score = Annotated[int, Meta(ge=1, le=5)]


class Reply(Struct):
    """What every structured reply shares: strict types."""


class EnvironmentChoice(Reply):
    """Settings picked for a persona, each an exact name from the catalog."""

    environments: Annotated[list[EnvironmentName], Meta(min_length=1, max_length=MAX_ENVIRONMENTS)]


class Questions(Reply):
    """Questions written for one persona and one task."""

    questions: Annotated[list[QuestionText], Meta(min_length=1, max_length=MAX_QUESTIONS)]


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

    index: Index
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

    examples: Annotated[list[Any], Meta(min_length=1, max_length=MAX_BATCH)]

    def valid_sets(self, k: int) -> dict[int, ExampleSet]:
        """The valid sets for questions 1..k by number; the first of two with one number wins."""
        found: dict[int, ExampleSet] = {}
        for item in self.examples:
            try:
                one = msgspec.convert(item, ExampleSet)
            except msgspec.ValidationError:
                continue
            if one.index <= k:
                found.setdefault(one.index, one)
        return found


@functools.lru_cache(maxsize=MAX_BATCH)
def score_example_batch(k: int) -> type[ScoreExampleBatch]:
    """The batch schema for k questions. Its JSON schema, which servers and constrained decoders
    see, asks for exactly k sets, set i with index i (prefixItems with a const index); the gateway
    checks only the outer shape, and `valid_sets` each set."""
    sets = tuple(numbered(ExampleSet, f"ExampleSet{i}", i) for i in range(1, k + 1))
    strict = msgspec.defstruct("ScoreExampleBatch", [("examples", tuple[sets])], bases=(Reply,))  # type: ignore[valid-type]
    return msgspec.defstruct("ScoreExampleBatch", [], bases=(ScoreExampleBatch,), namespace={"__advertised__": strict})


def numbered(base: type[Struct], name: str, i: int) -> type[Struct]:
    """`base` whose index must be i (a const in its JSON schema), other fields as they are."""
    return msgspec.defstruct(name, [("index", Literal[i])], bases=(base,))


class Verdict(Reply):
    """A judge's grade for one numbered item: reasoning first, so the score follows from it."""

    index: Index
    reasoning: Annotated[str, Meta(max_length=800)]
    score: Score


class Verdicts(Reply):
    """A judge's grades for every item of one call, one verdict per item."""

    verdicts: Annotated[list[Verdict], Meta(min_length=1, max_length=MAX_BATCH)]
