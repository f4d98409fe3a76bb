"""Our HTTP layer under the official SDKs, which take any httpx2 transport.

Theirs (httpx2's pool, or the vendored aiohttp adapter) cost more CPU per call than the exchange
itself, and the adapter reports a refused connection as a timeout. This one runs each exchange on
a `transport.Session` (whole bodies, bounded) and maps aiohttp's errors onto the httpx2 types the
SDKs turn into APIConnectionError and APITimeoutError. A module of its own so that a run with no SDK
never imports httpx2 (about 40 ms of start-up).
"""

from __future__ import annotations

import asyncio

import aiohttp
import httpx2

from personagym.llm.providers.transport import DEFAULT_MAX_REPLY_BYTES, Oversized, Session


class ReplyTooLarge(httpx2.RequestError):
    """Oversized, as the SDKs need it: an httpx2 RequestError, which both wrap in their
    APIConnectionError with this as its __cause__, where personagym.llm.providers.base finds it."""

    def __init__(self, limit: int, request: httpx2.Request):
        super().__init__(str(Oversized(limit)), request=request)
        self.limit = limit


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
