"""Adaptive concurrency and endpoint pools, against real loopback fake servers."""

from __future__ import annotations

import asyncio
import time

import pytest

from personagym.llm import Gateway, Limits, Request, RetryPolicy
from personagym.llm import endpoints as endpoints_module
from personagym.llm.limits import AdaptiveLimit
from personagym.llm.spec import ProviderSettings
from personagym.llm.types import Cause
from personagym.testing import FakeServer

RETRY = RetryPolicy(max_attempts=6, max_total_seconds=30, timeout=5, backoff_base=0.01, backoff_max=0.05)


def ask(i: int) -> Request:
    return Request.of(("user", f"question {i}"))


def gateway(base_url: str, concurrency: int) -> Gateway:
    settings = {"openai": ProviderSettings(base_url=base_url, api_key="sk-test")}
    return Gateway(limits=Limits(concurrency=concurrency), retry=RETRY, settings=settings)


def test_a_refusal_lowers_the_limit_to_what_the_server_took_and_probes_back_with_backoff():
    # The learning itself is simulated in tests/test_limits.py; this pins the steps.
    limit = AdaptiveLimit(ceiling=100)
    for n in (65, 70, 80):  # one burst refused together: one event (the later ones sent before the drop)
        limit.refused(n, epoch=0)
    assert limit.limit == 64 and limit.refusals == 1
    raised = sum(limit.succeeded() for _ in range(64))  # one round trip's answers: a probe of 65
    assert raised == 1 and limit.limit == 65
    limit.refused(65, epoch=limit.epoch)  # the probe was refused: back, and the next probe waits two round trips
    assert limit.limit == 64 and limit.probe_rtts == 2
    assert sum(limit.succeeded() for _ in range(64)) == 0
    assert sum(limit.succeeded() for _ in range(64)) == 1


def test_a_server_with_no_known_limit_starts_small_and_grows_by_half_each_round_trip():
    limit = AdaptiveLimit(ceiling=1000, start=16)
    assert limit.limit == 16
    assert sum(limit.succeeded() for _ in range(16)) == 8 and limit.limit == 24  # one round trip
    limit.refused(30)  # sent at 30 while the limit is 24: says nothing new
    assert limit.limit == 24
    limit.refused(20)
    assert limit.limit == 19
    assert sum(limit.succeeded() for _ in range(19)) == 1  # one more per round trip now


def test_a_refusal_of_a_call_written_behind_our_count_drops_the_limit_halfway_to_what_was_written():
    limit = AdaptiveLimit(ceiling=100, start=48)
    limit.refused(48, epoch=0, written=33)  # 15 of our 48 were still in our hands
    assert limit.limit == 39
    limit.refused(40, epoch=limit.epoch, written=33)
    assert limit.limit == 35  # the gap halves with each refusal, rather than shrinking by one
    limit.refused(33, epoch=limit.epoch, written=33)  # all written: the server took 32
    assert limit.limit == 32


async def test_a_server_that_answers_without_reporting_limits_gets_the_calls_the_user_allows_at_once():
    with FakeServer(latency=0.3) as server:
        async with gateway(server.base_url, concurrency=32) as gw:
            await gw.complete("openai:m", ask(-1))  # its first answer (a run's is its preflight)
            await asyncio.gather(*(gw.complete("openai:m", ask(i)) for i in range(32)))
        assert server.stats.max_in_flight_seen == 32  # all in one round trip: from 16, the rest would wait
        async with gateway(server.base_url, concurrency=4) as gw:
            await gw.complete("openai:m", ask(-1))
            assert gw.dispatcher.servers[server.base_url].limit.limit == endpoints_module.SLOW_START  # never fewer
    with FakeServer(latency=0.0, rpm=6000, rate_window=60.0) as paced:  # its limits are paced to instead
        async with gateway(paced.base_url, concurrency=32) as gw:
            await gw.complete("openai:m", ask(-1))
            assert gw.dispatcher.servers[paced.base_url].limit.limit == endpoints_module.SLOW_START
    limit = AdaptiveLimit(ceiling=1000, start=16)
    limit.refused(12)
    limit.expect(64)  # the server has refused a call: what it teaches decides from here
    assert limit.limit == 11


