"""The JSON schema of every reply type the product sends, byte for byte as pinned.

The schema text is part of every structured call's cache key, and it is what servers and constrained
decoders are sent. tests/reply_schemas.json holds what pydantic v2 wrote for these types, captured
before personagym moved to msgspec: a change to a reply type or to personagym/llm/jsonschema.py that
changes one byte here orphans every cached reply of that type, so it must be deliberate (and bump the
type's name or the cache's KEY_VERSION).
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from personagym.llm.check import Pong
from personagym.llm.jsonschema import json_schema
from personagym.method import schemas
from personagym.method.audit_prompts import choice_schema as persona_choice
from personagym.method.dialogues import TurnVerdict, UserTurn
from personagym.pipeline.environments import choice_schema as environment_choice
from personagym.pipeline.judging import verdicts_schema
from personagym.pipeline.questions import questions_schema

PINNED = json.loads((Path(__file__).parent / "reply_schemas.json").read_text(encoding="utf-8"))


def reply_types() -> dict[str, type]:
    types: dict[str, type] = {"Pong": Pong}
    for t in (schemas.EnvironmentChoice, schemas.Questions, schemas.ScoreExamples, schemas.ExampleSet,
              schemas.ScoreExampleBatch, schemas.Verdict, schemas.Verdicts, UserTurn, TurnVerdict):
        types[t.__name__] = t
    types["env_choice(3 names,2)"] = environment_choice(("Café", 'Park "x"', "Library"), 2)
    types |= {f"questions_schema({n})": questions_schema(n) for n in (1, 3, 10, 20)}
    types |= {f"score_example_batch({k})": schemas.score_example_batch(k) for k in (1, 2, 5, 20)}
    types |= {f"verdicts_schema({k})": verdicts_schema(k) for k in (1, 2, 5, 20)}
    types |= {f"persona_choice({k})": persona_choice(k) for k in (2, 5)}
    return types


@pytest.mark.parametrize("name", list(PINNED))
def test_every_reply_schema_is_written_as_pinned(name):
    reply_type = reply_types()[name]
    assert reply_type.__name__ == PINNED[name]["name"]
    # Compared as text, not as dicts: the order of keys is what a server is sent.
    assert json.dumps(json_schema(reply_type)) == json.dumps(PINNED[name]["schema"])


def test_every_pinned_type_is_checked():
    assert set(reply_types()) == set(PINNED)


def test_a_type_the_writer_does_not_know_is_refused_at_first_use():
    Odd = msgspec.defstruct("Odd", [("when", float)])
    with pytest.raises(TypeError, match="no JSON schema"):
        json_schema(Odd)


def test_questions_must_be_exactly_n_and_distinct():
    """The rule a written question set is held to (pipeline/questions.py): a repeat, even in other
    case or spacing, or a count other than n, makes the reply invalid, so it is asked again."""
    from personagym.llm.reading import parse_structured

    three = questions_schema(3)
    assert parse_structured(three, '{"questions": ["A?", "B?", "C?"]}').questions == ["A?", "B?", "C?"]
    for bad in ('{"questions": ["Where now?", "B?", "where  NOW?"]}', '{"questions": ["A?", "B?"]}',
                '{"questions": ["A?", "B?", "C?", "D?"]}'):
        with pytest.raises(msgspec.ValidationError):
            parse_structured(three, bad)
