"""The batch endpoints of the fake server: OpenAI's files and batches, Anthropic's message batches.

Offline runs submit their calls as provider batch jobs (half the price, answers within a day). Tests
need those jobs to behave like the real ones, through the real SDKs, in a fraction of a second:

* OpenAI: ``POST /v1/files`` (multipart, purpose "batch"), ``GET /v1/files/{id}`` and
  ``/v1/files/{id}/content``, ``POST /v1/batches``, ``GET /v1/batches/{id}``,
  ``POST /v1/batches/{id}/cancel``. Successful lines go to the output file, failed and expired
  ones to the error file; lines a cancellation stopped are in neither, as the client must cope with.
* Anthropic: ``POST /v1/messages/batches``, ``GET /v1/messages/batches/{id}``,
  ``GET /v1/messages/batches/{id}/results`` (JSONL), ``POST /v1/messages/batches/{id}/cancel``.

A job runs for ``FakeServer.batch_delay`` seconds; then every item is answered by the code that
answers an online request (the `responder` hook, schema instances, request checks), so a scripted
responder serves both paths. Jobs live in the server object, so a new client can poll an old job id.
State only moves when a request touches a job, so no background task outlives the server.

Faults: `inject_item_fault` spoils the next items answered (an HTTP error, a truncated or malformed
reply), `inject_job_fault` the next jobs created (failed validation, or expiry after `done` items).
Item bodies are recorded in ``FakeServer.requests`` like online ones; ``stats.batch_jobs`` and
``stats.batch_items`` count what was submitted, so tests can prove nothing was submitted twice.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import re
import sys
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from personagym.testing.fake_server import FakeServer

__all__ = ["FakeBatches", "ITEM_FAULTS", "JOB_FAULTS"]

ITEM_FAULTS = ("error", "truncated", "malformed")
JOB_FAULTS = ("failed", "expired")
ENDPOINT = "/v1/chat/completions"  # the one OpenAI batch endpoint faked
WINDOW = 24 * 3600
_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")  # Anthropic's rule for custom_id
# (api, resource, trailing part or number of path parts after it) -> the method it takes
_ROUTES = {
    ("openai", "files", 0): "POST", ("openai", "files", 1): "GET", ("openai", "files", "content"): "GET",
    ("openai", "batches", 0): "POST", ("openai", "batches", 1): "GET", ("openai", "batches", "cancel"): "POST",
    ("anthropic", "batches", 0): "POST", ("anthropic", "batches", 1): "GET",
    ("anthropic", "batches", "results"): "GET", ("anthropic", "batches", "cancel"): "POST",
}

Response = tuple[int, list[tuple[str, str]], bytes]


class _ItemFault(NamedTuple):
    kind: str
    status: int


class _JobFault(NamedTuple):
    kind: str
    done: int  # for "expired": items answered before the window closed


@dataclasses.dataclass
class _File:
    id: str
    filename: str
    purpose: str
    content: bytes
    created: int

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.content), "created_at": self.created,
                "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "expires_at": self.created + 30 * 86400, "status_details": None}


@dataclasses.dataclass
class _Job:
    api: str
    id: str
    items: list[tuple[str, Any]]  # (custom_id, request body)
    ready_at: float  # time.monotonic() when its items get answered
    fault: _JobFault | None
    created: float = dataclasses.field(default_factory=time.time)
    # running -> ended | failed | expired; running -> cancelling -> cancelled
    phase: str = "running"
    # custom_id -> ("ok", reply body) | ("error", status, message) | ("expired",) | ("cancelled",)
    outcomes: dict[str, tuple] = dataclasses.field(default_factory=dict)
    input_file_id: str | None = None
    invalid: list[dict] = dataclasses.field(default_factory=list)  # OpenAI input lines that fail validation
    output_file_id: str | None = None
    error_file_id: str | None = None
    stamps: dict[str, float] = dataclasses.field(default_factory=dict)  # event -> unix time

    def count(self, kind: str) -> int:
        return sum(1 for outcome in self.outcomes.values() if outcome[0] == kind)

    @property
    def finished(self) -> bool:
        return self.phase not in ("running", "cancelling")


class FakeBatches:
    """The batch jobs of one FakeServer (its `batches` attribute). Safe to drive from any thread."""

    def __init__(self, server: "FakeServer"):
        self._server = server
        # The server's own module, which is __main__ under `python -m personagym.testing.fake_server`:
        # importing it by name would give a second copy, whose exception class the server never raises.
        self._module = sys.modules[type(server).__module__]
        self._lock = threading.Lock()
        self._files: dict[str, _File] = {}
        self._jobs: dict[str, _Job] = {}
        self._item_faults: collections.deque[_ItemFault] = collections.deque()
        self._job_faults: collections.deque[_JobFault] = collections.deque()
        self._ids = itertools.count(1)

    # ----- public API -------------------------------------------------------------------------

    def inject_item_fault(self, kind: str = "error", count: int = 1, status: int = 500) -> None:
        """Spoil the next `count` batch items answered, in order: "error" answers them with HTTP
        `status`, "truncated" cuts the reply at half (finish "length"), "malformed" drops its content."""
        if kind not in ITEM_FAULTS:
            raise ValueError(f"unknown item fault {kind!r}; expected one of {ITEM_FAULTS}")
        with self._lock:
            self._item_faults.extend([_ItemFault(kind, status)] * count)

    def inject_job_fault(self, kind: str, count: int = 1, done: int = 0) -> None:
        """Spoil the next `count` jobs created. "failed": an OpenAI job fails validation (Anthropic has
        no failed state: its create request is refused with 400). "expired": the window closes after
        `done` items were answered; the rest expire."""
        if kind not in JOB_FAULTS:
            raise ValueError(f"unknown job fault {kind!r}; expected one of {JOB_FAULTS}")
        with self._lock:
            self._job_faults.extend([_JobFault(kind, done)] * count)

    def phase(self, job_id: str) -> str:
        """Where a job is, as the fake sees it (without advancing it)."""
        with self._lock:
            return self._jobs[job_id].phase

    # ----- HTTP -------------------------------------------------------------------------------

    async def handle(self, method: str, route: str, headers: dict[str, str], body: bytes) -> Response:
        """Answer a request whose route (without /v1) starts with /files, /batches or /messages/batches."""
        api = "anthropic" if route.startswith("/messages/") else "openai"
        key = self._server.require_key
        if key is not None and headers.get("x-api-key") != key and headers.get("authorization") != f"Bearer {key}":
            return self._error(api, 401, "invalid API key")
        parts = route.strip("/").split("/")[1 if api == "anthropic" else 0:]
        with self._lock:
            try:
                return self._route(api, method, parts, headers, body)
            except _Refusal as exc:
                return self._error(api, exc.status, exc.message)

    def _route(self, api: str, method: str, parts: list[str], headers: dict[str, str], body: bytes) -> Response:
        kind, rest = parts[0], parts[1:]
        want = _ROUTES.get((api, kind, rest[1] if len(rest) == 2 else len(rest)))
        if want is None:
            raise _Refusal(404, f"no route for {method} {'/'.join(['', 'v1', *parts])}")
        if method != want:
            raise _Refusal(405, f"{method} not allowed here")
        if kind == "files":
            if not rest:
                return _json(self._upload(headers, body).describe())
            file = self._files.get(rest[0])
            if file is None:
                raise _Refusal(404, f"No such File object: {rest[0]}")
            return (200, [], file.content) if len(rest) == 2 else _json(file.describe())
        if not rest:
            job = self._create_openai(body) if api == "openai" else self._create_anthropic(body)
            self._record(job, headers)
            return _json(self._describe(job, headers, fresh=True))
        job = self._jobs.get(rest[0])
        if job is None or job.api != api:
            raise _Refusal(404, f"no batch {rest[0]}")
        self._advance(job)
        if rest[1:] == ["cancel"]:
            self._cancel(job)
        elif rest[1:] == ["results"]:
            return 200, [], self._anthropic_results(job)
        return _json(self._describe(job, headers))

    def _error(self, api: str, status: int, message: str) -> Response:
        return self._server._error(api, status, message)

    def _error_body(self, api: str, status: int, message: str) -> dict:
        return json.loads(self._error(api, status, message)[2])

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    # ----- creating jobs ----------------------------------------------------------------------

    def _upload(self, headers: dict[str, str], body: bytes) -> _File:
        fields = _multipart(body, headers.get("content-type", ""))
        if "file" not in fields or "purpose" not in fields:
            raise _Refusal(400, "a file upload needs the fields `file` and `purpose`")
        filename, content = fields["file"]
        return self._add_file(filename or "upload", content, fields["purpose"][1].decode())

    def _add_file(self, filename: str, content: bytes, purpose: str) -> _File:
        file = _File(self._new_id("file-fake"), filename, purpose, content, int(time.time()))
        self._files[file.id] = file
        return file

    def _start(self, api: str, items: list[tuple[str, Any]]) -> _Job:
        fault = self._job_faults.popleft() if self._job_faults else None
        prefix = "batch_fake" if api == "openai" else "msgbatch_fake"
        job = _Job(api, self._new_id(prefix), items, time.monotonic() + self._server.batch_delay, fault)
        self._jobs[job.id] = job
        return job

    def _create_openai(self, body: bytes) -> _Job:
        data = _object(body)
        if not isinstance(data.get("input_file_id"), str):
            raise _Refusal(400, "input_file_id: a file id is required")
        file = self._files.get(data["input_file_id"])
        if file is None:
            raise _Refusal(404, f"No such File object: {data.get('input_file_id')}")
        if data.get("endpoint") != ENDPOINT:
            raise _Refusal(400, f"the fake server batches only {ENDPOINT}, not {data.get('endpoint')!r}")
        if data.get("completion_window") != "24h":
            raise _Refusal(400, "completion_window must be '24h'")
        items, invalid = _read_input(file.content)
        job = self._start("openai", items)
        job.input_file_id, job.invalid = file.id, invalid
        return job

    def _create_anthropic(self, body: bytes) -> _Job:
        requests = _object(body).get("requests")
        if not isinstance(requests, list) or not requests:
            raise _Refusal(400, "requests: a batch needs at least one request")
        seen: set[str] = set()
        for i, entry in enumerate(requests):
            cid = entry.get("custom_id") if isinstance(entry, dict) else None
            if not isinstance(cid, str) or not _CUSTOM_ID.fullmatch(cid):
                raise _Refusal(400, f"requests.{i}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$")
            if cid in seen:
                raise _Refusal(400, f"requests.{i}.custom_id: {cid!r} is not unique within the batch")
            if not isinstance(entry.get("params"), dict):
                raise _Refusal(400, f"requests.{i}.params: an object is required")
            seen.add(cid)
        if self._job_faults and self._job_faults[0].kind == "failed":
            self._job_faults.popleft()
            raise _Refusal(400, "batch refused (injected fault)")
        return self._start("anthropic", [(entry["custom_id"], entry["params"]) for entry in requests])

    def _record(self, job: _Job, headers: dict[str, str]) -> None:
        """Count the job and keep its item bodies with the server's recorded requests."""
        server = self._server
        with server._lock:
            server._stats.batch_jobs += 1
            server._stats.batch_items += len(job.items)
            for _, body in job.items:
                if isinstance(body, dict):
                    server._bodies.append(body)
                    server._headers.append(headers)
            overflow = len(server._bodies) - self._module.RECORD_CAP
            if overflow > 0:
                del server._bodies[:overflow], server._headers[:overflow]

    # ----- running jobs -----------------------------------------------------------------------

    def _advance(self, job: _Job) -> None:
        """Move a job as far as the clock allows: answer its items once its delay has passed."""
        if job.phase == "cancelling":
            for cid, _ in job.items:
                job.outcomes.setdefault(cid, ("cancelled",))
            self._finish(job, "cancelled")
            return
        if job.phase != "running" or time.monotonic() < job.ready_at:
            return
        job.stamps["in_progress_at"] = job.created
        if job.invalid or (job.fault and job.fault.kind == "failed"):
            job.invalid = job.invalid or [{"code": "invalid_request", "message": "batch failed (injected fault)",
                                           "param": None, "line": None}]
            self._finish(job, "failed")
            return
        expired = job.fault is not None and job.fault.kind == "expired"
        run = job.fault.done if expired else len(job.items)
        for cid, body in job.items[:run]:
            job.outcomes[cid] = self._answer(job.api, body)
        for cid, _ in job.items[run:]:
            job.outcomes[cid] = ("expired",)
        self._finish(job, "expired" if expired else "ended")

    def _answer(self, api: str, body: Any) -> tuple:
        """One item, answered as the online endpoint would answer the same body."""
        fault = self._item_faults.popleft() if self._item_faults else None
        if fault is not None:
            with self._server._lock:
                faults = self._server._stats.faults
                faults[f"batch_{fault.kind}"] = faults.get(f"batch_{fault.kind}", 0) + 1
            if fault.kind == "error":
                return ("error", fault.status, "item failed (injected fault)")
        if not isinstance(body, dict):
            return ("error", 400, "request body is not a JSON object")
        problem = self._module._check_request(api, body)
        if problem:
            return ("error", 400, problem)
        try:
            reply = self._server._reply(api, body, truncated=fault is not None and fault.kind == "truncated")
        except self._module._ResponderError as exc:
            return ("error", 500, str(exc))
        if fault is not None and fault.kind == "malformed":
            reply.pop("choices" if api == "openai" else "content", None)
        return ("ok", reply)

    def _cancel(self, job: _Job) -> None:
        if job.finished:
            raise _Refusal(400, f"Cannot cancel a batch that has ended ({job.phase}).")
        if job.phase == "running":
            job.phase = "cancelling"
            job.stamps["cancelling_at"] = time.time()

    def _finish(self, job: _Job, phase: str) -> None:
        job.phase = phase
        job.stamps[{"ended": "completed_at", "failed": "failed_at", "expired": "expired_at",
                     "cancelled": "cancelled_at"}[phase]] = time.time()
        if job.api == "openai" and phase != "failed":
            self._write_files(job)

    # ----- OpenAI shapes ----------------------------------------------------------------------

    def _write_files(self, job: _Job) -> None:
        """The output and error files of a finished OpenAI job."""
        output, errors = [], []
        for cid, _ in job.items:
            outcome = job.outcomes[cid]
            n = next(self._ids)
            line: dict[str, Any] = {"id": f"batch_req_fake{n}", "custom_id": cid, "response": None, "error": None}
            if outcome[0] == "ok":
                line["response"] = {"status_code": 200, "request_id": f"req_fake{n}", "body": outcome[1]}
                output.append(line)
            elif outcome[0] == "error":
                line["response"] = {"status_code": outcome[1], "request_id": f"req_fake{n}",
                                    "body": self._error_body("openai", outcome[1], outcome[2])}
                errors.append(line)
            elif outcome[0] == "expired":
                line["error"] = {"code": "batch_expired",
                                 "message": "This request could not be executed before the completion window expired."}
                errors.append(line)
        if output:
            job.output_file_id = self._add_file(f"{job.id}_output.jsonl", _jsonl(output), "batch_output").id
        if errors:
            job.error_file_id = self._add_file(f"{job.id}_error.jsonl", _jsonl(errors), "batch_output").id

    def _describe(self, job: _Job, headers: dict[str, str], fresh: bool = False) -> dict[str, Any]:
        if job.api == "openai":
            return self._openai_batch(job, fresh)
        return self._anthropic_batch(job, headers.get("host") or f"{self._server.host}:{self._server.port}")

    def _openai_batch(self, job: _Job, fresh: bool) -> dict[str, Any]:
        status = {"running": "validating" if fresh else "in_progress", "cancelling": "cancelling",
                  "ended": "completed", "failed": "failed", "expired": "expired", "cancelled": "cancelled"}[job.phase]
        stamp = {name: int(job.stamps[name]) if name in job.stamps else None
                 for name in ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
                              "cancelling_at", "cancelled_at")}
        errors = {"object": "list", "data": job.invalid} if job.phase == "failed" else None
        failed = job.count("error") + job.count("expired")
        return {"id": job.id, "object": "batch", "endpoint": ENDPOINT, "errors": errors,
                "input_file_id": job.input_file_id, "completion_window": "24h", "status": status,
                "output_file_id": job.output_file_id, "error_file_id": job.error_file_id,
                "created_at": int(job.created), "expires_at": int(job.created) + WINDOW, **stamp,
                "request_counts": {"total": len(job.items), "completed": job.count("ok"), "failed": failed},
                "metadata": None}

    # ----- Anthropic shapes -------------------------------------------------------------------

    def _anthropic_batch(self, job: _Job, host: str) -> dict[str, Any]:
        status = {"running": "in_progress", "cancelling": "canceling"}.get(job.phase, "ended")
        ended = status == "ended"
        counts = {"processing": 0 if ended else len(job.items), "succeeded": job.count("ok"),
                  "errored": job.count("error"), "canceled": job.count("cancelled"), "expired": job.count("expired")}
        ended_at = next((job.stamps[k] for k in ("completed_at", "expired_at", "cancelled_at") if k in job.stamps), None)
        return {"id": job.id, "type": "message_batch", "processing_status": status, "request_counts": counts,
                "created_at": _iso(job.created), "expires_at": _iso(job.created + WINDOW),
                "ended_at": _iso(ended_at), "archived_at": None,
                "cancel_initiated_at": _iso(job.stamps.get("cancelling_at")),
                # Absolute, as the real API gives it: the SDK fetches results from exactly this URL.
                "results_url": f"http://{host}/v1/messages/batches/{job.id}/results" if ended else None}

    def _anthropic_results(self, job: _Job) -> bytes:
        if not job.finished:
            raise _Refusal(404, f"results of {job.id} are available once processing has ended")
        lines = []
        for cid, _ in job.items:
            outcome = job.outcomes[cid]
            if outcome[0] == "ok":
                result: dict[str, Any] = {"type": "succeeded", "message": outcome[1]}
            elif outcome[0] == "error":
                error = self._error_body("anthropic", outcome[1], outcome[2])
                result = {"type": "errored", "error": {**error, "request_id": f"req_fake{next(self._ids)}"}}
            else:
                result = {"type": "canceled" if outcome[0] == "cancelled" else "expired"}
            lines.append({"custom_id": cid, "result": result})
        return _jsonl(lines)


