"""OpenAI's Batch API: a JSONL file of chat completion requests, uploaded, run as a job, answered in
an output file (successes) and an error file (failures).

Items a cancellation or expiry stopped may be in neither file; `results()` still answers for them,
from the list of custom_ids kept at submission or, for a job submitted by another process, read back
from the job's input file.
"""

from __future__ import annotations

import json
from typing import Any

from personagym import secrets
from personagym.llm.batch.base import BatchStatus, SdkBatchClient, check_items, check_size, count, every_item, plain_id
from personagym.llm.providers.base import classify_status, error_message
from personagym.llm.providers.fields import get, malformed
from personagym.llm.spec import ProviderSettings
from personagym.llm.types import Cause, ProviderError, Reply, Request

ENDPOINT = "/v1/chat/completions"
MAX_BATCH_ITEMS = 50_000  # requests per job, and bytes per input file: OpenAI's limits
MAX_BATCH_BYTES = 200 * 1024 * 1024

_STATES = {
    "validating": "running",
    "in_progress": "running",
    "finalizing": "running",
    "cancelling": "running",
    "completed": "ended",
    "failed": "failed",
    "expired": "expired",
    "cancelled": "cancelled",
}
# Why an item of a stopped job has no line in either file.
_MISSING = {
    "ended": (Cause.SERVER_ERROR, "missing from batch output"),
    "expired": (Cause.TIMEOUT, "the batch expired before it ran (missing from batch output)"),
    "cancelled": (Cause.SERVER_ERROR, "the batch was cancelled before it ran (missing from batch output)"),
}
# Line-level error codes, given when an item got no HTTP response at all.
_LINE_ERRORS = {"batch_expired": Cause.TIMEOUT}


class OpenAIBatchClient(SdkBatchClient):
    max_items = MAX_BATCH_ITEMS
    max_bytes = MAX_BATCH_BYTES

    def __init__(self, model: str, settings: ProviderSettings):
        import openai

        from personagym.llm.providers.openai import OFFICIAL_URL, OpenAIProvider, request_body

        super().__init__(OpenAIProvider(model, settings), openai, OFFICIAL_URL, settings)
        self._body = request_body

    async def submit(self, items: list[tuple[str, Request]]) -> str:
        check_items(items, self.max_items)
        model, base_url = self._provider.model, self._provider.base_url
        lines = [
            json.dumps({"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": self._body(model, base_url, request)})
            for cid, request in items
        ]
        data = ("\n".join(lines) + "\n").encode()
        check_size(len(data), self.max_bytes)
        try:
            with self._errors():
                upload = await self._client.files.create(file=("personagym-batch.jsonl", data), purpose="batch")
        except ProviderError as exc:
            if exc.cause is Cause.NOT_FOUND:  # e.g. a local OpenAI-compatible server without batches
                raise ProviderError(Cause.NOT_FOUND, f"{self._where} has no batch API (file upload: {exc.detail})") from None
            raise
        with self._errors():
            job = await self._client.batches.create(
                input_file_id=plain_id(get(upload, "id"), "file"), endpoint=ENDPOINT, completion_window="24h"
            )
        new = plain_id(get(job, "id"))
        self._ids[new] = [cid for cid, _ in items]
        return new

    async def status(self, job_id: str) -> BatchStatus:
        job = await self._retrieve(job_id)
        counts = get(job, "request_counts")
        known = len(self._ids.get(job_id, ()))
        if counts is None:  # not counted yet while validating
            return BatchStatus(_state(job), known, 0, 0)
        total, completed, failed = (count(get(counts, n), n) for n in ("total", "completed", "failed"))
        return BatchStatus(_state(job), total or known, completed + failed, failed)

    async def results(self, job_id: str) -> dict[str, Reply | ProviderError]:
        job = await self._retrieve(job_id)
        state = _state(job)
        if state == "running":
            raise ValueError(f"batch {job_id} is still running: wait until status() says otherwise")
        ids = self._ids.get(job_id)
        if not ids:  # a job submitted by another process: its custom_ids are in its input file
            ids = [cid for cid, _ in _lines(await self._content(plain_id(get(job, "input_file_id"), "file")))]
        if state == "failed":
            failure = _job_failure(job)
            return {cid: failure for cid in ids}
        found: dict[str, Reply | ProviderError] = {}
        for file_id in (get(job, "output_file_id"), get(job, "error_file_id")):
            if file_id:
                for cid, line in _lines(await self._content(plain_id(file_id, "file"))):
                    found[cid] = _outcome(line)
        return every_item(ids, self._bounded(found), _MISSING[state])

    async def _cancel(self, job_id: str) -> None:
        await self._client.batches.cancel(job_id)

    async def _retrieve(self, job_id: str) -> Any:
        with self._errors():
            return await self._client.batches.retrieve(job_id)

    async def _content(self, file_id: str) -> bytes:
        with self._errors():
            return (await self._client.files.content(file_id)).content


def _state(job: Any) -> str:
    status = get(job, "status")
    state = _STATES.get(status) if isinstance(status, str) else None
    if state is None:
        raise malformed(f"batch {str(get(job, 'id'))[:60]} has an unknown status {str(status)[:60]!r}")
    return state


def _lines(content: bytes) -> list[tuple[str, dict]]:
    """(custom_id, line) for each readable line of a batch JSONL file; unreadable lines are skipped,
    so their items count as missing rather than spoiling the whole file."""
    lines = []
    for raw in content.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict) and isinstance(line.get("custom_id"), str):
            lines.append((line["custom_id"], line))
    return lines


def _outcome(line: dict) -> Reply | ProviderError:
    """One output or error file line, read as the online path reads a response."""
    from personagym.llm.providers.openai import parse_completion

    error = line.get("error")
    if error:
        code = str(error.get("code") or "")[:60] if isinstance(error, dict) else ""
        message = error.get("message") if isinstance(error, dict) else error
        cause = _LINE_ERRORS.get(code, Cause.SERVER_ERROR)
        return ProviderError(cause, secrets.clip(f"{code or 'error'}: {message}", 300))
    response = line.get("response")
    if not isinstance(response, dict):
        return ProviderError(Cause.MALFORMED_RESPONSE, "batch line has neither a response nor an error")
    status, body = response.get("status_code"), response.get("body")
    if status != 200:
        plausible = isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599
        return classify_status(status if plausible else 500, error_message(body, "no error message"))
    try:
        return parse_completion(body)
    except ProviderError as exc:
        return exc


def _job_failure(job: Any) -> ProviderError:
    """Why a failed job ran nothing: it failed validation (or hit the queued-token limit)."""
    errors = get(get(job, "errors"), "data")
    errors = errors if isinstance(errors, list) else []
    codes = {str(get(e, "code")) for e in errors}
    detail = "; ".join(
        f"line {get(e, 'line')}: {get(e, 'message')}" if get(e, "line") else str(get(e, "message")) for e in errors[:3]
    )
    cause = Cause.RATE_LIMITED if "token_limit_exceeded" in codes else Cause.BAD_REQUEST
    return ProviderError(cause, secrets.clip(f"the batch failed: {detail or 'no reason given'}", 300))
