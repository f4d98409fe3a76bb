"""A fake LLM server: a deterministic stand-in for OpenAI's and Anthropic's HTTP APIs.

Tests, benchmarks and users' dry "plumbing" runs need to exercise the real SDKs (and all the project
builds on them) without network, keys, money or flakiness. This server answers both chat APIs on
loopback at once and reproducibly (see `replies`); knobs add latency, limits, a key check and the
structured-output shapes it takes; `inject()` queues faults; `stats` and `requests` record what clients
did; `batches` runs the batch APIs (see `fake_batches`). Use ``with FakeServer() as srv:`` and point an
SDK at ``srv.base_url``, or run ``python -m personagym.testing.fake_server``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import importlib
import itertools
import json
import math
import signal
import threading
import time
from typing import Any, Callable

from aiohttp import web

from personagym.testing import replies
from personagym.testing.fake_batches import FakeBatches
from personagym.testing.replies import IDS, STRUCTURED_MODES, error, json_response

FAULT_KINDS = ("429", "500", "stall", "malformed", "truncated")
_APIS = {"/chat/completions": "openai", "/messages": "anthropic"}
_KEYS = ("limit", "remaining", "reset")  # of each rate-limit header


@dataclasses.dataclass
class Stats:
    """Counters of what clients did, read as attributes or items: `requests`, `arrivals` and the in-flight figures
    count chat requests, `by_path` all; `rejected` 429s of max_in_flight/rpm/tpm; `refused_shapes` `structured`'s."""

    requests: int = 0
    by_path: dict[str, int] = dataclasses.field(default_factory=dict)
    in_flight: int = 0
    max_in_flight_seen: int = 0
    rejected: int = 0
    faults: dict[str, int] = dataclasses.field(default_factory=dict)
    arrivals: list[float] = dataclasses.field(default_factory=list)
    batch_jobs: int = 0
    batch_items: int = 0
    refused_shapes: int = 0

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


class RateWindow:
    """Per-minute limits as the providers apply and report them: a sliding window over the requests admitted
    and their tokens, prompt words on admission and reply words once written (a burst can overshoot, as there).
    With `rate_span` the same limits are also enforced pro rata over that many seconds, as both providers say they
    may be ("60,000 requests/minute may be enforced as 1,000 requests/second"); the headers still report the window."""

    def __init__(self, server: "FakeServer") -> None:
        self._server = server  # whose rpm, tpm and rate_window apply, as they are at each request
        self._entries: collections.deque[list] = collections.deque()  # [admitted at, tokens]
        self._tokens = 0

    def _prune(self, now: float) -> float:
        window = self._server.rate_window
        while self._entries and self._entries[0][0] <= now - window:
            self._tokens -= self._entries.popleft()[1]
        return window

    def admit(self, now: float, prompt: int) -> tuple[list | None, float]:
        """(entry, 0) if one more request fits; else (None, seconds until the oldest entry leaves)."""
        window, rpm, tpm = self._prune(now), self._server.rpm, self._server.tpm
        if (rpm is not None and len(self._entries) + 1 > rpm) or (tpm is not None and self._tokens + prompt > tpm):
            return None, self._entries[0][0] + window - now if self._entries else window
        span = self._server.rate_span
        if span is not None and span < window:
            recent = list(itertools.takewhile(lambda e: e[0] > now - span, reversed(self._entries)))
            share = span / window
            if (rpm is not None and len(recent) + 1 > rpm * share) or (
                    tpm is not None and sum(e[1] for e in recent) + prompt > tpm * share):
                return None, recent[-1][0] + span - now if recent else span
        self._entries.append([now, prompt])
        self._tokens += prompt
        return self._entries[-1], 0.0

    def charge(self, entry: list, tokens: int, now: float) -> None:
        """Add a reply's tokens to its request, unless that has left the window (pruned or not yet)."""
        if entry[0] > now - self._server.rate_window:
            entry[1] += tokens
            self._tokens += tokens

    async def add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """Put the API's rate-limit headers on a chat reply; "reset" is when the whole budget is back."""
        api, rpm, tpm = _APIS.get(_route(request.path)), self._server.rpm, self._server.tpm
        if api is None or (rpm is None and tpm is None):
            return
        with self._server.lock:
            now = time.monotonic()
            window = self._prune(now)
            reset = self._entries[-1][0] + window - now if self._entries else 0.0
            name = "x-ratelimit-{}-{}" if api == "openai" else "anthropic-ratelimit-{1}-{0}"
            when = _duration(reset) if api == "openai" else replies.rfc3339(time.time() + reset)
            for kind, limit, used in (("requests", rpm, len(self._entries)), ("tokens", tpm, self._tokens)):
                if limit is not None:
                    values = (math.floor(limit), max(0, math.floor(limit - used)), when)
                    response.headers.update({name.format(key, kind): str(v) for key, v in zip(_KEYS, values)})


