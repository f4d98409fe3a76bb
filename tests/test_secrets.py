"""Secrets never leak: a server that repeats the key it was sent ("Incorrect API key provided: sk-...")
must not get it into the database, an export, the HTML report, --debug output or `models check`.

A small loopback server stands in front of the scripted fake server and answers chosen requests with
an error that echoes the key of the request; every other request goes through to the fake.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path
from typing import Callable

import pytest
from aiohttp import ClientSession, web

from personagym import secrets
from personagym.llm.providers.base import classify_status
from personagym.llm.types import CallFailure, Cause, ProviderError
from personagym.testing import FakeServer
from tests.conftest import run_cli
from tests.pipeline_fakes import PREFLIGHT, prompt_text, responder
from tests.test_pipeline import PERSONAS

OPENAI_KEY = "sk-secret-123-openai-do-not-print"
ANTHROPIC_KEY = "sk-ant-secret-456-anthropic-do-not-print"
# What must never be seen: the keys, and their prefixes long enough to be of use.
FORBIDDEN = ("sk-secret-123", "sk-ant-secret-456", "do-not-print")


def sent_key(request: web.Request) -> str:
    return request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")


class KeyEcho:
    """Answers the requests `pick(body)` chooses with HTTP `pick`'s status and an error that repeats the
    key; forwards the rest to `upstream` (the scripted fake), if any. Runs in a thread of its own."""

    def __init__(self, pick: Callable[[dict], int | None], upstream: str | None = None):
        self.pick, self.upstream, self.echoed = pick, upstream, 0

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        status = self.pick(body) if isinstance(body, dict) else None
        if status is not None or self.upstream is None:
            self.echoed += 1
            key = sent_key(request)
            message = f"Incorrect API key provided: {key}. You can find your API key at https://example.invalid."
            headers = {"Retry-After": "0"} if status == 429 else None
            return web.json_response({"type": "error", "error": {"type": "invalid_request_error", "message": message,
                                                                 "key": key}}, status=status or 401, headers=headers)
        async with ClientSession() as session:
            async with session.request(request.method, self.upstream + request.path_qs, data=raw,
                                       headers={k: v for k, v in request.headers.items() if k.lower() != "host"}) as up:
                return web.Response(body=await up.read(), status=up.status,
                                    content_type=up.content_type or "application/json")

    def __enter__(self) -> "KeyEcho":
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def start() -> None:
            app = web.Application(client_max_size=1 << 26)
            app.router.add_route("*", "/{path:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", 0).start()

        asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def assert_no_secret(text: str | bytes, where: str) -> None:
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    for secret in FORBIDDEN:
        assert secret not in text, f"{secret!r} leaked into {where}"


# -- the redactor ----------------------------------------------------------------------------------


def test_redact_hides_registered_secrets_url_credentials_and_key_shaped_strings(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    secrets.register("my-own-proxy-token")
    secrets.register("abc")  # too short to be worth hiding (and hiding it would mangle words)
    secrets.register(None)
    text = secrets.redact("token my-own-proxy-token at https://bob:hunter22@example.com/v1 with sk-abcdefghijklmnop1234 abc")
    assert text == "token [REDACTED] at https://[REDACTED]@example.com/v1 with [REDACTED] abc"
    assert secrets.redact(None) is None and secrets.redact(5) == 5


def test_env_keys_and_url_passwords_are_secrets(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "plain-anthropic-key-value")
    assert "plain-anthropic" not in secrets.redact("bad key plain-anthropic-key-value")
    secrets.register_url("https://user:p%40ss-w0rd-long@host.example/v1")
    assert "p@ss-w0rd-long" not in secrets.redact("the password is p@ss-w0rd-long")
    assert "p%40ss-w0rd-long" not in secrets.redact("in a url p%40ss-w0rd-long")


def test_a_secret_is_redacted_before_a_detail_is_cut_so_no_prefix_survives():
    secrets.register(OPENAI_KEY)
    error = classify_status(401, "x" * 290 + f"Incorrect API key provided: {OPENAI_KEY}")
    assert_no_secret(error.detail, "a cut detail")
    assert_no_secret(secrets.clip("y" * 95 + OPENAI_KEY, 100), "clip")


def test_failure_details_are_redacted_where_they_are_made():
    secrets.register(OPENAI_KEY)
    error = ProviderError(Cause.AUTH, f"Incorrect API key provided: {OPENAI_KEY}")
    failure = CallFailure("openai:m", Cause.AUTH, f"said {OPENAI_KEY}", 1)
    assert_no_secret(str(error), "a ProviderError")
    assert_no_secret(failure.detail, "a CallFailure")


def test_log_records_are_redacted_by_the_filter_on_handlers_and_package_loggers():
    secrets.register(OPENAI_KEY)
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    logger = logging.getLogger("personagym.llm")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("attempt failed (%s)", f"HTTP 401: Incorrect API key provided: {OPENAI_KEY}")
        try:
            raise RuntimeError(f"boom {OPENAI_KEY}")
        except RuntimeError:
            logger.exception("with a traceback")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert len(lines) == 2 and "boom" in lines[1]
    assert_no_secret("\n".join(lines), "log records")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_provider_given_settings_in_python_registers_their_key(provider):
    from personagym.llm import Gateway, RetryPolicy
    from personagym.llm.spec import ProviderSettings
    from personagym.llm.types import CallFailed, Request

    key = f"python-api-{provider}-key-given-directly"
    with KeyEcho(lambda body: 401) as echo:
        base = f"{echo.url}/v1" if provider == "openai" else echo.url
        gateway = Gateway(settings={provider: ProviderSettings(base_url=base, api_key=key)},
                          retry=RetryPolicy(max_attempts=1))
        async with gateway:
            with pytest.raises(CallFailed) as caught:
                await gateway.complete(f"{provider}:m", Request.of(("user", "hi")))
    assert caught.value.failure.cause is Cause.AUTH
    assert key not in str(caught.value) and "[REDACTED]" in caught.value.failure.detail


# -- every output of the CLI ---------------------------------------------------------------------


@pytest.fixture
def scripted_fake():
    with FakeServer(responder=responder) as fake:
        yield fake


def _run_picker(agent_status: int):
    """The agent fails for the first persona with an echo; the Anthropic judge fails every verdict with
    one; preflight pings and everything else go through, so the run goes on and records failures."""

    def pick(body: dict) -> int | None:
        text = prompt_text(body)
        if PREFLIGHT in text:
            return None
        if body.get("model") == "agent-x" and "Tokyo" in text:
            return agent_status
        if body.get("model") == "judge-b" and "messages" in body and "system" in body and "output_config" in body:
            return 400
        return None

    return pick


def _key_setup(source: str, tmp_path: Path, echo: KeyEcho) -> tuple[dict[str, str], list[str]]:
    env = {"OPENAI_BASE_URL": f"{echo.url}/v1", "ANTHROPIC_BASE_URL": echo.url}
    if source == "env":
        return {**env, "OPENAI_API_KEY": OPENAI_KEY, "ANTHROPIC_API_KEY": ANTHROPIC_KEY}, []
    config = tmp_path / "keys.toml"
    config.write_text(f'[openai]\napi_key = "{OPENAI_KEY}"\n\n[anthropic]\napi_key = "{ANTHROPIC_KEY}"\n')
    return env, ["--config", str(config)]


def _run_args(name: str) -> list[str]:
    args = ["run", "--run", name, "--agent", "openai:agent-x", "--judges", "openai:judge-a,anthropic:judge-b",
            "--generator", "openai:gen", "--example-model", "openai:ex", "--questions-per-task", "1", "--quiet"]
    for persona in PERSONAS:
        args += ["--persona", persona]
    return args


@pytest.mark.parametrize("source", ["env", "config"])
def test_a_key_echoed_by_a_server_reaches_no_output(scripted_fake, tmp_path, source):
    upstream = scripted_fake.base_url.removesuffix("/v1")
    with KeyEcho(_run_picker(400), upstream) as echo:
        env, config = _key_setup(source, tmp_path, echo)
        run = run_cli(*config, *_run_args("r1"), env=env, cwd=tmp_path, timeout=300)
        assert echo.echoed > 0, (run.stdout, run.stderr)  # the server did repeat the keys
        assert "Traceback" not in run.stderr, run.stderr
        assert_no_secret(run.stdout + run.stderr, "the run's output")

        # The database, every file of it (the WAL too), byte for byte.
        files = sorted(tmp_path.glob("personagym.db*"))
        assert files
        for path in files:
            assert_no_secret(path.read_bytes(), path.name)

        exported = run_cli(*config, "export", "r1", env=env, cwd=tmp_path)
        assert exported.returncode == 0, exported.stderr
        failures = json.loads(exported.stdout)["failures"]
        assert failures["total"] > 0 and "[REDACTED]" in exported.stdout  # the detail is kept, the key is not
        assert {"openai:agent-x", "anthropic:judge-b"} <= {f["model"] for f in failures["items"]}
        assert_no_secret(exported.stdout + exported.stderr, "export")
        csv = run_cli(*config, "export", "r1", "--format", "csv", env=env, cwd=tmp_path)
        assert_no_secret(csv.stdout + csv.stderr, "CSV export")

        report = run_cli(*config, "report", "r1", "-o", "r.html", env=env, cwd=tmp_path)
        assert report.returncode == 0, report.stderr
        assert_no_secret((tmp_path / "r.html").read_bytes(), "the HTML report")
        shown = run_cli(*config, "show", "r1", env=env, cwd=tmp_path)
        assert_no_secret(shown.stdout + shown.stderr, "show")


def test_a_key_echoed_by_a_server_is_not_in_debug_output(scripted_fake, tmp_path):
    upstream = scripted_fake.base_url.removesuffix("/v1")
    # 429 with Retry-After 0: retried at once, and each retry is logged under --debug with the detail.
    with KeyEcho(_run_picker(429), upstream) as echo:
        env, _ = _key_setup("env", tmp_path, echo)
        run = run_cli("--debug", *_run_args("d1"), env=env, cwd=tmp_path, timeout=300)
    assert echo.echoed > 0
    assert "DEBUG personagym" in run.stderr and "[REDACTED]" in run.stderr, run.stderr[-2000:]
    assert_no_secret(run.stdout + run.stderr, "--debug output")


@pytest.mark.parametrize("source", ["env", "config"])
@pytest.mark.parametrize("debug", [[], ["--debug"]], ids=["plain", "debug"])
def test_a_key_echoed_by_a_server_is_not_in_models_check(tmp_path, source, debug):
    with KeyEcho(lambda body: 401) as echo:
        env, config = _key_setup(source, tmp_path, echo)
        result = run_cli(*debug, *config, "models", "check", "openai:m", "anthropic:m", env=env, cwd=tmp_path)
    assert echo.echoed >= 2 and result.returncode != 0
    assert "[REDACTED]" in result.stdout + result.stderr
    assert_no_secret(result.stdout + result.stderr, "models check")


def test_a_password_in_a_base_url_reaches_no_output(tmp_path):
    with KeyEcho(lambda body: 401) as echo:
        url = echo.url.replace("http://", "http://alice:url-password-789@") + "/v1"
        result = run_cli("models", "check", "openai:m", env={"OPENAI_BASE_URL": url, "OPENAI_API_KEY": OPENAI_KEY},
                         cwd=tmp_path)
    assert echo.echoed >= 1
    assert "url-password-789" not in result.stdout + result.stderr
    assert_no_secret(result.stdout + result.stderr, "models check")


async def test_a_key_echoed_in_a_reply_itself_is_not_stored():
    from personagym.llm import Gateway, RetryPolicy
    from personagym.llm.spec import ProviderSettings
    from personagym.llm.types import Request

    key = "sk-reply-echo-key-000000000"

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"model": f"m {sent_key(request)}", "choices": [
            {"message": {"content": f"your key is {sent_key(request)}"}, "finish_reason": "stop"}]})

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
        async with Gateway(settings={"openai": ProviderSettings(base_url=url, api_key=key)},
                           retry=RetryPolicy(max_attempts=1)) as gateway:
            records = []
            gateway.on_call = records.append
            completion = await gateway.complete("openai:m", Request.of(("user", "hi")))
    finally:
        await runner.cleanup()
    assert completion.text == "your key is [REDACTED]"
    assert key not in repr(records)
