"""The gateway: the one road every LLM call takes.

It limits calls in flight per model, retries what is worth retrying (bounded in attempts and in
total time, honouring Retry-After), times out stuck calls, validates structured output whatever the
server claims, counts tokens and cost, and answers repeated calls from the cache. It knows nothing
of personas or tasks. A call either returns a Completion it accepted or raises CallFailed: a
failure is never turned into text.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import random
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from personagym import defaults
from personagym.llm.cache import Cache, cache_key
from personagym.llm.endpoints import Dispatcher, ModelGate
from personagym.llm.limits import Limits
from personagym.llm.providers import make_provider, transport
from personagym.llm.providers.base import Provider
from personagym.llm.reading import accept, parse_reply, with_feedback
from personagym.llm.spec import ModelSpec, ProviderSettings, parse_spec, split_urls
from personagym.llm.structured import Shape
from personagym.llm.types import (
    CallFailed,
    CallFailure,
    CallRecord,
    Cause,
    Completion,
    ProviderError,
    Reply,
    Request,
)
from personagym.llm.usage import Usage

if TYPE_CHECKING:  # the batch machinery is imported by --batch runs only
    from personagym.llm.batch.runner import Batcher

log = logging.getLogger("personagym.llm")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = defaults.MAX_ATTEMPTS
    max_total_seconds: float = 600.0  # no call keeps retrying longer than this, waits included
    timeout: float = defaults.TIMEOUT  # one attempt
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    max_retry_after: float = 120.0  # a server asking for longer than this is not waited for

    def delay(self, attempt: int, error: ProviderError) -> float:
        if error.cause in (Cause.INVALID_OUTPUT, Cause.TRUNCATED):
            return 0.0  # the server is fine; ask again at once
        if error.retry_after is not None:
            return min(error.retry_after, self.max_retry_after)
        # Exponential backoff with jitter, so many callers refused together do not return together.
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


@dataclass
class _Bill:
    """What one call has cost so far, over all its attempts."""

    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    batch: bool = False
    answered_by: str | None = None

    def record(self, model: str, role: str, cause: str | None = None) -> CallRecord:
        return CallRecord(
            model, role, cause is None, False, self.attempts, self.prompt_tokens, self.completion_tokens, cause,
            self.batch, self.answered_by,
        )


class BoundModel:
    """A model bound to its endpoints and their limits; one per model spec (and base URLs) per gateway."""

    def __init__(self, spec: ModelSpec, gate: ModelGate):
        self.spec = spec
        self.name = str(spec)
        self.gate = gate
        self.provider = gate.endpoints[0].provider
        self.identity = self.provider.identity()
        if len(gate.endpoints) > 1:
            # The user says these endpoints serve one model: the cache is keyed on the set of them.
            self.identity = {**self.identity, "base_url": sorted(e.url for e in gate.endpoints)}


if sys.version_info >= (3, 11):

    async def _within(seconds: float, call: Awaitable[Reply]) -> Reply:
        # asyncio.timeout runs the call in this task; wait_for would wrap it in a new task, one more
        # trip through a busy event loop per call (measurable at hundreds of calls a second).
        async with asyncio.timeout(seconds):
            return await call

else:  # pragma: no cover - Python 3.10

    async def _within(seconds: float, call: Awaitable[Reply]) -> Reply:
        return await asyncio.wait_for(call, seconds)


def _server_of(spec: ModelSpec, provider: Provider) -> str:
    """What identifies the server behind a provider: its public base URL (or the model, for local)."""
    return str(provider.identity().get("base_url") or spec)


# Statuses that say "not now" rather than "not this": retried even when they repeat word for word.
_BUSY = frozenset({429, 502, 503, 504, 529})


def _same_again(error: ProviderError, previous: tuple[int, str] | None) -> bool:
    """The server said exactly the same thing as last time: an error that will not go away by asking
    again (real transient errors carry a fresh request id, or say they are busy)."""
    return error.status is not None and error.status not in _BUSY and (error.status, error.detail) == previous


class Gateway:
    def __init__(
        self,
        *,
        cache: Cache | None = None,
        limits: Limits | None = None,
        model_limits: dict[str, Limits] | None = None,
        retry: RetryPolicy | None = None,
        usage: Usage | None = None,
        settings: dict[str, ProviderSettings] | None = None,
        on_call: Callable[[CallRecord], None] | None = None,
        batch: Batcher | None = None,
    ):
        self.cache = cache
        self.limits = limits or Limits()
        self.model_limits = model_limits or {}
        self.retry = retry or RetryPolicy()
        self.usage = usage or Usage()
        self.settings = settings or {}
        self.on_call = on_call  # e.g. the run store, which keeps every call's bill
        self.on_note: Callable[[str], None] | None = None  # news worth a line of its own (progress)
        # Called with (server, shape) when a server is found to need another structured-output shape.
        self.on_shape: Callable[[str, str], None] | None = None
        self.batch = batch  # when set, every call goes through provider batch jobs (personagym.llm.batch)
        self._models: dict[tuple[str, str | None], BoundModel] = {}
        self.dispatcher = Dispatcher()  # servers and their learned limits, shared by every model

    def model(self, spec: str | ModelSpec | BoundModel, base_url: str | None = None) -> BoundModel:
        """The bound model for a spec (at base URLs other than its provider's, if given: several,
        comma-separated, spread the load over endpoints serving the same model), created on first
        use. A run binds each of its roles once; a string is accepted for callers at the edge (a
        check, a script). Raises ConfigError for a bad spec or missing key."""
        if isinstance(spec, BoundModel):
            return spec
        parsed = spec if isinstance(spec, ModelSpec) else parse_spec(spec)
        key = (str(parsed), base_url)
        bound = self._models.get(key)
        if bound is None:
            settings = self.settings.get(parsed.provider) or ProviderSettings()
            urls = split_urls(base_url or settings.base_url) or [None]
            providers = [make_provider(parsed, dataclasses.replace(settings, base_url=url)) for url in urls]
            limits = self.model_limits.get(str(parsed), self.limits)
            gate = self.dispatcher.gate(str(parsed), [(_server_of(parsed, p), p) for p in providers], limits)
            bound = self._models[key] = BoundModel(parsed, gate)
            for endpoint in gate.endpoints:
                negotiator = getattr(endpoint.provider, "negotiator", None)
                if negotiator is not None:
                    negotiator.on_learned = functools.partial(self._shape_learned, endpoint.server.url)
            if self.batch is not None and base_url is None:  # a user's own endpoint is always called online
                from personagym.llm.batch import make_batch_client

                # A batch job goes to one server: the first of a pool.
                self.batch.add_model(bound.name, make_batch_client(parsed, dataclasses.replace(settings, base_url=urls[0])))
        return bound

    async def complete(
        self, spec: str | ModelSpec | BoundModel, request: Request, keep: Callable[[Completion], None] | None = None
    ) -> Completion:
        """The accepted completion, or CallFailed. `keep`, when given, is called with it inside the
        transaction that records the call (its bill and cache entry): what a stage makes of a reply
        lands with the reply or not at all, in one commit instead of two or more (commits were the
        largest share of a call's CPU). A CallFailed that `keep` raises (a reply the stage cannot
        use) still records the call; any other error undoes the whole transaction."""
        model = self.model(spec)
        started = time.monotonic()
        key = cache_key(model.identity, request) if self.cache else None
        if key:
            hit = self.cache.get(key)
            if hit is not None:
                try:
                    parsed = parse_reply(request, hit.text)
                except ValueError:  # msgspec's DecodeError and ValidationError are ValueErrors
                    pass  # the schema changed shape under the same name: ask again
                else:
                    completion = Completion(
                        hit.text, model.name, parsed, hit.prompt_tokens, hit.completion_tokens, cached=True,
                        truncated=hit.finish == "length",
                    )
                    return self._record(CallRecord(model.name, request.role, ok=True, cached=True), completion, keep)
        bill = _Bill()
        try:
            reply, parsed = await self._attempts(model, request, started, bill)
        except CallFailed as exc:
            self._bill(bill.record(model.name, request.role, exc.failure.cause.value))
            raise
        completion = Completion(
            reply.text,
            model.name,
            parsed,
            reply.prompt_tokens,
            reply.completion_tokens,
            attempts=bill.attempts,
            seconds=time.monotonic() - started,
            truncated=reply.finish == "length",
        )
        return self._record(bill.record(model.name, request.role), completion, keep, (key, model.name, reply) if key else None)

    def _record(
        self,
        record: CallRecord,
        completion: Completion,
        keep: Callable[[Completion], None] | None,
        entry: tuple[str, str, Reply] | None = None,
    ) -> Completion:
        """Write a call's bill, its new cache `entry` and what `keep` makes of it, in one transaction
        when there is more than one write and a database to hold them (a run's store is the cache's)."""
        failed: CallFailed | None = None
        together = self.cache is not None and (entry is not None or keep is not None)
        with self.cache.writing() if together else contextlib.nullcontext():
            if entry is not None:
                self.cache.put(*entry)
            self._bill(record)
            if keep is not None:
                try:
                    keep(completion)
                except CallFailed as exc:
                    failed = exc  # the call happened and is billed; the stage records its failure
        if failed is not None:
            raise failed
        return completion

    def use_shapes(self, known: dict[str, str]) -> None:
        """Structured-output shapes earlier runs learned, per server: start there."""
        for model in self._models.values():
            for endpoint in model.gate.endpoints:
                negotiator = getattr(endpoint.provider, "negotiator", None)
                if negotiator is not None and endpoint.server.url in known:
                    negotiator.remember(Shape(known[endpoint.server.url]))

    def _shape_learned(self, server: str, refused: Shape, using: Shape, why: str) -> None:
        log.debug("%s refused structured output as %s (%s)", server, refused, why)
        if self.on_note is not None:
            self.on_note(f"{server} does not take structured output as {refused}; asking as {using} from now on")
        if self.on_shape is not None:
            self.on_shape(server, using.value)

    def _bill(self, record: CallRecord) -> None:
        self.usage.record(record)
        if self.on_call is not None:
            self.on_call(record)

    async def _attempts(self, model: BoundModel, request: Request, started: float, bill: "_Bill") -> tuple[Reply, Any]:
        policy = self.retry
        estimate = sum(len(m.content) for m in request.messages) // 4 + request.sampling.max_tokens
        error: ProviderError | None = None  # made only on failure: building one redacts its detail
        asked = request
        previous: tuple[int, str] | None = None
        for attempt in range(1, policy.max_attempts + 1):
            bill.attempts = attempt
            try:
                if self.batch is not None and self.batch.serves(model.name):
                    bill.batch = True
                    reply = await self.batch.generate(model.name, cache_key(model.identity, asked), asked)
                else:
                    reply = await self._online(model, asked, estimate)
            except ProviderError as exc:
                error = exc
            else:
                bill.prompt_tokens += reply.prompt_tokens
                bill.completion_tokens += reply.completion_tokens
                bill.answered_by = reply.model or bill.answered_by
                try:
                    return reply, accept(reply, request)
                except ProviderError as exc:
                    error = exc
                    if request.schema is not None or request.parser is not None:
                        # Asking the same thing again would, at temperature 0, get the same reply
                        # again: show the model what was wrong with it instead.
                        asked = with_feedback(request, reply.text, exc)
            if not error.cause.retriable or attempt == policy.max_attempts or _same_again(error, previous):
                break
            previous = (error.status, error.detail) if error.status is not None else None
            delay = policy.delay(attempt, error)
            # A batch job may take hours: only online calls are bounded in total time.
            if not bill.batch and time.monotonic() - started + delay > policy.max_total_seconds:
                break
            log.debug("%s attempt %d failed (%s); retrying in %.2f s", model.name, attempt, error, delay)
            if delay and error.room is not None:
                await asyncio.wait([error.room], timeout=delay)  # room, or the Retry-After: what comes first
            elif delay:
                await asyncio.sleep(delay)
        error = error or ProviderError(Cause.TIMEOUT, "no attempt was made")
        raise CallFailed(CallFailure(model.name, error.cause, error.detail, bill.attempts, request.role))

    async def _online(self, model: BoundModel, request: Request, estimated_tokens: int) -> Reply:
        slot = await self.dispatcher.acquire(model.gate, estimated_tokens, request.sampling.max_tokens)
        timeout = self.retry.timeout
        writing = transport.on_write.set(slot.on_write)
        try:
            reply = await _within(timeout, slot.endpoint.provider.generate(request))
        except asyncio.TimeoutError:
            self.dispatcher.done(slot, Cause.TIMEOUT)
            raise ProviderError(Cause.TIMEOUT, f"no reply within {timeout:g} s") from None
        except ProviderError as exc:
            exc.room = self.dispatcher.done(slot, exc.cause, exc.headers)
            raise
        except BaseException:
            self.dispatcher.abandon(slot)  # cancelled: the endpoint did nothing wrong
            raise
        finally:
            transport.on_write.reset(writing)
        self.dispatcher.done(slot, None, reply.headers, (reply.prompt_tokens, reply.completion_tokens))
        if self.dispatcher.handed_on:
            # The room went to a waiting call, which writes its request when its task next runs:
            # after this reply is validated and recorded (a commit), unless this task steps aside
            # first. Stepping aside, a handed slot's request went out 0.3 ms after it was handed
            # (median; 2.5 ms at the 90th percentile) instead of 1.1 ms (5.9), and a server full
            # at 32 held 30.7-31.1 calls on average instead of 30.4-30.9 (the 20-persona in-flight bench).
            await asyncio.sleep(0)
        return reply

    async def aclose(self) -> None:
        if self.batch is not None:
            await self.batch.aclose()
        for model in {id(m): m for m in self._models.values()}.values():
            for endpoint in model.gate.endpoints:
                await endpoint.provider.aclose()

    async def __aenter__(self) -> "Gateway":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
