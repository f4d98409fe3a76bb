"""Our HTTP layer under the official SDKs, which take any httpx2 transport.

Theirs (httpx2's pool, or the vendored aiohttp adapter) cost more CPU per call than the exchange
itself, and the adapter reports a refused connection as a timeout. This one runs each exchange on
a `transport.Session` (whole bodies, bounded) and maps its errors onto the httpx2 types the
SDKs turn into APIConnectionError and APITimeoutError. A module of its own so that a run with no SDK
never imports httpx2 (about 40 ms of start-up).
"""

from __future__ import annotations

import asyncio

import httpx2

from personagym.llm.providers.transport import DEFAULT_MAX_REPLY_BYTES, Broken, ConnectFailed, Oversized, Session


class ReplyTooLarge(httpx2.RequestError):
    """Oversized, as the SDKs need it: an httpx2 RequestError, which both wrap in their
    APIConnectionError with this as its __cause__, where personagym.llm.providers.base finds it."""

    def __init__(self, limit: int, request: httpx2.Request):
        super().__init__(str(Oversized(limit)), request=request)
        self.limit = limit


class SessionTransport(httpx2.AsyncBaseTransport):
    """A Session under an SDK: httpx2's request in, httpx2's response and error types out."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_REPLY_BYTES) -> None:
        self.session = Session(max_bytes)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        try:
            # Credentials in the URL are never sent (the SDK's key goes in its header).
            status, headers, content = await self.session.exchange(
                request.method, str(request.url), list(request.headers.multi_items()), body or None
            )
        except Oversized as exc:
            raise ReplyTooLarge(exc.limit, request) from None
        except ConnectFailed as exc:
            raise httpx2.ConnectError(str(exc), request=request) from exc
        except asyncio.TimeoutError as exc:
            raise httpx2.ReadTimeout(str(exc) or "timed out", request=request) from exc
        except Broken as exc:
            raise httpx2.ReadError(str(exc), request=request) from exc
        # The body is already decoded (the transport drops Content-Encoding): httpx2 leaves it be.
        return httpx2.Response(status, headers=list(headers.items()), content=content, request=request)

    async def aclose(self) -> None:
        await self.session.aclose()


def http_client(max_bytes: int = DEFAULT_MAX_REPLY_BYTES) -> httpx2.AsyncClient:
    """An httpx2 client for an SDK, on our transport, with no timeout of its own (the gateway's rules),
    reading no reply body larger than `max_bytes`."""
    return httpx2.AsyncClient(transport=SessionTransport(max_bytes), timeout=None)
