"""A server's own rate limits: what its headers say, and a pacer that spends what they allow.

Reading. A header that does not parse is ignored, never an error.

OpenAI sends `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` on every reply, the reset as a
Go-style duration ("1s", "20ms", "6m0s"); Anthropic sends
`anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}`, the reset
as an RFC 3339 time; both may send `retry-after` (seconds) on a 429 (sources in docs/limits.md).
Servers that copy these APIs copy the headers loosely, and a proxy may mangle them, so nothing here
raises: a value that is missing, negative, not a number or absurd leaves that limit unknown.

Pacing. Each limit a server reports becomes a `Lane`: a bucket that refills at 0.97 x limit / window,
holds at most 3 % of one second's allowance (limit / window), and is lowered (never raised) to what
each reply says remains. The window is the longest reset seen: a sliding window (the fake server's)
reports its full length whenever it is busy, a token bucket (the providers' own account of their
limits) its full length once drained, and until then we merely go faster than we will later. Why this
shape, and the measurements behind it, are in docs/limits.md.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Mapping

#: The budgets a server may report, and what of a call each one counts.
KINDS = ("requests", "tokens", "input_tokens", "output_tokens")
_LONGEST = 86_400.0  # a reset further away than a day is not a per-minute limit worth pacing to
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|ns|h|m|s)")


@dataclass(frozen=True)
class Budget:
    """One limit as a reply reported it: `remaining` of `limit` units, all back within `reset` seconds."""

    limit: float
    remaining: float
    reset: float | None  # seconds from when the reply arrived; None when not given


@dataclass(frozen=True)
class RateHeaders:
    budgets: dict[str, Budget]  # by kind (KINDS), only those reported
    retry_after: float | None = None


def parse_duration(text: str) -> float | None:
    """Seconds in a Go-style duration ("6m0s", "1.5s", "20ms"), or a bare number of seconds."""
    text = text.strip()
    number = _number(text)
    if number is not None:
        return number
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


def parse_instant(text: str, now: float) -> float | None:
    """Seconds from `now` (a Unix time) until an RFC 3339 time; 0 if it has passed (a clock skew)."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def parse(headers: Mapping[str, str] | None, now: float | None = None) -> RateHeaders | None:
    """The limits a reply's headers report (names lower-cased), or None when it reports none."""
    if not headers:
        return None
    try:
        return _parse(headers, time.time() if now is None else now)
    except Exception:  # noqa: BLE001 - headers are untrusted input; a limiter never fails a call over them
        return None


def _parse(headers: Mapping[str, str], now: float) -> RateHeaders | None:
    budgets = {}
    for kind in KINDS:
        openai = kind in ("requests", "tokens")
        name = "x-ratelimit-{}-" + kind if openai else None
        for template, reset_of in ((name, parse_duration), ("anthropic-ratelimit-" + kind.replace("_", "-") + "-{}", None)):
            if template is None:
                continue
            limit = _number(headers.get(template.format("limit")))
            remaining = _number(headers.get(template.format("remaining")))
            if limit is None or remaining is None or limit <= 0:
                continue
            raw = headers.get(template.format("reset"))
            reset = None
            if isinstance(raw, str):
                reset = reset_of(raw) if reset_of else parse_instant(raw, now)
                if reset is None:  # a server may send the other format
                    reset = parse_instant(raw, now) if reset_of else parse_duration(raw)
            if reset is not None and not 0 <= reset <= _LONGEST:
                reset = None
            budgets[kind] = Budget(limit, min(remaining, limit), reset)
            break
    retry = _retry_after(headers)
    if not budgets and retry is None:
        return None
    return RateHeaders(budgets, retry)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    ms = _number(headers.get("retry-after-ms"))
    if ms is not None:
        return min(ms / 1000, _LONGEST)
    seconds = _number(headers.get("retry-after"))
    return None if seconds is None else min(seconds, _LONGEST)


def _number(text: object) -> float | None:
    """A finite, non-negative number, or None."""
    if not isinstance(text, str):
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


MARGIN = 0.03  # of each limit: the most spent at once, and the rate kept below it, so a window's count stays under it
MIN_WINDOW = 1.0  # seconds: a window shorter than this is taken as this (a reset of "6ms" says little)
HOLD_MOST = 60.0  # seconds: the longest a 429's retry-after holds every call to the server


