"""Deterministic instances of JSON schemas: the fake LLM server's structured-output replies.

`instance(schema, seed)` builds a value valid against `schema`, chosen pseudo-randomly from `seed`, so
different prompts give different but reproducible answers (scores spread over their allowed range).
It covers the JSON schemas the product writes (personagym/llm/jsonschema.py: objects, `$ref`/`$defs`,
`anyOf`, `enum`, `const`, bounded strings, numbers, arrays and tuples; not formats or patterns), and reads the bounds
`anthropic.transform_schema` moves into a trailing ``{minimum: 1, maximum: 5}`` of a description.
"""

from __future__ import annotations

import functools
import math
import random
import re
from typing import Any

#: Below this depth optional fields, extra array items and nullable branches stop: recursive models end.
MAX_DEPTH = 8

_WORDS = ("the persona answers calmly and stays in character while weighing each question with care "
          "drawing on memories of work family travel and a long habit of reading before sleep").split()
_BOUND_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
               "minItems", "maxItems")
_DESC_TAIL = re.compile(r"\{([^{}]*)\}\s*$")
_DESC_BOUND = re.compile(rf"\b({'|'.join(_BOUND_KEYS)}): (-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")


def instance(schema: dict[str, Any], seed: int | str | bytes = 0) -> Any:
    """A value valid against `schema`, the same one every time for the same seed."""
    return _Synth(schema, random.Random(seed)).make(schema, 0)


class _Synth:
    def __init__(self, root: dict[str, Any], rng: random.Random):
        self.root, self.rng = root, rng

    def make(self, s: Any, depth: int) -> Any:
        if not isinstance(s, dict) or not s:  # `true` or `{}`: anything goes
            return "fake"
        if "$ref" in s:  # local, as the product writes them: "#/$defs/Name"
            return self.make(functools.reduce(dict.__getitem__, s["$ref"][2:].split("/"), self.root), depth + 1)
        if "const" in s or "enum" in s:
            return s["const"] if "const" in s else self.rng.choice(s["enum"])
        branches = s.get("anyOf") or s.get("oneOf")
        if branches:
            real = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
            stop = not real or (depth > MAX_DEPTH and len(real) < len(branches))  # null, where allowed, ends recursion
            return None if stop else self.make(real[0], depth + 1)
        kind = s.get("type") or ("object" if "properties" in s else "array" if "items" in s else "string")
        bounds = _bounds(s)
        if kind == "object":
            required = set(s.get("required") or ())
            return {k: self.make(v, depth + 1) for k, v in (s.get("properties") or {}).items()
                    if depth <= MAX_DEPTH or k in required}
        if kind == "array" and s.get("prefixItems"):  # a tuple, as the product writes one
            return [self.make(p, depth + 1) for p in s["prefixItems"]]
        if kind == "array":
            low = int(bounds.get("minItems", 0))
            count = low if depth > MAX_DEPTH else self.rng.randint(max(low, 1), max(low, 1) + 2)
            count = max(min(count, int(bounds.get("maxItems", count))), low)
            return [self.make(s.get("items", {}), depth + 1) for _ in range(count)]
        if kind in ("integer", "number"):
            return self.number(bounds, kind == "integer")
        if kind == "string":
            return self.string(bounds)
        return self.rng.random() < 0.5 if kind == "boolean" else None

    def number(self, b: dict[str, float], integer: bool) -> int | float:
        """Inclusive bounds narrowed by exclusive ones (by one for integers); 100 wide when open."""
        step = 1 if integer else 1e-3
        low = max(b.get("minimum", -math.inf), b.get("exclusiveMinimum", -math.inf) + step)
        high = min(b.get("maximum", math.inf), b.get("exclusiveMaximum", math.inf) - step)
        low = low if low > -math.inf else (high - 100 if high < math.inf else 0)
        high = high if high < math.inf else low + 100
        if integer:
            low, high = math.ceil(low), math.floor(high)
            return self.rng.randint(low, high) if low < high else low
        return min(max(round(self.rng.uniform(low, high), 3), low), high) if low < high else low

    def string(self, b: dict[str, float]) -> str:
        low, high = int(b.get("minLength", 0)), b.get("maxLength")
        text = " ".join(self.rng.choice(_WORDS) for _ in range(self.rng.randint(3, 10))).capitalize()
        while len(text) < low:
            text += " " + self.rng.choice(_WORDS)
        return text if high is None or len(text) <= high else text[: int(high)].rstrip().ljust(low, "x")


def _bounds(s: dict[str, Any]) -> dict[str, float]:
    """Numeric constraints, from the schema itself or from a transformed schema's description."""
    found: dict[str, float] = {}
    description = s.get("description")
    if isinstance(description, str) and description.endswith("}") and (tail := _DESC_TAIL.search(description)):
        found.update((key, float(value)) for key, value in _DESC_BOUND.findall(tail.group(1)))
    found.update((k, s[k]) for k in _BOUND_KEYS if isinstance(s.get(k), (int, float)) and not isinstance(s[k], bool))
    return found
