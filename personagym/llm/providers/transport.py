"""The HTTP layer under both SDKs: one aiohttp session, whole bodies, honest error types.

The SDKs accept any httpx2 transport. Theirs (httpx2's pool, or the vendored aiohttp adapter) cost
more CPU per call than the exchange itself, and the adapter reports a refused connection as a
timeout. This one reads each body at once (we never stream), and maps aiohttp's errors onto the
httpx2 types the SDKs turn into APIConnectionError and APITimeoutError. Figures in bench/RESULTS.md.
"""

from __future__ import annotations

import asyncio

import aiohttp
import httpx2


class AiohttpTransport(httpx2.AsyncBaseTransport):
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the event loop that will run it.
        if self._session is None:
            # No connection cap here: the gateway's per-model limit is the one that counts.
            connector = aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        return self._session

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        url = request.url
        if url.userinfo and "authorization" in request.headers:
            # aiohttp refuses credentials in the URL next to an Authorization header; the SDK's
            # bearer key is the one the API reads.
            url = url.copy_with(userinfo=b"")
        try:
            async with self._client().request(
                request.method,
                str(url),
                headers=list(request.headers.multi_items()),
                data=body or None,
                allow_redirects=False,
            ) as response:
                content = await response.read()
        except aiohttp.ClientConnectorError as exc:
            raise httpx2.ConnectError(str(exc), request=request) from exc
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise httpx2.ReadTimeout(str(exc) or "timed out", request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx2.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        # aiohttp has already decoded any Content-Encoding; do not let httpx2 decode it again.
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-encoding"]
        return httpx2.Response(response.status, headers=headers, content=content, request=request)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def http_client() -> httpx2.AsyncClient:
    """An httpx2 client for an SDK, on our transport, with no timeout of its own (the gateway's rules)."""
    return httpx2.AsyncClient(transport=AiohttpTransport(), timeout=None)
