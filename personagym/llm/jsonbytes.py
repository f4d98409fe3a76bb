"""JSON for the two encodings every call makes, its cache key and its request body, and for its reply.

The key and the body both hold the whole prompt (a judge's runs to 20 KB and more), and the standard
library's encoder spent 100-170 microseconds on each of a judge's; orjson spends about 5
(bench/RESULTS.md, "CPU per call"). The cache key must stay byte for byte what it was, or every
cached reply would be lost: orjson writes every string exactly as
`json.dumps(..., ensure_ascii=False)` does (checked for every code point in tests/test_jsonbytes.py) and every float
of magnitude from 1e-4 to 1e16, or zero, as `repr` does. Outside that range versions differ from
Python (0.00001 for 1e-05; 3.10 writes 1e16 for 1e+16), so a payload holding such a number, any
other kind of value, or an int orjson cannot hold goes to the standard library, which stays the
definition.

A reply is read by orjson too (a chat completion took 10-15 us with the standard library, about half
that here), and `loads` returns what `json.loads` would. orjson reads every JSON document it accepts
as the standard library does except for integers beyond 64 bits, which it makes floats: a reply
holding a run of 19 digits or more anywhere (the shortest such integer has 19) goes to the standard
library, as does one orjson refuses (NaN, a lone surrogate, a byte-order mark, UTF-16), which then
raises what it raised.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_SAME_FLOATS = (1e-4, 1e16)  # magnitudes every orjson from 3.10 spells as Python's repr does
_INT_RANGE = range(-(2**63), 2**64)  # what orjson holds
_AS_NINES = bytes.maketrans(b"0123456789", b"9" * 10)  # every digit a 9, to find runs of digits
_LONG_RUN = b"9" * 19


def body(value: Any) -> bytes:
    """A request body: compact UTF-8 JSON, as any JSON server reads it."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson's JSONEncodeError is one: a huge int, a key that is not a string
        return json.dumps(value).encode()


def canonical(value: Any) -> bytes:
    """Exactly `json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()`,
    through orjson when the result is sure to be the same."""
    if _same_in_both(value):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _same_in_both(value: Any) -> bool:
    # A loop over a stack rather than a recursion: a cache key's payload is some twenty values, and a
    # call (and a generator) for each of them cost more than orjson's encoding of the whole prompt.
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        value = pop()
        kind = type(value)
        if kind is str or kind is bool or value is None:
            continue
        if kind is list or kind is tuple:
            extend(value)
        elif kind is dict:
            for key in value:
                if type(key) is not str:
                    return False
            extend(value.values())
        elif kind is int:
            if value not in _INT_RANGE:
                return False
        elif kind is float:
            if not (value == 0 or _SAME_FLOATS[0] <= abs(value) < _SAME_FLOATS[1]):
                return False
        else:
            return False
    return True


def loads(data: bytes) -> Any:
    """Exactly `json.loads(data)`, through orjson when the result is sure to be the same."""
    if _LONG_RUN not in data.translate(_AS_NINES):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)
