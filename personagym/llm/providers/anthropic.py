"""Anthropic's Messages API through the official async SDK.

The SDK installed here (2.x) speaks API version 2026-10-21, which rejects temperature, top_p and
top_k outright, so no sampling parameter is sent: Claude samples with its own defaults, the run
records "provider default" (personagym.llm.sampling) and the cache keys every call by its draw
index, never as a deterministic call. Structured
output uses the native `output_config.format` JSON schema, made API-compatible by the SDK's own
`transform_schema` (it moves unsupported bounds into descriptions; the gateway validates the bounds).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import anthropic

from personagym.errors import ConfigError
from personagym.llm.jsonschema import json_schema
from personagym.llm.providers import fields
from personagym.llm.providers.base import rate_headers, sdk_errors
from personagym.llm.providers.sdk_http import http_client
from personagym.llm.sampling import PROVIDER_DEFAULT
from personagym.llm.spec import ProviderSettings, public_url, register_settings
from personagym.llm.types import Reply, Request

OFFICIAL_URL = "https://api.anthropic.com"


class AnthropicProvider:
    max_concurrency = None

    def __init__(self, model: str, settings: ProviderSettings):
        register_settings(settings)  # settings built in Python, not by resolve_settings, count too
        self.model = model
        self.base_url = settings.base_url
        if not settings.api_key:
            raise ConfigError(
                f"no API key for anthropic:{model}: set ANTHROPIC_API_KEY, or api_key in the [anthropic] table "
                "of the config file"
            )
        self.client = anthropic.AsyncAnthropic(
            api_key=settings.api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=None,
            http_client=http_client(settings.max_reply_bytes),
        )

    def identity(self) -> dict[str, Any]:
        # No sampling parameter reaches Claude: every call is a random draw, cached per draw index.
        return {
            "provider": "anthropic", "base_url": public_url(self.base_url) or OFFICIAL_URL, "model": self.model,
            "sampling": PROVIDER_DEFAULT,
        }

    async def generate(self, request: Request) -> Reply:
        body = request_body(self.model, request)
        # The fields messages.create names go as its arguments; the user's own extra fields ride along
        # in extra_body, which the SDK merges into the same JSON object: the wire body is `body`.
        named = {name: body.pop(name) for name in _CREATE_ARGUMENTS if name in body}
        with sdk_errors(anthropic, public_url(self.base_url) or OFFICIAL_URL):
            # The raw response: its headers, and its JSON read by parse_message rather than by the
            # SDK, which builds its typed objects without checking them.
            raw = await self.client.messages.with_raw_response.create(**named, extra_body=body or None)
            data = json.loads(await raw.read())
        return parse_message(data, rate_headers(raw.headers))

    async def aclose(self) -> None:
        await self.client.close()


# The two halves of a call, shared with the batch client (personagym.llm.batch.anthropic), so that a
# batch request carries exactly the params the online call would send and its answer is read by the
# same code.

_CREATE_ARGUMENTS = ("model", "max_tokens", "messages", "system", "output_config")


def request_body(model: str, request: Request) -> dict[str, Any]:
    """The JSON body of one Messages API request (what POST /v1/messages and a batch item's params hold)."""
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": request.sampling.max_tokens,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages if m.role != "system"],
    }
    if system:
        body["system"] = system
    if request.schema is not None:
        body["output_config"] = {"format": {"type": "json_schema", "schema": anthropic.transform_schema(json_schema(request.schema))}}
    if request.extra_body:
        body.update(request.extra_body)
    return body


def parse_message(message: Any, headers: Mapping[str, str] | None = None) -> Reply:
    """A Messages API reply (the JSON of an online one, or a succeeded batch result's SDK message) as a
    Reply; ProviderError (malformed_response) when it is not one. Every field is checked: the server
    may be broken or hostile, and the SDK passes whatever it is sent into its typed objects."""
    blocks = fields.get(message, "content")
    if not isinstance(blocks, list):
        raise fields.malformed("response has no content blocks")
    texts = []
    for block in blocks:
        kind = fields.get(block, "type")
        if not isinstance(kind, str):
            raise fields.malformed("a content block has no type")
        if kind == "text":
            texts.append(fields.text(fields.get(block, "text"), "a text block's text") or "")
    usage = fields.get(message, "usage")
    return Reply(
        "".join(texts),
        fields.finish(fields.get(message, "stop_reason")),
        fields.tokens(fields.get(usage, "input_tokens")),
        fields.tokens(fields.get(usage, "output_tokens")),
        model=fields.model_name(fields.get(message, "model")),
        headers=headers,
    )
