"""A lying, hostile or broken server: every field of a reply is checked, bodies are bounded, and
nothing a server sends crashes a run or puts a wrong number into a sum.

Each test runs a tiny aiohttp app of its own (in the test's event loop) that answers exactly the bad
thing under test, through the real SDKs and the gateway.
"""

from __future__ import annotations

import asyncio
import json
import tracemalloc
import zlib
from typing import Any, Callable

import pytest
from aiohttp import web

from personagym.llm import Gateway, RetryPolicy
from personagym.llm.providers.base import retry_after_seconds
from personagym.llm.spec import ProviderSettings
from personagym.llm.types import CallFailed, CallRecord, Cause, ProviderError, Request, Sampling
from personagym.llm.usage import MAX_TOKENS_PER_CALL, Usage, plausible_tokens

QUICK = RetryPolicy(max_attempts=3, max_total_seconds=20, timeout=20, backoff_base=0.01, backoff_max=0.02,
                    max_retry_after=0.02)
ASK = Request.of(("user", "Say hello."), sampling=Sampling(max_tokens=32))

OPENAI_OK = {
    "id": "chatcmpl-1", "object": "chat.completion", "model": "m-2026-01-01",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2},
}
ANTHROPIC_OK = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x-20260101",
    "content": [{"type": "text", "text": "hello"}], "stop_reason": "end_turn",
    "usage": {"input_tokens": 5, "output_tokens": 2},
}
RATE_HEADERS = {"x-ratelimit-remaining-requests": "99", "anthropic-ratelimit-tokens-remaining": "1000",
                "X-Unrelated": "no", "Set-Cookie": "session=abc"}


