"""The batch endpoints of the fake server: OpenAI's files and batches, Anthropic's message batches.

Offline runs submit their calls as batch jobs (half the price, answers within a day); tests need them
to behave like the real ones, through the real SDKs, in a fraction of a second. A job runs for
``FakeServer.batch_delay`` seconds, then each item is answered as the online endpoint answers it. Jobs
only move when a request touches them, so no task outlives the server.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import re
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from personagym.testing import replies
from personagym.testing.replies import IDS, error, error_body, json_response, rfc3339

if TYPE_CHECKING:
    from personagym.testing.fake_server import FakeServer

ITEM_FAULTS = ("error", "truncated", "malformed")
JOB_FAULTS = ("failed", "expired")
ENDPOINT = "/v1/chat/completions"  # the one OpenAI batch endpoint faked
_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")  # Anthropic's rule for custom_id
# (resource, trailing part or number of path parts after it) -> the method it takes
_ROUTES = {("files", 0): "POST", ("files", "content"): "GET", ("batches", 0): "POST", ("batches", 1): "GET",
           ("batches", "cancel"): "POST", ("batches", "results"): "GET"}
_RESULT_TYPES = {"ok": "succeeded", "error": "errored", "cancelled": "canceled", "expired": "expired"}  # Anthropic's
_EXPIRED = {"code": "batch_expired", "message": "The request was not executed before the completion window expired"}


class _Refusal(Exception):
    """An error answer: its arguments are the status and the message."""


@dataclasses.dataclass
class _Job:
    api: str
    id: str
    items: list[tuple[str, Any]]  # (custom_id, request body)
    invalid: list[dict]  # OpenAI input lines that fail validation, and so the job
    ready_at: float  # time.monotonic() when its items get answered
    fault: tuple[str, int] | None  # (kind, items done before an expiry)
    input_file_id: str | None = None
    created: float = dataclasses.field(default_factory=time.time)
    phase: str = "running"  # -> ended | failed | expired; or -> cancelling -> cancelled
    outcomes: dict[str, tuple] = dataclasses.field(default_factory=dict)  # ("ok", body), ("error", status, text)...
    files: dict[str, str] = dataclasses.field(default_factory=dict)  # output_file_id, error_file_id
    ended_at: float | None = None  # unix times, as is cancelled_at
    cancelled_at: float | None = None

    def count(self, *kinds: str) -> int:
        return sum(1 for outcome in self.outcomes.values() if outcome[0] in kinds)


class FakeBatches:
    """The batch jobs of one FakeServer (its `batches` attribute), guarded by the server's lock."""

    def __init__(self, server: "FakeServer"):
        self._server = server
        self._files: dict[str, bytes] = {}
        self._jobs: dict[str, _Job] = {}  # both live as long as the server, as the APIs' do for a day
        self._item_faults, self._job_faults = collections.deque(), collections.deque()  # (kind, status or done)

    def inject_item_fault(self, kind: str = "error", count: int = 1, status: int = 500) -> None:
        """Spoil the next items answered: "error" answers with HTTP `status`, "truncated" cuts the reply
        at half (finish "length"), "malformed" drops its content."""
        if kind not in ITEM_FAULTS:
            raise ValueError(f"unknown item fault {kind!r}; expected one of {ITEM_FAULTS}")
        with self._server.lock:
            self._item_faults.extend([(kind, status)] * count)

    def inject_job_fault(self, kind: str, count: int = 1, done: int = 0) -> None:
        """Spoil the next jobs created. "failed": an OpenAI job fails validation (Anthropic's create request
        is refused with 400, it has no failed state). "expired": the rest expire after `done` items."""
        if kind not in JOB_FAULTS:
            raise ValueError(f"unknown job fault {kind!r}; expected one of {JOB_FAULTS}")
        with self._server.lock:
            self._job_faults.extend([(kind, done)] * count)

    def phase(self, job_id: str) -> str:
        """Where a job is, as the fake sees it (without advancing it)."""
        return self._jobs[job_id].phase

    async def handle(self, request: web.Request, route: str) -> web.Response:
        """Answer a request whose route (without /v1) starts with /files, /batches or /messages/batches."""
        api = "anthropic" if route.startswith("/messages/") else "openai"
        headers = {name.lower(): value for name, value in request.headers.items()}
        kind, *rest = route.strip("/").split("/")[1 if api == "anthropic" else 0:]
        want = _ROUTES.get((kind, rest[1] if len(rest) == 2 else len(rest)))
        try:
            if not self._server.key_ok(headers):
                raise _Refusal(401, "invalid API key")
            if want is None or (api == "openai" and rest[1:] == ["results"]):
                raise _Refusal(404, f"no route for {request.method} {request.path}")
            if request.method != want:
                raise _Refusal(405, f"{request.method} not allowed on {request.path}")
            if kind == "files" and not rest:  # an upload: multipart/form-data with a file and its purpose
                if request.content_type != "multipart/form-data":
                    raise _Refusal(400, "a file upload must be multipart/form-data")
                fields = {p.name: (p.filename, bytes(await p.read())) async for p in await request.multipart()}
                if "file" not in fields or "purpose" not in fields:
                    raise _Refusal(400, "a file upload needs the fields `file` and `purpose`")
                with self._server.lock:
                    return json_response(self._add_file(*fields["file"], fields["purpose"][1].decode()))
            data = replies.loads(await request.read())
            with self._server.lock:
                if kind == "files":
                    return json_response(self._file(rest[0]))
                if not rest:
                    job = self._create(api, data)
                    self._server.record([item for _, item in job.items], headers, job=True)
                    return json_response(self._describe(job, request.host, fresh=True))
                job = self._jobs.get(rest[0])
                if job is None or job.api != api:
                    raise _Refusal(404, f"no batch {rest[0]}")
                self._advance(job)
                if rest[1:] == ["results"]:
                    return json_response(self._anthropic_results(job))
                if rest[1:] == ["cancel"]:
                    if job.phase != "running":
                        raise _Refusal(400, f"Cannot cancel a batch that has ended ({job.phase}).")
                    job.phase, job.cancelled_at = "cancelling", time.time()
                return json_response(self._describe(job, request.host))
        except _Refusal as exc:
            return error(api, *exc.args)

    def _file(self, file_id: str) -> bytes:
        if file_id not in self._files:
            raise _Refusal(404, f"No such File object: {file_id}")
        return self._files[file_id]

    def _add_file(self, filename: str | None, content: bytes, purpose: str) -> dict:
        file_id, now = f"file-fake{next(IDS)}", int(time.time())
        self._files[file_id] = content
        return {"id": file_id, "object": "file", "bytes": len(content), "created_at": now, "purpose": purpose,
                "filename": filename or "upload", "status": "processed", "expires_at": now + 30 * 86400}

    def _create(self, api: str, data: Any) -> _Job:
        """A new job, refused as the API refuses a malformed one."""
        if not isinstance(data, dict):
            raise _Refusal(400, "request body is not a JSON object")
        if api == "openai":
            if not isinstance(data.get("input_file_id"), str):
                raise _Refusal(400, "input_file_id: a file id is required")
            items, invalid = _read_input(self._file(data["input_file_id"]))  # lines for other endpoints fail it
        else:
            requests = data.get("requests")
            if not isinstance(requests, list) or not requests:
                raise _Refusal(400, "requests: a batch needs at least one request")
            seen: set[str] = set()
            for i, entry in enumerate(requests):
                cid = entry.get("custom_id") if isinstance(entry, dict) else None
                if not (isinstance(cid, str) and _CUSTOM_ID.fullmatch(cid)) or cid in seen or "params" not in entry:
                    raise _Refusal(400, f"requests.{i}: needs params and a unique custom_id ^[a-zA-Z0-9_-]{{1,64}}$")
                seen.add(cid)
            if self._job_faults and self._job_faults[0][0] == "failed":
                self._job_faults.popleft()
                raise _Refusal(400, "batch refused (injected fault)")
            items, invalid = [(entry["custom_id"], entry["params"]) for entry in requests], []
        fault = self._job_faults.popleft() if self._job_faults else None
        job_id = f"{'batch' if api == 'openai' else 'msgbatch'}_fake{next(IDS)}"
        ready_at = time.monotonic() + self._server.batch_delay
        job = self._jobs[job_id] = _Job(api, job_id, items, invalid, ready_at, fault, data.get("input_file_id"))
        return job

    def _advance(self, job: _Job) -> None:
        """Move a job as far as the clock allows: answer its items once its delay has passed."""
        if job.phase == "cancelling":
            job.outcomes |= {cid: ("cancelled",) for cid, _ in job.items if cid not in job.outcomes}
            return self._finish(job, "cancelled")
        if job.phase != "running" or time.monotonic() < job.ready_at:
            return
        if job.invalid or (job.fault and job.fault[0] == "failed"):
            job.invalid = job.invalid or [{"code": "invalid_request", "message": "batch failed (injected fault)",
                                           "param": None, "line": None}]
            return self._finish(job, "failed")
        expired = job.fault is not None and job.fault[0] == "expired"
        done = job.fault[1] if expired else len(job.items)
        for i, (cid, body) in enumerate(job.items):
            job.outcomes[cid] = self._answer(job.api, body) if i < done else ("expired",)
        self._finish(job, "expired" if expired else "ended")

    def _answer(self, api: str, body: Any) -> tuple:
        """One item, answered as the online endpoint would answer the same body."""
        fault, status = self._item_faults.popleft() if self._item_faults else (None, 0)
        self._server.record([], {}, fault=fault and f"batch_{fault}")
        problem = "item failed (injected fault)" if fault == "error" else replies.check_request(api, body)
        if problem:
            return ("error", status if fault == "error" else 400, problem)
        try:
            answer, _ = replies.reply(api, body, next(IDS), truncated=fault == "truncated",
                                      responder=self._server.responder)
        except replies.ResponderError as exc:
            return ("error", 500, str(exc))
        if fault == "malformed":
            answer.pop("choices" if api == "openai" else "content")
        return ("ok", answer)

    def _finish(self, job: _Job, phase: str) -> None:
        """End a job; an OpenAI job's answers go to its output file, its failures to its error file."""
        job.phase, job.ended_at = phase, time.time()
        lines: dict[str, list] = {"output": [], "error": []}
        for cid, _ in job.items if job.api == "openai" and phase != "failed" else ():
            (kind, *detail), n = job.outcomes[cid], next(IDS)
            line: dict[str, Any] = {"id": f"batch_req_fake{n}", "custom_id": cid, "response": None,
                                    "error": _EXPIRED if kind == "expired" else None}
            if kind in ("ok", "error"):
                status, body = (200, detail[0]) if kind == "ok" else (detail[0], error_body("openai", *detail))
                line["response"] = {"status_code": status, "request_id": f"req_fake{n}", "body": body}
            if kind != "cancelled":
                lines["output" if kind == "ok" else "error"].append(line)
        for name, found in lines.items():
            if found:
                content = "".join(json.dumps(line) + "\n" for line in found).encode()
                job.files[f"{name}_file_id"] = self._add_file(f"{job.id}_{name}.jsonl", content, "batch_output")["id"]

    def _describe(self, job: _Job, host: str, fresh: bool = False) -> dict[str, Any]:
        """The job as the API shows it: the fields the SDKs require and the product reads."""
        if job.api == "anthropic":
            status = {"running": "in_progress", "cancelling": "canceling"}.get(job.phase, "ended")
            counts = {"processing": len(job.items) if status != "ended" else 0, "succeeded": job.count("ok"),
                      "errored": job.count("error"), "canceled": job.count("cancelled"),
                      "expired": job.count("expired")}
            return {"id": job.id, "type": "message_batch", "processing_status": status, "request_counts": counts,
                    "created_at": rfc3339(job.created), "expires_at": rfc3339(job.created + 86400),
                    "ended_at": job.ended_at and rfc3339(job.ended_at), "archived_at": None,
                    "cancel_initiated_at": job.cancelled_at and rfc3339(job.cancelled_at),
                    # Absolute, as the real API gives it: the SDK fetches results from exactly this URL.
                    "results_url": f"http://{host}/v1/messages/batches/{job.id}/results" if job.ended_at else None}
        status = {"running": "validating" if fresh else "in_progress", "ended": "completed"}.get(job.phase, job.phase)
        return {"id": job.id, "object": "batch", "endpoint": ENDPOINT, "input_file_id": job.input_file_id,
                "errors": {"object": "list", "data": job.invalid} if job.phase == "failed" else None,
                "completion_window": "24h", "status": status, "created_at": int(job.created),
                "expires_at": int(job.created) + 86400, "output_file_id": None, "error_file_id": None, **job.files,
                "request_counts": {"total": len(job.items), "completed": job.count("ok"),
                                   "failed": job.count("error", "expired")}}

    def _anthropic_results(self, job: _Job) -> bytes:
        if job.ended_at is None:
            raise _Refusal(404, f"results of {job.id} are available once processing has ended")
        lines = []
        for cid, _ in job.items:
            kind, *detail = job.outcomes[cid]
            result: dict[str, Any] = {"type": _RESULT_TYPES[kind]}
            if kind == "ok":
                result["message"] = detail[0]
            elif kind == "error":
                result["error"] = {**error_body("anthropic", *detail), "request_id": f"req_fake{next(IDS)}"}
            lines.append({"custom_id": cid, "result": result})
        return "".join(json.dumps(line) + "\n" for line in lines).encode()


def _read_input(content: bytes) -> tuple[list[tuple[str, Any]], list[dict]]:
    """An OpenAI batch input file: its items, and the validation errors that will fail the job."""
    items: dict[str, Any] = {}
    invalid: list[dict] = []
    for number, raw in enumerate(content.decode("utf-8", "replace").splitlines(), 1):
        line = replies.loads(raw)
        cid = line.get("custom_id") if isinstance(line, dict) else None
        if (isinstance(cid, str) and cid not in items and line.get("method") == "POST"
                and line.get("url") == ENDPOINT and isinstance(line.get("body"), dict)):
            items[cid] = line["body"]
        elif raw.strip():  # a blank line is no request, and no error
            invalid.append({"code": "invalid_request", "param": None, "line": number,
                            "message": f"a line needs a unique custom_id, method POST, url {ENDPOINT} and a body"})
    return list(items.items()), invalid
