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
    """How many calls one server takes at once, learned from the 429s it sends without rate-limit
    headers (a server that sends them is paced to them instead: personagym.llm.ratelimits).

    - Until the first refusal the limit grows by one every two answers: half again each round trip,
      so the opening overshoots the server's limit by a half at most, not by a doubling.
    - A 429 for a call sent with n in flight says the server took n - 1 at most: the limit drops
      straight there, or, when fewer than n had been written to the server, halfway down to those
      (`refused`; the refusal tells the size, where halving as in TCP would throw half the
      throughput away). Refusals of calls sent before that drop are the same event: they lower
      nothing more, and the room each frees is not reused until an answer comes back.
    - Below the level last refused the limit climbs one per round trip (once `limit` answers have
      come back), so a drop, whatever caused it, is undone within as many round trips as it cost.
    - From that level up, each step is a probe that waits 1, 2, 4 ... 16 round trips: twice as long
      each time a probe is refused, half as long each time one holds. A server with a fixed limit
      costs a 429 every few seconds at most; a server whose limit grew is found, a step at a time
      and faster as steps hold; and answers that come back late (a busy client counts calls the
      server has finished) cannot lift the limit far above the server's, to be refused in a burst.
    n counts our calls from the moment they are handed a slot until their answer is read, so it is
    never below the server's own count: a drop never goes below what the server took.
    """

    PROBE_MOST = 16  # round trips between probes of a level that keeps being refused
    SAME_LEVEL = 2  # a refusal this little below the last refused level: the same burst draining

    def __init__(self, ceiling: int, start: int | None = None):
        self.ceiling = ceiling
        self.limit = min(start or ceiling, ceiling)
        self.refusals = 0  # refusals that lowered the limit
        self.epoch = 0  # one more per drop: a refusal of a call sent before the last drop is old news
        self.refused_at: int | None = None  # the level last refused, until a probe there holds
        self.probe_rtts = 1
        self._last_refused: int | None = None
        self._acks = 0
        self.debt = 0  # refusals of calls sent before the last drop, not yet made up by answers

    def expect(self, calls: int) -> None:
        """Allow `calls` at once, if more than the limit, unless the server has refused a call."""
        if not self.refusals:
            self.limit = min(max(self.limit, calls), self.ceiling)

    def room(self, in_flight: int) -> bool:
        """Whether one more call may go with `in_flight` at the server. A refusal of a call sent before
        the last drop frees no room until an answer comes back: the server is full, and reusing
        the slot at once would only be refused again (a storm, one refusal after another)."""
        return in_flight + min(self.debt, in_flight) < self.limit

    def succeeded(self) -> bool:
        """Count an answer; True if the limit rose (so waiting callers may go)."""
        if self.debt:
            self.debt -= 1
        if self.limit >= self.ceiling:
            return False
        self._acks += 1
        if not self.refusals:
            needed = 2
        elif self.refused_at is not None and self.limit + 1 >= self.refused_at:
            needed = self.limit * self.probe_rtts
        else:
            needed = self.limit
        if self._acks < needed:
            return False
        self._acks = 0
        if self.refused_at is not None and self.limit >= self.refused_at:
            # The probe held: the server took that many. The next level up is the next probe, sooner.
            self.refused_at = self.limit + 1
            self.probe_rtts = max(1, self.probe_rtts // 2)
        self.limit += 1
        return True

    def refused(self, in_flight_when_sent: int, epoch: int | None = None, written: int | None = None) -> None:
        """Count a 429 for a call sent with that many in flight (itself included), during `epoch`
        (None: judge it whenever it was sent). `written`, when known: how many of those had been
        written to the server by then, itself included. The server held no more than that (the rest
        were in our hands: calls handed a slot but not yet written, answers not yet read), yet the
        limit is kept on our count, which in a steady run stays a call or two above the server's:
        cut to `written`, a server of 32 held 30.4 on average. Cut to n - 1, a busy client's count ran
        15 ahead of the server's at a run's opening, and the limit came down one refusal per round
        trip, 48 to 33 in 3 s. So the cut goes halfway between the two: each refusal halves the gap."""
        n = in_flight_when_sent
        if epoch is not None and epoch != self.epoch:
            self.debt += 1
            return
        cut = max(1, (n + min(n, written or n)) // 2 - 1)  # == n - 1 when all were written
        if cut >= self.limit:
            return
        last = self._last_refused
        if last is not None and n >= last:
            self.probe_rtts = min(self.probe_rtts * 2, self.PROBE_MOST)  # a probe of that level, refused again
        elif last is None or n < last - self.SAME_LEVEL:
            self.probe_rtts = 1  # a new, lower level: probe it as soon as the climb gets there
        self.refused_at = self._last_refused = n  # (a step or two down, as a burst drains: no change)
        self.limit = cut
        self.refusals += 1
        self.epoch += 1
        self._acks = 0


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
