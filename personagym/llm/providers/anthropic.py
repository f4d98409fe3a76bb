"""Anthropic's Messages API through the official async SDK.

The SDK installed here (2.x) speaks API version 2026-10-21, which rejects temperature, top_p and
top_k outright, so no sampling parameter is sent: Claude samples with its own defaults. The cache
key still carries the requested sampling, so draws at temperature > 0 stay distinct. Structured
output uses the native `output_config.format` JSON schema, made API-compatible by the SDK's own
`transform_schema` (it moves unsupported bounds into descriptions; the gateway validates the bounds).
"""

from __future__ import annotations

from typing import Any

import anthropic

from personagym.errors import ConfigError
from personagym.llm.providers.base import sdk_errors
from personagym.llm.providers.transport import http_client
from personagym.llm.spec import ProviderSettings, public_url
from personagym.llm.types import Cause, ProviderError, Reply, Request

OFFICIAL_URL = "https://api.anthropic.com"
_FINISH = {"max_tokens": "length", "model_context_window_exceeded": "length"}


class AnthropicProvider:
    max_concurrency = None

    def __init__(self, model: str, settings: ProviderSettings):
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
            http_client=http_client(),
        )

    def identity(self) -> dict[str, Any]:
        return {"provider": "anthropic", "base_url": public_url(self.base_url) or OFFICIAL_URL, "model": self.model}

    async def generate(self, request: Request) -> Reply:
        body = request_body(self.model, request)
        # The fields messages.create names go as its arguments; the user's own extra fields ride along
        # in extra_body, which the SDK merges into the same JSON object: the wire body is `body`.
        named = {name: body.pop(name) for name in _CREATE_ARGUMENTS if name in body}
        with sdk_errors(anthropic, public_url(self.base_url) or OFFICIAL_URL):
            message = await self.client.messages.create(**named, extra_body=body or None)
        return parse_message(message)

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
        body["output_config"] = {"format": {"type": "json_schema", "schema": anthropic.transform_schema(request.schema)}}
    if request.extra_body:
        body.update(request.extra_body)
    return body


def parse_message(message: Any) -> Reply:
    """An SDK Message (an online reply, or a succeeded batch result's message) as a Reply."""
    try:
        text = "".join(block.text for block in message.content if getattr(block, "type", None) == "text")
        finish = _FINISH.get(message.stop_reason or "", "stop")
    except (AttributeError, TypeError):
        raise ProviderError(Cause.MALFORMED_RESPONSE, "response has no content blocks") from None
    usage = getattr(message, "usage", None)
    return Reply(
        text,
        finish,
        getattr(usage, "input_tokens", 0) or 0,
        getattr(usage, "output_tokens", 0) or 0,
    )