async def test_calls_count_as_sent_in_the_order_they_are_written_not_handed_their_slots():
    # At a run's opening each call of the first burst waits for a connection of its own, and they
    # open in any order: the server sees the calls in the order they are written.
    with FakeServer(latency=0.0) as server:
        async with gateway(server.base_url, concurrency=3) as gw:
            model = gw.model("openai:m")
            dispatcher = gw.dispatcher
            first, second, third = [await dispatcher.acquire(model.gate, 10) for _ in range(3)]
            assert [s.in_flight_when_sent for s in (first, second, third)] == [1, 2, 3]
            for slot in (third, second, first):
                slot.on_write()
            assert [s.written for s in (first, second, third)] == [3, 2, 1]
            assert first.in_flight_when_sent == 3  # it reached a server already holding two
            server_limit = dispatcher.servers[server.base_url].limit
            server_limit.limit = 3
            dispatcher.done(first, Cause.RATE_LIMITED)  # refused: the server took the two before it
            assert server_limit.limit == 2  # judged by its slot, the 1st handed, it would be 1 (a collapse)
            for slot in (second, third):
                dispatcher.done(slot, None)
            assert dispatcher.servers[server.base_url].written == 0


async def test_the_gateway_learns_the_servers_limit_without_a_storm_of_429s():
    with FakeServer(latency=0.02, max_in_flight=8, retry_after_default="0.05") as server:
        async with gateway(server.base_url, concurrency=32) as gw:
            done = await asyncio.gather(*(gw.complete("openai:m", ask(i)) for i in range(600)))
            learned = gw.dispatcher.servers[server.base_url].limit.limit
        stats = server.stats
    assert len(done) == 600
    # A server that has not answered yet gets SLOW_START calls (16), of which 8 are refused at
    # once; after that only the probes above the learned limit are, 1, 2, 4, 8 and then 16 round trips
    # apart (about 75 round trips here).
    assert stats.rejected <= 8 + 9, stats.rejected
    assert learned in (8, 9)
    assert stats.max_in_flight_seen == 8


async def test_a_call_refused_for_room_goes_again_at_the_next_answer_not_after_the_retry_after():
    # A server that takes 2 at once and says "Retry-After: 5" when full: a third call sent at the same
    # time is refused, and goes again when one of the two answers (0.3 s), not 5 s later.
    with FakeServer(latency=0.3, max_in_flight=2, retry_after_default="5") as server:
        async with gateway(server.base_url, concurrency=3) as gw:
            started = time.monotonic()
            done = await asyncio.gather(*(gw.complete("openai:m", ask(i)) for i in range(3)))
            took = time.monotonic() - started
        stats = server.stats
    assert len(done) == 3 and stats.rejected == 1 and max(c.attempts for c in done) == 2
    assert took < 2.0, took  # 0.6-0.7 s: two round trips


async def test_a_refusal_with_nothing_else_in_flight_waits_the_whole_retry_after():
    with FakeServer(latency=0.0) as server:
        server.inject("429", count=1, retry_after=0.5)
        async with gateway(server.base_url, concurrency=3) as gw:
            started = time.monotonic()
            completion = await gw.complete("openai:m", ask(0))
            took = time.monotonic() - started
    assert completion.attempts == 2 and took >= 0.5


