"""Talking to models: one gateway, three providers, a cache, limits, retries and accounting."""

from personagym.llm.gateway import Gateway, RetryPolicy
from personagym.llm.limits import Limits
from personagym.llm.spec import ModelSpec, ProviderSettings, parse_spec
from personagym.llm.types import (
    CallFailed,
    CallFailure,
    Cause,
    Completion,
    Message,
    Request,
    Sampling,
)

__all__ = [
    "CallFailed",
    "CallFailure",
    "Cause",
    "Completion",
    "Gateway",
    "Limits",
    "Message",
    "ModelSpec",
    "ProviderSettings",
    "Request",
    "RetryPolicy",
    "Sampling",
    "parse_spec",
]
