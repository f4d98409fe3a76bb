"""Deterministic instances of JSON schemas: the fake LLM server's structured-output replies.

`instance(schema, seed)` builds a value that validates against `schema`, chosen pseudo-randomly from
`seed`, so different prompts give different (but reproducible) answers, e.g. scores spread over their
whole allowed range. It covers what pydantic v2's `model_json_schema()` emits: objects with
properties and required keys, `$ref` into `$defs`, `anyOf`/`oneOf` (first non-null branch), `allOf`,
`enum`, `const`, strings with length bounds and common formats, integers and numbers with inclusive
or exclusive bounds and `multipleOf`, booleans, null, arrays with `items`/`prefixItems` and item
counts, and dicts (`additionalProperties`). It also reads the bounds that `anthropic.transform_schema`
moves out of the schema into a trailing `{minimum: 1, maximum: 5}` in the description, so a reply to
an Anthropic request still respects them. Regex `pattern`s are not honoured.
"""

from __future__ import annotations

import math
import random
import re
import uuid
from typing import Any

__all__ = ["instance"]

#: Below this depth recursion stops expanding: optional fields are left out, arrays get minItems
#: entries and nullable branches become null, so self-referencing models terminate.
MAX_DEPTH = 8

_WORDS = (
    "the persona answers calmly and stays in character while weighing each question with care "
    "drawing on memories of work family travel and a long habit of reading before sleep"
).split()
_BOUND_KEYS = "minimum|maximum|exclusiveMinimum|exclusiveMaximum|minLength|maxLength|minItems|maxItems|multipleOf"
_BOUND_SET = frozenset(_BOUND_KEYS.split("|"))
_DESC_TAIL = re.compile(r"\{([^{}]*)\}\s*$")
_DESC_BOUND = re.compile(rf"\b({_BOUND_KEYS}): (-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")

_FORMATS = {
    "date-time": lambda n: f"2024-{n % 12 + 1:02d}-{n % 28 + 1:02d}T{n % 24:02d}:{n % 60:02d}:00Z",
    "date": lambda n: f"2024-{n % 12 + 1:02d}-{n % 28 + 1:02d}",
    "time": lambda n: f"{n % 24:02d}:{n % 60:02d}:00",
    "duration": lambda n: f"PT{n}S",
    "email": lambda n: f"user{n}@example.com",
    "uri": lambda n: f"https://example.com/item/{n}",
    "hostname": lambda n: f"host{n}.example.com",
    "ipv4": lambda n: f"10.{n % 250}.{n % 7}.{n % 200 + 1}",
    "ipv6": lambda n: f"fd00::{n:x}",
    "uuid": None,  # drawn from 128 random bits instead
}


def instance(schema: dict[str, Any], seed: int | str | bytes = 0) -> Any:
    """A value valid against `schema`, the same one every time for the same seed."""
    return _Synth(schema, random.Random(seed)).make(schema, 0)