class Upstream:
    """An aiohttp app on loopback whose every chat and messages request runs `handler`."""

    def __init__(self, handler: Callable[[web.Request], Any]):
        self.handler = handler
        self.hits = 0

    async def __aenter__(self) -> "Upstream":
        async def handle(request: web.Request) -> web.StreamResponse:
            self.hits += 1
            await request.read()
            return await self.handler(request)

        app = web.Application()
        app.router.add_route("*", "/{path:.*}", handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()

    def settings(self, provider: str, **kwargs: Any) -> dict[str, ProviderSettings]:
        base = f"{self.url}/v1" if provider == "openai" else self.url
        return {provider: ProviderSettings(base_url=base, api_key="sk-test-key-for-a-lying-server", **kwargs)}


def answer(body: Any, status: int = 200, headers: dict[str, str] | None = None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=raw, status=status, content_type="application/json", headers=headers)

    return handler


def with_(base: dict, **changes: Any) -> dict:
    data = json.loads(json.dumps(base))
    for path, value in changes.items():
        target = data
        *parents, last = path.split("__")
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if value is _DROP:
            del target[last]
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return data


_DROP = object()


async def call(upstream: Upstream, provider: str, request: Request = ASK, **settings: Any):
    gateway = Gateway(settings=upstream.settings(provider, **settings), retry=QUICK)
    async with gateway:
        try:
            return await gateway.complete(f"{provider}:m", request), gateway.usage
        except CallFailed as exc:
            return exc.failure, gateway.usage


# -- every field is checked ----------------------------------------------------------------------

BAD_OPENAI = {
    "content an object": with_(OPENAI_OK, choices__0__message__content={"text": "hello"}),
    "content a number": with_(OPENAI_OK, choices__0__message__content=42),
    "content a list of numbers": with_(OPENAI_OK, choices__0__message__content=[1, 2]),
    "content a list of strings": with_(OPENAI_OK, choices__0__message__content=["hello"]),
    "content a boolean": with_(OPENAI_OK, choices__0__message__content=True),
    "a text part that is not text": with_(OPENAI_OK, choices__0__message__content=[{"type": "text", "text": 5}]),
    "finish reason a number": with_(OPENAI_OK, choices__0__finish_reason=7),
    "finish reason an object": with_(OPENAI_OK, choices__0__finish_reason={"why": "stop"}),
    "no choices": with_(OPENAI_OK, choices=_DROP),
    "choices a string": with_(OPENAI_OK, choices="hello"),
    "choices empty": with_(OPENAI_OK, choices=[]),
    "a choice that is a number": with_(OPENAI_OK, choices=[5]),
    "message a string": with_(OPENAI_OK, choices__0__message="hello"),
    "a list for a body": [OPENAI_OK],
    "null for a body": None,
    "a string for a body": "hello",
}
BAD_ANTHROPIC = {
    "content a string": with_(ANTHROPIC_OK, content="hello"),
    "content an object": with_(ANTHROPIC_OK, content={"type": "text", "text": "hello"}),
    "a block that is a number": with_(ANTHROPIC_OK, content=[5]),
    "a block without a type": with_(ANTHROPIC_OK, content=[{"text": "hello"}]),
    "text an object": with_(ANTHROPIC_OK, content=[{"type": "text", "text": {"a": 1}}]),
    "text a list": with_(ANTHROPIC_OK, content=[{"type": "text", "text": ["hello"]}]),
    "stop reason a number": with_(ANTHROPIC_OK, stop_reason=5),
    "a list for a body": [ANTHROPIC_OK],
    "null for a body": None,
}
NOT_JSON = {"html": b"<html>busy</html>", "cut short": b'{"choices": [', "not utf-8": b'{"a": "\xff\xfe"}',
            "nested too deep": b"[" * 200_000 + b"]" * 200_000}


@pytest.mark.parametrize("provider, body", [("openai", b) for b in BAD_OPENAI.values()]
                         + [("anthropic", b) for b in BAD_ANTHROPIC.values()]
                         + [(p, b) for p in ("openai", "anthropic") for b in NOT_JSON.values()],
                         ids=[f"openai: {k}" for k in BAD_OPENAI] + [f"anthropic: {k}" for k in BAD_ANTHROPIC]
                         + [f"{p}: {k}" for p in ("openai", "anthropic") for k in NOT_JSON])
async def test_a_reply_with_a_bad_field_is_retried_then_a_recorded_failure(provider, body):
    async with Upstream(answer(body)) as upstream:
        failure, usage = await call(upstream, provider)
    assert failure.cause is Cause.MALFORMED_RESPONSE, failure
    assert failure.attempts == QUICK.max_attempts == upstream.hits  # retried, never a crash
    total = usage.total()
    assert (total.failures, total.attempts, total.prompt_tokens, total.completion_tokens) == (1, 3, 0, 0)


LYING_COUNTS = [-1_000_000, 1e300, "12", "1e300", True, None, 12.5, 10**12, [3], {"n": 3}]


@pytest.mark.parametrize("count", LYING_COUNTS, ids=repr)
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_lying_token_count_is_unknown_never_a_crash_nor_a_wrong_sum(provider, count):
    if provider == "openai":
        body = with_(OPENAI_OK, usage={"prompt_tokens": count, "completion_tokens": 2})
    else:
        body = with_(ANTHROPIC_OK, usage={"input_tokens": count, "output_tokens": 2})
    async with Upstream(answer(body)) as upstream:
        completion, usage = await call(upstream, provider)
    assert completion.text == "hello"
    assert (completion.prompt_tokens, completion.completion_tokens) == (0, 2)
    assert (usage.total().prompt_tokens, usage.total().completion_tokens) == (0, 2)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("usage_field", ["lots", [1, 2], 7], ids=repr)
async def test_a_usage_that_is_not_an_object_counts_as_unknown(provider, usage_field):
    body = with_(OPENAI_OK if provider == "openai" else ANTHROPIC_OK, usage=usage_field)
    async with Upstream(answer(body)) as upstream:
        completion, usage = await call(upstream, provider)
    assert completion.text == "hello" and usage.total().prompt_tokens == 0


@pytest.mark.parametrize("provider, finish, cause", [
    ("openai", _DROP, None), ("openai", None, None), ("openai", "banana", None), ("openai", "", None),
    ("openai", "length", Cause.TRUNCATED), ("anthropic", None, None), ("anthropic", "pause_turn", None),
    ("anthropic", "max_tokens", Cause.TRUNCATED),
])
async def test_an_odd_or_missing_finish_reason_is_read_as_stop_unless_it_says_length(provider, finish, cause):
    body = (with_(OPENAI_OK, choices__0__finish_reason=finish) if provider == "openai"
            else with_(ANTHROPIC_OK, stop_reason=finish))
    async with Upstream(answer(body)) as upstream:
        outcome, _ = await call(upstream, provider)
    assert (outcome.text == "hello") if cause is None else (outcome.cause is cause)


def test_usage_refuses_implausible_counts_as_a_second_line():
    usage = Usage()
    for prompt in (-1_000_000, 10**300, "12", 1.5, True):
        usage.record(CallRecord("openai:m", "agent", ok=True, attempts=1, prompt_tokens=prompt, completion_tokens=3))
    usage.record(CallRecord("openai:m", "agent", ok=True, attempts=2, prompt_tokens=7, completion_tokens=3))
    total = usage.total()
    assert (total.prompt_tokens, total.completion_tokens, total.calls) == (7, 18, 6)
    assert plausible_tokens(MAX_TOKENS_PER_CALL) == MAX_TOKENS_PER_CALL
    assert plausible_tokens(MAX_TOKENS_PER_CALL + 1) == 0
    assert plausible_tokens(MAX_TOKENS_PER_CALL + 1, attempts=2) == MAX_TOKENS_PER_CALL + 1


# -- Retry-After, whatever it says ----------------------------------------------------------------

ODD_RETRY_AFTER = ["soon", "Wed, 32 Foo 2026 25:61:61 GMT", "nan", "inf", "-inf", "1e400", "-5", "9" * 400,
                   "Mon, 01 Jan 99999 00:00:00 GMT", "", "  ", "1,5", "0x10"]


@pytest.mark.parametrize("value", ODD_RETRY_AFTER, ids=repr)
def test_retry_after_that_is_neither_a_number_nor_a_date_is_no_number(value):
    seconds = retry_after_seconds({"retry-after": value})
    assert seconds is None or 0 <= seconds < float("inf")
    assert retry_after_seconds({"retry-after-ms": value}) in (None, 0.0) or value in ("9" * 400,)


def test_retry_after_read_when_it_is_readable():
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "3"}) == 0.25
    assert retry_after_seconds({"retry-after-ms": "abc", "retry-after": "3"}) == 3.0
    assert 0 < retry_after_seconds({"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"}) < float("inf")
    assert retry_after_seconds({"retry-after": "Mon, 01 Jan 2001 00:00:00 GMT"}) == 0.0


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("value", ["soon", "nan", "Wed, 32 Foo 2026", "1e400"], ids=repr)
async def test_a_429_with_garbage_retry_after_is_retried_not_a_crash(provider, value):
    error = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    async with Upstream(answer(error, 429, {"Retry-After": value, "retry-after-ms": value})) as upstream:
        failure, _ = await call(upstream, provider)
    assert failure.cause is Cause.RATE_LIMITED and failure.attempts == upstream.hits == 3