class FakeServer:
    """See the module docstring. Every knob may also be changed as an attribute while running."""

    def __init__(self, *, latency: float = 0.0, max_in_flight: int | None = None, require_key: str | None = None,
                 responder: Callable[[str, dict], str | dict | None] | None = None,
                 retry_after_default: float | str = "1", host: str = "127.0.0.1", port: int = 0,
                 batch_delay: float = 0.05, structured: str = "json_schema", rpm: float | None = None,
                 tpm: float | None = None, rate_window: float = 60.0, rate_span: float | None = None,
                 retired: tuple[str, ...] = ()):
        if structured not in STRUCTURED_MODES:
            raise ValueError(f"unknown structured mode {structured!r}; expected one of {STRUCTURED_MODES}")
        self.latency, self.max_in_flight, self.require_key = latency, max_in_flight, require_key
        self.responder, self.retry_after_default, self.host, self.port = responder, retry_after_default, host, port
        self.batch_delay = batch_delay  # seconds a batch job runs before its items are answered
        self.structured = structured  # the structured-output shapes the OpenAI endpoint takes (see replies)
        self.rpm, self.tpm, self.rate_window = rpm, tpm, rate_window  # limits per `rate_window` seconds
        self.rate_span = rate_span  # also enforced pro rata over this many seconds (RateWindow)
        self.retired = retired  # models answered with 404, as providers answer a retired model
        self.lock = threading.Lock()  # guards all state below, and the batch jobs'
        self.batches = FakeBatches(self)
        self._stats = Stats()
        self._faults: collections.deque[tuple[str, float | str | None, float]] = collections.deque()
        self._recorded: collections.deque[tuple[dict, dict]] = collections.deque(maxlen=10_000)  # the latest
        self._window = RateWindow(self)
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def stats(self) -> Stats:
        """A consistent snapshot, safe to take from any thread."""
        with self.lock:
            s = self._stats
            return dataclasses.replace(s, by_path=dict(s.by_path), faults=dict(s.faults), arrivals=list(s.arrivals))

    @property
    def requests(self) -> list[dict]:
        """Parsed JSON bodies of the latest chat/messages requests and batch items, oldest first."""
        with self.lock:
            return [body for body, _ in self._recorded]

    @property
    def request_headers(self) -> list[dict[str, str]]:
        """Headers (names lower-cased) of the same requests as `requests`."""
        with self.lock:
            return [headers for _, headers in self._recorded]

    def reset_stats(self) -> None:
        """Forget counters and recorded requests (queued faults and the rate window stay)."""
        with self.lock:
            self._stats = Stats(in_flight=self._stats.in_flight, max_in_flight_seen=self._stats.in_flight)
            self._recorded.clear()

    def inject(self, kind: str, count: int = 1, retry_after: float | str | None = None,
               stall_seconds: float = 60.0) -> None:
        """Queue faults for the next chat requests past the key check and limits: a "429" comes at once."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        with self.lock:
            self._faults.extend([(kind, retry_after, stall_seconds)] * count)

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> int:
        return len(self._faults)

    def start(self) -> "FakeServer":
        """Serve from a daemon thread; returns once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("FakeServer already started")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="FakeServer", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._open(), self._loop).result()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Close every connection and the socket, and end the thread. Idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _open(self) -> None:
        app = web.Application(client_max_size=1 << 28)  # long prompts; batch files come as multipart
        app.router.add_route("*", "/{path:.*}", self._handle)
        app.on_response_prepare.append(self._window.add_headers)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port, backlog=1024).start()
        self.port = self._runner.addresses[0][1]

    async def _close(self) -> None:
        # Replies still running end now, not after a grace period: a stall, maybe for a client long gone.
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._runner.cleanup()

    def key_ok(self, headers: dict[str, str]) -> bool:
        key = self.require_key
        return key is None or headers.get("x-api-key") == key or headers.get("authorization") == f"Bearer {key}"

    def record(self, bodies: list, headers: dict, job: bool = False, fault: str | None = None) -> None:
        """Keep request bodies (and count a batch job's, or a fault). The caller holds the lock."""
        self._recorded.extend((body, headers) for body in bodies if isinstance(body, dict))
        if job:
            self._stats.batch_jobs += 1
            self._stats.batch_items += len(bodies)
        if fault is not None:
            self._stats.faults[fault] = self._stats.faults.get(fault, 0) + 1

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.path
        with self.lock:
            self._stats.by_path[path] = self._stats.by_path.get(path, 0) + 1
        route = _route(path)
        if route.startswith(("/files", "/batches", "/messages/batches")):
            return await self.batches.handle(request, route)
        api = _APIS.get(route)
        if api is None or request.method != "POST":
            return error(api, 405 if api else 404, f"no route for {request.method} {path}")
        return await self._chat(api, request)

    async def _chat(self, api: str, request: web.Request) -> web.Response:
        arrival = time.monotonic()
        headers = {name.lower(): value for name, value in request.headers.items()}
        data = replies.loads(await request.read())
        with self.lock:
            self._stats.requests += 1
            self._stats.arrivals.append(arrival)
            self.record([data], headers)
        problem = replies.check_request(api, data)
        if isinstance(data, dict) and not self.key_ok(headers):
            return error(api, 401, "invalid API key")
        if problem or data["model"] in self.retired:
            return error(api, 400, problem) if problem else error(api, 404, f"model: {data['model']}")
        refused = replies.refusal(self.structured, data) if api == "openai" else None
        with self.lock:
            stats, entry = self._stats, None
            if refused:
                stats.refused_shapes += 1
                return error(api, refused[0], refused[1], **refused[2])
            if self.max_in_flight is not None and stats.in_flight >= self.max_in_flight:
                stats.rejected += 1
                return error(api, 429, f"rate limited: {self.max_in_flight} requests in flight",
                             {"Retry-After": str(self.retry_after_default).removesuffix(".0")})
            if self.rpm is not None or self.tpm is not None:
                entry, wait = self._window.admit(arrival, replies.prompt_words(data))
                if entry is None:
                    stats.rejected += 1
                    return error(api, 429, f"rate limited: the requests or tokens of {self.rate_window:g} s are spent",
                                 {"Retry-After": str(max(1, math.ceil(wait)))})
            kind, retry_after, stall = self._faults.popleft() if self._faults else (None, None, 0)
            self.record([], headers, fault=kind)
            if kind == "429":
                retry = None if retry_after is None else {"Retry-After": str(retry_after).removesuffix(".0")}
                return error(api, 429, "rate limited (injected fault)", retry)
            stats.in_flight += 1
            stats.max_in_flight_seen = max(stats.max_in_flight_seen, stats.in_flight)
        try:
            delay = self.latency + (stall if kind == "stall" else 0)
            if delay > 0:
                await asyncio.sleep(delay)
            if kind == "500":  # with a fresh request id, as a real transient error has
                response = error(api, 500, f"internal server error (injected fault; request req_fake{next(IDS)})")
            elif kind == "malformed":
                response = json_response(b'{"choices": [' if api == "openai" else b'{"content": [')
            else:
                try:
                    body, completion = replies.reply(api, data, next(IDS), truncated=kind == "truncated",
                                                     mode=self.structured, responder=self.responder)
                    response = json_response(body)
                except replies.ResponderError as exc:
                    completion, response = 0, error(api, 500, str(exc))
                if entry is not None:
                    with self.lock:
                        self._window.charge(entry, completion, time.monotonic())
            await response.prepare(request)  # all the work of a reply but the sending, still counted in flight
        finally:
            with self.lock:
                self._stats.in_flight -= 1
        await response.write_eof()  # sends at once: the count drops just before the client can see the reply
        return response


