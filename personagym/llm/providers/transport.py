"""The HTTP layer: HTTP/1.1 on an asyncio protocol, replies parsed by httptools, whole bodies, bounded.

OpenAI-compatible chat calls are posted on it directly; the SDKs (Anthropic, and OpenAI's Batch
API) reach it through an httpx2 transport (personagym.llm.providers.sdk_http), which only they
import. It replaced aiohttp, which cost 0.25-0.3 s of CPU to import (two TLS contexts built at
import, and its tracing classes) and about 0.35 ms of CPU an exchange; h11, tried next, cost the
same 0.35 ms in its pure-Python state machine. Replies are parsed by httptools (llhttp, the
parser of Node.js and uvicorn), so a server's malformed reply meets a well-tested parser; the
request, a line and a few headers we build ourselves, is written here. bench/RESULTS.md ("CPU per
call") has the figures.

What a chat client needs and nothing more: a pool of kept-alive connections per origin (a
connection the server closed while idle is noticed and the request sent on a new one), TLS with the
system's certificates, gzip and deflate, and a cap on size. A body is counted after decompression,
and the read stops at `max_bytes`: a 50 MB answer, or a 100 KB gzip body that inflates to 100 MB,
fails as Oversized (the providers' Cause.OVERSIZED) with only a chunk or two in memory beyond the
cap. Credentials in a URL are never sent: the key goes in the header its API reads.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import ipaddress
import ssl
import urllib.parse
import weakref
import zlib
from dataclasses import dataclass
from typing import Any, Iterable

import httptools

#: The largest reply body read, decompressed. No honest chat reply comes near it (a reply of the
#: largest output budgets, 128k tokens, is well under 1 MB of JSON); ProviderSettings can change it.
DEFAULT_MAX_REPLY_BYTES = 16 * 2**20
MAX_HEADER_BYTES = 64 * 2**10  # a reply's status line and headers; llhttp itself sets no bound
_DECODED = "gzip, deflate"  # the encodings we undo, and so the only ones we accept
HAPPY_EYEBALLS_DELAY = 0.25  # RFC 8305's wait before trying a host's next address
#: Called (in the task making the call) just before its request is written: the gateway counts the
#: calls a server can be holding from that moment, in the order the server receives them
#: (personagym.llm.endpoints). A write to a new connection waits for it to open, so calls counted in
#: one order can reach the server in another.
on_write: contextvars.ContextVar[Any] = contextvars.ContextVar("on_write", default=None)
_OWN_HEADERS = {"host", "content-length", "transfer-encoding", "accept-encoding", "connection"}
_READ_SIZE = 256 * 2**10  # what one read takes at most: asyncio's own size for a socket's reads


class Oversized(Exception):
    """A reply body passed the cap (`limit` bytes, decompressed)."""

    def __init__(self, limit: int):
        super().__init__(f"the reply is larger than {limit:,} bytes (the cap on a reply's size)")
        self.limit = limit


class ConnectFailed(Exception):
    """No connection could be made: no such host, refused, or TLS refused. Nothing was sent."""


class Broken(Exception):
    """Connected, then the exchange failed: the connection closed or reset before the reply ended,
    or what came back was not HTTP (or not in the encoding it claimed)."""


class _Stale(Exception):
    """A kept-alive connection the server had closed before our request: it never saw it."""


@functools.lru_cache(maxsize=1)
def _tls() -> ssl.SSLContext:
    """The system's certificates, verified, loaded once (tens of milliseconds) and only by a run that
    calls an https URL."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int

    @functools.cached_property
    def one_address(self) -> bool:
        """The host is an IP address, not a name: there is one address to connect to, and nothing
        for happy eyeballs to race (asyncio's race costs a task and its futures, about 0.15 ms of
        CPU a connection, and a run at a local server opens a hundred)."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    @functools.cached_property
    def authority(self) -> str:  # the Host header, asked for by every exchange
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


@functools.lru_cache(maxsize=256)
def _split(url: str) -> tuple[_Origin, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectFailed(f"not an http:// or https:// URL with a host (scheme {parts.scheme!r})")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:  # a port that is not a number, or out of range
        raise ConnectFailed(str(exc)) from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Origin(parts.scheme, parts.hostname, port), target


def _head(method: str, target: str, authority: str, headers: Iterable[tuple[str, str]], length: int | None) -> bytes:
    prefix = _checked_head(method, target, authority, tuple(headers))
    return prefix + (b"Content-Length: %d\r\n\r\n" % length if length is not None else b"\r\n")


@functools.lru_cache(maxsize=64)
def _checked_head(method: str, target: str, authority: str, headers: tuple[tuple[str, str], ...]) -> bytes:
    """The head up to its Content-Length, checked and encoded once per header set: a provider sends
    the same headers on every call, and checking them character by character cost 10 us a call."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {authority}"]
    for name, value in headers:
        if name.lower() in _OWN_HEADERS:
            continue
        if not name or any(c in name for c in ' \t\r\n:') or any(c in value for c in "\r\n\0"):
            # A line break in a value (from an environment variable, say) would forge headers.
            raise Broken(f"the request could not be sent: the header {name!r} holds a line break or is malformed")
        lines.append(f"{name}: {value}")
    lines.append(f"Accept-Encoding: {_DECODED}")
    try:
        return ("\r\n".join(lines) + "\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise Broken("the request could not be sent: a header holds a character outside Latin-1") from None


class _Connection(asyncio.BufferedProtocol):
    """One connection, one exchange at a time: `send` writes a request and waits for the reply the
    parser assembles from what `buffer_updated` feeds it.

    A buffered protocol: asyncio reads into `buffer`, which every connection of the event loop shares,
    where for a plain protocol it makes a new 256 KB bytes object for every read, which the C library
    maps, shrinks and unmaps, three system calls and about 20 us a reply. Sharing is safe: asyncio
    calls get_buffer, reads and calls buffer_updated in one go, and the parser copies out what it
    keeps before buffer_updated returns."""

    def __init__(self, buffer: memoryview) -> None:
        self.buffer = buffer
        self.max_bytes = DEFAULT_MAX_REPLY_BYTES  # set by each exchange: the cap of the session sending it
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._reply: asyncio.Future | None = None
        self._parser: Any = None

    # -- asyncio's side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self._reply is None or self._reply.done():
            self.close()  # bytes nobody asked for: the connection is not fit to reuse
            return
        self._got_bytes = True
        try:
            self._parser.feed_data(self.buffer[:nbytes])
        except httptools.HttpParserCallbackError as exc:
            self._fail(exc.__context__ if isinstance(exc.__context__, (Oversized, Broken)) else Broken(str(exc)))
        except httptools.HttpParserError as exc:
            self._fail(Broken(f"not an HTTP reply: {exc}"))

    def eof_received(self) -> bool:
        self._ended()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._ended(exc)

    def _ended(self, exc: Exception | None = None) -> None:
        if self._reply is None or self._reply.done():
            return
        if not self._got_bytes:
            self._fail(_Stale())
        elif self._headers_done and self._until_close:  # a body that ends when the connection does
            self._finish()
        else:
            self._fail(Broken(f"the server closed the connection before the reply ended{f' ({exc})' if exc else ''}"))

    # -- httptools' callbacks
    def on_message_begin(self) -> None:
        if self._reply.done():  # a second reply in the same bytes: stop before it touches the first's
            raise Broken("the server sent more than one reply")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > MAX_HEADER_BYTES:
            raise Broken(f"the reply's headers pass {MAX_HEADER_BYTES:,} bytes")
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        if 100 <= self._status < 200:
            return  # an interim reply (100 Continue): the real one follows
        self._headers_done = True
        headers = self._headers
        self._until_close = "content-length" not in headers and "transfer-encoding" not in headers
        self._decoder = _decoder(headers.pop("content-encoding", None))
        declared = headers.get("content-length", "")
        if self._decoder is None and declared.isdigit() and int(declared) > self.max_bytes:
            raise Oversized(self.max_bytes)

    def on_body(self, body: bytes) -> None:
        if self._decoder is not None:
            try:
                body = self._decoder.decompress(body, self.max_bytes + 1 - self._size)
            except zlib.error as exc:
                raise Broken(f"the reply's encoding is broken: {exc}") from None
        self._size += len(body)
        if self._size > self.max_bytes:
            raise Oversized(self.max_bytes)
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        if not self._headers_done:  # the end of an interim reply
            self._headers, self._header_bytes = {}, 0
            return
        self._keep_alive = self._parser.should_keep_alive()  # llhttp answers only until this returns
        self._finish()

    # -- ours
    async def send(self, head: bytes, body: bytes | None, max_bytes: int) -> tuple[int, dict[str, str], bytes]:
        self.max_bytes = max_bytes
        self._parser = httptools.HttpResponseParser(self)
        self._reply = asyncio.get_running_loop().create_future()
        self._got_bytes = self._headers_done = self._until_close = self._keep_alive = False
        self._status, self._headers, self._header_bytes = 0, {}, 0
        self._chunks: list[bytes] = []
        self._size, self._decoder = 0, None
        assert self.transport is not None
        written = on_write.get()
        if written is not None:
            written()
        self.transport.write(head + body if body else head)
        return await self._reply

    def reusable(self) -> bool:
        return self._keep_alive and not self.closed and not self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _finish(self) -> None:
        if self._decoder is not None:
            rest = self._decoder.flush()
            if self._size + len(rest) > self.max_bytes:
                self._fail(Oversized(self.max_bytes))
                return
            self._chunks.append(rest)
        if not self._reply.done():
            self._reply.set_result((self._status, self._headers, b"".join(self._chunks)))

    def _fail(self, exc: BaseException) -> None:
        self.close()
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(exc)


class _Pool:
    """The idle kept-alive connections of one event loop, by origin, shared by every session on it:
    the models of a run that share a server share its connections (a provider's key travels in each
    request's headers, never in the connection), so a hosted API sees as many connections, and TLS
    handshakes, as calls in flight at it, not as many per model. Closed with the last session."""

    def __init__(self) -> None:
        self.idle: dict[_Origin, list[_Connection]] = {}
        self.sessions = 0
        self.buffer = memoryview(bytearray(_READ_SIZE))  # what its connections read into (_Connection)

    def take(self, origin: _Origin) -> _Connection | None:
        idle = self.idle.get(origin)
        while idle:
            conn = idle.pop()  # the most recently used: the likeliest to be open still
            if not conn.closed and not conn.transport.is_closing():
                return conn
            conn.close()
        return None

    def close(self) -> None:
        for conns in self.idle.values():
            for conn in conns:
                conn.close()
        self.idle.clear()


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool] = weakref.WeakKeyDictionary()


