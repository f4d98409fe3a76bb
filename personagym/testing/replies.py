"""What the fake server answers: plain, schema-valid or tool-call replies and errors in each API's shape.

OpenAI-compatible servers differ in the structured output they take, so the gateway negotiates:
`response_format` json_schema, then json_object with a `schema` (llama.cpp's dialect), then a forced
tool call, then the schema in the prompt. `FakeServer.structured` imitates the servers that make each
step necessary, on the OpenAI endpoint (`refusal` holds their answers):

* "json_schema" (default): takes every shape, as OpenAI does.
* "json_object": llama-cpp-python's server, whose request model allows `response_format` types "text"
  and "json_object" only: json_schema fails validation, reported as HTTP 500 with pydantic's errors.
* "tools": forced tool calls, but no `response_format` other than "text" (HTTP 400).
* "none": neither `response_format` nor `tools` (HTTP 400, "Unrecognized request argument supplied").
* "ignore": takes every shape and fails open: structured requests get plain text with HTTP 200.

The prompt fallback, in every mode and on both APIs: a request without a structured shape, whose last
user message holds a fenced block (a line "```json", the schema, a line "```") with a JSON object that
has a "properties" or "$ref" key, is answered with an instance of that schema. Anthropic's endpoint
takes `output_config.format` json_schema, as the product sends.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from datetime import datetime, timezone
from typing import Any, NamedTuple

from aiohttp import web

from personagym.testing.schema_instance import instance

STRUCTURED_MODES = ("json_schema", "json_object", "tools", "none", "ignore")
IDS = itertools.count(1)  # numbers reply, file, job and request ids, unique across servers as real ones are
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                405: "invalid_request_error", 429: "rate_limit_error", 500: "api_error"}
_FENCE = re.compile(r"^```json[ \t]*\n(.*?)\n```[ \t]*$", re.DOTALL | re.MULTILINE)


class ResponderError(Exception):
    """The test's responder failed; the client sees a 500 with this message."""


class Shape(NamedTuple):
    kind: str  # "text", "json_schema", "json_object", "tools", or "ignored" (fails open)
    schema: dict | None = None  # None for json_object without a schema
    tool: str | None = None  # the function a "tools" request forces


def shape_of(api: str, data: dict) -> Shape:
    if api == "anthropic":
        fmt = (data.get("output_config") or {}).get("format")
        return Shape("json_schema", fmt.get("schema") or {}) if _kind(fmt) == "json_schema" else Shape("text")
    choice, tools = data.get("tool_choice"), data.get("tools")
    wanted = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    for tool in tools if isinstance(tools, list) else ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and wanted in (None, function.get("name")):
            return Shape("tools", function.get("parameters") or {}, function.get("name"))
    fmt = data.get("response_format")
    if _kind(fmt) == "json_schema":
        return Shape("json_schema", (fmt.get("json_schema") or {}).get("schema") or {})
    return Shape("json_object", fmt.get("schema")) if _kind(fmt) == "json_object" else Shape("text")


def refusal(mode: str, data: dict) -> tuple[int, str, dict[str, Any]] | None:
    """(status, message, error fields) when a server of `mode` refuses an OpenAI request's shape."""
    kind = _kind(data.get("response_format"))
    if mode == "json_object" and kind not in (None, "text", "json_object"):
        expected = "'text' or 'json_object'"
        errors = [{"type": "literal_error", "loc": ("body", "response_format", "type"),
                   "msg": f"Input should be {expected}", "input": kind, "ctx": {"expected": expected}}]
        return 500, str(errors), {"type": "internal_server_error"}
    if mode == "tools" and kind not in (None, "text"):
        return 400, "response_format is not supported", {"param": "response_format"}
    for name in ("response_format", "tools") if mode == "none" else ():
        if data.get(name) is not None:
            return 400, f"Unrecognized request argument supplied: {name}", {}
    return None