# -- headers and model for the limiter and the record -----------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_replies_and_errors_carry_rate_limit_headers_and_the_answering_model(provider):
    from personagym.llm.providers import make_provider
    from personagym.llm.spec import ModelSpec

    body = OPENAI_OK if provider == "openai" else ANTHROPIC_OK
    async with Upstream(answer(body, headers=RATE_HEADERS)) as upstream:
        p = make_provider(ModelSpec(provider, "m"), upstream.settings(provider)[provider])
        try:
            reply = await p.generate(ASK)
            upstream.handler = answer({"error": {"message": "busy"}}, 429, {**RATE_HEADERS, "Retry-After": "2"})
            with pytest.raises(ProviderError) as caught:
                await p.generate(ASK)
        finally:
            await p.aclose()
    wanted = {"x-ratelimit-remaining-requests": "99", "anthropic-ratelimit-tokens-remaining": "1000"}
    assert reply.headers == wanted
    assert reply.model == body["model"]
    assert caught.value.headers == {**wanted, "retry-after": "2"} and caught.value.retry_after == 2.0


# -- batch clients -------------------------------------------------------------------------------


def batch_app(jobs: dict[str, Any], files: dict[str, bytes]):
    async def handler(request: web.Request) -> web.Response:
        path = request.path
        if "/files/" in path and path.endswith("/content"):
            return web.Response(body=files[path.split("/")[-2]])
        job = jobs[path.split("/")[-1]] if path.split("/")[-1] in jobs else jobs[path.split("/")[-2]]
        if path.endswith("/results"):
            return web.Response(body=job, content_type="application/binary")
        return web.json_response(job)

    return handler


