"""The fake LLM server, driven over raw HTTP (http.client), without the provider SDKs."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from personagym.testing import FakeServer
from personagym.testing.schema_instance import instance

# What pydantic v2 emits for a nested model: $defs/$ref, enum, bounded ints, optional fields, lists.
VERDICT_SCHEMA = {
    "$defs": {
        "Mood": {"enum": ["calm", "angry", "wistful"], "title": "Mood", "type": "string"},
        "Evidence": {
            "properties": {
                "quote": {"maxLength": 40, "minLength": 5, "title": "Quote", "type": "string"},
                "weight": {"exclusiveMinimum": 0, "maximum": 1, "title": "Weight", "type": "number"},
            },
            "required": ["quote", "weight"],
            "title": "Evidence",
            "type": "object",
        },
    },
    "properties": {
        "score": {"maximum": 5, "minimum": 1, "title": "Score", "type": "integer"},
        "mood": {"$ref": "#/$defs/Mood"},
        "evidence": {"items": {"$ref": "#/$defs/Evidence"}, "minItems": 2, "maxItems": 4, "type": "array"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        "in_character": {"type": "boolean"},
        "kind": {"const": "verdict", "type": "string"},
        "tags": {"items": {"type": "string"}, "type": "array"},
    },
    "required": ["score", "mood", "evidence", "in_character", "kind"],
    "title": "Verdict",
    "type": "object",
}


def conforms(schema: dict, value, root: dict) -> bool:
    """A small JSON-schema checker covering the keywords the fake server claims to support."""
    if "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        return conforms(root["$defs"][name], value, root)
    if "anyOf" in schema:
        return any(conforms(branch, value, root) for branch in schema["anyOf"])
    if "const" in schema and value != schema["const"]:
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict) or not set(schema.get("required", [])) <= set(value):
            return False
        props = schema.get("properties", {})
        return all(k in props and conforms(props[k], v, root) for k, v in value.items())
    if kind == "array":
        if not isinstance(value, list):
            return False
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", 10**9):
            return False
        return all(conforms(schema.get("items", {}), item, root) for item in value)
    if kind == "string":
        return isinstance(value, str) and schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", 10**9)
    if kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, int if kind == "integer" else (int, float)):
            return False
        return (
            value >= schema.get("minimum", -float("inf"))
            and value <= schema.get("maximum", float("inf"))
            and value > schema.get("exclusiveMinimum", -float("inf"))
            and value < schema.get("exclusiveMaximum", float("inf"))
        )
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    return True


def call(port: int, path: str, body=None, headers=None, method: str = "POST", conn=None, timeout: float = 10):
    """One request; returns (status, headers dict, raw body bytes)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    payload = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    try:
        conn.request(method, path, payload, {"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        if own:
            conn.close()


def openai_body(text: str = "Hello, who are you?", **extra) -> dict:
    return {"model": "gpt-fake", "messages": [{"role": "system", "content": "Be Ada."},
                                             {"role": "user", "content": text}], "temperature": 0.7, **extra}


def anthropic_body(text: str = "Hello, who are you?", **extra) -> dict:
    return {"model": "claude-fake", "max_tokens": 100, "system": "Be Ada.",
            "messages": [{"role": "user", "content": text}], **extra}


def content_of(raw: bytes) -> str:
    return json.loads(raw)["choices"][0]["message"]["content"]


@pytest.fixture
def srv():
    with FakeServer() as server:
        yield server


def test_plain_openai_reply_is_deterministic(srv):
    status, _, raw = call(srv.port, "/v1/chat/completions", openai_body())
    assert status == 200
    reply = json.loads(raw)
    assert reply["object"] == "chat.completion" and reply["model"] == "gpt-fake"
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert reply["choices"][0]["message"] == {"role": "assistant", "content": "[fake] Hello, who are you?"}
    usage = reply["usage"]
    assert usage["prompt_tokens"] == 6 and usage["completion_tokens"] == 5
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # Same body, same content; also without the /v1 prefix. Another prompt, another reply.
    assert content_of(call(srv.port, "/chat/completions", openai_body())[2]) == reply["choices"][0]["message"]["content"]
    assert content_of(call(srv.port, "/v1/chat/completions", openai_body("x " * 100))[2]) == "[fake] " + ("x " * 40)[:80]


def test_plain_anthropic_reply(srv):
    status, _, raw = call(srv.port, "/v1/messages", anthropic_body())
    reply = json.loads(raw)
    assert status == 200 and reply["type"] == "message" and reply["role"] == "assistant"
    assert reply["model"] == "claude-fake" and reply["stop_reason"] == "end_turn" and reply["stop_sequence"] is None
    assert reply["content"] == [{"type": "text", "text": "[fake] Hello, who are you?"}]
    assert reply["usage"] == {"input_tokens": 6, "output_tokens": 5}
    assert json.loads(call(srv.port, "/messages", anthropic_body())[2])["content"] == reply["content"]


def test_openai_json_schema_reply_validates_and_varies(srv):
    fmt = {"type": "json_schema", "json_schema": {"name": "Verdict", "schema": VERDICT_SCHEMA, "strict": False}}
    values = []
    for i in range(30):
        body = openai_body(f"Question number {i}", response_format=fmt)
        text = content_of(call(srv.port, "/v1/chat/completions", body)[2])
        assert content_of(call(srv.port, "/v1/chat/completions", body)[2]) == text  # reproducible
        value = json.loads(text)
        assert conforms(VERDICT_SCHEMA, value, VERDICT_SCHEMA), value
        values.append(value)
    assert {v["score"] for v in values} == {1, 2, 3, 4, 5}  # spread over the allowed range
    assert len({v["mood"] for v in values}) > 1


def test_json_object_with_schema_and_without(srv):
    body = openai_body(response_format={"type": "json_object", "schema": VERDICT_SCHEMA})
    assert conforms(VERDICT_SCHEMA, json.loads(content_of(call(srv.port, "/v1/chat/completions", body)[2])), VERDICT_SCHEMA)
    body = openai_body(response_format={"type": "json_object"})
    assert json.loads(content_of(call(srv.port, "/v1/chat/completions", body)[2])) == {"reply": "[fake] Hello, who are you?"}


def test_anthropic_forced_tool_reply(srv):
    tools = [{"name": "other", "input_schema": {"type": "object"}}, {"name": "verdict", "input_schema": VERDICT_SCHEMA}]
    body = anthropic_body(tools=tools, tool_choice={"type": "tool", "name": "verdict"})
    reply = json.loads(call(srv.port, "/v1/messages", body)[2])
    assert reply["stop_reason"] == "tool_use"
    [block] = reply["content"]
    assert block["type"] == "tool_use" and block["name"] == "verdict" and block["id"].startswith("toolu_")
    assert conforms(VERDICT_SCHEMA, block["input"], VERDICT_SCHEMA)


@pytest.mark.parametrize("key", ["output_format", "output_config"])
def test_anthropic_json_schema_output(srv, key):
    fmt = {"type": "json_schema", "schema": VERDICT_SCHEMA}
    body = anthropic_body(**({key: fmt} if key == "output_format" else {key: {"format": fmt}}))
    reply = json.loads(call(srv.port, "/v1/messages", body)[2])
    assert reply["stop_reason"] == "end_turn"
    assert conforms(VERDICT_SCHEMA, json.loads(reply["content"][0]["text"]), VERDICT_SCHEMA)


def test_schema_instance_reads_bounds_that_anthropic_moved_into_descriptions():
    # What anthropic.transform_schema makes of `score: int = Field(ge=1, le=5)` and a min_length list.
    schema = {"type": "object", "properties": {
        "score": {"type": "integer", "description": "How well\n\n{minimum: 1, maximum: 5}"},
        "items": {"type": "array", "items": {"type": "string"}, "description": "{minItems: 3, maxItems: 3}"},
    }, "required": ["score", "items"], "additionalProperties": False}
    for seed in range(50):
        value = instance(schema, seed)
        assert 1 <= value["score"] <= 5 and len(value["items"]) == 3
    # A self-referencing model terminates.
    tree = {"$defs": {"Node": {"type": "object", "properties": {
        "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
        "parent": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}}}}, "$ref": "#/$defs/Node"}
    assert isinstance(instance(tree, 1), dict)


def test_responder_hook():
    seen = []

    def responder(api, body):
        seen.append(api)
        text = body["messages"][-1]["content"]
        if text == "boom":
            raise RuntimeError("kaput")
        return {"str": "custom text", "dict": {"score": 3}, "none": None, "tool": '{"score": 2}'}[text]

    with FakeServer(responder=responder) as srv:
        assert content_of(call(srv.port, "/v1/chat/completions", openai_body("str"))[2]) == "custom text"
        assert content_of(call(srv.port, "/v1/chat/completions", openai_body("dict"))[2]) == '{"score": 3}'
        assert content_of(call(srv.port, "/v1/chat/completions", openai_body("none"))[2]) == "[fake] none"
        tool = {"tools": [{"name": "t", "input_schema": {"type": "object"}}], "tool_choice": {"type": "tool", "name": "t"}}
        reply = json.loads(call(srv.port, "/v1/messages", anthropic_body("tool", **tool))[2])
        assert reply["content"][0]["input"] == {"score": 2}
        status, _, raw = call(srv.port, "/v1/messages", anthropic_body("boom"))
        assert status == 500 and "kaput" in json.loads(raw)["error"]["message"]
    assert seen == ["openai", "openai", "openai", "anthropic", "anthropic"]


def test_max_in_flight_cap():
    results, barrier = [], threading.Barrier(20)

    def fire():
        barrier.wait()
        results.append(call(srv.port, "/v1/chat/completions", openai_body()))

    with FakeServer(latency=0.2, max_in_flight=5) as srv:
        threads = [threading.Thread(target=fire) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = srv.stats
    limited = [r for r in results if r[0] == 429]
    assert len(results) == 20 and limited and len([r for r in results if r[0] == 200]) >= 5
    assert len(limited) + len([r for r in results if r[0] == 200]) == 20
    assert limited[0][1]["Retry-After"] == "1"
    assert json.loads(limited[0][2])["error"]["type"] == "rate_limit_error"
    assert stats.max_in_flight_seen <= 5 and stats.rejected == len(limited) and stats.requests == 20
    assert stats.in_flight == 0


def test_fault_queue_is_fifo_and_then_normal(srv):
    srv.inject("500")
    srv.inject("429", count=2, retry_after=0.3)
    srv.inject("429")
    statuses = [call(srv.port, "/v1/chat/completions", openai_body()) for _ in range(5)]
    assert [s for s, _, _ in statuses] == [500, 429, 429, 429, 200]
    assert json.loads(statuses[0][2])["error"]["message"]
    assert statuses[1][1]["Retry-After"] == "0.3" and "Retry-After" not in statuses[3][1]
    # Anthropic's error shape.
    srv.inject("429", retry_after=2)
    status, headers, raw = call(srv.port, "/v1/messages", anthropic_body())
    assert status == 429 and headers["Retry-After"] == "2"
    assert json.loads(raw) == {"type": "error", "error": {"type": "rate_limit_error", "message": "rate limited (injected fault)"}}
    assert srv.stats.faults == {"500": 1, "429": 4} and srv.pending_faults == 0


def test_malformed_fault(srv):
    srv.inject("malformed", count=2)
    for path, body in (("/v1/chat/completions", openai_body()), ("/v1/messages", anthropic_body())):
        status, headers, raw = call(srv.port, path, body)
        assert status == 200 and headers["Content-Type"] == "application/json"
        with pytest.raises(ValueError):
            json.loads(raw)


def test_truncated_fault(srv):
    srv.inject("truncated", count=4)
    reply = json.loads(call(srv.port, "/v1/chat/completions", openai_body())[2])
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["choices"][0]["message"]["content"] == "[fake] Hello, who are you?"[:13]
    fmt = {"type": "json_schema", "json_schema": {"name": "V", "schema": VERDICT_SCHEMA}}
    with pytest.raises(ValueError):
        json.loads(content_of(call(srv.port, "/v1/chat/completions", openai_body(response_format=fmt))[2]))
    reply = json.loads(call(srv.port, "/v1/messages", anthropic_body())[2])
    assert reply["stop_reason"] == "max_tokens" and reply["content"][0]["text"] == "[fake] Hello, who are you?"[:13]
    tool = {"tools": [{"name": "v", "input_schema": VERDICT_SCHEMA}], "tool_choice": {"type": "tool", "name": "v"}}
    reply = json.loads(call(srv.port, "/v1/messages", anthropic_body(**tool))[2])
    assert reply["stop_reason"] == "max_tokens" and reply["content"][0]["type"] == "text"
    with pytest.raises(ValueError):
        json.loads(reply["content"][0]["text"])
    assert call(srv.port, "/v1/messages", anthropic_body(**tool))[0] == 200  # queue drained


def test_stall_fault_survives_client_timeout(srv):
    srv.inject("stall", stall_seconds=30)
    srv.inject("stall", stall_seconds=0.2)
    with pytest.raises(TimeoutError):
        call(srv.port, "/v1/chat/completions", openai_body(), timeout=0.2)
    started = time.monotonic()
    assert call(srv.port, "/v1/chat/completions", openai_body())[0] == 200  # a short stall, then normal
    assert time.monotonic() - started >= 0.2
    assert call(srv.port, "/v1/chat/completions", openai_body())[0] == 200
    assert srv.stats.faults == {"stall": 2} and srv.stats.in_flight == 1  # the long stall is still asleep
    # Leaving the fixture cancels it: no hang, no traceback.


def test_require_key():
    with FakeServer(require_key="sk-good") as srv:
        status, _, raw = call(srv.port, "/v1/chat/completions", openai_body(), {"Authorization": "Bearer sk-bad"})
        assert status == 401 and json.loads(raw)["error"]["type"] == "authentication_error"
        status, _, raw = call(srv.port, "/v1/messages", anthropic_body())
        assert status == 401 and json.loads(raw)["type"] == "error"
        assert call(srv.port, "/v1/chat/completions", openai_body(), {"Authorization": "Bearer sk-good"})[0] == 200
        assert call(srv.port, "/v1/messages", anthropic_body(), {"x-api-key": "sk-good"})[0] == 200
        srv.require_key = None  # knobs change while running
        assert call(srv.port, "/v1/messages", anthropic_body())[0] == 200


def test_keep_alive_and_connection_close(srv):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    call(srv.port, "/v1/models", method="GET", conn=conn)
    sock = conn.sock
    for i in range(5):
        status, headers, _ = call(srv.port, "/v1/chat/completions", openai_body(str(i)), conn=conn)
        assert status == 200 and headers["Connection"] == "keep-alive"
    assert conn.sock is sock  # the same TCP connection throughout
    conn.close()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as raw:
        body = json.dumps(openai_body()).encode()
        raw.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        received = b""
        while chunk := raw.recv(65536):  # the server closes after replying
            received += chunk
    assert received.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close\r\n" in received


def test_chunked_body_models_and_errors(srv):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("POST", "/v1/chat/completions", iter([json.dumps(openai_body()).encode()]), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    assert content_of(conn.getresponse().read()) == "[fake] Hello, who are you?"
    conn.close()
    status, _, raw = call(srv.port, "/v1/models", method="GET")
    assert status == 200 and json.loads(raw)["object"] == "list" and json.loads(raw)["data"]
    assert call(srv.port, "/models", method="GET")[0] == 200
    assert call(srv.port, "/v1/nowhere", {})[0] == 404
    assert call(srv.port, "/v1/chat/completions", method="GET")[0] == 405
    assert call(srv.port, "/v1/chat/completions", b"{not json")[0] == 400
    assert call(srv.port, "/v1/messages", {"model": "m", "messages": []})[0] == 400  # no max_tokens
    assert call(srv.port, "/v1/chat/completions", openai_body(stream=True))[0] == 400


def test_stats_and_recorded_requests(srv):
    before = time.monotonic()
    call(srv.port, "/v1/chat/completions", openai_body(), {"Authorization": "Bearer sk-x"})
    call(srv.port, "/messages", anthropic_body())
    call(srv.port, "/v1/models", method="GET")
    stats = srv.stats
    assert stats.requests == 2 and stats["requests"] == 2
    assert stats.by_path == {"/v1/chat/completions": 1, "/messages": 1, "/v1/models": 1}
    assert before <= stats.arrivals[0] <= stats.arrivals[1] <= time.monotonic()
    assert stats.in_flight == 0 and stats.max_in_flight_seen == 1 and stats.rejected == 0 and stats.faults == {}
    assert srv.requests[0]["temperature"] == 0.7 and srv.requests[1]["max_tokens"] == 100
    assert srv.request_headers[0]["authorization"] == "Bearer sk-x"
    srv.reset_stats()
    assert srv.stats.requests == 0 and srv.stats.by_path == {} and srv.requests == []


def test_lifecycle_is_clean():
    srv = FakeServer(latency=0.01).start()
    assert srv.base_url == f"http://127.0.0.1:{srv.port}/v1"
    idle = socket.create_connection(("127.0.0.1", srv.port))  # an open keep-alive connection
    srv.inject("stall")
    stalled = socket.create_connection(("127.0.0.1", srv.port))
    body = json.dumps(openai_body()).encode()
    stalled.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    time.sleep(0.1)
    started = time.monotonic()
    srv.stop()
    srv.stop()  # idempotent
    assert time.monotonic() - started < 2
    assert not [t for t in threading.enumerate() if t.name.startswith("FakeServer")]
    idle.close()
    stalled.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()


def test_command_line_entry_point():
    proc = subprocess.Popen([sys.executable, "-m", "personagym.testing.fake_server", "--port", "0", "--latency", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:") and line.endswith("/v1\n")
        port = int(line.rsplit(":", 1)[1].split("/")[0])
        assert content_of(call(port, "/v1/chat/completions", openai_body())[2]) == "[fake] Hello, who are you?"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0 and err == ""
    assert json.loads(out) == {"requests": 1, "rejected": 0, "max_in_flight_seen": 1}  # what benchmarks read
