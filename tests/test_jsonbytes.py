"""Cache keys and request bodies encoded by orjson: a key must be byte for byte the standard library's,
or every reply cached before would be lost."""

from __future__ import annotations

import json
import math
import random

import pytest
from msgspec import Struct

from personagym.llm import Request, Sampling, jsonbytes
from personagym.llm.cache import cache_key


def stdlib(value) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def test_every_code_point_is_written_as_the_standard_library_writes_it():
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    assert jsonbytes._same_in_both(chars)  # all of them go through orjson...
    assert jsonbytes.canonical(chars) == stdlib(chars)  # ...and come out the same


def test_numbers_in_the_range_orjson_takes_come_out_the_same():
    rng = random.Random(7)
    floats = [0.0, -0.0, 1e-4, 0.1, 0.7, 0.95, 1.0, 2.0, 9.999999999999998e15, 123456789.123]
    floats += [rng.uniform(-2, 2) for _ in range(20_000)] + [10 ** rng.uniform(-4, 15.99) for _ in range(20_000)]
    taken = [x for x in floats if jsonbytes._same_in_both(x)]
    assert len(taken) > 39_000  # nearly all of them go through orjson
    assert jsonbytes.canonical(taken) == stdlib(taken)
    ints = [0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 10**18]
    assert jsonbytes._same_in_both(ints) and jsonbytes.canonical(ints) == stdlib(ints)


@pytest.mark.parametrize(
    "value",
    [1e-05, 2.5e-07, 1e16, 1.7976931348623157e308, 2**64, -(2**63) - 1, math.nan, math.inf, {1: "int key"},
     {"nested": [{"b": 1, "a": 1e-5}]}],
)
def test_anything_else_goes_to_the_standard_library(value):
    assert not jsonbytes._same_in_both(value)
    assert jsonbytes.canonical(value) == stdlib(value)


def test_keys_are_sorted_as_python_sorts_them():
    value = {"é": 1, "z": {"b": [True, None], "a": "x"}, "A": 0.5, "東": "京", "a": []}
    assert jsonbytes._same_in_both(value) and jsonbytes.canonical(value) == stdlib(value)


class V(Struct):
    score: int


def test_cache_keys_are_those_computed_before_orjson():
    # Keys computed with the standard library's encoder (the code before orjson), kept here literally.
    request = Request.of(
        ("system", "Tu es Zoë, 72 ans — médecin à 東京."), ("user", 'Quoi?\n"tab"\there \u2028 \x01'),
        schema=V, sampling=Sampling(temperature=0.7, top_p=0.95, max_tokens=300, seed=7),
    )
    identity = {"provider": "openai", "base_url": "http://127.0.0.1:8000/v1", "model": "m"}
    assert cache_key(identity, request) == "1a16d63fc3e369e290099460eb30383e2b40710d201c9b73f1ba26f9edb8b932"
    odd = Request.of(("user", "x"), sampling=Sampling(temperature=1e-05, max_tokens=30),
                     extra_body={"n_probs": 2**70, "x": 1e16})  # numbers only the standard library writes
    identity = {"provider": "openai", "base_url": "http://h/v1", "model": "m"}
    assert cache_key(identity, odd) == "22454c01b68702f10d21f2f55420be565414c13c98fc0c9f6ce57961e1189fc7"


def test_a_body_is_the_same_json_and_never_fails_where_the_standard_library_would_not():
    value = {"model": "m", "messages": [{"role": "user", "content": "Zoë \u2028 \x01 東京"}], "temperature": 1e-05}
    assert json.loads(jsonbytes.body(value)) == value
    huge = {"seed": 2**70, "messages": [{"content": "lone \ud800 surrogate"}]}  # orjson refuses both
    assert json.loads(jsonbytes.body(huge)) == huge


@pytest.mark.parametrize(
    "data",
    [b'{"choices": [{"message": {"content": "Zo\\u00eb \\ud83d\\ude00 \xe6\x9d\xb1"}}], "usage": {"prompt_tokens": 12}}',
     b'[18446744073709551615, -9223372036854775808, 0, -0, -0.0, 1e-400, 0.1, 2.5e-07, 1E5]',
     b'{"a": 1, "b": 2, "a": 3}', b' [1.0000000000000002, 123456789.123] ',
     # orjson makes floats of these integers, or refuses these documents: the standard library reads them
     b'18446744073709551616', b'[-9223372036854775809]', b'{"n": 123456789012345678901234567890}', b'NaN',
     b'[Infinity, -Infinity]', b'1e400', b'"lone \\ud800 surrogate"', b'\xef\xbb\xbf{"bom": 1}',
     '{"utf": 16}'.encode("utf-16"), b'"a digit run 12345678901234567890 in a string"'],
)
def test_a_reply_reads_as_the_standard_library_reads_it(data):
    expected = json.loads(data)
    got = jsonbytes.loads(data)
    assert repr(got) == repr(expected) and type(got) is type(expected)


@pytest.mark.parametrize("data", [b"", b"{", b'{"a": 1}x', b'[1, 2,]', b'"\x01"', b'"\xff"', b"[" * 5000])
def test_a_reply_that_is_not_json_fails_as_with_the_standard_library(data):
    with pytest.raises(Exception) as expected:
        json.loads(data)
    with pytest.raises(Exception) as got:
        jsonbytes.loads(data)
    assert type(got.value) is type(expected.value) and str(got.value) == str(expected.value)
