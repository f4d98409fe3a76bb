"""Batch clients through the real openai/anthropic SDKs against the fake server's batch endpoints."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import time
from typing import Annotated

import msgspec
import pytest
from msgspec import Meta, Struct

from personagym.errors import ConfigError
from personagym.llm import Cause, Request, Sampling
from personagym.llm.batch import BatchStatus, make_batch_client
from personagym.llm.providers import make_provider
from personagym.llm.spec import ModelSpec, ProviderSettings, parse_spec
from personagym.llm.types import ProviderError, Reply
from personagym.testing import FakeServer

PROVIDERS = ["openai", "anthropic"]


class Verdict(Struct):
    reasoning: Annotated[str, Meta(max_length=400)]
    score: Annotated[int, Meta(ge=1, le=5)]


def ask(text: str, **kwargs) -> Request:
    return Request.of(("system", "You are terse."), ("user", text), **kwargs)


def settings_for(server: FakeServer, provider: str, key: str = "sk-test") -> ProviderSettings:
    base = server.base_url if provider == "openai" else server.base_url.removesuffix("/v1")
    return ProviderSettings(base_url=base, api_key=key)


def client_for(server: FakeServer, provider: str, key: str = "sk-test"):
    return make_batch_client(ModelSpec(provider, "fake-model"), settings_for(server, provider, key))


async def wait(client, job_id: str, timeout: float = 5.0) -> BatchStatus:
    deadline = time.monotonic() + timeout
    while (status := await client.status(job_id)).state == "running":
        assert time.monotonic() < deadline, f"{job_id} still running"
        await asyncio.sleep(0.02)
    return status


def items_of(*requests: Request) -> list[tuple[str, Request]]:
    return [(f"item-{i}", r) for i, r in enumerate(requests)]


THREE = items_of(
    ask("What is your name?"),
    ask("Grade this answer", schema=Verdict, sampling=Sampling(temperature=0.7, seed=3)),
    ask("And your trade?", extra_body={"persona": "A pirate"}),
)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_batched_replies_equal_online_replies(server, provider):
    server.responder = lambda api, body: None if "schema" in json.dumps(body) else f"echo {body['messages'][-1]['content']}"
    client = client_for(server, provider)
    try:
        job = await client.submit(THREE)
        assert await client.status(job) == BatchStatus("running", 3, 0, 0)
        assert await wait(client, job) == BatchStatus("ended", 3, 3, 0)
        batched = await client.results(job)
    finally:
        await client.aclose()
    sent_in_batch = server.requests[-3:]
    online = make_provider(ModelSpec(provider, "fake-model"), settings_for(server, provider))
    try:
        replies = [await online.generate(request) for _, request in THREE]
    finally:
        await online.aclose()
    # Each item carried exactly the body its online call sends, and was read by the same code.
    sent_online = server.requests[-3:]
    assert sent_online == sent_in_batch
    assert batched == {cid: reply for (cid, _), reply in zip(THREE, replies)}
    assert batched["item-0"] == Reply("echo What is your name?", "stop", 7, 5)
    assert msgspec.json.decode(batched["item-1"].text, type=Verdict)
    assert sent_in_batch[2]["persona"] == "A pirate"
    structured = sent_in_batch[1]
    assert (structured.get("response_format") or structured["output_config"]["format"])["type"] == "json_schema"
    stats = server.stats
    assert (stats.batch_jobs, stats.batch_items, stats.requests) == (1, 3, 3)  # the 3 online calls


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("status, cause", [(500, Cause.SERVER_ERROR), (429, Cause.RATE_LIMITED), (400, Cause.BAD_REQUEST)])
async def test_a_failed_item_is_a_classified_error(server, provider, status, cause):
    server.batches.inject_item_fault("error", status=status)
    client = client_for(server, provider)
    try:
        job = await client.submit(THREE)
        assert await wait(client, job) == BatchStatus("ended", 3, 3, 1)
        results = await client.results(job)
    finally:
        await client.aclose()
    error = results["item-0"]
    assert isinstance(error, ProviderError) and error.cause is cause
    assert f"HTTP {status}" in error.detail and "injected" in error.detail
    assert isinstance(results["item-1"], Reply) and isinstance(results["item-2"], Reply)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_truncated_malformed_and_responder_failures(server, provider):
    def responder(api, body):
        if "trade" in json.dumps(body):
            raise RuntimeError("kaput")

    server.responder = responder
    server.batches.inject_item_fault("truncated")
    server.batches.inject_item_fault("malformed")
    client = client_for(server, provider)
    try:
        job = await client.submit(THREE)
        await wait(client, job)
        results = await client.results(job)
    finally:
        await client.aclose()
    truncated, malformed, raised = results.values()
    assert isinstance(truncated, Reply) and truncated.finish == "length" and truncated.completion_tokens > 0
    assert isinstance(malformed, ProviderError) and malformed.cause is Cause.MALFORMED_RESPONSE
    assert isinstance(raised, ProviderError) and raised.cause is Cause.SERVER_ERROR and "kaput" in raised.detail


async def test_an_openai_job_that_fails_validation(server):
    server.batches.inject_job_fault("failed")
    client = client_for(server, "openai")
    try:
        job = await client.submit(THREE)
        assert (await wait(client, job)).state == "failed"
        results = await client.results(job)
    finally:
        await client.aclose()
    assert set(results) == {"item-0", "item-1", "item-2"}
    assert all(isinstance(r, ProviderError) and r.cause is Cause.BAD_REQUEST for r in results.values())
    assert "injected" in results["item-0"].detail


async def test_an_anthropic_batch_refused_at_creation(server):
    server.batches.inject_job_fault("failed")
    client = client_for(server, "anthropic")
    try:
        with pytest.raises(ProviderError) as info:
            await client.submit(THREE)
    finally:
        await client.aclose()
    assert info.value.cause is Cause.BAD_REQUEST and server.stats.batch_jobs == 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_expired_job_keeps_what_was_done(server, provider):
    server.batches.inject_job_fault("expired", done=1)
    client = client_for(server, provider)
    try:
        job = await client.submit(THREE)
        assert await wait(client, job) == BatchStatus("expired", 3, 3, 2)
        results = await client.results(job)
    finally:
        await client.aclose()
    assert isinstance(results["item-0"], Reply)
    for cid in ("item-1", "item-2"):
        assert results[cid].cause is Cause.TIMEOUT and "expired" in results[cid].detail


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_cancel(server, provider):
    server.batch_delay = 60
    client = client_for(server, provider)
    try:
        job = await client.submit(THREE)
        with pytest.raises(ValueError, match="still running"):
            await client.results(job)
        await client.cancel(job)
        assert server.batches.phase(job) == "cancelling"
        status = await wait(client, job)
        assert status.state == "cancelled" and status.total == 3
        results = await client.results(job)
        await client.cancel(job)  # a stopped job: nothing to do, no error
    finally:
        await client.aclose()
    assert set(results) == {"item-0", "item-1", "item-2"}
    assert all(r.cause is Cause.SERVER_ERROR and "cancelled" in r.detail for r in results.values())


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_fresh_client_resumes_an_existing_job(server, provider):
    first = client_for(server, provider)
    job = await first.submit(THREE)
    await first.aclose()
    server.batches.inject_item_fault("error", status=500)
    second = client_for(server, provider)  # a new process: it knows only the job id
    try:
        await wait(second, job)
        results = await second.results(job)
        assert await second.results(job) == results  # results can be fetched again
    finally:
        await second.aclose()
    assert list(results) == ["item-0", "item-1", "item-2"]
    assert isinstance(results["item-0"], ProviderError) and isinstance(results["item-2"], Reply)
    assert (server.stats.batch_jobs, server.stats.batch_items) == (1, 3)  # nothing resubmitted


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_wrong_key_is_an_auth_error_and_never_shown(provider):
    secret = "sk-very-secret-0123456789"
    with FakeServer(require_key="sk-right") as server:
        client = client_for(server, provider, key=secret)
        try:
            with pytest.raises(ProviderError) as info:
                await client.submit(THREE)
            assert info.value.cause is Cause.AUTH
            good = client_for(server, provider, key="sk-right")
            job = await good.submit(THREE)
            await good.aclose()
            with pytest.raises(ProviderError) as polled:
                await client.status(job)
            assert polled.value.cause is Cause.AUTH
        finally:
            await client.aclose()
    for error in (info.value, polled.value):
        assert secret not in str(error) and secret not in repr(error)
    assert secret not in repr(settings_for(server, provider, key=secret))


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_unknown_job_is_not_found(server, provider):
    client = client_for(server, provider)
    try:
        with pytest.raises(ProviderError) as info:
            await client.status("batch_nope")
    finally:
        await client.aclose()
    assert info.value.cause is Cause.NOT_FOUND


def test_the_embedded_model_has_no_batch_api():
    with pytest.raises(ConfigError, match="drop --batch"):
        make_batch_client(parse_spec("local"), ProviderSettings())
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        make_batch_client(parse_spec("anthropic:claude"), ProviderSettings())


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_submissions_the_provider_would_refuse(server, provider):
    client = client_for(server, provider)
    try:
        with pytest.raises(ValueError, match="at least one"):
            await client.submit([])
        with pytest.raises(ValueError, match="twice"):
            await client.submit([("a", ask("x")), ("a", ask("y"))])
        client.max_items = 2
        with pytest.raises(ValueError, match="chunks"):
            await client.submit(THREE)
        client.max_bytes = 100
        with pytest.raises(ValueError, match="MB"):
            await client.submit(THREE[:1])
    finally:
        await client.aclose()
    assert server.stats.batch_jobs == 0 and "/v1/files" not in server.stats.by_path


async def test_anthropic_custom_ids_and_the_gateways_cache_keys(server):
    client = client_for(server, "anthropic")
    key = hashlib.sha256(b"a cache key").hexdigest()
    try:
        with pytest.raises(ValueError, match="a-zA-Z0-9_-"):
            await client.submit([("has space", ask("x"))])
        with pytest.raises(ValueError):
            await client.submit([("x" * 65, ask("x"))])
        job = await client.submit([(key, ask("x"))])  # 64 hex characters: the longest allowed
        await wait(client, job)
        assert list(await client.results(job)) == [key]
    finally:
        await client.aclose()


async def test_a_server_without_a_batch_api(server):
    settings = ProviderSettings(base_url=server.base_url + "/nowhere", api_key="sk-test")
    client = make_batch_client(ModelSpec("openai", "fake-model"), settings)
    try:
        with pytest.raises(ProviderError, match="has no batch API") as info:
            await client.submit(THREE)
    finally:
        await client.aclose()
    assert info.value.cause is Cause.NOT_FOUND


def test_fake_batch_endpoints_check_the_key_and_routes():
    with FakeServer(require_key="sk-right") as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        for method, path in [("POST", "/v1/files"), ("GET", "/v1/files/file-1/content"), ("POST", "/v1/batches"),
                             ("GET", "/v1/batches/b"), ("POST", "/v1/batches/b/cancel"),
                             ("POST", "/v1/messages/batches"), ("GET", "/v1/messages/batches/b/results")]:
            conn.request(method, path, b"{}" if method == "POST" else None)
            response = conn.getresponse()
            assert response.status == 401, path
            response.read()
        ok = {"x-api-key": "sk-right"}
        for method, path, status in [("GET", "/v1/batches/nope", 404), ("DELETE", "/v1/batches/x", 405),
                                     ("GET", "/v1/batches/x/other", 404), ("POST", "/v1/batches", 400),
                                     ("POST", "/v1/messages/batches", 400)]:
            conn.request(method, path, b"{}" if method == "POST" else None, ok)
            response = conn.getresponse()
            assert response.status == status, path
            assert json.loads(response.read())["error"]["message"]
        conn.close()
