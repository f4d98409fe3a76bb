"""Where calls go: servers (one per base URL) and the models that use them.

Two limits meet here, and they belong to different things:
- a *model's* calls in flight, requests and tokens per minute are capped by the user (`--concurrency`,
  `--rpm`, `--tpm`), on each of its endpoints: a fleet of four servers takes four times the calls;
- a *server* (one base URL) has limits of its own whatever the model. A provider reports them in
  headers on every reply (requests and tokens per minute: see personagym.llm.ratelimits), and calls
  are paced to them; a server that reports none is learned from its 429s, as calls in flight (see
  AdaptiveLimit). Either way what a server teaches holds for every model that shares it.

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
from typing import Mapping

from personagym.llm import ratelimits
from personagym.llm.limits import AdaptiveLimit, Limits, ModelLimiter
from personagym.llm.providers.base import Provider
from personagym.llm.ratelimits import Pacer
from personagym.llm.types import Cause

# Causes that say something about the server rather than the request or the account.
_SERVER_FAULTS = {Cause.CONNECTION, Cause.SERVER_ERROR, Cause.TIMEOUT, Cause.MALFORMED_RESPONSE}
COOL_DOWN_FIRST = 5.0
COOL_DOWN_MAX = 120.0
SLOW_START = 16  # calls in flight at a server before it has answered any (more after: Dispatcher.done)
LEARNING = 0.2  # weight of each reply in the running token ratios (Endpoint.learn)
FAULTS_TO_TAKE_OUT = 2  # one refused connection, or two other faults in a row


@dataclass(eq=False)
class Server:
    """One base URL. Its limit is unknown (unbounded) until it reports one or refuses a call."""

    url: str
    limit: AdaptiveLimit = field(default_factory=lambda: AdaptiveLimit(sys.maxsize, start=SLOW_START))
    pacer: Pacer = field(default_factory=Pacer)
    # The most calls the user lets one model have in flight here: the limit from the first answer
    # on, if that answer reports no rate limits (Dispatcher.done); 0 once decided.
    opening: int = 0
    in_flight: int = 0  # calls handed a slot here and not yet done
    written: int = 0  # of those, the ones whose request has been written (Slot.on_write)
    faults: int = 0  # consecutive
    out_until: float = 0.0
    cool_down: float = 0.0  # the last one; doubles while the server keeps failing
    taken_out: int = 0
    answered: asyncio.Future | None = None  # done at the next answer: what calls refused for room wait for

    def has_room(self) -> bool:
        return self.limit.room(self.in_flight)

    def healthy(self, now: float) -> bool:
        return now >= self.out_until

    def judge(self, cause: Cause | None, slot: "Slot", pooled: bool, paced: bool = False) -> None:
        """Learn from how an attempt went; `paced`: its reply reported rate limits (the pacer's
        business, so a 429 then says nothing about calls in flight)."""
        if cause not in _SERVER_FAULTS:
            if cause is not Cause.RATE_LIMITED:
                self.limit.succeeded()
            elif not paced:
                self.limit.refused(slot.in_flight_when_sent, slot.epoch, slot.written)
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
    # What this model's calls spend of a server's token limits, against our estimate of a prompt
    # (characters / 4) and its max_tokens: learned from the replies, since a reply rarely comes
    # near max_tokens and reserving all of it would leave most of a token budget unspent.
    prompt_scale: float = 1.0
    completion_share: float = 1.0  # until a reply says otherwise, all of max_tokens
    replies_seen: int = 0

    @property
    def url(self) -> str:
        return self.server.url

    def cost(self, estimated_tokens: int, max_tokens: int) -> dict[str, float]:
        """What one call is expected to spend of each kind of limit a server may report."""
        prompt = max(0, estimated_tokens - max_tokens) * self.prompt_scale
        completion = max_tokens * self.completion_share
        return {"requests": 1.0, "tokens": prompt + completion, "input_tokens": prompt, "output_tokens": completion}

    def learn(self, estimated_tokens: int, max_tokens: int, prompt_tokens: int, completion_tokens: int) -> None:
        """Move the ratios towards what a reply reports (all the way, for the first one)."""
        weight = LEARNING if self.replies_seen else 1.0
        self.replies_seen += 1
        estimate = estimated_tokens - max_tokens
        if prompt_tokens > 0 and estimate > 0:
            self.prompt_scale += weight * (prompt_tokens / estimate - self.prompt_scale)
        if completion_tokens > 0 and max_tokens > 0:
            self.completion_share += weight * (min(1.0, completion_tokens / max_tokens) - self.completion_share)


@dataclass(eq=False)
class ModelGate:
    name: str
    endpoints: list[Endpoint]
    waiters: deque = field(default_factory=deque)

    def pick(self) -> Endpoint | None:
        if len(self.endpoints) == 1:
            # Most models have one endpoint: nothing to choose, and health makes no difference (a
            # lone endpoint that is out is used all the same, as the general case below would do).
            # This runs for every call and again at every release while calls wait.
            e = self.endpoints[0]
            return e if e.in_flight < e.cap and e.server.has_room() else None
        now = time.monotonic()
        free = [e for e in self.endpoints if e.in_flight < e.cap and e.server.has_room()]
        healthy = [e for e in free if e.server.healthy(now)]
        if healthy:
            # Most room first (a server with a learned limit fills up); ties go to the least used.
            return max(healthy, key=lambda e: (min(e.cap - e.in_flight, e.server.limit.limit - e.server.in_flight), -e.calls))
        if not free or any(e.server.healthy(now) for e in self.endpoints):
            return None  # wait for a healthy server rather than use one that is out
        return min(free, key=lambda e: e.server.out_until)  # all out: the one back soonest


@dataclass(eq=False)
class Slot:
    gate: ModelGate
    endpoint: Endpoint
    in_flight_when_sent: int  # at the server, this call included
    epoch: int  # of the server's learned limit when the call was sent
    estimate: tuple[int, int] = (0, 0)  # our estimate of the call's tokens, and its max_tokens
    charged: dict[str, float] | None = None  # what the server's pacer was charged for it
    written: int | None = None  # calls written to the server when this one was, itself included

    def on_write(self) -> None:
        """Its request is about to be written: from now the server may hold it. Calls are written in
        the order the server receives them, which at a run's opening is not the order slots were
        handed out in (each call of the first burst waits for a connection of its own, and they open
        in any order): a call handed the 9th slot can arrive 40th, and its refusal, judged by the 9,
        dropped the limit to 8 at a server that takes 32 (a run 10% slower). So a call counts as
        sent with at least as many in flight as were written before it, itself included."""
        if self.written is None:
            server = self.endpoint.server
            server.written += 1
            self.written = server.written
            self.in_flight_when_sent = max(self.in_flight_when_sent, self.written)


class Dispatcher:
    """Hands out slots to calls of every model of one gateway."""

    def __init__(self) -> None:
        self.servers: dict[str, Server] = {}
        self.gates: list[ModelGate] = []
        self._turn = 0
        self.handed_on = False  # whether the last release gave its room to a waiting call

    def server(self, url: str) -> Server:
        if url not in self.servers:
            self.servers[url] = Server(url)
        return self.servers[url]

    def gate(self, name: str, providers: list[tuple[str, Provider]], limits: Limits) -> ModelGate:
        endpoints = [
            Endpoint(self.server(url), p, ModelLimiter(limits), min(limits.concurrency, p.max_concurrency or sys.maxsize))
            for url, p in providers
        ]
        for e in endpoints:
            e.server.opening = max(e.server.opening, e.cap)
        gate = ModelGate(name, endpoints)
        self.gates.append(gate)
        return gate

    def _take(self, gate: ModelGate, endpoint: Endpoint) -> Slot:
        endpoint.in_flight += 1
        endpoint.calls += 1
        server = endpoint.server
        server.in_flight += 1
        return Slot(gate, endpoint, server.in_flight, server.limit.epoch)

    async def acquire(self, gate: ModelGate, estimated_tokens: int, max_tokens: int = 0) -> Slot:
        """A reserved slot for one attempt, its rate limits passed: the user's for the model, then
        the server's own (`estimated_tokens` includes `max_tokens`)."""
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
        endpoint = slot.endpoint
        try:
            await endpoint.rates.admit(estimated_tokens)
            slot.estimate = (estimated_tokens, max_tokens)
            pacer = endpoint.server.pacer
            if pacer.lanes:
                slot.charged = await pacer.admit(lambda: endpoint.cost(estimated_tokens, max_tokens))
        except BaseException:
            if slot.charged is not None:
                endpoint.server.pacer.refund(slot.charged, time.monotonic())  # not sent after all
            self._release(slot)
            raise
        return slot

    def done(
        self,
        slot: Slot,
        cause: Cause | None,
        headers: Mapping[str, str] | None = None,
        tokens: tuple[int, int] | None = None,
    ) -> asyncio.Future | None:
        """Return the slot, saying how the attempt went (None: the server answered), with the reply's
        headers and the (prompt, completion) tokens it reports, when there was one.

        For a call refused for room (a 429 without rate-limit headers) while other calls are in
        flight at its server: a future done at the server's next answer. Room frees then, so the
        refused call may go again then rather than after the whole Retry-After (a second, often),
        which at a run's end stretched the run by as much; with nothing else in flight there is
        no answer to wait for, and the Retry-After stands."""
        endpoint, now = slot.endpoint, time.monotonic()
        server = endpoint.server
        if cause is None and server.answered is not None:
            if not server.answered.done():
                server.answered.set_result(None)
            server.answered = None
        if cause is None and tokens is not None:
            endpoint.learn(*slot.estimate, *tokens)
        if slot.charged is not None:
            if cause is Cause.RATE_LIMITED:
                pass  # kept: refunded, the next call would go at once into the same full span, and the next
            elif cause is not None:  # failed: it spent nothing we know of (headers say otherwise)
                server.pacer.refund(slot.charged, now)
            else:
                spent = _spent(tokens)
                server.pacer.refund({k: v - spent[k] for k, v in slot.charged.items() if k in spent}, now)
        reported = ratelimits.parse(headers)
        paced = reported is not None and bool(reported.budgets)
        if server.opening and cause is None:
            # A server's first answer, a run's preflight usually: if it reports no rate limits, the
            # calls in flight are ours to learn, and it gets as many at once as the user lets one
            # model have (at least SLOW_START): a user who asks for 64 at a server that takes 64
            # should not spend the opening climbing there from 16. A server that reports its limits
            # is paced to them from here, and its first calls keep to SLOW_START: a burst of the
            # user's 32 before any pacing drew 4-9 refusals, not 0-3, from a server that enforces
            # its minute a second at a time (tests/test_limits.py).
            if not paced:
                server.limit.expect(server.opening)
            server.opening = 0
        if paced:
            server.pacer.observe(reported, now, refused=cause is Cause.RATE_LIMITED, cost=slot.charged)
        server.judge(cause, slot, pooled=len(slot.gate.endpoints) > 1, paced=paced)
        self._release(slot)
        if cause is not Cause.RATE_LIMITED or paced or not server.in_flight:
            return None
        if server.answered is None:
            server.answered = asyncio.get_running_loop().create_future()
        return server.answered

    def abandon(self, slot: Slot) -> None:
        """Return a slot whose call was cancelled, judging nothing."""
        self._release(slot)

    def _release(self, slot: Slot) -> None:
        slot.endpoint.in_flight -= 1
        slot.endpoint.server.in_flight -= 1
        if slot.written is not None:
            slot.endpoint.server.written -= 1
        # The freed room may serve any model that shares the server; take turns, so no model's
        # queue starves the others while a server is at its limit.
        self._turn = (self._turn + 1) % len(self.gates)
        self.handed_on = False
        for gate in self.gates[self._turn :] + self.gates[: self._turn]:
            while gate.waiters:
                if gate.waiters[0].done():  # cancelled while waiting
                    gate.waiters.popleft()
                    continue
                endpoint = gate.pick()
                if endpoint is None:
                    break
                gate.waiters.popleft().set_result(self._take(gate, endpoint))
                self.handed_on = True


def _spent(tokens: tuple[int, int] | None) -> dict[str, float]:
    """What an answered call spent of each kind of limit, as far as its reply says."""
    if not tokens or not any(tokens):
        return {"requests": 1.0}
    prompt, completion = tokens
    return {"requests": 1.0, "tokens": prompt + completion, "input_tokens": prompt, "output_tokens": completion}
