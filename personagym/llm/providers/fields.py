"""Reading the fields of a reply from a server that may lie.

A server's JSON is untrusted input: any field may be missing, of the wrong type, or absurd. Each
reader here either returns a value the rest of the program can use as it is, or raises a
MALFORMED_RESPONSE ProviderError (the gateway retries it, then records a failure). Token counts are
never a reason to reject a reply: an implausible one counts as 0 (unknown), never into a sum.
"""

from __future__ import annotations

from typing import Any

from personagym.llm.types import Cause, ProviderError
from personagym.llm.usage import plausible_tokens

MAX_NAME = 200  # a model name longer than this is not one

# Finish reasons that mean "cut at the token limit", across the APIs and compatible servers.
_LENGTH = frozenset({"length", "max_tokens", "model_context_window_exceeded"})
# ...and those that mean the model ended on its own (a tool call is how a forced structured reply ends).
_STOP = frozenset({"stop", "end_turn", "stop_sequence", "tool_calls", "tool_use", "function_call", "eos"})


def malformed(why: str) -> ProviderError:
    return ProviderError(Cause.MALFORMED_RESPONSE, why)


def get(obj: Any, name: str) -> Any:
    """A field of a JSON object or of an SDK model (which the SDKs build without validating)."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None) if obj is not None and not isinstance(obj, (str, bytes, int, float, list)) else None


def tokens(value: Any) -> int:
    """A reported token count: a whole number within bounds, or 0 (unknown). Strings, floats, booleans,
    negatives and absurdities all count as unknown."""
    return plausible_tokens(value)


def text(value: Any, what: str) -> str | None:
    """Reply text: a string, None (no text), or an error naming what it was instead."""
    if value is None or isinstance(value, str):
        return value
    raise malformed(f"{what} is a {type(value).__name__}, not text")


def finish(value: Any) -> str:
    """A finish reason as the gateway reads it: "length" when cut at the token limit, "stop" when the
    model ended, another short string as given (the reply is still judged on its text). Missing
    means "stop": several compatible servers omit it, and the text is validated anyway. A value that
    is not a string is a broken reply."""
    if value is None:
        return "stop"
    if not isinstance(value, str):
        raise malformed(f"finish reason is a {type(value).__name__}, not a string")
    reason = value.strip().lower()
    if reason in _LENGTH:
        return "length"
    if reason in _STOP or not reason:
        return "stop"
    return reason[:40]


def model_name(value: Any) -> str | None:
    """The snapshot a reply names, when it names one plausibly; never a reason to reject the reply."""
    if isinstance(value, str) and 0 < len(value) <= MAX_NAME and value.isprintable():
        return value
    return None