class _Refusal(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _json(value: Any) -> Response:
    return 200, [], json.dumps(value).encode()


def _jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def _object(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise _Refusal(400, "request body is not a JSON object")
    return data


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _read_input(content: bytes) -> tuple[list[tuple[str, Any]], list[dict]]:
    """An OpenAI batch input file: its items, and the validation errors that will fail the job."""
    items: list[tuple[str, Any]] = []
    invalid: list[dict] = []
    seen: set[str] = set()
    for number, raw in enumerate(content.decode("utf-8", "replace").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        problem = None
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            problem = "each line must be a JSON object with a string custom_id"
        elif line["custom_id"] in seen:
            problem = f"custom_id {line['custom_id']!r} is used more than once"
        elif line.get("method") != "POST" or line.get("url") != ENDPOINT:
            problem = f"each line must be a POST to {ENDPOINT}"
        elif not isinstance(line.get("body"), dict):
            problem = "each line needs a body object"
        if problem:
            invalid.append({"code": "invalid_request", "message": problem, "param": None, "line": number})
            continue
        seen.add(line["custom_id"])
        items.append((line["custom_id"], line["body"]))
    if not items and not invalid:
        invalid.append({"code": "empty_file", "message": "the input file has no requests", "param": None,
                        "line": None})
    return items, invalid


def _multipart(body: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a multipart/form-data body: name -> (filename or None, content)."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/form-data") or not match:
        raise _Refusal(400, "a file upload must be multipart/form-data")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in body.split(b"--" + match.group(1).encode())[1:]:
        if part.startswith(b"--"):  # the closing delimiter
            break
        head, _, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        disposition = next((line for line in head.decode("latin-1").split("\r\n")
                            if line.lower().startswith("content-disposition:")), "")
        name = re.search(r'\bname="([^"]*)"', disposition)
        filename = re.search(r'\bfilename="([^"]*)"', disposition)
        if name:
            fields[name.group(1)] = (filename.group(1) if filename else None, content.removesuffix(b"\r\n"))
    return fields
