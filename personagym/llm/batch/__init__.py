"""The providers' batch APIs: submit many calls as one job, poll it, fetch every answer at once.

Batch jobs cost half the online price and finish within a day (usually within an hour), which suits
offline runs. Each item is sent with exactly the body its online call would carry and its answer is
read by the same parsing code, so a batched reply equals an online one and caches under the same key.
Retries, caching, validation and accounting stay in the gateway: these clients only translate.
"""

from __future__ import annotations

import importlib

from personagym.errors import ConfigError
from personagym.llm.batch.base import BatchClient, BatchStatus, check_items
from personagym.llm.spec import ModelSpec, ProviderSettings

__all__ = ["BatchClient", "BatchStatus", "check_items", "make_batch_client"]

# provider name -> (module, class), imported on first use so start-up never pays for an SDK.
_REGISTRY = {
    "openai": ("personagym.llm.batch.openai", "OpenAIBatchClient"),
    "anthropic": ("personagym.llm.batch.anthropic", "AnthropicBatchClient"),
}


def make_batch_client(spec: ModelSpec, settings: ProviderSettings) -> BatchClient:
    """The batch client for a model. ConfigError for a provider without a batch API, or a missing key."""
    if spec.provider == "local":
        raise ConfigError("the embedded model has no batch API: drop --batch or use an openai:/anthropic: model")
    if spec.provider not in _REGISTRY:
        raise ConfigError(f"provider {spec.provider!r} has no batch API: drop --batch or use an openai:/anthropic: model")
    module, cls = _REGISTRY[spec.provider]
    return getattr(importlib.import_module(module), cls)(spec.model, settings)
