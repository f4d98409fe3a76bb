"""Progress of a run, per stage, with calls, tokens, cost and an ETA that is only shown when it means
something.

On a terminal, rich redraws a small table in place (one row per stage, then the calls), cut to the
terminal's width, so nothing wraps and no stale line is left behind. Without a terminal (logs, CI)
rich would not animate, so plain lines are printed every few seconds instead. Either way the last
thing shown is the final state: done, incomplete (with the failed calls), stopped (with the reason)
or interrupted, and never an ETA once the run has ended.

Calls are counted as the export counts them (`usage` in docs/results.md): "calls" ended with an
accepted reply (cached ones included), "failed calls" ended as a recorded failure, "attempts" are the
requests sent, retries included. The one-request preflight before a run is not part of the run.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from personagym.llm.usage import Usage, UsageRow
from personagym.method.stages import STAGES, Stage

# An ETA from fewer finished items than this is a guess: none is shown before.
ETA_MIN_ITEMS = 3
ETA_MIN_FRACTION = 0.05
ETA_MIN_SECONDS = 5.0


class Progress:
    def __init__(
        self,
        totals: dict[Stage, int],
        usage: Usage | None = None,
        stream: TextIO | None = None,
        quiet: bool = False,
        every: float | None = None,
        live: bool | None = None,
        width: int | None = None,
    ):
        self.totals = {s: totals.get(s, 0) for s in STAGES}
        self.done_ = dict.fromkeys(STAGES, 0)
        self.failed_ = dict.fromkeys(STAGES, 0)
        self.personas = 0
        self.usage = usage
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.live = self.stream.isatty() if live is None else live
        self.every = every if every is not None else 10.0
        self.started = time.monotonic()
        self.ended: str | None = None  # the final state, once the run is over
        self._last = self.started
        self._live: Any = None
        if not quiet and self.live:
            self._start_live(width)

    # --- what the stages report ---------------------------------------------------------------

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
        """A line of its own (a batch job's news, structured-output news), above the progress."""
        if self.quiet:
            return
        if self._live is not None:
            self._live.console.print(message, markup=False, highlight=False, soft_wrap=True)
        else:
            self.stream.write(message + "\n")
            self.stream.flush()

    # --- what is shown ------------------------------------------------------------------------

    def finished(self) -> int:
        return sum(self.done_.values()) + sum(self.failed_.values())

    def fraction(self) -> float:
        total = sum(self.totals.values())
        return min(1.0, self.finished() / total) if total else 1.0

    def eta(self) -> float | None:
        """Seconds left, or None: once the run has ended, and until enough has finished to tell."""
        total = sum(self.totals.values())
        finished, elapsed = self.finished(), time.monotonic() - self.started
        if self.ended is not None or not total or finished >= total:
            return None
        if finished < max(ETA_MIN_ITEMS, ETA_MIN_FRACTION * total) or elapsed < ETA_MIN_SECONDS:
            return None
        return elapsed * (total - finished) / finished

    def calls(self) -> str:
        """The run's calls so far, in the export's words."""
        row = self._usage()
        if row is None:
            return ""
        tokens = row.prompt_tokens + row.completion_tokens
        cost = "cost unknown" if row.cost is None else f"${row.cost:.2f}"
        cached = f" ({row.cached} cached)" if row.cached else ""
        failed = f", {_count(row.failures, 'failed call')}" if row.failures else ""
        return f"{_count(row.calls, 'call')}{cached}{failed}, {_count(row.attempts, 'attempt')}, {_short(tokens)} tokens, {cost}"

    def stages(self) -> list[tuple[Stage, int, int, int]]:
        """(stage, done, failed, total) for every stage the run has."""
        return [(s, self.done_[s], self.failed_[s], self.totals[s]) for s in STAGES if self.totals[s]]

    def status(self) -> str:
        """Elapsed time and the ETA while running; the final state once ended."""
        elapsed = _duration(time.monotonic() - self.started)
        if self.ended is not None:
            word, _, why = self.ended.partition(": ")
            return f"{word} after {elapsed}" + (f": {why}" if why else "")
        eta = self.eta()
        return f"running {elapsed}" + (f", ETA {_duration(eta)}" if eta is not None else "")

    def line(self) -> str:
        """The whole state in one plain line (for logs: no terminal, no width to fit)."""
        parts = [
            f"{s} {d}/{t}" + (f" ({f} failed)" if f else "") for s, d, f, t in self.stages()
        ]
        calls = self.calls()
        return " | ".join(parts + ([calls] if calls else []) + [self.status()])

    def close(self, error: BaseException | None = None) -> None:
        """The run has ended (`error`: what ended it early): show the final state, with no ETA."""
        self.ended = self._outcome(error)
        if self.quiet:
            return
        if self._live is not None:
            self._live.update(self._table(), refresh=True)
            self._live.stop()
            self._live = None
        else:
            self._write()

    # --- inside -------------------------------------------------------------------------------

    def _outcome(self, error: BaseException | None) -> str:
        if error is not None:
            if not isinstance(error, Exception):  # Ctrl-C, a signal, a cancelled task
                return "interrupted"
            return "stopped: " + (" ".join(str(error).split()) or type(error).__name__)
        failed = sum(self.failed_.values())
        if not failed:
            return "done"
        row = self._usage()
        what = _count(row.failures, "failed call") if row is not None and row.failures else f"{failed} failed"
        if not sum(self.done_.values()):
            return f"ended with nothing answered: {what}"
        return f"incomplete: {what} (see the summary)"

    def _usage(self) -> UsageRow | None:
        if self.usage is None:
            return None
        row = UsageRow()
        # A copy first: on a terminal this runs in rich's refresh thread while calls are being recorded.
        for (_, role), part in list(self.usage.rows.items()):
            if role != "preflight":  # the one-request check before the run, not one of its calls
                row.add(part)
        return row

    def _maybe_show(self) -> None:
        if self.quiet or self._live is not None:
            return  # rich redraws on its own
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self._write()

    def _write(self) -> None:
        self.stream.write(self.line() + "\n")
        self.stream.flush()

    def _start_live(self, width: int | None) -> None:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self.stream, width=width, highlight=False, force_terminal=True)
        self._live = Live(get_renderable=self._table, console=console, refresh_per_second=4, transient=False)
        self._live.start()

    def _table(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        table = Table.grid(padding=(0, 1), expand=False)
        table.add_column(no_wrap=True)
        table.add_column(min_width=10, max_width=40, ratio=1)
        table.add_column(justify="right", no_wrap=True)
        table.add_column(no_wrap=True)
        for stage, done, failed, total in self.stages():
            failures = Text(f"{failed} failed", style="red") if failed else Text("")
            bar = ProgressBar(total=total, completed=done + failed)
            table.add_row(stage.value, bar, f"{done}/{total}", failures)
        grid = Table.grid(expand=False)
        grid.add_row(table)
        for line in (self.calls(), self.status()):
            if line:
                grid.add_row(Text(line, no_wrap=True, overflow="ellipsis"))
        return grid


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _short(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
