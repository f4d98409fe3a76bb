"""A fake LLM server: a deterministic stand-in for OpenAI's and Anthropic's HTTP APIs.

Tests, the throughput benchmark and users' dry "plumbing" runs need to exercise the real `openai`
and `anthropic` SDKs (and everything the project builds on them: retries, rate limits, caching,
structured output, accounting) without network access, API keys, money or flakiness. This server
speaks both chat APIs over plain HTTP/1.1 on loopback and answers instantly and reproducibly:

* plain requests get ``"[fake] " + the start of the last user message``;
* structured requests (OpenAI ``response_format`` json_schema/json_object, Anthropic forced tool,
  ``output_format`` or ``output_config.format``) get an instance that validates against the schema,
  chosen from a seed hashed from the messages (see `schema_instance`);
* knobs add latency, a concurrency cap answered with 429s, and an API key check;
* `inject()` queues deterministic faults (429, 500, stall, malformed body, truncated reply) that hit
  the next requests in arrival order;
* `stats`, `requests` and `request_headers` record what the clients actually did;
* the providers' batch APIs (OpenAI files + batches, Anthropic message batches) run jobs for
  `batch_delay` seconds and answer their items like online requests: see `fake_batches`.

Use ``with FakeServer(latency=0.05) as srv:`` (a daemon thread with its own event loop) and point an
SDK at ``srv.base_url``, or run ``python -m personagym.testing.fake_server`` in the foreground.
Only the standard library is used, and the hot path is kept small (~thousands of requests/s).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import hashlib
import importlib
import itertools
import json
import signal
import threading
import time
from http import HTTPStatus
from typing import Any, Callable, NamedTuple

from personagym.testing.schema_instance import instance

__all__ = ["FakeServer", "Stats", "FAULT_KINDS"]

Responder = Callable[[str, dict], "str | dict | None"]
FAULT_KINDS = ("429", "500", "stall", "malformed", "truncated")
RECORD_CAP = 10_000  # request bodies and headers kept for inspection
MODELS = ("fake-model", "fake-judge")

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                405: "invalid_request_error", 429: "rate_limit_error", 500: "api_error"}
_REASONS = {s.value: s.phrase for s in HTTPStatus}


class _BadRequest(Exception):
    """The request cannot be read: answer 400 and close the connection."""


class _Fault(NamedTuple):
    kind: str
    retry_after: float | str | None
    stall_seconds: float


@dataclasses.dataclass
class Stats:
    """Counters of what clients did. `FakeServer.stats` hands out consistent copies of these.

    `requests`, `arrivals` (time.monotonic() values) and the in-flight figures count chat and
    messages requests only; `by_path` counts every HTTP request by its path. Fields can be read as
    attributes or as items (``stats["rejected"]``).
    """

    requests: int = 0
    by_path: dict[str, int] = dataclasses.field(default_factory=dict)
    in_flight: int = 0
    max_in_flight_seen: int = 0
    rejected: int = 0
    faults: dict[str, int] = dataclasses.field(default_factory=dict)
    arrivals: list[float] = dataclasses.field(default_factory=list)
    batch_jobs: int = 0  # batch jobs created, and the items they held (see fake_batches)
    batch_items: int = 0

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def copy(self) -> "Stats":
        return Stats(self.requests, dict(self.by_path), self.in_flight, self.max_in_flight_seen,
                     self.rejected, dict(self.faults), list(self.arrivals), self.batch_jobs, self.batch_items)


class FakeServer:
    """See the module docstring. Every knob may also be changed as an attribute while running."""

    def __init__(self, *, latency: float = 0.0, max_in_flight: int | None = None,
                 require_key: str | None = None, responder: Responder | None = None,
                 retry_after_default: float | str = "1", host: str = "127.0.0.1", port: int = 0,
                 batch_delay: float = 0.05):
        from personagym.testing.fake_batches import FakeBatches  # here: that module imports this one

        self.latency = latency
        self.max_in_flight = max_in_flight
        self.require_key = require_key
        self.responder = responder
        self.retry_after_default = retry_after_default
        self.host = host
        self.port = port
        self.batch_delay = batch_delay  # seconds a batch job runs before its items are answered
        self.batches = FakeBatches(self)  # batch jobs, and their fault injection
        self._lock = threading.Lock()
        self._stats = Stats()
        self._faults: collections.deque[_Fault] = collections.deque()
        self._bodies: list[dict] = []
        self._headers: list[dict[str, str]] = []
        self._ids = itertools.count(1)
        self._conns: set[asyncio.Task] = set()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ----- public API -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def stats(self) -> Stats:
        """A consistent snapshot, safe to take from any thread."""
        with self._lock:
            return self._stats.copy()

    @property
    def requests(self) -> list[dict]:
        """Parsed JSON bodies of the latest chat/messages requests (at most RECORD_CAP), oldest first."""
        with self._lock:
            return list(self._bodies)

    @property
    def request_headers(self) -> list[dict[str, str]]:
        """Headers (names lower-cased) of the same requests as `requests`."""
        with self._lock:
            return list(self._headers)

    def reset_stats(self) -> None:
        """Forget counters and recorded requests (queued faults stay queued)."""
        with self._lock:
            in_flight = self._stats.in_flight
            self._stats = Stats(in_flight=in_flight, max_in_flight_seen=in_flight)
            self._bodies.clear()
            self._headers.clear()

    def inject(self, kind: str, count: int = 1, retry_after: float | str | None = None,
               stall_seconds: float = 60.0) -> None:
        """Queue `count` faults of a kind from FAULT_KINDS.

        Chat/messages requests take them one each, in arrival order, once past the key check and the
        in-flight cap. A "429" fault answers at once; the others come after `latency`.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        with self._lock:
            self._faults.extend([_Fault(kind, retry_after, stall_seconds)] * count)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> int:
        return len(self._faults)

    def start(self) -> "FakeServer":
        """Serve from a daemon thread; returns once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("FakeServer already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            try:
                try:
                    loop.run_until_complete(self._open())
                except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                    failure.append(exc)
                    return
                finally:
                    ready.set()
                loop.run_forever()
                loop.run_until_complete(self._close())
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="FakeServer", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close every connection and the socket, and end the thread. Idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if thread.is_alive() and self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        thread.join(timeout=10)

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def serve_until_signalled(self) -> None:
        """Foreground serving for the command line: until SIGINT or SIGTERM."""
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, done.set)
        await self._open()
        print(f"listening on {self.base_url}", flush=True)
        try:
            await done.wait()
        finally:
            await self._close()
        # What benchmarks read back: requests served and refused.
        stats = self.stats
        print(json.dumps({"requests": stats.requests, "rejected": stats.rejected,
                          "max_in_flight_seen": stats.max_in_flight_seen}), flush=True)

    # ----- connections and HTTP ---------------------------------------------------------------

    async def _open(self) -> None:
        self._server = await asyncio.start_server(self._connection, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._conns)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        for _ in range(3):  # let transports run their connection_lost callbacks and close sockets
            await asyncio.sleep(0)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._conns.add(task)
        try:
            keep_alive = True
            while keep_alive:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                    method, target, headers, keep_alive = self._parse_head(head)
                    body = await self._read_body(reader, writer, headers)
                except asyncio.IncompleteReadError:
                    break  # the client closed the connection
                except (_BadRequest, asyncio.LimitOverrunError) as exc:
                    writer.write(self._respond(*self._error(None, 400, f"bad request: {exc}"), False))
                    break
                try:
                    status, extra, payload = await self._dispatch(method, target, headers, body)
                except Exception as exc:  # noqa: BLE001 - a bug here should show, not kill the connection
                    status, extra, payload = self._error(None, 500, f"fake server error: {exc!r}")
                writer.write(self._respond(status, extra, payload, keep_alive))
                if writer.transport.get_write_buffer_size() > 1 << 16:
                    await writer.drain()
        except (ConnectionError, OSError):
            pass  # the client went away (e.g. it timed out on a stall): nothing to report
        except asyncio.CancelledError:
            pass  # _close() ends connections so; returning normally keeps asyncio's streams quiet
        finally:
            self._conns.discard(task)
            writer.close()

    @staticmethod
    def _parse_head(head: bytes) -> tuple[str, str, dict[str, str], bool]:
        lines = head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequest(f"request line {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise _BadRequest(f"header line {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        keep_alive = "keep-alive" in connection if parts[2] == "HTTP/1.0" else "close" not in connection
        return parts[0], parts[1], headers, keep_alive

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         headers: dict[str, str]) -> bytes:
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                try:
                    size = int(size_line.split(b";")[0], 16)
                except ValueError:
                    raise _BadRequest("chunk size") from None
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append((await reader.readexactly(size + 2))[:-2])
        length = headers.get("content-length", "0")
        if not length.isdigit():
            raise _BadRequest(f"Content-Length {length[:20]!r}")
        return await reader.readexactly(int(length)) if length != "0" else b""

    @staticmethod
    def _respond(status: int, extra: list[tuple[str, str]], payload: bytes, keep_alive: bool) -> bytes:
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
                "Content-Type: application/json", f"Content-Length: {len(payload)}",
                "Connection: keep-alive" if keep_alive else "Connection: close"]
        head.extend(f"{name}: {value}" for name, value in extra)
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload

    @staticmethod
    def _error(api: str | None, status: int, message: str,
               extra: list[tuple[str, str]] | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
        kind = _ERROR_TYPES.get(status, "api_error")
        if api == "openai":
            body: dict[str, Any] = {"error": {"message": message, "type": kind, "param": None, "code": None}}
        else:
            body = {"type": "error", "error": {"type": kind, "message": message}}
        return status, extra or [], json.dumps(body).encode()

    # ----- the two chat APIs ------------------------------------------------------------------

    async def _dispatch(self, method: str, target: str, headers: dict[str, str],
                        body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        path = target.split("?", 1)[0]
        with self._lock:
            self._stats.by_path[path] = self._stats.by_path.get(path, 0) + 1
        route = (path[3:] if path.startswith("/v1/") else path).rstrip("/")
        if route == "/models":
            if method != "GET":
                return self._error(None, 405, f"{method} not allowed on {path}")
            data = [{"id": m, "object": "model", "type": "model", "display_name": m, "created": 0,
                     "created_at": "2024-01-01T00:00:00Z", "owned_by": "personagym"} for m in MODELS]
            listing = {"object": "list", "data": data, "has_more": False, "first_id": MODELS[0],
                       "last_id": MODELS[-1]}
            return 200, [], json.dumps(listing).encode()
        if route.startswith(("/files", "/batches", "/messages/batches")):
            return await self.batches.handle(method, route, headers, body)
        api = {"/chat/completions": "openai", "/messages": "anthropic"}.get(route)
        if api is None:
            return self._error(None, 404, f"no route for {method} {path}")
        if method != "POST":
            return self._error(api, 405, f"{method} not allowed on {path}")
        return await self._chat(api, headers, body)

    async def _chat(self, api: str, headers: dict[str, str],
                    body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        arrival = time.monotonic()
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        with self._lock:
            stats = self._stats
            stats.requests += 1
            stats.arrivals.append(arrival)
            if isinstance(data, dict):
                self._bodies.append(data)
                self._headers.append(headers)
                if len(self._bodies) > RECORD_CAP:
                    del self._bodies[0], self._headers[0]
        if not isinstance(data, dict):
            return self._error(api, 400, "request body is not a JSON object")
        key = self.require_key
        if key is not None and headers.get("x-api-key") != key and headers.get("authorization") != f"Bearer {key}":
            return self._error(api, 401, "invalid API key")
        problem = _check_request(api, data)
        if problem:
            return self._error(api, 400, problem)
        cap = self.max_in_flight
        with self._lock:
            if cap is not None and stats.in_flight >= cap:
                stats.rejected += 1
                return self._error(api, 429, f"rate limited: {cap} requests in flight",
                                   [("Retry-After", _seconds(self.retry_after_default))])
            fault = self._faults.popleft() if self._faults else None
            if fault is not None:
                stats.faults[fault.kind] = stats.faults.get(fault.kind, 0) + 1
                if fault.kind == "429":
                    extra = [] if fault.retry_after is None else [("Retry-After", _seconds(fault.retry_after))]
                    return self._error(api, 429, "rate limited (injected fault)", extra)
            stats.in_flight += 1
            stats.max_in_flight_seen = max(stats.max_in_flight_seen, stats.in_flight)
        try:
            if self.latency > 0:
                await asyncio.sleep(self.latency)
            if fault is not None:
                if fault.kind == "500":
                    return self._error(api, 500, "internal server error (injected fault)")
                if fault.kind == "malformed":
                    return 200, [], b'{"choices": [' if api == "openai" else b'{"content": ['
                if fault.kind == "stall":
                    await asyncio.sleep(fault.stall_seconds)
            try:
                reply = self._reply(api, data, truncated=fault is not None and fault.kind == "truncated")
            except _ResponderError as exc:
                return self._error(api, 500, str(exc))
            return 200, [], json.dumps(reply).encode()
        finally:
            with self._lock:
                self._stats.in_flight -= 1

    def _reply(self, api: str, data: dict, truncated: bool) -> dict[str, Any]:
        """The success body: plain text, JSON text for a schema, or a forced tool call."""
        mode, schema, tool = _structure(api, data)
        custom = None
        if self.responder is not None:
            try:
                custom = self.responder(api, data)
            except Exception as exc:  # noqa: BLE001 - shown to the test as a 500
                raise _ResponderError(f"responder raised {type(exc).__name__}: {exc}") from None
        messages = data.get("messages") or []
        if mode == "tool":
            if isinstance(custom, str):
                try:
                    custom = json.loads(custom)
                except ValueError as exc:
                    raise _ResponderError(f"responder returned non-JSON tool input: {exc}") from None
            tool_input = custom if custom is not None else instance(schema, _seed(data))
            text = json.dumps(tool_input)
        elif custom is not None:
            text = custom if isinstance(custom, str) else json.dumps(custom)
        elif mode == "json":
            text = json.dumps(instance(schema, _seed(data)) if schema else {"reply": _plain(messages)})
        else:
            text = _plain(messages)
        if truncated:
            text = text[: len(text) // 2]
        n = next(self._ids)
        usage_in = max(1, _words(data.get("system")) + sum(_words(m.get("content")) for m in messages
                                                            if isinstance(m, dict)))
        usage_out = max(1, len(text.split()))
        model = data.get("model", MODELS[0])
        if api == "openai":
            return {"id": f"chatcmpl-fake{n}", "object": "chat.completion", "created": int(time.time()),
                    "model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                                 "finish_reason": "length" if truncated else "stop"}],
                    "usage": {"prompt_tokens": usage_in, "completion_tokens": usage_out,
                              "total_tokens": usage_in + usage_out}}
        if mode == "tool" and not truncated:
            block: dict[str, Any] = {"type": "tool_use", "id": f"toolu_fake{n}", "name": tool, "input": tool_input}
            stop = "tool_use"
        else:
            block, stop = {"type": "text", "text": text}, "max_tokens" if truncated else "end_turn"
        return {"id": f"msg_fake{n}", "type": "message", "role": "assistant", "model": model,
                "content": [block], "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": usage_in, "output_tokens": usage_out}}


class _ResponderError(Exception):
    pass


def _check_request(api: str, data: dict) -> str | None:
    """What the real API would reject outright: missing essentials, or streaming (not faked)."""
    if not isinstance(data.get("model"), str):
        return "`model` is required"
    if not isinstance(data.get("messages"), list):
        return "`messages` must be a list"
    if api == "anthropic" and not isinstance(data.get("max_tokens"), int):
        return "`max_tokens` is required"
    if data.get("stream"):
        return "the fake server does not stream"
    return None


def _structure(api: str, data: dict) -> tuple[str, dict | None, str | None]:
    """("text" | "json" | "tool", schema, tool name) for a request."""
    if api == "openai":
        fmt = data.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            return "json", (fmt.get("json_schema") or {}).get("schema") or {}, None
        if isinstance(fmt, dict) and fmt.get("type") == "json_object":
            return "json", fmt.get("schema"), None
        return "text", None, None
    choice = data.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "tool":
        for tool in data.get("tools") or ():
            if isinstance(tool, dict) and tool.get("name") == choice.get("name"):
                return "tool", tool.get("input_schema") or {}, tool["name"]
    fmt = data.get("output_format") or (data.get("output_config") or {}).get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return "json", fmt.get("schema") or {}, None
    return "text", None, None


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return " ".join(b.get("text", "") for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def _words(content: Any) -> int:
    return len(_text_of(content).split())


def _plain(messages: list) -> str:
    last = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None)
    said = " ".join(_text_of(last.get("content")).split()) if last else ""
    return "[fake] " + (said[:80] or "ok")


def _seed(data: dict) -> int:
    raw = json.dumps([data.get("system"), data.get("messages")], sort_keys=True, ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(raw.encode()).digest()[:8], "big")


def _seconds(value: float | str) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m personagym.testing.fake_server", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--max-in-flight", type=int, default=None, help="answer 429 beyond this many")
    parser.add_argument("--require-key", default=None, help="answer 401 unless this API key is sent")
    parser.add_argument("--responder", default=None, metavar="MODULE:NAME",
                        help="a function (api, body) -> reply text or JSON object, e.g. for benchmarks")
    args = parser.parse_args(argv)
    server = FakeServer(host=args.host, port=args.port, latency=args.latency,
                        max_in_flight=args.max_in_flight, require_key=args.require_key)
    if args.responder:
        module, _, name = args.responder.partition(":")
        server.responder = getattr(importlib.import_module(module), name)
    try:
        asyncio.run(server.serve_until_signalled())
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
