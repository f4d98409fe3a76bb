"""The one thing a provider does: turn a Request into a Reply, or raise a classified ProviderError.

Retries, limits, caching, validation and accounting live in the gateway, so a provider module stays a
thin translation between our plain data and one SDK, and adding a provider touches one file.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import math
import time
from types import ModuleType
from typing import Any, Iterator, Mapping, Protocol

from personagym import secrets
from personagym.llm.providers.transport import Broken, ConnectFailed, Oversized
from personagym.llm.types import Cause, ProviderError, Reply, Request


class Provider(Protocol):
    #: Calls this provider can usefully run at once; None means "whatever the user allows".
    max_concurrency: int | None

    def identity(self) -> dict[str, Any]:
        """What distinguishes this model's outputs from another's: part of every cache key."""

    async def generate(self, request: Request) -> Reply:
        """One attempt. Raises ProviderError; never retries (the gateway does)."""

    async def aclose(self) -> None:
        ...


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Read Retry-After (seconds or an HTTP date) or OpenAI's retry-after-ms from response headers.
    None when absent or unreadable (the gateway then backs off on its own): a server's garbage here
    must never stop a run."""
    if not headers:
        return None
    ms = _seconds(headers.get("retry-after-ms"))
    if ms is not None:
        return ms / 1000
    value = headers.get("retry-after")
    seconds = _seconds(value)
    if seconds is not None or not isinstance(value, str) or not value.strip():
        return seconds
    import email.utils  # here, not at the top: only an HTTP-date Retry-After needs its ~4 ms of imports

    try:
        parsed = email.utils.parsedate_to_datetime(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.timezone.utc)
        return max(0.0, parsed.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError, IndexError, AttributeError):
        return None


def _seconds(value: Any) -> float | None:
    """A finite, non-negative number of seconds, or None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, number) if math.isfinite(number) else None


_RATE_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")
_RATE_NAMES = ("retry-after", "retry-after-ms")


def rate_headers(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    """The rate-limit-relevant headers of a response, names lower-cased; None without a response.
    Only these are kept: they are what a limiter reads, and they never carry a credential."""
    if headers is None:
        return None
    kept = {}
    for name, value in headers.items():
        low = str(name).lower()
        if low in _RATE_NAMES or low.startswith(_RATE_PREFIXES):
            kept[low] = str(value)
    return kept


def classify_status(status: int, message: str, headers: Mapping[str, str] | None = None) -> ProviderError:
    """Map an HTTP status from any provider to a cause; only 408/409/429/5xx are worth retrying."""
    if status == 429:
        cause = Cause.RATE_LIMITED
    elif status >= 500 or status in (408, 409):
        cause = Cause.SERVER_ERROR
    elif status in (401, 403):
        cause = Cause.AUTH
    elif status == 404:
        cause = Cause.NOT_FOUND
    else:
        cause = Cause.BAD_REQUEST
    detail = f"HTTP {status}: {secrets.clip(str(message), 300)}"
    return ProviderError(cause, detail, retry_after_seconds(headers), status=status, headers=rate_headers(headers))


def error_message(body: Any, fallback: str) -> str:
    """The human part of an error body: both providers nest it as {"error": {"message": ...}}."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return secrets.clip(json.dumps(body, default=str), 300) if body is not None else fallback



@contextlib.contextmanager
def http_errors(where: str) -> Iterator[None]:
    """The same translation as `sdk_errors`, for a call made on a transport Session directly: its
    errors are the transport's, and an answer's status is checked by `raise_for_status`."""
    try:
        yield
    except Oversized as exc:
        raise ProviderError(Cause.OVERSIZED, f"{where}: {exc}") from None
    except ConnectFailed as exc:
        raise ProviderError(Cause.CONNECTION, f"cannot reach {where}: {exc}") from None
    except asyncio.TimeoutError as exc:
        raise ProviderError(Cause.TIMEOUT, str(exc) or "timed out") from None
    except Broken as exc:
        # Connected, then lost (a reset mid-body, a broken encoding): not a wrong URL.
        raise ProviderError(Cause.CONNECTION, f"the connection to {where} broke: {exc or type(exc).__name__}") from None
    except (ValueError, RecursionError) as exc:
        # ValueError: a body that is not JSON (or not UTF-8); RecursionError: JSON nested absurdly deep.
        raise ProviderError(Cause.MALFORMED_RESPONSE, f"unreadable response: {secrets.clip(str(exc), 300)}") from None


def raise_for_status(status: int, headers: Mapping[str, str], body: bytes) -> None:
    """A ProviderError for an answer whose status is not a success, with the server's own message."""
    if 200 <= status < 300:
        return
    text = body.decode("utf-8", "replace")
    try:
        parsed: Any = json.loads(text)
    except (ValueError, RecursionError):
        parsed = text.strip() or None
    raise classify_status(status, error_message(parsed, f"HTTP {status}"), headers)


@contextlib.contextmanager
def sdk_errors(sdk: ModuleType, where: str) -> Iterator[None]:
    """Translate an official SDK's exceptions into classified ProviderErrors.

    The openai and anthropic SDKs are generated from one template and share these class names.
    `where` is the public base URL, named when the server cannot be reached.
    """
    import httpx2  # the SDKs' own dependency: only a run that uses one pays for importing it

    from personagym.llm.providers.sdk_http import ReplyTooLarge

    try:
        yield
    except sdk.APITimeoutError as exc:
        raise ProviderError(Cause.TIMEOUT, str(exc)) from None
    except sdk.APIConnectionError as exc:
        if isinstance(exc.__cause__, ReplyTooLarge):
            raise ProviderError(Cause.OVERSIZED, f"{where}: {exc.__cause__}") from None
        if isinstance(exc.__cause__, httpx2.ConnectError) or exc.__cause__ is None:
            raise ProviderError(Cause.CONNECTION, f"cannot reach {where}: {exc.__cause__ or exc}") from None
        # Connected, then lost (a reset mid-body, a broken encoding): not a wrong URL.
        raise ProviderError(Cause.CONNECTION, f"the connection to {where} broke: {exc.__cause__}") from None
    except sdk.APIStatusError as exc:
        raise classify_status(exc.status_code, error_message(exc.body, exc.message), exc.response.headers) from None
    except (sdk.APIResponseValidationError, ValueError, RecursionError) as exc:
        # ValueError: a body that is not JSON (or not UTF-8); RecursionError: JSON nested absurdly deep.
        raise ProviderError(Cause.MALFORMED_RESPONSE, f"unreadable response: {secrets.clip(str(exc), 300)}") from None
