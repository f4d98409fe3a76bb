"""Which sampling parameters a model actually receives, so a run records what was sent, not what
was wished for.

Checked on 2026-12-01 (docs/providers.md): Anthropic's API version 2026-10-21, which the anthropic
2.x SDK speaks, rejects temperature, top_p and top_k even at their defaults
(https://platform.claude.com/docs/en/api/migration-2026-10-21.md); OpenAI's reasoning families
(o-series, GPT-5, GPT-6) accept no temperature or top_p on OpenAI's own API
(https://developers.openai.com/api/docs/guides/latest-model). Such a model samples at the provider's
default: every call is a random draw, recorded as "provider default" and cached per draw index.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

from personagym.llm.types import Sampling

PROVIDER_DEFAULT = "provider default"
# OpenAI model families that take no sampling parameters on OpenAI's own API.
_OPENAI_REASONING = re.compile(r"^(o\d|gpt-[5-9])")


def honours_sampling(provider: str, model: str, base_url: str | None) -> bool:
    """Does this model at this endpoint take temperature and top_p?"""
    if provider == "anthropic":
        return False
    if provider == "openai" and not base_url:  # other OpenAI-compatible servers take them
        return not _OPENAI_REASONING.match(model)
    return True


def sent(provider: str, model: str, base_url: str | None, sampling: Sampling) -> dict[str, Any]:
    """The sampling as the model receives it: the requested values, or "provider default"."""
    shown = asdict(sampling)
    if not honours_sampling(provider, model, base_url):
        shown["temperature"] = shown["top_p"] = PROVIDER_DEFAULT
    return shown