def _openai_job(**changes: Any) -> dict:
    job = {"id": "b1", "object": "batch", "endpoint": "/v1/chat/completions", "status": "completed",
           "input_file_id": "f0", "output_file_id": "f1", "error_file_id": None, "completion_window": "24h",
           "created_at": 1, "request_counts": {"total": 2, "completed": 2, "failed": 0}}
    job.update(changes)
    return job


@pytest.mark.parametrize("job", [
    _openai_job(status=["completed"]), _openai_job(status=None), _openai_job(status="exploded"),
    _openai_job(request_counts={"total": "two", "completed": 2, "failed": 0}),
    _openai_job(request_counts={"total": 2, "completed": -1, "failed": 0}),
    _openai_job(request_counts={"total": 2, "completed": 1.5, "failed": None}),
], ids=["status a list", "status null", "status unknown", "total a string", "negative", "float"])
async def test_an_openai_batch_job_that_lies_is_a_provider_error(job):
    from personagym.llm.batch.openai import OpenAIBatchClient

    async with Upstream(batch_app({"b1": job}, {})) as upstream:
        client = OpenAIBatchClient("m", upstream.settings("openai")["openai"])
        try:
            with pytest.raises(ProviderError) as caught:
                await client.status("b1")
        finally:
            await client.aclose()
    assert caught.value.cause is Cause.MALFORMED_RESPONSE


async def test_openai_batch_lines_that_lie_fail_alone():
    from personagym.llm.batch.openai import OpenAIBatchClient

    def line(cid: str, body: Any, status: Any = 200) -> dict:
        return {"custom_id": cid, "response": {"status_code": status, "body": body}}

    lines = [
        line("ok", with_(OPENAI_OK, usage={"prompt_tokens": "9", "completion_tokens": -4})),
        line("content", with_(OPENAI_OK, choices__0__message__content={"a": 1})),
        line("status", {"error": "x"}, status="200"),
        line("body", "hello"),
        {"custom_id": "error", "error": ["not", "an", "object"]},
        {"custom_id": 5, "response": None},
    ]
    output = "\n".join(json.dumps(x) for x in lines).encode() + b"\nnot json\n"
    inputs = "\n".join(json.dumps({"custom_id": c}) for c in ("ok", "content", "status", "body", "error")).encode()
    async with Upstream(batch_app({"b1": _openai_job()}, {"f0": inputs, "f1": output})) as upstream:
        client = OpenAIBatchClient("m", upstream.settings("openai")["openai"])
        try:
            results = await client.results("b1")
        finally:
            await client.aclose()
    assert results["ok"].text == "hello" and (results["ok"].prompt_tokens, results["ok"].completion_tokens) == (0, 0)
    assert results["content"].cause is Cause.MALFORMED_RESPONSE
    assert results["status"].cause is Cause.SERVER_ERROR
    assert results["body"].cause is Cause.MALFORMED_RESPONSE
    assert results["error"].cause is Cause.SERVER_ERROR
    assert set(results) == {"ok", "content", "status", "body", "error"}


def _anthropic_job(url: str, **changes: Any) -> dict:
    job = {"id": "b1", "type": "message_batch", "processing_status": "ended", "created_at": "2026-01-01T00:00:00Z",
           "expires_at": "2026-01-02T00:00:00Z", "ended_at": "2026-01-01T01:00:00Z", "cancel_initiated_at": None,
           "archived_at": None, "results_url": f"{url}/v1/messages/batches/b1/results",
           "request_counts": {"processing": 0, "succeeded": 3, "errored": 0, "canceled": 0, "expired": 0}}
    job.update(changes)
    return job


@pytest.mark.parametrize("changes", [
    {"processing_status": {"x": 1}}, {"processing_status": "exploded"},
    {"request_counts": {"processing": "none", "succeeded": 3, "errored": 0, "canceled": 0, "expired": 0}},
    {"request_counts": None}, {"request_counts": {"processing": -3}},
], ids=["status an object", "status unknown", "a count a string", "no counts", "negative"])
async def test_an_anthropic_batch_job_that_lies_is_a_provider_error(changes):
    from personagym.llm.batch.anthropic import AnthropicBatchClient

    jobs: dict[str, Any] = {}
    async with Upstream(batch_app(jobs, {})) as upstream:
        jobs["b1"] = _anthropic_job(upstream.url, **changes)
        client = AnthropicBatchClient("m", upstream.settings("anthropic")["anthropic"])
        try:
            with pytest.raises(ProviderError) as caught:
                await client.status("b1")
        finally:
            await client.aclose()
    assert caught.value.cause is Cause.MALFORMED_RESPONSE


