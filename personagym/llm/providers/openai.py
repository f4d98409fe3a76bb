"""OpenAI, and every server that speaks its chat API (vLLM, Ollama, llama.cpp server, Together,
Groq, OpenRouter, LM Studio).

A chat completion is one POST of a JSON body with a bearer key, sent here directly on our own HTTP
session (personagym.llm.providers.transport). The official SDK, even through its low-level
`client.post` with a raw response, spent 1.0 ms of CPU a call building httpx2 requests and options
around an exchange that itself cost 0.35 ms on aiohttp, 0.17 ms on our transport (bench/RESULTS.md,
"CPU per call"): at the 500 requests a second a top tier allows, that was half the client's core. The SDK still serves the Batch API (files and jobs: personagym.llm.batch),
made on first use, so a run that never batches never imports it. What the SDK sends that a server
reads is sent the same: the key, OPENAI_ORG_ID and OPENAI_PROJECT_ID as its headers, the base URL
from OPENAI_BASE_URL (resolved with the settings).
"""

from __future__ import annotations

import functools
import os
import urllib.parse
from typing import Any, Mapping

from personagym.errors import ConfigError
from personagym.llm import jsonbytes
from personagym.llm.jsonschema import json_schema
from personagym.llm.providers import fields
from personagym.llm.providers.base import http_errors, raise_for_status, rate_headers
from personagym.llm.providers.transport import Session
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
            key = "no-key"  # local OpenAI-compatible servers ignore it; some proxies want the header there
        self.key = key
        self.settings = settings
        self.session = Session(settings.max_reply_bytes)
        self.url, self.headers = _endpoint(self.base_url or OFFICIAL_URL, key)
        self.where = public_url(self.base_url) or OFFICIAL_URL
        self.negotiator = Negotiator(forced=parse_choice(settings.structured, "--structured-output"))

    @functools.cached_property
    def client(self) -> Any:
        """The official SDK's client, for the Batch API; the same key, base URL and reply cap."""
        import openai

        from personagym.llm.providers.sdk_http import http_client

        # The gateway owns retries and timeouts: SDK retries would multiply our attempts.
        return openai.AsyncOpenAI(
            api_key=self.key, base_url=self.base_url, max_retries=0, timeout=None,
            http_client=http_client(self.settings.max_reply_bytes),
        )

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
        body = jsonbytes.body(request_body(self.model, self.base_url, request, shape))
        with http_errors(self.where):
            status, headers, content = await self.session.exchange("POST", self.url, self.headers, body)
            raise_for_status(status, headers, content)
            data = jsonbytes.loads(content)
        return parse_completion(data, shape if request.schema is not None else None, rate_headers(headers))

    async def aclose(self) -> None:
        await self.session.aclose()
        if "client" in self.__dict__:
            await self.client.close()


def _endpoint(base_url: str, key: str) -> tuple[str, dict[str, str]]:
    """The chat completions URL under a base URL, and the headers every call sends."""
    # Credentials in the URL are dropped (the transport would never send them): the bearer key is
    # the one the API reads, as with the SDK.
    parts = urllib.parse.urlsplit(base_url.rstrip("/") + "/chat/completions")
    url = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", "Accept": "application/json",
               "User-Agent": "personagym"}
    for header, variable in (("OpenAI-Organization", "OPENAI_ORG_ID"), ("OpenAI-Project", "OPENAI_PROJECT_ID")):
        value = os.environ.get(variable)
        if value:
            if not value.isprintable() or not value.isascii():  # a pasted line break would forge headers
                raise ConfigError(f"{variable} holds a line break or a character a header cannot carry: set it to the plain id")
            headers[header] = value
    return url, headers


# The two halves of a call, shared with the batch client (personagym.llm.batch.openai), so that a batch
# line carries exactly the body the online call would post and its answer is read by the same code.


def request_body(model: str, base_url: str | None, request: Request, shape: Shape = Shape.JSON_SCHEMA) -> dict[str, Any]:
    """The JSON body of one chat completion request for `model` at `base_url` (None: OpenAI's own
    API), asking for a structured reply, when the request has a schema, in `shape`."""
    s = request.sampling
    messages = request.messages
    if request.schema is not None and shape is Shape.PROMPT:
        messages = _with_instructions(messages, prompt_instructions(json_schema(request.schema)))
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
        params.update(body_fields(shape, request.schema.__name__, json_schema(request.schema)))
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
