"""Progress per stage with calls, tokens, cost and an ETA: one self-rewriting line on a terminal,
plain lines every few seconds otherwise (logs and CI have no cursor)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from personagym.llm.usage import Usage
from personagym.method.stages import STAGES, Stage


class Progress:
    def __init__(
        self,
        totals: dict[str, int],
        usage: Usage | None = None,
        stream: TextIO | None = None,
        quiet: bool = False,
        every: float | None = None,
    ):
        self.totals = {s: totals.get(s, 0) for s in STAGES}
        self.done_ = dict.fromkeys(STAGES, 0)
        self.failed_ = dict.fromkeys(STAGES, 0)
        self.personas = 0
        self.usage = usage
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self.every = every if every is not None else (0.2 if self.tty else 10.0)
        self.started = time.monotonic()
        self._last = 0.0

    def done(self, stage: Stage, n: int = 1) -> None:
        self.done_[stage] += n
        self._maybe_show()

    def failed(self, stage: Stage, n: int = 1) -> None:
        self.failed_[stage] += n
        self._maybe_show()

    def persona_done(self) -> None:
        self.personas += 1
        self._maybe_show()

    def note(self, message: str) -> None:
        """A line of its own (e.g. a batch job's news), above the progress line."""
        if self.quiet:
            return
        self.stream.write(("\r\x1b[K" if self.tty else "") + message + "\n")
        self.stream.flush()

    def fraction(self) -> float:
        total = sum(self.totals.values())
        return min(1.0, (sum(self.done_.values()) + sum(self.failed_.values())) / total) if total else 1.0

    def line(self) -> str:
        parts = [
            f"{s} {self.done_[s]}/{self.totals[s]}" + (f" ({self.failed_[s]} failed)" if self.failed_[s] else "")
            for s in STAGES
            if self.totals[s]
        ]
        if self.usage is not None:
            total = self.usage.total()
            tokens = total.prompt_tokens + total.completion_tokens
            cost = "cost unknown" if total.cost is None else f"${total.cost:.2f}"
            parts.append(f"calls {total.calls + total.failures} ({total.cached} cached), {_short(tokens)} tokens, {cost}")
        elapsed = time.monotonic() - self.started
        f = self.fraction()
        if 0 < f < 1:
            parts.append(f"ETA {_duration(elapsed * (1 - f) / f)}")
        return " | ".join(parts)

    def _maybe_show(self) -> None:
        now = time.monotonic()
        if not self.quiet and now - self._last >= self.every:
            self._last = now
            self._write()

    def _write(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line()[: 200])
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.quiet:
            return
        self._write()
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()


def _short(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
