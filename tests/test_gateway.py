"""The gateway against the real openai/anthropic SDKs talking to the loopback fake server."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Annotated

import pytest
from msgspec import Meta, Struct

from personagym.llm import CallFailed, CallFailure, Cause, Limits, Request, RetryPolicy, Sampling
from personagym.llm.usage import PriceTable, Usage


class Verdict(Struct):
    reasoning: Annotated[str, Meta(max_length=400)]
    score: Annotated[int, Meta(ge=1, le=5)]


def ask(text: str = "Hello there", **kwargs) -> Request:
    return Request.of(("system", "You are terse."), ("user", text), **kwargs)


async def test_plain_completion_goes_through_the_openai_sdk(server, make_gateway):
    server.responder = lambda api, body: f"echo {body['messages'][-1]['content']}"
    async with make_gateway() as gw:
        completion = await gw.complete("openai:gpt-4o", ask("ping"))
    assert completion.text == "echo ping"
    assert completion.attempts == 1 and not completion.cached
    sent = server.requests[-1]
    assert sent["model"] == "gpt-4o" and sent["temperature"] == 0.0
    assert sent["messages"][0] == {"role": "system", "content": "You are terse."}


async def test_concurrency_limit_is_never_exceeded(server, make_gateway):
    server.latency = 0.05
    async with make_gateway(limits=Limits(concurrency=4)) as gw:
        await asyncio.gather(*(gw.complete("openai:m", ask(f"q{i}")) for i in range(40)))
    assert server.stats.max_in_flight_seen == 4  # reached, never exceeded
    assert server.stats.requests == 40


async def test_transient_errors_are_retried_until_success(server, make_gateway):
    server.inject("500", count=2)
    async with make_gateway() as gw:
        completion = await gw.complete("openai:m", ask())
    assert completion.attempts == 3
    assert server.stats.requests == 3


async def test_retries_are_bounded_and_end_as_a_recorded_failure(server, make_gateway):
    server.inject("500", count=10)
    async with make_gateway() as gw:
        with pytest.raises(CallFailed) as info:
            await gw.complete("openai:m", ask(role="judge"))
        usage = gw.usage
    failure = info.value.failure
    assert failure.cause is Cause.SERVER_ERROR and failure.attempts == 3 and failure.role == "judge"
    assert server.stats.requests == 3  # no SDK retries stacked on ours
    assert usage.by_role()["judge"].failures == 1 and usage.by_role()["judge"].calls == 0
    assert usage.causes[("openai:m", "server_error")] == 1


async def test_client_errors_are_not_retried(server, make_gateway):
    async with make_gateway(key="wrong") as gw:
        server.require_key = "right"
        with pytest.raises(CallFailed) as info:
            await gw.complete("openai:m", ask())
    assert info.value.failure.cause is Cause.AUTH
    assert server.stats.requests == 1


async def test_retry_after_is_honoured(server, make_gateway):
    server.inject("429", retry_after=0.4)
    async with make_gateway() as gw:
        completion = await gw.complete("openai:m", ask())
    first, second = server.stats.arrivals[:2]
    assert completion.attempts == 2
    assert second - first >= 0.4  # the backoff alone would have waited at most 0.05 s


async def test_a_stalled_call_times_out_and_is_retried(server, make_gateway):
    server.inject("stall", stall_seconds=30)
    policy = RetryPolicy(max_attempts=3, timeout=0.3, backoff_base=0.01)
    async with make_gateway(retry=policy) as gw:
        completion = await gw.complete("openai:m", ask())
    assert completion.attempts == 2


@pytest.mark.parametrize(
    "fault, cause",
    [
        ("500", Cause.SERVER_ERROR),
        ("429", Cause.RATE_LIMITED),
        ("malformed", Cause.MALFORMED_RESPONSE),
        ("truncated", Cause.TRUNCATED),
        ("stall", Cause.TIMEOUT),
    ],
)
async def test_a_fault_never_reaches_the_caller_as_content(server, make_gateway, fault, cause):
    server.inject(fault, count=5, retry_after=0.01, stall_seconds=30)
    policy = RetryPolicy(max_attempts=2, timeout=0.3, backoff_base=0.01)
    async with make_gateway(retry=policy, cache=True) as gw:
        with pytest.raises(CallFailed) as info:
            await gw.complete("openai:m", ask())
        assert gw.cache.stats()["entries"] == 0  # failures are never cached
    assert info.value.failure.cause is cause
    assert info.value.failure.attempts == 2


async def test_cache_hits_misses_and_sample_index(server, make_gateway):
    async with make_gateway(cache=True) as gw:
        first = await gw.complete("openai:m", ask())
        again = await gw.complete("openai:m", ask())
        assert again.cached and again.text == first.text
        assert server.stats.requests == 1
        # At temperature 0 a different draw index is the same call...
        await gw.complete("openai:m", ask(sample=1))
        assert server.stats.requests == 1
        # ...above it, each draw is its own answer, and each parameter is part of the key.
        hot = Sampling(temperature=0.9, top_p=0.9)
        await gw.complete("openai:m", ask(sampling=hot, sample=0))
        await gw.complete("openai:m", ask(sampling=hot, sample=1))
        await gw.complete("openai:m", ask(sampling=hot, sample=1))
        await gw.complete("openai:other", ask())
        await gw.complete("openai:m", ask(schema=Verdict))
        assert server.stats.requests == 5
        assert gw.usage.total().cached == 3


async def test_the_cache_persists_across_gateways(server, make_gateway):
    async with make_gateway(cache=True) as gw:
        await gw.complete("openai:m", ask())
    async with make_gateway(cache=True) as gw:
        completion = await gw.complete("openai:m", ask())
    assert completion.cached and server.stats.requests == 1


async def test_errors_are_never_cached(server, make_gateway):
    server.inject("500", count=3)
    async with make_gateway(cache=True) as gw:
        with pytest.raises(CallFailed):
            await gw.complete("openai:m", ask())
        completion = await gw.complete("openai:m", ask())
    assert not completion.cached and server.stats.requests == 4


async def test_what_a_stage_keeps_lands_with_the_call_or_not_at_all(server, make_gateway):
    """`keep` runs in the transaction that records the call: its rows commit with the cache entry and
    the bill, an error in it undoes all three, and a CallFailed from it (a reply the stage cannot use)
    still leaves the call billed and cached."""
    async with make_gateway(cache=True, on_call=lambda call: None) as gw:
        conn = gw.cache.conn
        conn.execute("CREATE TABLE kept (text TEXT)")
        seen_inside = []

        def keep(completion):
            seen_inside.append(conn.in_transaction)
            conn.execute("INSERT INTO kept VALUES (?)", (completion.text,))

        await gw.complete("openai:m", ask("one"), keep)
        assert seen_inside == [True] and not conn.in_transaction
        assert conn.execute("SELECT count(*) FROM kept").fetchone()[0] == 1

        def broken(completion):
            conn.execute("INSERT INTO kept VALUES (?)", (completion.text,))
            raise sqlite3.OperationalError("disk I/O error")

        with pytest.raises(sqlite3.OperationalError):
            await gw.complete("openai:m", ask("two"), broken)
        assert conn.execute("SELECT count(*) FROM kept").fetchone()[0] == 1  # its row undone...
        assert gw.cache.stats()["entries"] == 1  # ...and the reply's cache entry with it

        def unusable(completion):
            raise CallFailed(CallFailure("openai:m", Cause.INVALID_OUTPUT, "no answer in it", 1, "agent"))

        with pytest.raises(CallFailed):
            await gw.complete("openai:m", ask("three"), unusable)
        assert gw.cache.stats()["entries"] == 2  # billed and cached all the same
        again = await gw.complete("openai:m", ask("one"), keep)  # a cache hit keeps too
    assert again.cached and conn.execute("SELECT count(*) FROM kept").fetchone()[0] == 2
    assert server.stats.requests == 3


async def test_structured_output_is_validated_and_retried(server, make_gateway):
    replies = iter(['{"reasoning": "fine"}', '{"reasoning": "fine", "score": 9}', '{"reasoning": "ok", "score": 4}'])
    server.responder = lambda api, body: next(replies)
    async with make_gateway(cache=True) as gw:
        completion = await gw.complete("openai:m", ask(schema=Verdict))
    assert completion.parsed == Verdict(reasoning="ok", score=4)
    assert completion.attempts == 3
    sent = server.requests[-1]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["schema"]["properties"]["score"]["maximum"] == 5
    # A retry shows the model its invalid reply and what was wrong, rather than asking blindly again.
    retry = server.requests[-1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": '{"reasoning": "fine", "score": 9}'}
    assert retry[-1]["role"] == "user" and "not valid" in retry[-1]["content"]
    assert len(server.requests[0]["messages"]) == 2


async def test_output_that_never_validates_is_a_failure_not_a_score(server, make_gateway):
    server.responder = lambda api, body: '{"reasoning": "great", "score": "five"}'
    async with make_gateway(cache=True) as gw:
        with pytest.raises(CallFailed) as info:
            await gw.complete("openai:m", ask(schema=Verdict))
        assert gw.cache.stats()["entries"] == 0
    assert info.value.failure.cause is Cause.INVALID_OUTPUT
    assert "Verdict" in info.value.failure.detail


async def test_the_default_fake_reply_satisfies_any_schema(server, make_gateway):
    async with make_gateway() as gw:
        completions = await asyncio.gather(*(gw.complete("openai:m", ask(f"q{i}", schema=Verdict)) for i in range(10)))
    assert all(1 <= c.parsed.score <= 5 for c in completions)


async def test_usage_is_summed_per_model_and_role_with_cost(server, make_gateway):
    usage = Usage(PriceTable({"openai:gpt-4o": {"input": 2.5, "output": 10.0}}))
    async with make_gateway(usage=usage) as gw:
        done = [await gw.complete("openai:gpt-4o", ask(f"question {i}", role="judge")) for i in range(3)]
        done += [await gw.complete("openai:gpt-4o-mystery", ask("x", role="agent"))]
    sent_prompt = sum(c.prompt_tokens for c in done[:3])
    sent_completion = sum(c.completion_tokens for c in done[:3])
    judge = usage.by_role()["judge"]
    assert (judge.calls, judge.attempts) == (3, 3)
    assert (judge.prompt_tokens, judge.completion_tokens) == (sent_prompt, sent_completion) != (0, 0)
    assert judge.cost == pytest.approx((sent_prompt * 2.5 + sent_completion * 10.0) / 1e6)
    assert usage.by_model()["openai:gpt-4o-mystery"].cost is None  # unknown price: unknown, not $0
    assert usage.total().cost is None and usage.total().calls == 4


async def test_anthropic_provider_through_the_real_sdk(server, make_gateway):
    async with make_gateway() as gw:
        plain = await gw.complete("anthropic:claude-test", ask("hi", sampling=Sampling(temperature=0.9)))
        verdict = await gw.complete("anthropic:claude-test", ask("grade", schema=Verdict))
    assert plain.text and plain.prompt_tokens > 0
    assert 1 <= verdict.parsed.score <= 5
    body = server.requests[0]
    assert body["system"] == "You are terse." and body["messages"] == [{"role": "user", "content": "hi"}]
    assert "temperature" not in body  # API 2026-10-21 rejects sampling parameters
    assert server.requests[1]["output_config"]["format"]["type"] == "json_schema"


async def test_anthropic_faults_are_classified(server, make_gateway):
    server.inject("429", count=5, retry_after=0.01)
    async with make_gateway() as gw:
        with pytest.raises(CallFailed) as info:
            await gw.complete("anthropic:claude-test", ask())
    assert info.value.failure.cause is Cause.RATE_LIMITED


async def test_the_api_key_never_reaches_the_database(server, make_gateway, db_path):
    secret = "sk-very-secret-0123456789"
    async with make_gateway(cache=True, key=secret) as gw:
        for i in range(5):
            await gw.complete("openai:m", ask(f"q{i}"))
        gw.cache.conn.close()
    assert server.request_headers[-1]["authorization"] == f"Bearer {secret}"  # it was really used
    for path in db_path.parent.glob(db_path.name + "*"):
        assert secret.encode() not in path.read_bytes()


async def test_every_call_is_billed_to_the_observer(server, make_gateway):
    bills = []
    server.inject("500")
    async with make_gateway(cache=True, on_call=bills.append) as gw:
        await gw.complete("openai:m", ask(role="agent"))
        await gw.complete("openai:m", ask(role="agent"))
        server.inject("500", count=3)
        with pytest.raises(CallFailed):
            await gw.complete("openai:m", ask("other", role="judge"))
    fresh, hit, failed = bills
    assert (fresh.ok, fresh.attempts, fresh.cached) == (True, 2, False) and fresh.prompt_tokens > 0
    assert (hit.ok, hit.attempts, hit.cached) == (True, 0, True)
    assert (failed.ok, failed.attempts, failed.cause, failed.role) == (False, 3, "server_error", "judge")


async def test_an_endpoint_of_its_own_with_extra_body_fields(server, make_gateway):
    async with make_gateway() as gw:
        agent = gw.model("openai:their-bot", base_url=server.base_url)
        assert gw.model("openai:their-bot", base_url=server.base_url) is agent
        await gw.complete(agent, Request.of(("user", "hi"), extra_body={"persona": "A pirate"}))
    assert server.requests[-1]["persona"] == "A pirate"
