"""The one thing a provider does: turn a Request into a Reply, or raise a classified ProviderError.

Retries, limits, caching, validation and accounting live in the gateway, so a provider module stays a
thin translation between our plain data and one SDK, and adding a provider touches one file.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import time
from types import ModuleType
from typing import Any, Iterator, Mapping, Protocol

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


def schema_of(model_class: Any) -> dict[str, Any]:
    """The JSON schema of a pydantic model class."""
    return model_class.model_json_schema()


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Read Retry-After (seconds or an HTTP date) or OpenAI's retry-after-ms from response headers."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


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
    return ProviderError(cause, f"HTTP {status}: {message[:300]}", retry_after_seconds(headers), status=status)


def error_message(body: Any, fallback: str) -> str:
    """The human part of an error body: both providers nest it as {"error": {"message": ...}}."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return json.dumps(body)[:300] if body is not None else fallback



@contextlib.contextmanager
def sdk_errors(sdk: ModuleType, where: str) -> Iterator[None]:
    """Translate an official SDK's exceptions into classified ProviderErrors.

    The openai and anthropic SDKs are generated from one template and share these class names.
    `where` is the public base URL, named when the server cannot be reached.
    """
    try:
        yield
    except sdk.APITimeoutError as exc:
        raise ProviderError(Cause.TIMEOUT, str(exc)) from None
    except sdk.APIConnectionError as exc:
        raise ProviderError(Cause.CONNECTION, f"cannot reach {where}: {exc.__cause__ or exc}") from None
    except sdk.APIStatusError as exc:
        raise classify_status(exc.status_code, error_message(exc.body, exc.message), exc.response.headers) from None
    except (sdk.APIResponseValidationError, ValueError) as exc:  # ValueError: a body that is not JSON
        raise ProviderError(Cause.MALFORMED_RESPONSE, f"unreadable response: {exc}") from None