async def test_anthropic_batch_results_that_lie_fail_alone():
    from personagym.llm.batch.anthropic import AnthropicBatchClient

    entries = [
        {"custom_id": "ok", "result": {"type": "succeeded",
                                       "message": with_(ANTHROPIC_OK, usage={"input_tokens": 1e300})}},
        {"custom_id": "text", "result": {"type": "succeeded", "message": with_(ANTHROPIC_OK, content="hello")}},
        {"custom_id": "error", "result": {"type": "errored", "error": {"error": {"type": ["x"], "message": 5}}}},
        {"custom_id": "odd", "result": {"type": {"what": 1}}},
        {"custom_id": ["not", "an", "id"], "result": None},
    ]
    jobs: dict[str, Any] = {}
    async with Upstream(batch_app(jobs, {})) as upstream:
        jobs["b1"] = _anthropic_job(upstream.url)
        jobs["results"] = "\n".join(json.dumps(e) for e in entries).encode()
        client = AnthropicBatchClient("m", upstream.settings("anthropic")["anthropic"])
        try:
            results = await client.results("b1")
        finally:
            await client.aclose()
    assert results["ok"].text == "hello" and results["ok"].prompt_tokens == 0
    assert results["text"].cause is Cause.MALFORMED_RESPONSE
    assert results["error"].cause is Cause.SERVER_ERROR
    assert results["odd"].cause is Cause.MALFORMED_RESPONSE
    assert set(results) == {"ok", "text", "error", "odd"}


# -- unbounded replies ---------------------------------------------------------------------------

MB = 2**20
_PREFIX = b'{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"'
_SUFFIX = b'"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}'


def fifty_megabytes():
    """A 50 MB answer with finish_reason "stop", streamed: the server itself holds 1 MB at a time."""
    chunk = b"a" * MB

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            await response.write(_PREFIX)
            for _ in range(50):
                await response.write(chunk)
            await response.write(_SUFFIX)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up, as it should
        return response

    return handler


