"""What every batch client offers the gateway, and the checks a submission must pass first."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from personagym.llm.types import ProviderError, Reply, Request

#: Job states. "running" until the provider stops working on the job; then "ended" (every item ran),
#: "failed" (the job as a whole was rejected, no item ran), "expired" (the 24 h window closed first) or
#: "cancelled". In every state but "running", `results()` answers for every item.
STATES = ("running", "ended", "failed", "expired", "cancelled")


@dataclass(frozen=True)
class BatchStatus:
    state: str  # one of STATES
    total: int  # items in the job
    done: int  # items finished, successfully or not
    failed: int  # of those, the ones that failed (errored, expired or cancelled)


class BatchClient(Protocol):
    #: The provider's limits for one job; larger submissions raise ValueError (the gateway chunks).
    max_items: int
    max_bytes: int

    async def submit(self, items: list[tuple[str, Request]]) -> str:
        """Create a job from (custom_id, request) pairs; returns its id. Not idempotent: a TIMEOUT or
        CONNECTION error may still have created the job. ValueError for a submission the provider would
        refuse (empty, too large, duplicate or ill-formed custom_ids)."""

    async def status(self, job_id: str) -> BatchStatus:
        ...

    async def results(self, job_id: str) -> dict[str, Reply | ProviderError]:
        """Every custom_id of a job that is no longer running: its Reply, or why it has none.
        ValueError while the job is still running."""

    async def cancel(self, job_id: str) -> None:
        """Ask the provider to stop; a no-op for a job that has already stopped."""

    async def aclose(self) -> None:
        ...


def check_items(items: list[tuple[str, Request]], max_items: int, custom_id: re.Pattern[str] | None = None) -> None:
    """Refuse, before anything is uploaded, a submission the provider would refuse or mangle."""
    if not items:
        raise ValueError("a batch needs at least one request")
    if len(items) > max_items:
        raise ValueError(f"{len(items)} requests exceed the provider's {max_items} per batch: submit them in chunks")
    seen: set[str] = set()
    for cid, _ in items:
        if not isinstance(cid, str) or not cid or (custom_id is not None and not custom_id.fullmatch(cid)):
            rule = f" matching {custom_id.pattern}" if custom_id is not None else ""
            raise ValueError(f"custom_id {cid!r} is not a non-empty string{rule}")
        if cid in seen:
            raise ValueError(f"custom_id {cid!r} appears twice: results are matched to requests by it")
        seen.add(cid)


def check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ValueError(f"the batch is {size / 2**20:.0f} MB, over the provider's {max_bytes / 2**20:.0f} MB: "
                         "submit it in smaller chunks")
