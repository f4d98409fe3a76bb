"""What every batch client offers the gateway, and the checks a submission must pass first."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from personagym.llm.providers.base import sdk_errors
from personagym.llm.providers.fields import malformed
from personagym.llm.spec import ProviderSettings, public_url
from personagym.llm.types import Cause, ProviderError, Reply, Request

#: The largest batch file or results download read: a job's answers come in one body, so the cap
#: on one reply (ProviderSettings.max_reply_bytes) is far too small for it; each answer in it is
#: still held to that cap.
MAX_DOWNLOAD_BYTES = 2**30

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


class SdkBatchClient:
    """What the OpenAI and Anthropic batch clients share. The online provider owns the SDK client, so
    key rules, base URL and transport are the same as online; SDK errors map to causes as online."""

    def __init__(self, provider: Any, sdk: Any, official_url: str, settings: ProviderSettings):
        from personagym.llm.providers.sdk_http import http_client

        self._provider = provider
        # The online client's key, base URL and error classes, on a transport that reads whole files.
        self._client = provider.client.with_options(
            http_client=http_client(max(MAX_DOWNLOAD_BYTES, settings.max_reply_bytes))
        )
        self._sdk = sdk
        self._where = public_url(settings.base_url) or official_url
        self._max_reply_bytes = settings.max_reply_bytes
        self._ids: dict[str, list[str]] = {}  # job id -> custom_ids, for the jobs submitted here

    def _errors(self) -> Any:
        return sdk_errors(self._sdk, self._where)

    async def _cancel(self, job_id: str) -> None:
        raise NotImplementedError

    async def cancel(self, job_id: str) -> None:
        try:
            with self._errors():
                await self._cancel(job_id)
        except ProviderError:
            # Refused, most likely because the job has already stopped: then there is nothing to do.
            if (await self.status(job_id)).state == "running":
                raise

    def _bounded(self, found: dict[str, Reply | ProviderError]) -> dict[str, Reply | ProviderError]:
        """Each answer held to the cap on one reply, as online."""
        limit = self._max_reply_bytes
        return {
            cid: ProviderError(Cause.OVERSIZED, f"the reply is larger than {limit:,} bytes (the cap on a reply's size)")
            if isinstance(outcome, Reply) and len(outcome.text) > limit // 4 and len(outcome.text.encode()) > limit
            else outcome
            for cid, outcome in found.items()
        }

    async def aclose(self) -> None:
        await self._client.close()
        await self._provider.aclose()


def plain_id(value: Any, what: str = "job") -> str:
    """A job or file id as the provider gave it: it is stored and sent back in URLs, so it must be plain."""
    if isinstance(value, str) and 0 < len(value) <= 200 and value.isprintable() and "/" not in value:
        return value
    raise malformed(f"the batch API gave a {what} id that is not one: {str(value)[:60]!r}")


def count(value: Any, what: str) -> int:
    """A job's request count: a whole number, not negative."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise malformed(f"the batch job's {what} count is not a whole number: {str(value)[:60]!r}")


def every_item(
    ids: list[str], found: dict[str, Reply | ProviderError], missing: tuple[Cause, str]
) -> dict[str, Reply | ProviderError]:
    """An answer for every custom_id of a stopped job: what it found, or why an item has none."""
    cause, why = missing
    return {cid: found[cid] if cid in found else ProviderError(cause, why) for cid in ids}


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
