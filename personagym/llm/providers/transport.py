"""The HTTP layer under both SDKs: one aiohttp session, whole bodies, bounded, honest error types.

The SDKs accept any httpx2 transport. Theirs (httpx2's pool, or the vendored aiohttp adapter) cost
more CPU per call than the exchange itself, and the adapter reports a refused connection as a
timeout. This one reads each body whole (we never stream), and maps aiohttp's errors onto the
httpx2 types the SDKs turn into APIConnectionError and APITimeoutError. Figures in bench/RESULTS.md.

A body is read chunk by chunk, counting the bytes after aiohttp has decompressed them, and the read
stops at `max_bytes`: a 50 MB answer, or a 100 KB gzip body that inflates to 100 MB, fails as
ReplyTooLarge (the providers' Cause.OVERSIZED) with only a chunk or two in memory beyond the cap.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import httpx2

#: The largest reply body read, decompressed. No honest chat reply comes near it (a reply of the
#: largest output budgets, 128k tokens, is well under 1 MB of JSON); ProviderSettings can change it.
DEFAULT_MAX_REPLY_BYTES = 16 * 2**20
_CHUNK = 2**16


class Oversized(Exception):
    """A reply body passed the cap (`limit` bytes, decompressed)."""

    def __init__(self, limit: int):
        super().__init__(f"the reply is larger than {limit:,} bytes (the cap on a reply's size)")
        self.limit = limit


class ReplyTooLarge(httpx2.RequestError):
    """Oversized, as the SDKs need it: an httpx2 RequestError, which both wrap in their
    APIConnectionError with this as its __cause__, where personagym.llm.providers.base finds it."""

    def __init__(self, limit: int, request: httpx2.Request):
        super().__init__(str(Oversized(limit)), request=request)
        self.limit = limit


class Session:
    """One aiohttp session, made on first use inside the event loop that runs it, that exchanges
    whole bodies, none read past `max_bytes`. Raises aiohttp's errors, asyncio.TimeoutError and
    Oversized; callers translate them."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_REPLY_BYTES) -> None:
        self._session: aiohttp.ClientSession | None = None
        self.max_bytes = max_bytes

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No connection cap here: the gateway's per-model limit is the one that counts.
            connector = aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        return self._session

    async def exchange(self, method: str, url: str, headers: Any, body: bytes | None) -> tuple[int, Any, bytes]:
        """(status, response headers with any Content-Encoding already undone, body)."""
        async with self._client().request(method, url, headers=headers, data=body, allow_redirects=False) as response:
            return response.status, response.headers, await self._read(response)

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        """The whole body, decompressed, or Oversized as soon as it passes the cap (a declared length
        over the cap fails before anything is read). The connection of a body left unread is closed,
        never returned to the pool."""
        declared = response.content_length if response.headers.get("content-encoding") is None else None
        if declared is not None and declared > self.max_bytes:
            response.close()
            raise Oversized(self.max_bytes)
        chunks, size = [], 0
        async for chunk in response.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > self.max_bytes:
                response.close()
                raise Oversized(self.max_bytes)
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """A Session under an SDK: httpx2's request in, httpx2's response and error types out."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_REPLY_BYTES) -> None:
        self.session = Session(max_bytes)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        url = request.url
        if url.userinfo and "authorization" in request.headers:
            # aiohttp refuses credentials in the URL next to an Authorization header; the SDK's
            # bearer key is the one the API reads.
            url = url.copy_with(userinfo=b"")
        try:
            status, headers, content = await self.session.exchange(
                request.method, str(url), list(request.headers.multi_items()), body or None
            )
        except Oversized as exc:
            raise ReplyTooLarge(exc.limit, request) from None
        except aiohttp.ClientConnectorError as exc:
            raise httpx2.ConnectError(str(exc), request=request) from exc
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise httpx2.ReadTimeout(str(exc) or "timed out", request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx2.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        # aiohttp has already decoded any Content-Encoding; do not let httpx2 decode it again.
        kept = [(k, v) for k, v in headers.items() if k.lower() != "content-encoding"]
        return httpx2.Response(status, headers=kept, content=content, request=request)

    async def aclose(self) -> None:
        await self.session.aclose()


def http_client(max_bytes: int = DEFAULT_MAX_REPLY_BYTES) -> httpx2.AsyncClient:
    """An httpx2 client for an SDK, on our transport, with no timeout of its own (the gateway's rules),
    reading no reply body larger than `max_bytes`."""
    return httpx2.AsyncClient(transport=AiohttpTransport(max_bytes), timeout=None)