def gzip_bomb():
    """About 100 KB of gzip that inflates to 100 MB of JSON, built without holding the 100 MB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"a" * MB
    body = packer.compress(_PREFIX) + b"".join(packer.compress(chunk) for _ in range(100))
    body += packer.compress(_SUFFIX) + packer.flush()
    assert len(body) < 200_000

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})

    return handler


@pytest.mark.parametrize("make", [fifty_megabytes, gzip_bomb], ids=["50 MB answer", "100 KB gzip of 100 MB"])
async def test_an_unbounded_reply_fails_as_oversized_in_little_memory(make):
    async with Upstream(make()) as upstream:
        tracemalloc.start()
        try:
            failure, usage = await call(upstream, "openai")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert failure.cause is Cause.OVERSIZED, failure
    assert "16,777,216 bytes" in failure.detail
    assert failure.attempts == upstream.hits == 1  # not retried: another try would be another 16 MB
    assert usage.total().failures == 1
    # The default cap is 16 MB; reading the body whole would hold 50 or 100 MB (and more in copies).
    assert peak < 40 * MB, f"peak {peak / MB:.0f} MB"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_the_reply_cap_is_configurable_and_counts_decompressed_bytes(provider):
    text = "word " * 100_000  # 500 KB of text, a few KB gzipped
    body = (with_(OPENAI_OK, choices__0__message__content=text) if provider == "openai"
            else with_(ANTHROPIC_OK, content=[{"type": "text", "text": text}]))
    packed = zlib.compress(json.dumps(body).encode(), wbits=31)
    assert len(packed) < 64 * 1024

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=packed, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})

    async with Upstream(handler) as upstream:
        failure, _ = await call(upstream, provider, max_reply_bytes=256 * 1024)
        completion, _ = await call(upstream, provider, max_reply_bytes=1024 * 1024)
    assert failure.cause is Cause.OVERSIZED and failure.attempts == 1
    assert completion.text == text


def test_a_reply_cap_that_is_not_a_number_of_bytes_is_refused():
    from personagym.errors import ConfigError
    from personagym.llm.spec import resolve_settings

    assert resolve_settings("openai", config={"max_reply_bytes": 2048}).max_reply_bytes == 2048
    for bad in ("lots", 12, -5, 1.5e9, True):
        with pytest.raises(ConfigError, match="max_reply_bytes"):
            resolve_settings("openai", config={"max_reply_bytes": bad})


def test_oversized_is_a_cause_that_is_not_retried():
    assert Cause("oversized") is Cause.OVERSIZED and not Cause.OVERSIZED.retriable


async def test_a_connection_lost_mid_body_does_not_say_the_server_cannot_be_reached():
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b'{"choices": [')
        request.transport.close()
        await asyncio.sleep(0)
        return response

    async with Upstream(handler) as upstream:
        failure, _ = await call(upstream, "openai")
    assert failure.cause is Cause.CONNECTION
    assert "cannot reach" not in failure.detail and "broke" in failure.detail


async def test_a_declared_length_over_the_cap_fails_before_the_body_is_read():
    body = json.dumps(with_(OPENAI_OK, choices__0__message__content="a" * (2 * MB))).encode()
    async with Upstream(answer(body)) as upstream:
        failure, _ = await call(upstream, "openai", max_reply_bytes=MB)
        completion, _ = await call(upstream, "openai", max_reply_bytes=3 * MB)  # the pool still works
    assert failure.cause is Cause.OVERSIZED and completion.text == "a" * (2 * MB)


# -- what the OpenAI-compatible path sends (our own HTTP, not the SDK's: personagym.llm.providers.openai) --


async def test_openai_calls_send_the_bearer_key_the_org_headers_and_never_url_credentials(monkeypatch):
    from personagym.llm.providers import make_provider
    from personagym.llm.spec import ModelSpec

    seen: list[tuple[str, dict[str, str], dict]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.path, dict(request.headers), await request.json()))
        return web.json_response(OPENAI_OK)

    monkeypatch.setenv("OPENAI_ORG_ID", "org-abc")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-xyz")
    async with Upstream(record) as upstream:
        url = upstream.url.replace("http://", "http://alice:s3cret-pass@") + "/v1/"
        p = make_provider(ModelSpec("openai", "m"), ProviderSettings(base_url=url, api_key="sk-test-key-0123456789"))
        try:
            reply = await p.generate(ASK)
        finally:
            await p.aclose()
    assert reply.text == "hello"
    path, headers, body = seen[0]
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer sk-test-key-0123456789"
    assert headers["OpenAI-Organization"] == "org-abc" and headers["OpenAI-Project"] == "proj-xyz"
    assert body["model"] == "m" and body["messages"] == [{"role": "user", "content": "Say hello."}]
    assert "s3cret-pass" not in json.dumps(headers)


@pytest.mark.parametrize("value", ["proj-xyz\r\nX-Forged: yes", "proj-été"])
def test_an_org_or_project_id_a_header_cannot_carry_is_a_config_error(monkeypatch, value):
    from personagym.errors import ConfigError
    from personagym.llm.providers import make_provider
    from personagym.llm.spec import ModelSpec

    monkeypatch.setenv("OPENAI_PROJECT_ID", value)
    with pytest.raises(ConfigError, match="OPENAI_PROJECT_ID holds a line break"):
        make_provider(ModelSpec("openai", "m"), ProviderSettings(api_key="sk-test-key-0123456789"))


@pytest.mark.parametrize("status, body, cause", [
    (401, b"<html>Unauthorized</html>", Cause.AUTH),
    (404, b'{"error": {"message": "The model m does not exist"}}', Cause.NOT_FOUND),
    (302, b"", Cause.BAD_REQUEST),
    (503, b"", Cause.SERVER_ERROR),
])
async def test_an_openai_error_status_is_classified_with_the_servers_message(status, body, cause):
    from personagym.llm.providers import make_provider
    from personagym.llm.spec import ModelSpec

    async def fail(request: web.Request) -> web.Response:
        return web.Response(body=body, status=status, headers={"Location": "http://elsewhere.invalid/"})

    async with Upstream(fail) as upstream:
        p = make_provider(ModelSpec("openai", "m"), upstream.settings("openai")["openai"])
        try:
            with pytest.raises(ProviderError) as caught:
                await p.generate(ASK)
        finally:
            await p.aclose()
    assert caught.value.cause is cause and caught.value.status == status
    assert caught.value.detail.startswith(f"HTTP {status}")
    if status == 404:
        assert "does not exist" in caught.value.detail
