"""Structured output with servers that take different shapes of it (or none): each endpoint finds a
shape that works in one wasted call per refused shape, remembers it, and never retries a refusal."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import pytest
from msgspec import Meta, Struct

from personagym.llm import CallFailed, Cause, Request
from personagym.llm.spec import ProviderSettings
from personagym.llm.structured import PROMPT_MARKER
from personagym.testing import FakeServer
from tests.conftest import FAST_RETRY, run_cli


class Grade(Struct):
    reasoning: Annotated[str, Meta(max_length=200)]
    score: Annotated[int, Meta(ge=1, le=5)]


def ask(i: int = 0) -> Request:
    return Request.of(("user", f"Grade answer {i}."), schema=Grade, role="judge")


def gateway(server: FakeServer, structured: str = "auto", **kwargs):
    from personagym.llm import Gateway

    settings = {"openai": ProviderSettings(base_url=server.base_url, api_key="k", structured=structured)}
    return Gateway(settings=settings, retry=FAST_RETRY, **kwargs)


def shapes_sent(server: FakeServer) -> list[str]:
    def shape(body: dict) -> str:
        if "tools" in body:
            return "tools"
        fmt = body.get("response_format")
        if fmt:
            return fmt["type"]
        return "prompt" if PROMPT_MARKER in body["messages"][-1]["content"] else "plain"

    return [shape(b) for b in server.requests]


@pytest.mark.parametrize(
    ("mode", "shape", "refused"),
    [("json_schema", "json_schema", 0), ("json_object", "json_object", 1), ("tools", "tools", 2), ("none", "prompt", 3)],
)
async def test_each_server_is_asked_in_a_shape_it_takes_after_one_refusal_per_shape(mode, shape, refused):
    notes = []
    with FakeServer(structured=mode, latency=0.01) as server:
        async with gateway(server) as gw:
            gw.on_note = notes.append
            # Twenty calls at once: while the shape is unconfirmed only one goes out.
            done = await asyncio.gather(*(gw.complete("openai:m", ask(i)) for i in range(20)))
        assert all(1 <= c.parsed.score <= 5 for c in done)
        assert server.stats.refused_shapes == refused
        assert shapes_sent(server)[refused:] == [shape] * 20
    # Said once per step down, naming the server and the shape now used.
    assert len(notes) == refused and (not notes or notes[-1].endswith(f"asking as {shape} from now on"))


async def test_a_refusal_is_not_an_attempt_and_plain_calls_are_untouched():
    with FakeServer(structured="none") as server:
        async with gateway(server) as gw:
            completion = await gw.complete("openai:m", ask())
            plain = await gw.complete("openai:m", Request.of(("user", "hello")))
        assert completion.attempts == 1 and plain.text.startswith("[fake]")
        assert "response_format" not in server.requests[-1] and "tools" not in server.requests[-1]


async def test_a_learned_shape_is_reported_and_reused_by_the_next_run():
    learned = {}
    with FakeServer(structured="json_object") as server:
        async with gateway(server) as gw:
            gw.on_shape = lambda where, shape: learned.update({where: shape})
            await gw.complete("openai:m", ask())
        assert learned == {server.base_url: "json_object"}
        server.reset_stats()
        async with gateway(server) as gw:
            gw.model("openai:m")
            gw.use_shapes(learned)
            await gw.complete("openai:m", ask())
        assert server.stats.refused_shapes == 0 and shapes_sent(server) == ["json_object"]


async def test_a_forced_shape_the_server_refuses_fails_without_six_attempts():
    with FakeServer(structured="json_object") as server:
        async with gateway(server, structured="json_schema") as gw:
            with pytest.raises(CallFailed) as info:
                await gw.complete("openai:m", ask())
    failure = info.value.failure
    # The same 500 with the same words twice: it will not go away, so it is not asked a third time.
    assert failure.attempts == 2 and failure.cause is Cause.SERVER_ERROR
    assert "json_object" in failure.detail  # the server's own message reaches the summary


async def test_a_server_that_ignores_the_shape_gives_invalid_output_not_a_score():
    with FakeServer(structured="ignore") as server:
        async with gateway(server) as gw:
            with pytest.raises(CallFailed) as info:
                await gw.complete("openai:m", ask())
    assert info.value.failure.cause is Cause.INVALID_OUTPUT


def test_a_run_on_a_server_without_structured_output_ends_with_scores(tmp_path):
    with FakeServer(structured="none") as server:
        result = run_cli(
            "run", "--models", "openai:m", "--openai-base-url", server.base_url, "--persona", "A retired sailor",
            "--tasks", "expected_action,toxicity_control", "--questions-per-task", "2", "--run", "r", cwd=tmp_path,
            env={"OPENAI_API_KEY": "k"},
        )
        refused = server.stats.refused_shapes
    assert result.returncode == 0, result.stderr
    assert "PersonaScore " in result.stdout and "PersonaScore   -" not in result.stdout
    assert refused == 3  # one per shape the server does not take, for the whole run
    assert result.stderr.count("asking as prompt from now on") == 1
    export = run_cli("export", "r", cwd=tmp_path)
    assert json.loads(export.stdout)["failures"]["total"] == 0
