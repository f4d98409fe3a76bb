"""OpenAI, and every server that speaks its chat API (vLLM, Ollama, llama.cpp server, Together,
Groq, OpenRouter, LM Studio), through the official async SDK.

Two choices made for throughput, measured in bench/RESULTS.md: the SDK's aiohttp transport (its
default httpx2 pool scans every connection on every request), and the SDK's documented low-level
`client.post` with a raw response, which skips the typed-parameter transformation and the response
model construction that together cost more CPU than the HTTP exchange itself. Authentication, base
URL handling and error classes remain the SDK's own.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import httpx2
import openai

from personagym.errors import ConfigError
from personagym.llm.providers import fields
from personagym.llm.providers.base import rate_headers, schema_of, sdk_errors
from personagym.llm.providers.transport import http_client
from personagym.llm.sampling import PROVIDER_DEFAULT, honours_sampling
from personagym.llm.spec import ProviderSettings, public_url, register_settings
from personagym.llm.structured import TOOL_NAME, Negotiator, Shape, body_fields, parse_choice, prompt_instructions
from personagym.llm.types import Message, Reply, Request

OFFICIAL_URL = "https://api.openai.com/v1"


class OpenAIProvider:
    max_concurrency = None

    def __init__(self, model: str, settings: ProviderSettings):
        register_settings(settings)  # settings built in Python, not by resolve_settings, count too
        self.model = model
        self.base_url = settings.base_url
        key = settings.api_key
        if not key:
            if not self.base_url:
                raise ConfigError(
                    f"no API key for openai:{model}: set OPENAI_API_KEY, or api_key in the [openai] table of "
                    "the config file (or give a base URL for a local server that needs none)"
                )
            key = "no-key"  # local OpenAI-compatible servers ignore it, but the SDK insists on one
        # The gateway owns retries and timeouts: SDK retries would multiply our attempts.
        self.client = openai.AsyncOpenAI(
            api_key=key,
            base_url=self.base_url,
            max_retries=0,
            timeout=None,
            http_client=http_client(settings.max_reply_bytes),
        )
        self.where = public_url(self.base_url) or OFFICIAL_URL
        self.negotiator = Negotiator(forced=parse_choice(settings.structured, "--structured-output"))

    def identity(self) -> dict[str, Any]:
        identity = {"provider": "openai", "base_url": public_url(self.base_url) or OFFICIAL_URL, "model": self.model}
        if not honours_sampling("openai", self.model, self.base_url):
            identity["sampling"] = PROVIDER_DEFAULT  # every call a random draw: cached per draw index
        return identity

    async def generate(self, request: Request) -> Reply:
        if request.schema is None:
            return await self._post(request, Shape.JSON_SCHEMA)
        return await self.negotiator.run(lambda shape: self._post(request, shape))

    async def _post(self, request: Request, shape: Shape) -> Reply:
        # Serialised here: the SDK sends bytes as they are, without deep-copying the body.
        body = json.dumps(request_body(self.model, self.base_url, request, shape)).encode()
        with sdk_errors(openai, self.where):
            response = await self.client.post("/chat/completions", content=body, cast_to=httpx2.Response)
            data = json.loads(response.content)
        return parse_completion(data, shape if request.schema is not None else None, rate_headers(response.headers))

    async def aclose(self) -> None:
        await self.client.close()


# The two halves of a call, shared with the batch client (personagym.llm.batch.openai), so that a batch
# line carries exactly the body the online call would post and its answer is read by the same code.


def request_body(model: str, base_url: str | None, request: Request, shape: Shape = Shape.JSON_SCHEMA) -> dict[str, Any]:
    """The JSON body of one chat completion request for `model` at `base_url` (None: OpenAI's own
    API), asking for a structured reply, when the request has a schema, in `shape`."""
    s = request.sampling
    messages = request.messages
    if request.schema is not None and shape is Shape.PROMPT:
        messages = _with_instructions(messages, prompt_instructions(schema_of(request.schema)))
    params: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m.role, "content": m.content} for m in messages],
    }
    honoured = honours_sampling("openai", model, base_url)
    if honoured:
        params["temperature"] = s.temperature
    # OpenAI's own API has renamed max_tokens; many compatible servers only know the old name.
    params["max_tokens" if base_url else "max_completion_tokens"] = s.max_tokens
    if s.top_p is not None and honoured:
        params["top_p"] = s.top_p
    if s.seed is not None:
        params["seed"] = s.seed
    if request.schema is not None:
        params.update(body_fields(shape, request.schema.__name__, schema_of(request.schema)))
    if request.extra_body:
        params.update(request.extra_body)
    return params


def _with_instructions(messages: tuple[Message, ...], instructions: str) -> tuple[Message, ...]:
    """The schema instructions appended to the last user message (where every chat server reads)."""
    last = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
    if last is None:
        return (*messages, Message("user", instructions))
    return (*messages[:last], Message("user", f"{messages[last].content}\n\n{instructions}"), *messages[last + 1 :])


def parse_completion(data: Any, shape: Shape | None = None, headers: Mapping[str, str] | None = None) -> Reply:
    """A chat.completion response body as a Reply; ProviderError (malformed_response) when it is not
    one. Every field is checked: the server may be broken or hostile. A reply to a forced tool call
    carries its JSON in the call's arguments."""
    choices = fields.get(data, "choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = fields.get(choice, "message")
    if not isinstance(message, dict):
        raise fields.malformed("response lacks choices[0].message")
    text = _content(message.get("content"))
    calls = message.get("tool_calls")
    if shape is Shape.TOOLS and calls:
        text = _tool_arguments(calls)
    finish = fields.finish(choice.get("finish_reason"))
    usage = fields.get(data, "usage")
    return Reply(
        text or "",
        finish,
        fields.tokens(fields.get(usage, "prompt_tokens")),
        fields.tokens(fields.get(usage, "completion_tokens")),
        model=fields.model_name(fields.get(data, "model")),
        headers=headers,
    )


def _content(content: Any) -> str | None:
    """message.content: text, null, or (as some compatible servers send) a list of content parts, of
    which the text parts count. Anything else is a broken reply."""
    if not isinstance(content, list):
        return fields.text(content, "message content")
    texts = []
    for part in content:
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise fields.malformed("message content is a list that holds something other than content parts")
        if part["type"] == "text":
            texts.append(fields.text(part.get("text"), "a text part of the message content") or "")
    return "".join(texts)


def _tool_arguments(calls: Any) -> str | None:
    call = fields.get(calls[0], "function") if isinstance(calls, list) else None
    if not isinstance(call, dict):
        raise fields.malformed("tool_calls[0] has no function")
    if call.get("name") not in (TOOL_NAME, None):
        return None
    return fields.text(call.get("arguments"), "the tool call's arguments")
