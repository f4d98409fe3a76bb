"""Reading a reply: whether the gateway accepts it, what it parses to, and what a model is told when
it must try again. One rule for a fresh reply and a cached one, so a cache hit is read exactly as the
reply was when it was accepted.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

from personagym.llm.types import Cause, Message, ProviderError, Reply, Request

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def parse_structured(schema: Any, text: str) -> Any:
    """Validate a reply against its schema. Tolerates a Markdown fence round the JSON, and raw line
    breaks or tabs inside its strings (llama.cpp's grammar lets models write them; the meaning is
    plain), nothing more."""
    match = _FENCE.match(text)
    body = match.group(1) if match else text
    try:
        return msgspec.json.decode(body, type=schema)
    except msgspec.ValidationError:
        raise
    except msgspec.DecodeError as exc:  # not JSON to msgspec: perhaps raw control characters in strings
        try:
            relaxed = json.dumps(json.loads(body, strict=False))  # which strict=False allows, and nothing else
        except ValueError:
            raise exc from None
        return msgspec.json.decode(relaxed, type=schema)


def parse_reply(request: Request, text: str) -> Any:
    """A reply as its request reads it: by its plain-text parser, against its schema, or None for free
    text. A reply that does not parse raises ValueError (msgspec's DecodeError and ValidationError are).

    A parser is how a format without a JSON schema (upstream PersonaGym's closing sentence "Therefore,
    the final score is N") gets the same treatment as structured output: checked on every reply,
    retried with feedback when invalid, never cached unless accepted, re-read on a cache hit."""
    if request.parser is not None:
        return request.parser(text)
    return parse_structured(request.schema, text) if request.schema is not None else None


def accept(reply: Reply, request: Request) -> Any:
    """The parsed reply (None for free text); ProviderError for a reply that is not usable."""
    if reply.finish == "length" and not request.accept_truncated:
        raise ProviderError(Cause.TRUNCATED, f"cut at max_tokens={request.sampling.max_tokens}")
    if request.parser is None and request.schema is None and not reply.text.strip():
        raise ProviderError(Cause.INVALID_OUTPUT, "empty reply")
    try:
        return parse_reply(request, reply.text)
    except ValueError as exc:
        if request.parser is not None or not isinstance(exc, msgspec.ValidationError):
            raise ProviderError(Cause.INVALID_OUTPUT, f"reply does not parse: {exc}") from None
        raise ProviderError(Cause.INVALID_OUTPUT, f"reply does not match {request.schema.__name__}: {exc}") from None


def with_feedback(request: Request, reply: str, error: ProviderError) -> Request:
    """The request again, with the unusable reply and what was wrong with it: asking the same thing
    again would, at temperature 0, get the same reply again."""
    if request.parser is not None:  # a plain-text format: the prompt itself says what the reply must hold
        note = f"Your reply was not valid ({error.detail}). Reply again, following the format asked for exactly."
    elif error.cause is Cause.TRUNCATED:
        note = "Your reply was cut off at the length limit. Reply again, more briefly, with complete JSON only."
    else:
        note = f"Your reply was not valid ({error.detail}). Reply again with JSON only that follows the schema."
    messages = request.messages + (Message("assistant", reply[:3000]), Message("user", note))
    return msgspec.structs.replace(request, messages=messages)
