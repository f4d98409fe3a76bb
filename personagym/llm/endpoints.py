"""Where calls go: servers (one per base URL) and the models that use them.

Two limits meet here, and they belong to different things:
- a *model's* calls in flight, requests and tokens per minute are capped by the user (`--concurrency`,
  `--rpm`, `--tpm`), on each of its endpoints: a fleet of four servers takes four times the calls;
- a *server* (one base URL) accepts only so many calls at once whatever the model. Nobody tells us
  how many; its 429s do (see AdaptiveLimit), and what it teaches holds for every model that shares it.

A model served at several URLs (e.g. a vLLM fleet) spreads its calls over them: each call goes to the
healthy server with the most room. A server that fails for reasons of its own (refused connections,
server errors, timeouts) is taken out for a cool-down that doubles while it keeps failing, then tried
again; while every server of a model is out, calls go to them anyway, so a total outage behaves like a
single endpoint and the gateway's retry policy decides.

Waiting calls queue per model (FIFO) and are handed a reserved slot when one frees up: a release
costs one look per model, not one per waiting call, so ten thousand queued calls cost nothing.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from dataclasses import dataclass, field

from personagym.llm.limits import AdaptiveLimit, Limits, ModelLimiter
from personagym.llm.providers.base import Provider
from personagym.llm.types import Cause

# Causes that say something about the server rather than the request or the account.
_SERVER_FAULTS = {Cause.CONNECTION, Cause.SERVER_ERROR, Cause.TIMEOUT, Cause.MALFORMED_RESPONSE}
COOL_DOWN_FIRST = 5.0
COOL_DOWN_MAX = 120.0
SLOW_START = 16  # calls in flight at a server before it has answered any
FAULTS_TO_TAKE_OUT = 2  # one refused connection, or two other faults in a row


@dataclass(eq=False)
class Server:
    """One base URL. Its limit is unknown (unbounded) until it refuses a call."""

    url: str
    limit: AdaptiveLimit = field(default_factory=lambda: AdaptiveLimit(sys.maxsize, start=SLOW_START))
    in_flight: int = 0
    faults: int = 0  # consecutive
    out_until: float = 0.0
    cool_down: float = 0.0  # the last one; doubles while the server keeps failing
    taken_out: int = 0

    def has_room(self) -> bool:
        return self.in_flight < self.limit.limit

    def healthy(self, now: float) -> bool:
        return now >= self.out_until

    def judge(self, cause: Cause | None, in_flight_when_sent: int, pooled: bool) -> None:
        if cause not in _SERVER_FAULTS:
            if cause is Cause.RATE_LIMITED:
                self.limit.refused(in_flight_when_sent)
            else:
                self.limit.succeeded()
            self.faults = 0
            self.cool_down = 0.0
        elif pooled:  # a lone server is never taken out: there is nowhere else to go
            self.faults += 1
            if cause is Cause.CONNECTION or self.faults >= FAULTS_TO_TAKE_OUT:
                self.cool_down = min(max(self.cool_down * 2, COOL_DOWN_FIRST), COOL_DOWN_MAX)
                self.out_until = time.monotonic() + self.cool_down
                self.taken_out += 1
                self.faults = 0


@dataclass(eq=False)
class Endpoint:
    """One model at one server: the provider client that talks to it and the model's rates there."""

    server: Server
    provider: Provider
    rates: ModelLimiter
    cap: int  # this model's calls in flight here
    in_flight: int = 0
    calls: int = 0

    @property
    def url(self) -> str:
        return self.server.url


@dataclass(eq=False)
class ModelGate:
    name: str
    endpoints: list[Endpoint]
    waiters: deque = field(default_factory=deque)

    def pick(self) -> Endpoint | None:
        now = time.monotonic()
        free = [e for e in self.endpoints if e.in_flight < e.cap and e.server.has_room()]
        healthy = [e for e in free if e.server.healthy(now)]
        if healthy:
            # Most room first (a server with a learned limit fills up); ties go to the least used.
            return max(healthy, key=lambda e: (min(e.cap - e.in_flight, e.server.limit.limit - e.server.in_flight), -e.calls))
        if not free or any(e.server.healthy(now) for e in self.endpoints):
            return None  # wait for a healthy server rather than use one that is out
        return min(free, key=lambda e: e.server.out_until)  # all out: the one back soonest


@dataclass(frozen=True)
class Slot:
    gate: ModelGate
    endpoint: Endpoint
    in_flight_when_sent: int  # at the server, this call included


class Dispatcher:
    """Hands out slots to calls of every model of one gateway."""

    def __init__(self) -> None:
        self.servers: dict[str, Server] = {}
        self.gates: list[ModelGate] = []
        self._turn = 0

    def server(self, url: str) -> Server:
        if url not in self.servers:
            self.servers[url] = Server(url)
        return self.servers[url]

    def gate(self, name: str, providers: list[tuple[str, Provider]], limits: Limits) -> ModelGate:
        endpoints = [
            Endpoint(self.server(url), p, ModelLimiter(limits), min(limits.concurrency, p.max_concurrency or sys.maxsize))
            for url, p in providers
        ]
        gate = ModelGate(name, endpoints)
        self.gates.append(gate)
        return gate

    def _take(self, gate: ModelGate, endpoint: Endpoint) -> Slot:
        endpoint.in_flight += 1
        endpoint.calls += 1
        endpoint.server.in_flight += 1
        return Slot(gate, endpoint, endpoint.server.in_flight)

    async def acquire(self, gate: ModelGate, estimated_tokens: int) -> Slot:
        """A reserved slot for one attempt, its rate limits passed."""
        endpoint = gate.pick() if not gate.waiters else None
        if endpoint is not None:
            slot = self._take(gate, endpoint)
        else:
            waiter: asyncio.Future[Slot] = asyncio.get_running_loop().create_future()
            gate.waiters.append(waiter)
            try:
                slot = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._release(waiter.result())  # handed a slot just as we were cancelled
                raise
        try:
            await slot.endpoint.rates.admit(estimated_tokens)
        except BaseException:
            self._release(slot)
            raise
        return slot

    def done(self, slot: Slot, cause: Cause | None) -> None:
        """Return the slot, saying how the attempt went (None: the server answered)."""
        slot.endpoint.server.judge(cause, slot.in_flight_when_sent, pooled=len(slot.gate.endpoints) > 1)
        self._release(slot)

    def abandon(self, slot: Slot) -> None:
        """Return a slot whose call was cancelled, judging nothing."""
        self._release(slot)

    def _release(self, slot: Slot) -> None:
        slot.endpoint.in_flight -= 1
        slot.endpoint.server.in_flight -= 1
        # The freed room may serve any model that shares the server; take turns, so no model's
        # queue starves the others while a server is at its limit.
        self._turn = (self._turn + 1) % len(self.gates)
        for gate in self.gates[self._turn :] + self.gates[: self._turn]:
            while gate.waiters:
                if gate.waiters[0].done():  # cancelled while waiting
                    gate.waiters.popleft()
                    continue
                endpoint = gate.pick()
                if endpoint is None:
                    break
                gate.waiters.popleft().set_result(self._take(gate, endpoint))
