"""How a structured reply is asked of an OpenAI-compatible server, and finding a way it accepts.

Servers differ exactly here (docs/servers.md): OpenAI and vLLM take a `json_schema` response
format; llama.cpp-family servers take `json_object` with a `schema` and answer `json_schema` with an
error; some take only a forced tool call; a user's own chat product may take none and only read
the prompt. So each endpoint starts from the strongest shape (or the one the user forced) and, when
the server refuses the *shape itself*, steps down to the next and remembers what worked for the
rest of the run (and in the database, for the next run). Whatever the shape, the gateway validates
the reply against the schema: a server that "accepts" a shape and ignores it is caught there.

Only one structured call per endpoint goes out while its shape is unconfirmed, so learning that a
shape is refused costs one call per endpoint, not one per call in flight.
"""

from __future__ import annotations

import asyncio
import enum
import json
import re
from typing import Any, Callable

from personagym.llm.types import Cause, ProviderError


class Shape(str, enum.Enum):
    JSON_SCHEMA = "json_schema"  # response_format {"type": "json_schema", "json_schema": {...}}
    JSON_OBJECT = "json_object"  # response_format {"type": "json_object", "schema": {...}} (llama.cpp)
    TOOLS = "tools"  # a forced call of one function whose parameters are the schema
    PROMPT = "prompt"  # no API feature: the schema goes in the prompt

    def __str__(self) -> str:
        return self.value


ORDER = (Shape.JSON_SCHEMA, Shape.JSON_OBJECT, Shape.TOOLS, Shape.PROMPT)
CHOICES = ("auto", *(s.value for s in ORDER))
TOOL_NAME = "answer"
# How the prompt-shape instructions start: servers that read the schema from the prompt (and our fake
# server imitating one) can rely on it.
PROMPT_MARKER = "Reply with one JSON object, and nothing else, that is valid against this JSON Schema:"

# Words an error message uses when a server refuses the structured-output request itself.
_SHAPE_WORDS = re.compile(r"response_format|json_schema|json_object|tool_choice|\btools?\b|structured|grammar", re.I)


def parse_choice(value: str | None, where: str) -> Shape | None:
    """The user's choice: None for "auto" (negotiate), else one fixed shape."""
    if value is None or str(value).strip().lower() in ("", "auto"):
        return None
    try:
        return Shape(str(value).strip().lower())
    except ValueError:
        from personagym.errors import UserError

        raise UserError(f"{where} {value!r} is not a structured-output shape: use one of {', '.join(CHOICES)}") from None


def refuses_shape(error: ProviderError) -> bool:
    """Did the server refuse the way structured output was asked, rather than the call as such?"""
    if error.cause not in (Cause.BAD_REQUEST, Cause.SERVER_ERROR, Cause.NOT_FOUND):
        return False
    return error.status not in (None, 401, 403, 404, 429) and bool(_SHAPE_WORDS.search(error.detail))


def body_fields(shape: Shape, name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The request body fields that ask for a structured reply in this shape (none for PROMPT)."""
    if shape is Shape.JSON_SCHEMA:
        # Not strict: strict mode rejects common schema keywords; the gateway validates anyway.
        return {"response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": False}}}
    if shape is Shape.JSON_OBJECT:
        return {"response_format": {"type": "json_object", "schema": schema}}
    if shape is Shape.TOOLS:
        tool = {"type": "function", "function": {"name": TOOL_NAME, "description": f"Give the {name}.", "parameters": schema}}
        return {"tools": [tool], "tool_choice": {"type": "function", "function": {"name": TOOL_NAME}}}
    return {}


def prompt_instructions(schema: dict[str, Any]) -> str:
    return f"{PROMPT_MARKER}\n```json\n{json.dumps(schema, separators=(',', ':'))}\n```"


class Negotiator:
    """The structured-output shape of one endpoint: fixed by the user, or found by stepping down."""

    def __init__(self, forced: Shape | None = None, known: Shape | None = None):
        self.forced = forced
        self.shape = forced or known or ORDER[0]
        self._confirmed = asyncio.Event()
        if forced or known:
            self._confirmed.set()
        self._probe = asyncio.Lock()
        self.on_learned: Callable[[Shape, Shape, str], None] | None = None  # (from, to, why)

    def remember(self, shape: Shape) -> None:
        """A shape an earlier run learned for this server: start there, confirmed."""
        if self.forced is None:
            self.shape = shape
            self._confirmed.set()

    async def run(self, call: Callable[[Shape], Any]) -> Any:
        """Run `call(shape)`; on a refusal of the shape, step down and call again."""
        if self._confirmed.is_set():
            return await self._step_down_on_refusal(call)
        async with self._probe:  # one probe at a time until a shape is confirmed
            if self._confirmed.is_set():
                return await self._step_down_on_refusal(call)
            result = await self._step_down_on_refusal(call)
            self._confirmed.set()
            return result

    async def _step_down_on_refusal(self, call: Callable[[Shape], Any]) -> Any:
        while True:
            shape = self.shape
            try:
                return await call(shape)
            except ProviderError as exc:
                if self.forced or not refuses_shape(exc) or shape is ORDER[-1]:
                    raise
                if self.shape is shape:  # another call may have stepped down already
                    self.shape = ORDER[ORDER.index(shape) + 1]
                    if self.on_learned is not None:
                        self.on_learned(shape, self.shape, exc.detail)
