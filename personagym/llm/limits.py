"""How hard we may push one model: calls in flight, requests per minute, tokens per minute."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    concurrency: int = 16
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


class ModelLimiter:
    """The gate every attempt to one model passes: a semaphore, then the optional rate limits."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.semaphore = asyncio.Semaphore(limits.concurrency)
        self.rpm = RateLimiter(limits.rpm) if limits.rpm else None
        # Allow a tenth of a minute's tokens at once so one long prompt is not serialised.
        self.tpm = RateLimiter(limits.tpm, burst_seconds=6.0) if limits.tpm else None

    async def admit(self, estimated_tokens: int) -> None:
        if self.rpm:
            await self.rpm.acquire()
        if self.tpm:
            await self.tpm.acquire(estimated_tokens)
