"""Replies the fake server gives every kind of PersonaGym call in the benchmarks: valid, of a
realistic length, and varied by a hash of the request so judges do not all agree.

    python -m personagym.testing.fake_server --latency 0.5 --responder bench.responder:respond
"""

from __future__ import annotations

import hashlib

_ANSWER = (
    "Speaking as myself, I would take a moment to think about what matters here. Given my background, "
    "I would start with what I know best, ask a question or two, and then act on it carefully. "
)


def _digest(body: dict) -> int:
    last = str(body.get("messages", [{}])[-1].get("content", ""))
    return int.from_bytes(hashlib.blake2b(f"{body.get('model')}|{last}".encode(), digest_size=4).digest(), "big")


_KINDS = {"environments": "EnvironmentChoice", "questions": "Questions", "score_1": "ScoreExamples",
          "examples": "ScoreExampleBatch", "verdicts": "Verdicts"}


def _examples() -> dict[str, str]:
    return {f"score_{k}": f"An answer that would earn a {k}: " + _ANSWER[: 40 * k] for k in range(1, 6)}


def respond(api: str, body: dict):
    fmt = body.get("response_format") or (body.get("output_config") or {}).get("format") or {}
    spec = fmt.get("json_schema") or {}
    schema = spec.get("schema") or fmt.get("schema") or {}
    props = schema.get("properties", {})
    # Anthropic's structured output names no schema: tell the kinds apart by their fields.
    name = spec.get("name") or next((kind for field, kind in _KINDS.items() if field in props), None)
    sizes = {key: len([d for d in schema.get("$defs", {}) if d.startswith(key)]) for key in ("ExampleSet", "Verdict")}
    if name == "EnvironmentChoice":
        return {"environments": props["environments"]["items"]["enum"][:5]}
    if name == "Questions":
        n = props["questions"]["minItems"]
        return {"questions": [f"Question {i + 1}: what would you do, and why?" for i in range(n)]}
    if name == "ScoreExamples":
        return _examples()
    if name == "ScoreExampleBatch":
        k = props["examples"].get("minItems") or sizes["ExampleSet"]
        return {"examples": [{"index": i, **_examples()} for i in range(1, k + 1)]}
    if name == "Verdicts":
        k = props["verdicts"].get("minItems") or sizes["Verdict"]
        seed = _digest(body)
        return {
            "verdicts": [
                {"index": i, "reasoning": "The answer keeps the persona's voice and acts as it would.",
                 "score": 1 + (seed >> i) % 5}
                for i in range(1, k + 1)
            ]
        }
    if name is None:
        return _ANSWER * 2
    raise ValueError(f"no scripted reply for schema {name}")
