"""How hard we may push one model: calls in flight, requests per minute, tokens per minute."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from personagym import defaults


@dataclass(frozen=True)
class Limits:
    concurrency: int = defaults.CONCURRENCY
    rpm: float | None = None  # requests per minute
    tpm: float | None = None  # tokens per minute (prompt estimate + max_tokens)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")


class RateLimiter:
    """A smooth rate: each acquisition reserves its share of time on a single timeline.

    Unlike a bucket that refills once a minute, this never lets a minute's worth through at once;
    `burst_seconds` of backlog may be let through at once (a tolerance, as in GCRA).
    """

    def __init__(self, per_minute: float, burst_seconds: float = 0.0):
        if per_minute <= 0:
            raise ValueError("a rate limit must be positive")
        self.interval = 60.0 / per_minute
        self.burst = burst_seconds
        self._tat = 0.0  # the "theoretical arrival time" of the generic cell rate algorithm

    async def acquire(self, amount: float = 1.0) -> None:
        now = time.monotonic()
        tat = max(self._tat, now)
        self._tat = tat + amount * self.interval
        wait = tat - now - self.burst
        if wait > 0:
            await asyncio.sleep(wait)


class AdaptiveLimit:
    """How many calls one endpoint may have in flight: the configured ceiling, lowered to what the
    server has shown it accepts.

    A 429 that arrives while n calls were in flight says the server takes at most n - 1, so the limit
    drops straight there (not halved as in TCP: the refusal tells us the size). Successes raise it by
    one now and then, to learn whether the server's limit has grown; each refused probe doubles the
    wait before the next. A server with a fixed limit therefore costs a handful of 429s over a whole
    run instead of a storm, and the calls in flight stay at its limit, not far below it.
    """

    PROBE_FIRST = 32  # successes before the first probe above a learned limit
    PROBE_MAX = 4096

    def __init__(self, ceiling: int, start: int | None = None):
        self.ceiling = ceiling
        # With a start below the ceiling the limit first grows by one per success (doubling every
        # round trip, like TCP's slow start) until the first refusal: a server with an unknown
        # limit is not hit with thousands of calls at once, which it would refuse all together.
        self.limit = min(start or ceiling, ceiling)
        self.refusals = 0  # 429s that lowered the limit
        self._probe_every = self.PROBE_FIRST
        self._successes = 0

    def succeeded(self) -> bool:
        """Count a success; True if the limit rose (so waiting callers may go)."""
        if self.limit >= self.ceiling:
            return False
        if not self.refusals:  # still starting: no limit seen yet
            self.limit += 1
            return True
        self._successes += 1
        if self._successes < self._probe_every:
            return False
        self._successes = 0
        self.limit += 1
        return True

    def refused(self, in_flight_when_sent: int) -> None:
        cut = max(1, in_flight_when_sent - 1)
        if cut < self.limit:
            # Several calls refused together are one event: only the first lowers the limit, so
            # the probe interval doubles once per event, not once per refused call.
            self.limit = cut
            self.refusals += 1
            self._probe_every = min(self._probe_every * 2, self.PROBE_MAX) if self.refusals > 1 else self._probe_every
            self._successes = 0


class ModelLimiter:
    """The rate limits of one endpoint (calls in flight are counted by its pool, personagym.llm.endpoints)."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.rpm = RateLimiter(limits.rpm) if limits.rpm else None
        # Allow a tenth of a minute's tokens at once so one long prompt is not serialised.
        self.tpm = RateLimiter(limits.tpm, burst_seconds=6.0) if limits.tpm else None

    async def admit(self, estimated_tokens: int) -> None:
        if self.rpm:
            await self.rpm.acquire()
        if self.tpm:
            await self.tpm.acquire(estimated_tokens)