class _Synth:
    def __init__(self, root: dict[str, Any], rng: random.Random):
        self.root = root
        self.rng = rng

    def resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise ValueError(f"only local $refs are supported, not {ref!r}")
        node: Any = self.root
        for part in ref[1:].split("/"):
            if part:
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def make(self, s: Any, depth: int) -> Any:
        if not isinstance(s, dict) or not s:  # `true` or `{}`: anything goes
            return "fake"
        if "$ref" in s:
            return self.make(self.resolve(s["$ref"]), depth + 1)
        if "const" in s:
            return s["const"]
        if "enum" in s:
            return self.rng.choice(s["enum"])
        branches = s.get("anyOf") or s.get("oneOf")
        if branches:
            real = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
            if not real or (depth > MAX_DEPTH and len(real) < len(branches)):
                return None
            return self.make(real[0], depth + 1)
        if s.get("allOf"):
            return self.make(self.merge(s), depth + 1)
        kind = s.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in s else "array" if "items" in s else "string"
        b = self.bounds(s)
        if kind == "object":
            return self.object(s, b, depth)
        if kind == "array":
            return self.array(s, b, depth)
        if kind == "integer":
            return self.integer(b)
        if kind == "number":
            return self.number(b)
        if kind == "string":
            return self.string(s, b)
        if kind == "boolean":
            return self.rng.random() < 0.5
        return None

    def merge(self, s: dict[str, Any]) -> dict[str, Any]:
        """allOf as one schema: later parts add properties and required keys to earlier ones."""
        merged: dict[str, Any] = {k: v for k, v in s.items() if k != "allOf"}
        for part in s["allOf"]:
            while isinstance(part, dict) and "$ref" in part:
                part = self.resolve(part["$ref"])
            if not isinstance(part, dict):
                continue
            props = {**merged.get("properties", {}), **part.get("properties", {})}
            required = list(dict.fromkeys(merged.get("required", []) + part.get("required", [])))
            merged.update(part)
            if props:
                merged["properties"] = props
            if required:
                merged["required"] = required
        return merged

    @staticmethod
    def bounds(s: dict[str, Any]) -> dict[str, float]:
        """Numeric constraints, from the schema itself or from a transformed schema's description."""
        found: dict[str, float] = {}
        description = s.get("description")
        if isinstance(description, str) and description.endswith("}"):
            tail = _DESC_TAIL.search(description)
            if tail:
                for key, value in _DESC_BOUND.findall(tail.group(1)):
                    found[key] = float(value)
        for key in _BOUND_SET.intersection(s):
            value = s[key]
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                found[key] = value
        return found

    def object(self, s: dict[str, Any], b: dict[str, float], depth: int) -> dict[str, Any]:
        props: dict[str, Any] = s.get("properties") or {}
        required = set(s.get("required") or ())
        out = {k: self.make(v, depth + 1) for k, v in props.items() if depth <= MAX_DEPTH or k in required}
        extra = s.get("additionalProperties")
        if not props and isinstance(extra, dict):  # dict[str, X]
            count = int(s.get("minProperties", 0)) if depth > MAX_DEPTH else max(1, int(s.get("minProperties", 0)))
            for i in range(count):
                out[f"key{i}"] = self.make(extra, depth + 1)
        return out

    def array(self, s: dict[str, Any], b: dict[str, float], depth: int) -> list[Any]:
        prefix = s.get("prefixItems")
        if prefix:  # a tuple
            return [self.make(p, depth + 1) for p in prefix]
        low = int(b.get("minItems", 0))
        high = int(b["maxItems"]) if "maxItems" in b else None
        if depth > MAX_DEPTH:
            count = low
        else:
            start = max(low, 1)
            count = self.rng.randint(start, start + 2)
            if high is not None:
                count = max(min(count, high), low)
        items = s.get("items", {})
        if not s.get("uniqueItems"):
            return [self.make(items, depth + 1) for _ in range(count)]
        out: list[Any] = []
        seen: set[str] = set()
        for _ in range(count * 10):
            if len(out) >= count:
                break
            value = self.make(items, depth + 1)
            if repr(value) not in seen:
                seen.add(repr(value))
                out.append(value)
        return out

    def integer(self, b: dict[str, float]) -> int:
        low = math.ceil(b["minimum"]) if "minimum" in b else None
        high = math.floor(b["maximum"]) if "maximum" in b else None
        if "exclusiveMinimum" in b:
            edge = math.floor(b["exclusiveMinimum"]) + 1
            low = edge if low is None else max(low, edge)
        if "exclusiveMaximum" in b:
            edge = math.ceil(b["exclusiveMaximum"]) - 1
            high = edge if high is None else min(high, edge)
        if low is None and high is None:
            low, high = 0, 100
        elif low is None:
            low = high - 100
        elif high is None:
            high = low + 100
        if low >= high:
            return low
        step = b.get("multipleOf")
        if step and float(step).is_integer() and step > 0:
            step = int(step)
            first, last = -(-low // step), high // step
            if first <= last:
                return self.rng.randint(first, last) * step
        return self.rng.randint(low, high)

    def number(self, b: dict[str, float]) -> float:
        low = b.get("minimum", b.get("exclusiveMinimum"))
        high = b.get("maximum", b.get("exclusiveMaximum"))
        if "minimum" in b and "exclusiveMinimum" in b:
            low = max(b["minimum"], b["exclusiveMinimum"])
        if "maximum" in b and "exclusiveMaximum" in b:
            high = min(b["maximum"], b["exclusiveMaximum"])
        if low is None and high is None:
            low, high = 0.0, 100.0
        elif low is None:
            low = high - 100.0
        elif high is None:
            high = low + 100.0
        value = round(self.rng.uniform(low, high), 3)
        too_low = value < low or ("exclusiveMinimum" in b and value <= b["exclusiveMinimum"])
        too_high = value > high or ("exclusiveMaximum" in b and value >= b["exclusiveMaximum"])
        return (low + high) / 2 if too_low or too_high else value

    def string(self, s: dict[str, Any], b: dict[str, float]) -> str:
        fmt = s.get("format")
        if fmt in _FORMATS:
            n = self.rng.randrange(1, 10_000)
            if fmt == "uuid":
                return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
            return _FORMATS[fmt](n)
        low = int(b.get("minLength", 0))
        high = int(b["maxLength"]) if "maxLength" in b else None
        words = [self.rng.choice(_WORDS) for _ in range(self.rng.randint(3, 10))]
        text = " ".join(words).capitalize()
        while len(text) < low:
            text += " " + self.rng.choice(_WORDS)
        if high is not None and len(text) > high:
            text = text[:high].rstrip() if high > low else text[:high]
            text = text.ljust(low, "x")
        return text
