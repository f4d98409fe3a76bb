"""Model specs (``provider:model``) and where each provider's base URL and key come from."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit, urlunsplit

from personagym import secrets
from personagym.errors import ConfigError

PROVIDERS = ("openai", "anthropic", "local")

# Environment variables each provider reads, in the names users already have set for the SDKs.
ENV_KEYS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
ENV_BASE_URLS = {"openai": "OPENAI_BASE_URL", "anthropic": "ANTHROPIC_BASE_URL"}


@dataclass(frozen=True)
class ModelSpec:
    provider: str
    model: str  # for `local`, a GGUF path or "" for the embedded default

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}" if self.model else self.provider


def parse_spec(text: str) -> ModelSpec:
    text = text.strip()
    provider, sep, model = text.partition(":")
    provider = provider.strip().lower()
    if provider == "local":
        return ModelSpec("local", model.strip())
    if not sep:
        raise ConfigError(
            f"model spec {text!r} names no provider: write it as provider:model, e.g. openai:{text or 'gpt-4o'}"
        )
    if provider not in PROVIDERS:
        raise ConfigError(
            f"unknown provider {provider!r} in model spec {text!r}: use one of openai:, anthropic:, local"
        )
    if not model.strip():
        raise ConfigError(f"model spec {text!r} has an empty model name: write e.g. {provider}:<model name>")
    return ModelSpec(provider, model.strip())


@dataclass(frozen=True)
class ProviderSettings:
    """Connection settings for one provider. The key is kept out of repr so it never reaches a log."""

    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 120.0
    # How structured replies are asked of an OpenAI-compatible server: "auto" negotiates
    # (personagym.llm.structured), or one shape: json_schema, json_object, tools, prompt.
    structured: str = "auto"
    # The largest reply body read, decompressed; a larger one fails the attempt as `oversized`.
    max_reply_bytes: int = 16 * 2**20


def resolve_settings(provider: str, *, flags: dict | None = None, config: dict | None = None) -> ProviderSettings:
    """Flags win over the config file, which wins over the environment."""
    flags = flags or {}
    config = config or {}
    env = os.environ

    def pick(name: str, env_name: str | None) -> str | None:
        for source in (flags.get(name), config.get(name)):
            if source:
                return ",".join(map(str, source)) if isinstance(source, (list, tuple)) else str(source)
        if name == "api_key" and config.get("api_key_env"):
            return env.get(str(config["api_key_env"])) or None
        return (env.get(env_name) or None) if env_name else None

    timeout = flags.get("timeout") or config.get("timeout") or 120.0
    structured = flags.get("structured_output") or config.get("structured_output") or "auto"
    settings = ProviderSettings(
        base_url=pick("base_url", ENV_BASE_URLS.get(provider)),
        api_key=pick("api_key", ENV_KEYS.get(provider)),
        timeout=float(timeout),
        structured=str(structured),
    )
    max_reply_bytes = flags.get("max_reply_bytes") or config.get("max_reply_bytes")
    if max_reply_bytes is not None:
        if isinstance(max_reply_bytes, bool) or not isinstance(max_reply_bytes, int) or max_reply_bytes < 1024:
            raise ConfigError(f"max_reply_bytes must be a whole number of bytes, at least 1024 (got {max_reply_bytes!r})")
        settings = replace(settings, max_reply_bytes=max_reply_bytes)
    register_settings(settings)
    return settings


def register_settings(settings: ProviderSettings) -> None:
    """Tell the redactor every secret these settings hold: the key, and any password in a base URL."""
    secrets.register(settings.api_key)
    for url in split_urls(settings.base_url):
        secrets.register_url(url)


def public_url(url: str | None) -> str | None:
    """A base URL with any user:password@ removed: safe to store, log and hash."""
    if not url:
        return url
    if "," in url:  # several endpoints serving one model
        return ",".join(public_url(u) or "" for u in split_urls(url))
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def split_urls(value: str | list | tuple | None) -> list[str]:
    """Base URLs from a comma-separated string or a list (several endpoints serving one model)."""
    if not value:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return [str(u).strip() for u in items if str(u).strip()]