class Lane:
    """One reported limit of one server (its requests, or its tokens), mirrored as a bucket."""

    def __init__(self, budget: Budget, now: float):
        self.limit = budget.limit
        self.window = max(MIN_WINDOW, budget.reset or 0.0)
        # What was spent just before (our calls sent before any reply said anything, or someone else's)
        # is still in a sliding window for a while, and may all fall in the second a per-second span
        # counts: start that much (up to a second's allowance) in debt.
        self.stamp = now
        spent = budget.limit - budget.remaining
        self.level = min(self.capacity, budget.remaining) - min(self.limit / self.window, spent)

    @property
    def rate(self) -> float:  # units a second
        return (1 - MARGIN) * self.limit / self.window

    @property
    def capacity(self) -> float:
        """The most spent at once: 3 % of one second's allowance (at least one unit). Both providers may
        enforce a per-minute limit per second ("60,000 requests/minute may be enforced as 1,000
        requests/second"), so any second holds at most this plus a second's refill, under the limit."""
        return max(1.0, MARGIN * self.limit / self.window)

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(self.capacity, self.level + self.rate * (now - self.stamp))
            self.stamp = now

    def wait(self, cost: float) -> float:
        """Seconds until `cost` may be spent (a cost above the capacity: until the bucket is full)."""
        short = min(cost, self.capacity) - self.level
        return short / self.rate if short > 1e-9 else 0.0

    def observe(self, budget: Budget, now: float) -> None:
        self.refill(now)
        self.limit = budget.limit
        if budget.reset is not None:
            self.window = max(self.window, budget.reset)
        self.level = min(self.level, self.capacity, budget.remaining)


class Pacer:
    """Spends one server's reported limits at the rate they refill, shared by every model there.

    Calls queue in order; only the first one waits on a timer, which a refund cuts short. The
    dispatcher asks only a server that has reported a limit.
    """

    def __init__(self) -> None:
        self.lanes: dict[str, Lane] = {}
        self.hold_until = 0.0  # a 429's retry-after: nobody goes before this
        self._queue: deque[asyncio.Future] = deque()
        self._wake: asyncio.Future | None = None  # the first waiter's timer, cut short by a refund

    def observe(self, headers: RateHeaders, now: float, refused: bool, cost: Mapping[str, float] | None = None) -> None:
        """Learn from a reply's headers; `refused`: it was a 429, for a call charged `cost` (by kind)."""
        for kind, budget in headers.budgets.items():
            lane = self.lanes.get(kind)
            if lane is None:
                self.lanes[kind] = Lane(budget, now)
            else:
                lane.observe(budget, now)
        if refused:
            for kind, budget in headers.budgets.items():
                if budget.remaining < 1:
                    self.lanes[kind].level = min(self.lanes[kind].level, 0.0)
            # A budget too low for the call (or none reported): every call sent before it is back
            # would be refused as well, so all wait. A refusal the budgets do not explain is a
            # per-minute limit enforced over a shorter span, back within that span: only the refused
            # call waits (the gateway's retry), as a whole second's hold for everyone cost a tenth of
            # a 20 s run per stray refusal (bench/RESULTS.md).
            cost = cost or {}
            short = any(budget.remaining < max(1.0, cost.get(kind, 1.0)) for kind, budget in headers.budgets.items())
            if headers.retry_after is not None and (short or not headers.budgets):
                self.hold_until = max(self.hold_until, now + min(headers.retry_after, HOLD_MOST))

    def refund(self, cost: dict[str, float], now: float) -> None:
        """Give back what a call was charged and did not spend (negative: spent more than charged)."""
        for kind, lane in self.lanes.items():
            amount = cost.get(kind)
            if amount:
                lane.refill(now)
                lane.level = min(lane.capacity, lane.level + amount)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)  # the first waiter may not need to wait as long as it thought

    def _wait(self, cost: dict[str, float], now: float) -> float:
        wait = self.hold_until - now
        for kind, lane in self.lanes.items():
            lane.refill(now)
            wait = max(wait, lane.wait(cost.get(kind, 0.0)))
        return wait

    def _take(self, cost: dict[str, float]) -> None:
        for kind, lane in self.lanes.items():
            lane.level -= cost.get(kind, 0.0)

    async def admit(self, cost_of: Callable[[], dict[str, float]]) -> dict[str, float]:
        """Wait until a call's cost (units by kind) may be spent, spend it and return it. The cost is
        asked for when the call's turn comes: what a call is expected to spend is learned meanwhile."""
        if not self._queue:
            cost = cost_of()
            if self._wait(cost, time.monotonic()) <= 0:
                self._take(cost)
                return cost
        turn: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.append(turn)
        try:
            if self._queue[0] is not turn:
                await turn  # resolved when every call before this one has gone
            while (wait := self._wait(cost := cost_of(), time.monotonic())) > 0:
                await self._sleep(wait)
            self._take(cost)
            return cost
        finally:
            first = self._queue and self._queue[0] is turn
            self._queue.remove(turn)
            if first and self._queue and not self._queue[0].done():
                self._queue[0].set_result(None)

    async def _sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self._wake = wake = loop.create_future()
        timer = loop.call_later(seconds, _wake_up, wake)
        try:
            await wake
        finally:
            timer.cancel()
            self._wake = None


def _wake_up(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
