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


def respond(api: str, body: dict):
    spec = (body.get("response_format") or {}).get("json_schema") or {}
    name, schema = spec.get("name"), spec.get("schema") or {}
    props = schema.get("properties", {})
    if name == "EnvironmentChoice":
        return {"environments": props["environments"]["items"]["enum"][:5]}
    if name == "Questions":
        n = props["questions"]["minItems"]
        return {"questions": [f"Question {i + 1}: what would you do, and why?" for i in range(n)]}
    if name == "ScoreExamples":
        return {f"score_{k}": f"An answer that would earn a {k}: " + _ANSWER[: 40 * k] for k in range(1, 6)}
    if name == "Verdicts":
        k = props["verdicts"]["minItems"]
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