async def test_requests_spread_over_endpoints_each_within_its_own_limit():
    with FakeServer(latency=0.02) as a, FakeServer(latency=0.02) as b:
        async with gateway(f"{a.base_url},{b.base_url}", concurrency=3) as gw:
            await asyncio.gather(*(gw.complete("openai:m", ask(i)) for i in range(120)))
        assert a.stats.requests + b.stats.requests == 120
        assert a.stats.requests >= 40 and b.stats.requests >= 40
        assert a.stats.max_in_flight_seen <= 3 and b.stats.max_in_flight_seen <= 3
        assert max(a.stats.max_in_flight_seen, b.stats.max_in_flight_seen) == 3


async def test_a_failing_endpoint_is_taken_out_then_tried_again_later(monkeypatch):
    monkeypatch.setattr(endpoints_module, "COOL_DOWN_FIRST", 0.3)
    with FakeServer(latency=0.01) as good, FakeServer(latency=0.01) as bad:
        bad.inject("500", count=2)
        async with gateway(f"{good.base_url},{bad.base_url}", concurrency=1) as gw:
            model = gw.model("openai:m")
            for i in range(6):  # one at a time, so the pool's choices are deterministic
                await gw.complete("openai:m", ask(i))
            out = next(e.server for e in model.gate.endpoints if e.url == bad.base_url)
            assert out.taken_out == 1
            seen_while_out = bad.stats.requests
            await asyncio.sleep(0.35)  # the cool-down ends: the endpoint gets calls again
            await asyncio.gather(*(gw.complete("openai:m", ask(100 + i)) for i in range(20)))
        assert seen_while_out == 2  # only the two that failed
        assert bad.stats.requests > seen_while_out
        assert good.stats.requests >= 6


async def test_a_refused_connection_takes_an_endpoint_out_at_once():
    with FakeServer() as good:
        dead = FakeServer().start()
        dead_url = dead.base_url
        dead.stop()  # nothing listens there any more
        async with gateway(f"{dead_url},{good.base_url}", concurrency=4) as gw:
            results = await asyncio.gather(*(gw.complete("openai:m", ask(i)) for i in range(30)))
            gate = gw.model("openai:m").gate
        assert len(results) == 30 and good.stats.requests == 30
        dead_endpoint = next(e for e in gate.endpoints if e.url == dead_url)
        assert dead_endpoint.server.taken_out >= 1 and dead_endpoint.calls <= 4


async def test_every_endpoint_out_still_lets_calls_through_under_the_retry_policy():
    with FakeServer() as a, FakeServer() as b:
        a.inject("500", count=2)
        b.inject("500", count=2)
        async with gateway(f"{a.base_url},{b.base_url}", concurrency=1) as gw:
            done = [await gw.complete("openai:m", ask(i)) for i in range(4)]
        assert len(done) == 4


def test_the_cache_identity_of_a_pool_does_not_depend_on_the_order_of_its_urls():
    one = Gateway(settings={"openai": ProviderSettings(base_url="http://a:1/v1,http://b:2/v1", api_key="k")})
    two = Gateway(settings={"openai": ProviderSettings(base_url="http://b:2/v1, http://a:1/v1", api_key="k")})
    assert one.model("openai:m").identity == two.model("openai:m").identity
    assert len(one.model("openai:m").gate.endpoints) == 2


async def test_models_sharing_a_server_share_what_it_taught():
    with FakeServer(latency=0.02, max_in_flight=6, retry_after_default="0.05") as server:
        async with gateway(server.base_url, concurrency=16) as gw:
            calls = [gw.complete(f"openai:m{i % 3}", ask(i)) for i in range(300)]
            await asyncio.gather(*calls)
            learned = gw.dispatcher.servers[server.base_url].limit.limit
        stats = server.stats
    assert learned in (6, 7) and stats.max_in_flight_seen == 6
    assert stats.rejected <= 10 + 6, stats.rejected  # the opening burst of 16, then rare probes


@pytest.mark.parametrize("value", ["http://u:secret@a:1/v1,http://b:2/v1"])
def test_public_urls_of_a_pool_drop_credentials(value):
    from personagym.llm.spec import public_url

    assert public_url(value) == "http://a:1/v1,http://b:2/v1"
