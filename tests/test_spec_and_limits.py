from __future__ import annotations

import asyncio
import time

import pytest

from personagym.errors import ConfigError, UserError
from personagym.llm import Gateway, ModelSpec, parse_spec
from personagym.llm.cache import cache_key
from personagym.llm.limits import RateLimiter
from personagym.llm.providers.base import classify_status, retry_after_seconds
from personagym.llm.spec import ProviderSettings, public_url, resolve_settings
from personagym.llm.types import Cause, Request
from personagym.llm.usage import PriceTable


@pytest.mark.parametrize(
    "text, spec",
    [
        ("openai:gpt-4o", ModelSpec("openai", "gpt-4o")),
        ("openai:meta-llama/Llama-3-70b-chat-hf", ModelSpec("openai", "meta-llama/Llama-3-70b-chat-hf")),
        ("anthropic:claude-sonnet-4-5", ModelSpec("anthropic", "claude-sonnet-4-5")),
        ("local", ModelSpec("local", "")),
        ("local:/models/x.gguf", ModelSpec("local", "/models/x.gguf")),
        ("openai:ollama/llama3:8b", ModelSpec("openai", "ollama/llama3:8b")),
    ],
)
def test_specs_parse(text, spec):
    assert parse_spec(text) == spec


@pytest.mark.parametrize(
    "text, words",
    [
        ("gemini:pro", "unknown provider 'gemini'"),
        ("openai:", "empty model name"),
        ("gpt-4o", "names no provider"),
    ],
)
def test_bad_specs_name_the_problem_and_the_fix(text, words):
    with pytest.raises(ConfigError, match=words) as info:
        parse_spec(text)
    assert isinstance(info.value, UserError) and "\n" not in str(info.value)


def test_missing_keys_are_config_errors(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    gateway = Gateway(settings={"openai": resolve_settings("openai"), "anthropic": resolve_settings("anthropic")})
    with pytest.raises(ConfigError, match="set OPENAI_API_KEY"):
        gateway.model("openai:gpt-4o")
    with pytest.raises(ConfigError, match="set ANTHROPIC_API_KEY"):
        gateway.model("anthropic:claude-sonnet-4-5")


def test_a_missing_gguf_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="GGUF file not found"):
        Gateway().model(f"local:{tmp_path / 'nope.gguf'}")


def test_settings_precedence(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "env-key")
    monkeypatch.setenv("OTHER_KEY", "other-key")
    assert resolve_settings("openai").base_url == "http://env/v1"
    assert resolve_settings("openai", config={"base_url": "http://cfg/v1"}).base_url == "http://cfg/v1"
    flagged = resolve_settings("openai", flags={"base_url": "http://flag/v1"}, config={"base_url": "http://cfg/v1"})
    assert flagged.base_url == "http://flag/v1"
    assert resolve_settings("openai", config={"api_key_env": "OTHER_KEY"}).api_key == "other-key"
    assert "env-key" not in repr(resolve_settings("openai"))


def test_public_url_drops_credentials():
    assert public_url("https://user:pw@host:8443/v1/?key=abc") == "https://host:8443/v1"


def test_cache_key_depends_on_what_changes_the_output():
    identity = {"provider": "openai", "base_url": "u", "model": "m"}
    base = Request.of(("user", "hi"))
    assert cache_key(identity, base) == cache_key(identity, Request.of(("user", "hi"), role="judge"))
    assert cache_key(identity, base) != cache_key({**identity, "model": "n"}, base)
    assert cache_key(identity, base) != cache_key(identity, Request.of(("user", "hi!")))


def test_status_classification_and_retry_after():
    assert classify_status(429, "slow down", {"retry-after": "2"}).retry_after == 2.0
    assert classify_status(503, "x").cause is Cause.SERVER_ERROR
    assert classify_status(401, "x").cause is Cause.AUTH and not Cause.AUTH.retriable
    assert classify_status(400, "x").cause is Cause.BAD_REQUEST
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({}) is None


def test_prices_match_dated_snapshots_and_user_files_override(tmp_path):
    table = PriceTable.load()
    assert table.lookup("anthropic:claude-sonnet-4-5-20250929") == table.lookup("anthropic:claude-sonnet-4-5")
    assert table.lookup("openai:gpt-4o-2024-08-06") == table.lookup("openai:gpt-4o")
    assert table.lookup("openai:gpt-4o-audio-preview") is None  # a prefix is not a family
    assert table.cost("local", 10_000, 10_000) == 0.0
    assert table.lookup("openai:some-finetune") is None
    extra = tmp_path / "prices.toml"
    extra.write_text('["openai:some-finetune"]\ninput = 1.0\noutput = 2.0\n')
    assert PriceTable.load(extra).cost("openai:some-finetune", 1_000_000, 0) == 1.0
    extra.write_text('["openai:x"]\ninput = 1.0\n')
    with pytest.raises(UserError, match="needs `input` and `output`"):
        PriceTable.load(extra)


async def test_rate_limiter_spaces_requests():
    limiter = RateLimiter(per_minute=600)  # one per 0.1 s
    started = time.monotonic()
    await asyncio.gather(*(limiter.acquire() for _ in range(5)))
    assert time.monotonic() - started >= 0.39


def test_provider_settings_repr_hides_the_key():
    assert "sekrit" not in repr(ProviderSettings(base_url="u", api_key="sekrit"))
