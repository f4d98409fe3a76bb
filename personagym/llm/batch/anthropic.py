"""Anthropic's Message Batches API: the requests go in one JSON body, the results come back as JSONL
with one line per request (succeeded, errored, canceled or expired).

Anthropic has no "failed" or "expired" job: a job always ends, and what went wrong is told per item.
`status()` reports an ended job whose cancellation was asked as "cancelled", and one with expired
items as "expired", so the gateway sees the same states for both providers.

custom_id must match ^[a-zA-Z0-9_-]{1,64}$: a hex SHA-256 (64 characters) fits exactly.
"""

from __future__ import annotations

import json
import re
from typing import Any

from personagym.llm.batch.base import BatchStatus, SdkBatchClient, check_items, check_size, count, every_item, plain_id
from personagym.llm.providers.base import classify_status
from personagym.llm.providers.fields import get, malformed
from personagym.llm.spec import ProviderSettings
from personagym.llm.types import Cause, ProviderError, Reply, Request

MAX_BATCH_ITEMS = 100_000  # requests per job, and bytes per create request: Anthropic's limits
MAX_BATCH_BYTES = 256 * 1024 * 1024
CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")

# An errored item carries the error object an online call would have had; this is its HTTP status,
# so both paths classify alike.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_MISSING = {
    "ended": (Cause.SERVER_ERROR, "missing from batch output"),
    "expired": (Cause.TIMEOUT, "the batch expired before it ran"),
    "cancelled": (Cause.SERVER_ERROR, "the batch was cancelled before it ran"),
}


class AnthropicBatchClient(SdkBatchClient):
    max_items = MAX_BATCH_ITEMS
    max_bytes = MAX_BATCH_BYTES

    def __init__(self, model: str, settings: ProviderSettings):
        import anthropic

        from personagym.llm.providers.anthropic import OFFICIAL_URL, AnthropicProvider, request_body

        super().__init__(AnthropicProvider(model, settings), anthropic, OFFICIAL_URL, settings)
        self._body = request_body

    async def submit(self, items: list[tuple[str, Request]]) -> str:
        check_items(items, self.max_items, CUSTOM_ID)
        requests = [{"custom_id": cid, "params": self._body(self._provider.model, request)} for cid, request in items]
        check_size(len(json.dumps({"requests": requests})), self.max_bytes)
        with self._errors():
            job = await self._client.messages.batches.create(requests=requests)
        new = plain_id(get(job, "id"))
        self._ids[new] = [cid for cid, _ in items]
        return new

    async def status(self, job_id: str) -> BatchStatus:
        job = await self._retrieve(job_id)
        c = _counts(job)
        total = sum(c.values())
        return BatchStatus(_state(job), total, total - c["processing"], c["errored"] + c["canceled"] + c["expired"])

    async def results(self, job_id: str) -> dict[str, Reply | ProviderError]:
        job = await self._retrieve(job_id)
        state = _state(job)
        if state == "running":
            raise ValueError(f"batch {job_id} is still running: wait until it ends")
        found: dict[str, Reply | ProviderError] = {}
        with self._errors():
            # The SDK fetches the job's results_url, an absolute URL the API gives (not the base URL).
            async for entry in await self._client.messages.batches.results(job_id):
                custom_id = get(entry, "custom_id")
                if isinstance(custom_id, str):  # without one, its item counts as missing
                    found[custom_id] = _outcome(get(entry, "result"))
        ids = self._ids.get(job_id) or list(found)  # the results list every request of the job
        return every_item(ids, self._bounded(found), _MISSING[state])

    async def _cancel(self, job_id: str) -> None:
        await self._client.messages.batches.cancel(job_id)

    async def _retrieve(self, job_id: str) -> Any:
        with self._errors():
            return await self._client.messages.batches.retrieve(job_id)


_COUNTS = ("processing", "succeeded", "errored", "canceled", "expired")


def _counts(job: Any) -> dict[str, int]:
    counts = get(job, "request_counts")
    return {name: count(get(counts, name), name) for name in _COUNTS}


def _state(job: Any) -> str:
    status = get(job, "processing_status")
    if status in ("in_progress", "canceling"):
        return "running"
    if status != "ended":
        raise malformed(f"batch {str(get(job, 'id'))[:60]} has an unknown status {str(status)[:60]!r}")
    if get(job, "cancel_initiated_at") is not None:
        return "cancelled"
    return "expired" if _counts(job)["expired"] else "ended"


def _outcome(result: Any) -> Reply | ProviderError:
    """One result line, read as the online path reads a response."""
    from personagym.llm.providers.anthropic import parse_message

    kind = get(result, "type")
    if kind == "succeeded":
        try:
            return parse_message(get(result, "message"))
        except ProviderError as exc:
            return exc
    if kind == "errored":
        error = get(get(result, "error"), "error")
        error_type, message = get(error, "type"), get(error, "message")
        status = _ERROR_STATUS.get(error_type, 500) if isinstance(error_type, str) else 500
        return classify_status(status, f"{str(error_type)[:60]}: {message or 'no message'}")
    if kind in ("canceled", "expired"):
        cause, why = _MISSING["cancelled" if kind == "canceled" else "expired"]
        return ProviderError(cause, why)
    return ProviderError(Cause.MALFORMED_RESPONSE, f"batch result of unknown type {str(kind)[:60]!r}")
