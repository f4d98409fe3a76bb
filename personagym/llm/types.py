"""Plain data that crosses the gateway: what is asked, what comes back, and how a call failed.

Most are msgspec Structs rather than dataclasses: a frozen dataclass's methods are compiled from
source when its class is made, ~1 ms of CPU each at every start, and a Struct's are built in C (this
module took 7.5-13 ms to import, 3-5 ms after). Two stay dataclasses: Sampling, because callers and
users `dataclasses.replace` and `asdict` it; ProviderError, an exception.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from personagym import secrets
from personagym.errors import PersonaGymError


class Message(msgspec.Struct, frozen=True):
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class Sampling:
    """Every parameter that changes what a model says; all of it is part of the cache key."""

    temperature: float = 0.0
    top_p: float | None = None
    max_tokens: int = 1024
    seed: int | None = None


class Request(msgspec.Struct, frozen=True):
    messages: tuple[Message, ...]
    sampling: Sampling = Sampling()
    # A reply type (a msgspec Struct, method/schemas.py) the reply must validate against, or None.
    schema: Any = None
    # Which independent draw this is when temperature > 0: draw 0 and draw 1 of the same prompt are
    # different answers, cached separately; at temperature 0 they are the same call.
    sample: int = 0
    # Who is asking (agent, judge, ...): for usage accounting only, never part of the cache key.
    role: str = "default"
    # Extra top-level fields for the request body, e.g. a persona field a user's own chat endpoint
    # reads. Part of the cache key.
    extra_body: Any = None
    # A reply cut at max_tokens is taken as it stands (the Completion says `truncated`) instead of
    # being a failure: the agent under test is graded on what it said, never re-asked for brevity.
    accept_truncated: bool = False
    # For a plain-text reply with a format of its own (no JSON schema, e.g. upstream PersonaGym's
    # "Therefore, the final score is N"): a function from the text to the parsed object that raises
    # ValueError for an unusable reply, so the gateway retries it as it retries a schema mismatch.
    # Its `version` string (else its qualified name) is part of the cache key.
    parser: Callable[[str], Any] | None = None

    @classmethod
    def of(cls, *messages: tuple[str, str], **kwargs: Any) -> "Request":
        """Shorthand: ``Request.of(("system", s), ("user", u), schema=Verdict)``."""
        return cls(tuple(Message(r, c) for r, c in messages), **kwargs)


class Reply(msgspec.Struct, frozen=True, eq=False):
    """What a provider returns before the gateway has judged it."""

    text: str
    finish: str  # "stop" when the model ended on its own, "length" when cut at max_tokens
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Metadata about the exchange, not part of what was said, so left out of equality and hash (a
    # cached or batched reply equals the online one):
    # the response's ``model`` field, the snapshot that actually answered, when the server said;
    model: str | None = None
    # rate-limit-relevant response headers, names lower-cased (x-ratelimit-*, anthropic-ratelimit-*,
    # retry-after, retry-after-ms), or None when unknown (cache, batch results, fakes).
    headers: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        # A server may echo a key in the reply itself, which is stored, exported and shown in reports.
        # A key in an honest reply is never the point of it; "[REDACTED]" keeps JSON valid.
        msgspec.structs.force_setattr(self, "text", secrets.redact(self.text))
        msgspec.structs.force_setattr(self, "model", secrets.redact(self.model))

    # Equality and hash as a dataclass with compare=False on those two fields has them. All three
    # are needed: a Struct's own != would otherwise compare identities.
    def _said(self) -> tuple:
        return (self.text, self.finish, self.prompt_tokens, self.completion_tokens)

    def __eq__(self, other: object) -> bool:
        return self._said() == other._said() if other.__class__ is self.__class__ else NotImplemented

    def __ne__(self, other: object) -> bool:
        return self._said() != other._said() if other.__class__ is self.__class__ else NotImplemented

    def __hash__(self) -> int:
        return hash(self._said())


class Completion(msgspec.Struct, frozen=True):
    """A reply the gateway accepted: complete, and valid against the schema if one was asked."""

    text: str
    model: str
    parsed: Any = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    attempts: int = 1
    seconds: float = 0.0
    truncated: bool = False  # cut at max_tokens and taken as it stands (Request.accept_truncated)


class Cause(str, enum.Enum):
    """Why a call failed. Retriable causes are retried within bounds; the rest fail at once."""

    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    CONNECTION = "connection"
    MALFORMED_RESPONSE = "malformed_response"
    TRUNCATED = "truncated"
    INVALID_OUTPUT = "invalid_output"
    AUTH = "auth"
    NOT_FOUND = "not_found"
    BAD_REQUEST = "bad_request"
    # The reply body passed the size cap (ProviderSettings.max_reply_bytes). Not retried: no honest
    # chat reply comes near the cap, so the server is broken or hostile, and asking again would
    # download (and perhaps pay for) another one as large; at temperature 0 it would be the same.
    OVERSIZED = "oversized"

    @property
    def retriable(self) -> bool:
        return self not in (Cause.AUTH, Cause.NOT_FOUND, Cause.BAD_REQUEST, Cause.OVERSIZED)


class CallFailure(msgspec.Struct, frozen=True):
    """A call that produced nothing usable. Recorded and counted; never text, never a score."""

    model: str
    cause: Cause
    detail: str
    attempts: int
    role: str = "default"

    def __post_init__(self) -> None:
        # Failure details are stored, exported and printed: no secret a server echoed survives here.
        msgspec.structs.force_setattr(self, "detail", secrets.redact(self.detail))


class CallRecord(msgspec.Struct, frozen=True):
    """The bill for one call, success or failure: what usage ledgers and run stores keep."""

    model: str
    role: str
    ok: bool
    cached: bool = False
    attempts: int = 0  # requests sent, retries included (0 for a cache hit)
    prompt_tokens: int = 0  # paid over every attempt, rejected replies included
    completion_tokens: int = 0
    cause: str | None = None  # why it failed, when it did
    batch: bool = False  # answered through a provider batch job (half price)
    answered_by: str | None = None  # the model id the provider says answered (its response's `model`)


class CallFailed(PersonaGymError):
    def __init__(self, failure: CallFailure):
        super().__init__(f"{failure.model}: {failure.cause.value} after {failure.attempts} attempt(s): {failure.detail}")
        self.failure = failure


@dataclass
class ProviderError(Exception):
    """Raised by a provider, already classified, so the gateway's retry logic knows no SDK."""

    cause: Cause
    detail: str
    retry_after: float | None = None
    extra: dict = field(default_factory=dict)
    status: int | None = None  # the HTTP status, when the server answered with one
    # Rate-limit-relevant response headers (lower-cased names), as on Reply; None when no response.
    headers: Mapping[str, str] | None = None
    # Set by the gateway on a 429 for room at a busy server: done at its next answer, when a retry
    # may go sooner than retry_after (personagym.llm.endpoints.Dispatcher.done).
    room: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Where every failure detail is born: a server's echo of a key is redacted before anything
        # can log, store or print it. Callers that cut a detail to length use secrets.clip first.
        self.detail = secrets.redact(self.detail)

    def __str__(self) -> str:
        return f"{self.cause.value}: {self.detail}"
