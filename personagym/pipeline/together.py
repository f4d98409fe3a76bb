"""Fan-out for the stages: several calls at once, none outliving the first failure."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Sequence


async def all_or_stop(calls: Sequence[Awaitable[Any]]) -> list[Any]:
    """Run every call at once and return their results in order; the first error (a run stopped
    because a model cannot work, say) ends them all: the others are cancelled and waited for, not
    left running. asyncio.gather leaves them running: a sibling that went on after a run had
    stopped recorded its answer into a database already closed (a traceback at exit, one run in
    four of tests/test_trustworthy_scores.py's retired judge)."""
    tasks = [asyncio.ensure_future(c) for c in calls]
    if not tasks:
        return []
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
