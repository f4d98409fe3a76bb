"""OpenAI, and every server that speaks its chat API (vLLM, Ollama, llama.cpp server, Together,
Groq, OpenRouter, LM Studio), through the official async SDK."""

from __future__ import annotations

from typing import Any

import openai

from personagym.errors import ConfigError
from personagym.llm.providers.base import classify_status, error_message, schema_of
from personagym.llm.spec import ProviderSettings, public_url
from personagym.llm.types import Cause, ProviderError, Reply, Request

OFFICIAL_URL = "https://api.openai.com/v1"


class OpenAIProvider:
    max_concurrency = None

    def __init__(self, model: str, settings: ProviderSettings):
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
        self.client = openai.AsyncOpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=None)

    def identity(self) -> dict[str, Any]:
        return {"provider": "openai", "base_url": public_url(self.base_url) or OFFICIAL_URL, "model": self.model}

    def _params(self, request: Request) -> dict[str, Any]:
        s = request.sampling
        params: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "temperature": s.temperature,
        }
        # OpenAI's own API has renamed max_tokens; many compatible servers only know the old name.
        params["max_tokens" if self.base_url else "max_completion_tokens"] = s.max_tokens
        if s.top_p is not None:
            params["top_p"] = s.top_p
        if s.seed is not None:
            params["seed"] = s.seed
        if request.schema is not None:
            params["response_format"] = {
                "type": "json_schema",
                # Not strict: strict mode rejects common schema keywords; the gateway validates anyway.
                "json_schema": {"name": request.schema.__name__, "schema": schema_of(request.schema), "strict": False},
            }
        return params

    async def generate(self, request: Request) -> Reply:
        try:
            response = await self.client.chat.completions.create(**self._params(request))
        except openai.APITimeoutError as exc:
            raise ProviderError(Cause.TIMEOUT, str(exc)) from None
        except openai.APIConnectionError as exc:
            where = public_url(self.base_url) or OFFICIAL_URL
            raise ProviderError(Cause.CONNECTION, f"cannot reach {where}: {exc.__cause__ or exc}") from None
        except openai.APIStatusError as exc:
            raise classify_status(exc.status_code, error_message(exc.body, exc.message), exc.response.headers) from None
        except (openai.APIResponseValidationError, ValueError) as exc:  # ValueError: a body that is not JSON
            raise ProviderError(Cause.MALFORMED_RESPONSE, f"unreadable response: {exc}") from None
        try:
            choice = response.choices[0]
            text = choice.message.content or ""
            finish = choice.finish_reason or "stop"
        except (AttributeError, IndexError, TypeError):
            raise ProviderError(Cause.MALFORMED_RESPONSE, "response has no choices") from None
        usage = getattr(response, "usage", None)
        return Reply(
            text,
            finish,
            getattr(usage, "prompt_tokens", 0) or 0,
            getattr(usage, "completion_tokens", 0) or 0,
        )

    async def aclose(self) -> None:
        await self.client.close()