def _route(path: str) -> str:
    return (path[3:] if path.startswith("/v1/") else path).rstrip("/")


def _duration(seconds: float) -> str:
    """OpenAI's spelling of a wait: "20ms", "1s", "1.5s", "6m0s"."""
    minutes, rest = divmod(round(seconds, 3), 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{max(1, round(seconds * 1000))}ms" if 0 < seconds < 1 else f"{int(minutes)}m{text}" if minutes else text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser("python -m personagym.testing.fake_server", description=__doc__.split("\n")[0])
    for flag, kind, text in (("--host", str, "default 127.0.0.1"), ("--port", int, "default 0: a free port"),
                             ("--latency", float, "seconds before each reply"), ("--rpm", float, "requests a minute"),
                             ("--max-in-flight", int, "429 beyond this many"), ("--tpm", float, "tokens (words) a min"),
                             ("--rate-span", float, "also enforce rpm/tpm pro rata per this many s"),
                             ("--require-key", str, "answer 401 unless this API key is sent")):
        parser.add_argument(flag, type=kind, help=text)
    parser.add_argument("--structured", choices=STRUCTURED_MODES, default="json_schema", help="see testing.replies")
    parser.add_argument("--responder", metavar="MODULE:NAME", help="a function (api, body) -> reply text or JSON")
    args = parser.parse_args(argv)
    knobs = {name: value for name, value in vars(args).items() if value is not None and name != "responder"}
    server = FakeServer(**knobs)
    if args.responder:
        module, _, name = args.responder.partition(":")
        server.responder = getattr(importlib.import_module(module), name)
    # The server thread inherits the blocked signals; the main thread only waits for them.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    with server:
        print(f"listening on {server.base_url}", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    stats = server.stats  # what benchmarks read back: requests served and refused
    print(json.dumps({key: stats[key] for key in ("requests", "rejected", "max_in_flight_seen")}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