class Session:
    """Kept-alive connections (shared with the other sessions of its event loop: _Pool), opened on
    first use inside the loop that runs them, exchanging whole bodies, none read past `max_bytes`.
    Raises ConnectFailed, Broken and Oversized; a timeout is the caller's (cancelling an exchange
    closes its connection)."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_REPLY_BYTES) -> None:
        self.max_bytes = max_bytes
        self._pool: _Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open: set[_Connection] = set()  # ours, in an exchange now

    def _shared(self) -> _Pool:
        loop = asyncio.get_running_loop()
        if self._pool is None or self._loop is not loop:  # first use, or a new loop (the old one's are dead)
            self._pool, self._loop = _pools.setdefault(loop, _Pool()), loop
            self._pool.sessions += 1
        return self._pool

    async def exchange(
        self, method: str, url: str, headers: Iterable[tuple[str, str]] | dict[str, str], body: bytes | None
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, response headers with names lower-cased and any Content-Encoding undone, body)."""
        origin, target = _split(url)
        length = len(body or b"") if body is not None or method in ("POST", "PUT", "PATCH") else None
        head = _head(method, target, origin.authority, headers.items() if isinstance(headers, dict) else headers, length)
        pool = self._shared()
        while True:
            conn = pool.take(origin)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(origin, pool.buffer)
            self._open.add(conn)
            try:
                reply = await conn.send(head, body, self.max_bytes)
            except _Stale:
                self._discard(conn)
                if reused:
                    continue  # the server had closed it while idle: it never saw the request
                raise Broken("the server closed the connection before replying") from None
            except BaseException:  # Oversized, Broken, a timeout's cancellation: the connection is done
                self._discard(conn)
                raise
            if conn.reusable():
                self._open.discard(conn)
                pool.idle.setdefault(origin, []).append(conn)
            else:  # the server said it closes (Connection: close, HTTP/1.0)
                self._discard(conn)
            return reply

    async def _connect(self, origin: _Origin, buffer: memoryview) -> _Connection:
        secure = origin.scheme == "https"
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                functools.partial(_Connection, buffer), origin.host, origin.port, ssl=_tls() if secure else None,
                server_hostname=origin.host if secure else None,
                happy_eyeballs_delay=None if origin.one_address else HAPPY_EYEBALLS_DELAY,
            )
        except (OSError, ssl.CertificateError) as exc:  # refused, unknown host, unreachable, TLS refused
            raise ConnectFailed(f"cannot connect to {origin.authority}: {exc}") from None
        return conn

    def _discard(self, conn: _Connection) -> None:
        self._open.discard(conn)
        conn.close()

    async def aclose(self) -> None:
        for conn in list(self._open):
            self._discard(conn)
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.sessions -= 1
            if not pool.sessions:  # the last session of its loop: nobody will reuse its connections
                pool.close()
                _pools.pop(self._loop, None)


def _decoder(encoding: str | None) -> Any:
    """A decompressor for a Content-Encoding we asked for; Broken for one we did not."""
    name = (encoding or "").strip().lower()
    if name in ("", "identity"):
        return None
    if name in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(wbits=47)  # 32 + 15: a gzip or a zlib header, whichever comes
    raise Broken(f"the reply is in an encoding not asked for: {encoding}")
