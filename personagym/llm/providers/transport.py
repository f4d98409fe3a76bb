"""The HTTP layer: one aiohttp session per provider client, whole bodies, bounded.

OpenAI-compatible chat calls are posted on it directly; the SDKs (Anthropic, and OpenAI's Batch
API) reach it through an httpx2 transport (personagym.llm.providers.sdk_http), which only they
import. Figures in bench/RESULTS.md.

A body is read chunk by chunk, counting the bytes after aiohttp has decompressed them, and the read
stops at `max_bytes`: a 50 MB answer, or a 100 KB gzip body that inflates to 100 MB, fails as
Oversized (the providers' Cause.OVERSIZED) with only a chunk or two in memory beyond the cap.
"""

from __future__ import annotations

from typing import Any

import aiohttp

#: The largest reply body read, decompressed. No honest chat reply comes near it (a reply of the
#: largest output budgets, 128k tokens, is well under 1 MB of JSON); ProviderSettings can change it.
DEFAULT_MAX_REPLY_BYTES = 16 * 2**20
_CHUNK = 2**16


class Oversized(Exception):
    """A reply body passed the cap (`limit` bytes, decompressed)."""

    def __init__(self, limit: int):
        super().__init__(f"the reply is larger than {limit:,} bytes (the cap on a reply's size)")
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