def prompt_schema(text: str) -> dict | None:
    """The JSON Schema a prompt carries in a fenced block, as the module docstring defines it."""
    schemas = [value for value in map(loads, _FENCE.findall(text)) if isinstance(value, dict)
               and ("properties" in value or "$ref" in value)]
    return schemas[0] if schemas else None


def check_request(api: str, data: Any) -> str | None:
    """What the real API would reject outright: missing essentials, or streaming (not faked)."""
    if not isinstance(data, dict):
        return "request body is not a JSON object"
    if not isinstance(data.get("model"), str) or not isinstance(data.get("messages"), list):
        return "`model` (a string) and `messages` (a list) are required"
    if api == "anthropic" and not isinstance(data.get("max_tokens"), int):
        return "`max_tokens` is required"
    return "the fake server does not stream" if data.get("stream") else None


def prompt_words(data: dict) -> int:
    """Prompt "tokens" as this server counts them: words of the system prompt and the messages."""
    contents = [data.get("system"), *(m.get("content") for m in data["messages"] if isinstance(m, dict))]
    return max(1, sum(len(c.split()) for c in contents if isinstance(c, str)))  # the product sends no blocks


def reply(api: str, data: dict, n: int, *, truncated: bool = False, mode: str = "json_schema",
          responder: Any = None) -> tuple[dict, int]:
    """The success body of request number `n` and its completion tokens. Raises ResponderError."""
    shape = shape_of(api, data)
    if mode == "ignore" and shape.kind != "text":
        shape = Shape("ignored")
    try:
        custom = responder(api, data) if responder is not None else None
    except Exception as exc:  # noqa: BLE001 - shown to the client as a 500
        raise ResponderError(f"responder raised {type(exc).__name__}: {exc}") from None
    users = [m for m in data["messages"] if isinstance(m, dict) and m.get("role") == "user"]
    said = users[-1].get("content") if users and isinstance(users[-1].get("content"), str) else ""
    plain = "[fake] " + (" ".join(said.split())[:80] or "ok")
    schema = prompt_schema(said) if shape.kind == "text" else shape.schema
    if custom is not None:
        text = custom if isinstance(custom, str) else json.dumps(custom)
    elif shape.kind == "ignored" or (shape.kind == "text" and schema is None):
        text = plain
    else:
        seed = json.dumps([data.get("system"), data["messages"]], sort_keys=True)  # the same prompt, the same reply
        text = json.dumps(instance(schema, seed) if schema else {"reply": plain})
    text = text[: len(text) // 2] if truncated else text
    prompt, completion, model = prompt_words(data), max(1, len(text.split())), data["model"]
    if api == "anthropic":
        return {"id": f"msg_fake{n}", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}], "stop_sequence": None,
                "stop_reason": "max_tokens" if truncated else "end_turn",
                "usage": {"input_tokens": prompt, "output_tokens": completion}}, completion
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if shape.kind == "tools":
        call = {"id": f"call_fake{n}", "type": "function", "function": {"name": shape.tool, "arguments": text}}
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
    finish = "length" if truncated else "tool_calls" if shape.kind == "tools" else "stop"
    return {"id": f"chatcmpl-fake{n}", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion}}, completion


def loads(body: bytes | str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def error_body(api: str | None, status: int, message: str, type: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    """An error in the API's own shape (Anthropic's when the API is unknown)."""
    kind = type or _ERROR_TYPES.get(status, "api_error")
    if api == "openai":
        return {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return {"type": "error", "error": {"type": kind, "message": message}}


def error(api: str | None, status: int, message: str, headers: dict | None = None, **fields: Any) -> web.Response:
    return json_response(error_body(api, status, message, **fields), status, headers)


def json_response(value: Any, status: int = 200, headers: dict | None = None) -> web.Response:
    body = value if isinstance(value, bytes) else json.dumps(value).encode()
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


def rfc3339(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _kind(fmt: Any) -> str | None:
    return fmt.get("type") if isinstance(fmt, dict) else None
