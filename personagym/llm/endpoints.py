"""One model served at one or several endpoints (e.g. a vLLM fleet behind several URLs).

Each endpoint has its own limits: calls in flight (adaptive, see AdaptiveLimit), requests and
tokens per minute. A call goes to the healthy endpoint with the most room. An endpoint that fails
for reasons of its own (refused connections, server errors, timeouts) is taken out for a cool-down
that doubles while it keeps failing, then tried again with one call; while every endpoint is out,
calls go to them anyway, so a total outage behaves like a single endpoint and the gateway's retry
policy decides. Callers wait in one FIFO queue and are handed a reserved slot when one frees up,
so thousands of waiting calls cost nothing per release.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from personagym.llm.limits import AdaptiveLimit, Limits, ModelLimiter
from personagym.llm.providers.base import Provider
from personagym.llm.types import Cause

# Causes that say something about the endpoint rather than the request or the account.
_ENDPOINT_FAULTS = {Cause.CONNECTION, Cause.SERVER_ERROR, Cause.TIMEOUT, Cause.MALFORMED_RESPONSE}
COOL_DOWN_FIRST = 5.0
COOL_DOWN_MAX = 120.0
FAULTS_TO_TAKE_OUT = 2  # one refused connection or two other faults in a row


@dataclass(eq=False)
class Endpoint:
    url: str | None
    provider: Provider
    rates: ModelLimiter
    limit: AdaptiveLimit
    in_flight: int = 0
    faults: int = 0  # consecutive
    out_until: float = 0.0
    cool_down: float = 0.0  # the last one; doubles while the endpoint keeps failing
    calls: int = 0
    taken_out: int = 0

    def healthy(self, now: float) -> bool:
        return now >= self.out_until

    def room(self) -> float:
        return (self.limit.limit - self.in_flight) / self.limit.limit


@dataclass(frozen=True)
class Slot:
    endpoint: Endpoint
    in_flight_when_sent: int


@dataclass(eq=False)
class EndpointPool:
    endpoints: list[Endpoint]
    _waiters: deque = field(default_factory=deque)

    @classmethod
    def build(cls, providers: list[tuple[str | None, Provider]], limits: Limits) -> "EndpointPool":
        endpoints = []
        for url, provider in providers:
            ceiling = min(limits.concurrency, provider.max_concurrency or limits.concurrency)
            endpoints.append(Endpoint(url, provider, ModelLimiter(limits), AdaptiveLimit(ceiling)))
        return cls(endpoints)

    def _pick(self) -> Endpoint | None:
        now = time.monotonic()
        free = [e for e in self.endpoints if e.in_flight < e.limit.limit]
        if not free:
            return None
        healthy = [e for e in free if e.healthy(now)]
        if healthy:
            return max(healthy, key=lambda e: (e.room(), -e.calls))  # ties: the least used
        if any(e.healthy(now) for e in self.endpoints):
            return None  # a healthy endpoint is busy: wait for it rather than use one that is out
        return min(free, key=lambda e: e.out_until)  # all out: the one back soonest

    def _take(self, endpoint: Endpoint) -> Slot:
        endpoint.in_flight += 1
        endpoint.calls += 1
        return Slot(endpoint, endpoint.in_flight)

    async def acquire(self, estimated_tokens: int) -> Slot:
        """A reserved slot on an endpoint, its rate limits passed."""
        endpoint = self._pick() if not self._waiters else None
        if endpoint is not None:
            slot = self._take(endpoint)
        else:
            waiter: asyncio.Future[Slot] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                slot = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._release(waiter.result().endpoint)  # handed a slot just as we were cancelled
                raise
        try:
            await slot.endpoint.rates.admit(estimated_tokens)
        except BaseException:
            self._release(slot.endpoint)
            raise
        return slot

    def _release(self, endpoint: Endpoint) -> None:
        endpoint.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            if self._waiters[0].done():  # cancelled while waiting
                self._waiters.popleft()
                continue
            endpoint = self._pick()
            if endpoint is None:
                return
            self._waiters.popleft().set_result(self._take(endpoint))

    def done(self, slot: Slot, cause: Cause | None) -> None:
        """Return the slot, telling the pool how the attempt went (None: the endpoint answered well)."""
        endpoint = slot.endpoint
        if cause not in _ENDPOINT_FAULTS:
            if cause is Cause.RATE_LIMITED:
                endpoint.limit.refused(slot.in_flight_when_sent)
            else:
                endpoint.limit.succeeded()  # a raised limit lets a waiter go in _release below
            endpoint.faults = 0
            endpoint.cool_down = 0.0
        elif len(self.endpoints) > 1:
            endpoint.faults += 1
            if cause is Cause.CONNECTION or endpoint.faults >= FAULTS_TO_TAKE_OUT:
                endpoint.cool_down = min(max(endpoint.cool_down * 2, COOL_DOWN_FIRST), COOL_DOWN_MAX)
                endpoint.out_until = time.monotonic() + endpoint.cool_down
                endpoint.taken_out += 1
                endpoint.faults = 0
        self._release(endpoint)

    def abandon(self, slot: Slot) -> None:
        """Return a slot whose call was cancelled, judging nothing."""
        self._release(slot.endpoint)

    def stats(self) -> list[dict]:
        return [
            {"url": e.url, "calls": e.calls, "limit": e.limit.limit, "refusals": e.limit.refusals, "taken_out": e.taken_out}
            for e in self.endpoints
        ]
