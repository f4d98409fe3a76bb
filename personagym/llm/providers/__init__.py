"""Providers by name, imported only when first used so start-up never pays for an SDK."""

from __future__ import annotations

import importlib

from personagym.llm.providers.base import Provider
from personagym.llm.spec import ModelSpec, ProviderSettings

# provider name -> (module, class). Adding a provider: one module, one line here.
_REGISTRY = {
    "openai": ("personagym.llm.providers.openai", "OpenAIProvider"),
    "anthropic": ("personagym.llm.providers.anthropic", "AnthropicProvider"),
    "local": ("personagym.llm.providers.local", "LocalProvider"),
}


def make_provider(spec: ModelSpec, settings: ProviderSettings) -> Provider:
    module, cls = _REGISTRY[spec.provider]
    return getattr(importlib.import_module(module), cls)(spec.model, settings)
