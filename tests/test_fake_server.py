"""The fake LLM server, driven through the real openai and anthropic SDKs; raw HTTP only where an SDK
hides what is tested (connection reuse, bodies that are not JSON, requests an SDK would not send)."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime

import anthropic
import jsonschema
import openai
import pytest

from personagym.llm.structured import prompt_instructions
from personagym.testing import FakeServer
from personagym.testing.fake_server import _duration
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
    "additionalProperties": False,
    "title": "Verdict",
    "type": "object",
}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "Verdict", "schema": VERDICT_SCHEMA, "strict": False}}
JSON_OBJECT = {"type": "json_object", "schema": VERDICT_SCHEMA}
TOOLS = {"tools": [{"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}},
                   {"type": "function", "function": {"name": "verdict", "parameters": VERDICT_SCHEMA}}],
         "tool_choice": {"type": "function", "function": {"name": "verdict"}}}
# The gateway's last resort, the schema in the prompt: the fake must find it there (see personagym.testing.replies).
PROMPTED = "Grade the answer.\n\n" + prompt_instructions(VERDICT_SCHEMA)


def oai(server: FakeServer, key: str = "sk-test", timeout: float = 10) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=timeout)


def claude(server: FakeServer, key: str = "sk-test") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url.removesuffix("/v1"), api_key=key, max_retries=0, timeout=10)


def chat(client: openai.OpenAI, text: str = "Hello, who are you?", **extra):
    messages = [{"role": "system", "content": "Be Ada."}, {"role": "user", "content": text}]
    return client.chat.completions.create(model="gpt-fake", messages=messages, temperature=0.7, **extra)


def message(client: anthropic.Anthropic, text: str = "Hello, who are you?", **extra):
    messages = [{"role": "user", "content": text}]
    return client.messages.create(model="claude-fake", max_tokens=100, system="Be Ada.", messages=messages, **extra)


def raw(port: int, path: str, body=None, headers=None, method: str = "POST", conn=None, timeout: float = 10):
    """One request over plain HTTP; returns (status, headers dict, body bytes)."""
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


@pytest.fixture
def srv():
    with FakeServer() as server:
        yield server


def test_plain_openai_reply_is_deterministic(srv):
    reply = chat(oai(srv))
    assert reply.object == "chat.completion" and reply.model == "gpt-fake"
    assert reply.choices[0].finish_reason == "stop" and reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == "[fake] Hello, who are you?"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (6, 5, 11)
    assert chat(oai(srv)).choices[0].message.content == reply.choices[0].message.content
    assert chat(oai(srv), "x " * 100).choices[0].message.content == "[fake] " + ("x " * 40)[:80]
    # Also without the /v1 prefix.
    assert json.loads(raw(srv.port, "/chat/completions", {"model": "m", "messages": []})[2])["choices"]


def test_plain_anthropic_reply(srv):
    reply = message(claude(srv))
    assert reply.type == "message" and reply.role == "assistant" and reply.model == "claude-fake"
    assert reply.stop_reason == "end_turn" and reply.stop_sequence is None
    assert [(block.type, block.text) for block in reply.content] == [("text", "[fake] Hello, who are you?")]
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (6, 5)


def test_openai_json_schema_reply_validates_and_varies(srv):
    client, values = oai(srv), []
    for i in range(30):
        text = chat(client, f"Question number {i}", response_format=JSON_SCHEMA).choices[0].message.content
        assert chat(client, f"Question number {i}", response_format=JSON_SCHEMA).choices[0].message.content == text
        values.append(json.loads(text))
        jsonschema.validate(values[-1], VERDICT_SCHEMA)
    assert {v["score"] for v in values} == {1, 2, 3, 4, 5}  # spread over the allowed range
    assert len({v["mood"] for v in values}) > 1


def test_json_object_with_schema_and_without(srv):
    text = chat(oai(srv), response_format=JSON_OBJECT).choices[0].message.content
    jsonschema.validate(json.loads(text), VERDICT_SCHEMA)
    plain = chat(oai(srv), response_format={"type": "json_object"}).choices[0].message.content
    assert json.loads(plain) == {"reply": "[fake] Hello, who are you?"}


def test_openai_forced_tool_call(srv):
    choice = chat(oai(srv), **TOOLS).choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "verdict" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), VERDICT_SCHEMA)


def test_anthropic_output_config_json_schema(srv):
    fmt = {"format": {"type": "json_schema", "schema": anthropic.transform_schema(VERDICT_SCHEMA)}}
    reply = message(claude(srv), output_config=fmt)
    assert reply.stop_reason == "end_turn"
    jsonschema.validate(json.loads(reply.content[0].text), VERDICT_SCHEMA)  # the bounds it moved still hold


def test_schema_instance_reads_bounds_that_anthropic_moved_into_descriptions():
    schema = {"type": "object", "properties": {
        "score": {"type": "integer", "description": "How well\n\n{minimum: 1, maximum: 5}"},
        "items": {"type": "array", "items": {"type": "string"}, "description": "{minItems: 3, maxItems: 3}"},
    }, "required": ["score", "items"], "additionalProperties": False}
    for seed in range(50):
        value = instance(schema, seed)
        assert 1 <= value["score"] <= 5 and len(value["items"]) == 3
    pair = {"type": "array", "prefixItems": [{"const": 1}, {"type": "string", "maxLength": 3}], "minItems": 2}
    jsonschema.validate(instance(pair, 2), pair)  # a tuple, as pydantic writes tuple[Literal[1], str]
    tree = {"$defs": {"Node": {"type": "object", "properties": {  # a self-referencing model terminates
        "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
        "parent": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}}}}, "$ref": "#/$defs/Node"}
    jsonschema.validate(instance(tree, 1), tree)


@pytest.mark.parametrize("mode, shape, status, says", [
    ("json_schema", JSON_SCHEMA, None, None),
    ("json_schema", TOOLS, None, None),
    ("json_object", JSON_SCHEMA, 500, "Input should be 'text' or 'json_object'"),
    ("json_object", JSON_OBJECT, None, None),
    ("json_object", TOOLS, None, None),
    ("tools", JSON_SCHEMA, 400, "response_format is not supported"),
    ("tools", JSON_OBJECT, 400, "response_format is not supported"),
    ("tools", TOOLS, None, None),
    ("none", JSON_SCHEMA, 400, "Unrecognized request argument supplied: response_format"),
    ("none", JSON_OBJECT, 400, "Unrecognized request argument supplied: response_format"),
    ("none", TOOLS, 400, "Unrecognized request argument supplied: tools"),
])
def test_each_structured_mode_refuses_or_answers_a_shape(mode, shape, status, says):
    with FakeServer(structured=mode) as server:
        extra = {"response_format": shape} if "type" in shape else shape
        if status is not None:
            with pytest.raises(openai.APIStatusError) as info:
                chat(oai(server), **extra)
            assert info.value.status_code == status and says in info.value.body["message"]
        else:
            choice = chat(oai(server), **extra).choices[0]
            text = choice.message.tool_calls[0].function.arguments if "tools" in extra else choice.message.content
            jsonschema.validate(json.loads(text), VERDICT_SCHEMA)
        assert chat(oai(server)).choices[0].message.content.startswith("[fake]")  # plain requests always work
        assert (server.stats.refused_shapes, server.stats.requests) == (int(status is not None), 2)


def test_a_json_schema_refusal_reads_like_llama_cpp_pythons_server():
    with FakeServer(structured="json_object") as server:
        status, _, body = raw(server.port, "/v1/chat/completions",
                              {"model": "m", "messages": [], "response_format": JSON_SCHEMA})
    error = json.loads(body)["error"]
    assert status == 500 and error["type"] == "internal_server_error"
    assert error["message"].startswith("[{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), ")
    assert "'input': 'json_schema'" in error["message"]


def test_ignore_mode_fails_open_with_plain_text():
    with FakeServer(structured="ignore") as server:
        for extra in ({"response_format": JSON_SCHEMA}, {"response_format": JSON_OBJECT}, TOOLS):
            choice = chat(oai(server), **extra).choices[0]
            assert choice.finish_reason == "stop" and choice.message.tool_calls is None
            with pytest.raises(ValueError):
                json.loads(choice.message.content)
        assert server.stats.refused_shapes == 0


@pytest.mark.parametrize("mode", ["none", "json_schema", "ignore"])
def test_a_schema_in_the_prompt_is_answered_with_an_instance(mode):
    with FakeServer(structured=mode) as server:
        jsonschema.validate(json.loads(chat(oai(server), PROMPTED).choices[0].message.content), VERDICT_SCHEMA)
        jsonschema.validate(json.loads(message(claude(server), PROMPTED).content[0].text), VERDICT_SCHEMA)
        # A fenced block that is no schema is just text.
        assert chat(oai(server), '```json\n{"score": 3}\n```').choices[0].message.content.startswith("[fake]")


def test_responder_hook():
    seen = []

    def responder(api, body):
        seen.append(api)
        text = body["messages"][-1]["content"]
        if text == "boom":
            raise RuntimeError("kaput")
        return {"str": "custom text", "dict": {"score": 3}, "none": None, "tool": '{"score": 2}'}[text]

    with FakeServer(responder=responder) as srv:
        assert chat(oai(srv), "str").choices[0].message.content == "custom text"
        assert chat(oai(srv), "dict").choices[0].message.content == '{"score": 3}'
        assert chat(oai(srv), "none").choices[0].message.content == "[fake] none"
        assert chat(oai(srv), "tool", **TOOLS).choices[0].message.tool_calls[0].function.arguments == '{"score": 2}'
        with pytest.raises(anthropic.InternalServerError, match="kaput"):
            message(claude(srv), "boom")
    assert seen == ["openai", "openai", "openai", "openai", "anthropic"]


def test_max_in_flight_cap():
    results, barrier = [], threading.Barrier(20)

    def fire():
        barrier.wait()
        try:
            results.append(chat(oai(srv)))
        except openai.RateLimitError as exc:
            results.append(exc)

    with FakeServer(latency=0.2, max_in_flight=5) as srv:
        threads = [threading.Thread(target=fire) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = srv.stats
    limited = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(results) == 20 and limited and len(results) - len(limited) >= 5
    assert limited[0].response.headers["retry-after"] == "1" and limited[0].body["type"] == "rate_limit_error"
    assert stats.max_in_flight_seen <= 5 and stats.rejected == len(limited) and stats.requests == 20
    assert stats.in_flight == 0


def test_fault_queue_is_fifo_and_then_normal(srv):
    srv.inject("500")
    srv.inject("429", count=2, retry_after=0.3)
    srv.inject("429")
    client = oai(srv)
    with pytest.raises(openai.InternalServerError, match="injected"):
        chat(client)
    for retry_after in ("0.3", "0.3", None):
        with pytest.raises(openai.RateLimitError) as info:
            chat(client)
        assert info.value.response.headers.get("retry-after") == retry_after
    assert chat(client).choices[0].message.content
    srv.inject("429", retry_after=2)
    with pytest.raises(anthropic.RateLimitError) as info:
        message(claude(srv))
    assert info.value.response.headers["retry-after"] == "2"
    error = {"type": "rate_limit_error", "message": "rate limited (injected fault)"}
    assert info.value.body == {"type": "error", "error": error}
    assert srv.stats.faults == {"500": 1, "429": 4} and srv.pending_faults == 0


def test_malformed_fault(srv):
    srv.inject("malformed", count=2)
    for path, body in (("/v1/chat/completions", {"model": "m", "messages": []}),
                       ("/v1/messages", {"model": "m", "messages": [], "max_tokens": 5})):
        status, headers, content = raw(srv.port, path, body)
        assert status == 200 and headers["Content-Type"] == "application/json"
        with pytest.raises(ValueError):
            json.loads(content)


def test_truncated_fault(srv):
    srv.inject("truncated", count=4)
    choice = chat(oai(srv)).choices[0]
    assert choice.finish_reason == "length" and choice.message.content == "[fake] Hello, who are you?"[:13]
    with pytest.raises(ValueError):
        json.loads(chat(oai(srv), response_format=JSON_SCHEMA).choices[0].message.content)
    choice = chat(oai(srv), **TOOLS).choices[0]
    assert choice.finish_reason == "length"
    with pytest.raises(ValueError):
        json.loads(choice.message.tool_calls[0].function.arguments)
    reply = message(claude(srv))
    assert reply.stop_reason == "max_tokens" and reply.content[0].text == "[fake] Hello, who are you?"[:13]
    assert message(claude(srv)).stop_reason == "end_turn"  # queue drained


def test_stall_fault_survives_client_timeout(srv):
    srv.inject("stall", stall_seconds=30)
    srv.inject("stall", stall_seconds=0.2)
    with pytest.raises(openai.APITimeoutError):
        chat(oai(srv, timeout=0.2))
    started = time.monotonic()
    assert chat(oai(srv)).choices[0].message.content  # a short stall, then normal
    assert time.monotonic() - started >= 0.2
    assert chat(oai(srv)).choices[0].message.content
    assert srv.stats.faults == {"stall": 2} and srv.stats.in_flight == 1  # the long stall is still asleep
    # Leaving the fixture cancels it: no hang, no traceback.


def test_require_key():
    with FakeServer(require_key="sk-good") as srv:
        with pytest.raises(openai.AuthenticationError) as info:
            chat(oai(srv, key="sk-bad"))
        assert info.value.body["type"] == "authentication_error"
        with pytest.raises(anthropic.AuthenticationError):
            message(claude(srv, key="sk-bad"))
        assert chat(oai(srv, key="sk-good")).choices and message(claude(srv, key="sk-good")).content
        srv.require_key = None  # knobs change while running
        assert message(claude(srv, key="anything")).content


def test_connections_are_reused_and_closed_on_request(srv):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    statuses = [raw(srv.port, "/v1/chat/completions", {"model": "m", "messages": []}, conn=conn)[0]]
    sock = conn.sock
    statuses += [raw(srv.port, "/v1/chat/completions", {"model": "m", "messages": []}, conn=conn)[0] for _ in range(4)]
    assert statuses == [200] * 5 and conn.sock is sock  # one TCP connection throughout
    conn.close()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        body = b'{"model": "m", "messages": []}'
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: fake\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
        sock.sendall(head % len(body) + body)
        received = b""
        while chunk := sock.recv(65536):  # the server closes after replying
            received += chunk
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")


def test_chunked_bodies_and_refused_requests(srv):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    conn.request("POST", "/v1/chat/completions", iter([body]), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    assert json.loads(conn.getresponse().read())["choices"][0]["message"]["content"] == "[fake] hi"
    conn.close()
    assert raw(srv.port, "/v1/nowhere", {})[0] == 404
    assert raw(srv.port, "/v1/files", {"file": "x"})[0] == 400  # an upload is multipart/form-data
    assert raw(srv.port, "/v1/models", method="GET")[0] == 404  # the product never lists models
    assert raw(srv.port, "/v1/chat/completions", method="GET")[0] == 405
    assert raw(srv.port, "/v1/chat/completions", b"{not json")[0] == 400
    assert raw(srv.port, "/v1/messages", {"model": "m", "messages": []})[0] == 400  # no max_tokens
    assert raw(srv.port, "/v1/chat/completions", {"model": "m", "messages": [], "stream": True})[0] == 400


def test_stats_and_recorded_requests(srv):
    before = time.monotonic()
    chat(oai(srv, key="sk-x"))
    message(claude(srv))
    raw(srv.port, "/v1/nowhere", method="GET")
    stats = srv.stats
    assert stats.requests == 2 and stats["requests"] == 2
    assert stats.by_path == {"/v1/chat/completions": 1, "/v1/messages": 1, "/v1/nowhere": 1}
    assert before <= stats.arrivals[0] <= stats.arrivals[1] <= time.monotonic()
    assert stats.in_flight == 0 and stats.max_in_flight_seen == 1 and stats.rejected == 0 and stats.faults == {}
    assert srv.requests[0]["temperature"] == 0.7 and srv.requests[1]["max_tokens"] == 100
    assert srv.request_headers[0]["authorization"] == "Bearer sk-x"
    srv.reset_stats()
    assert srv.stats.requests == 0 and srv.stats.by_path == {} and srv.requests == []


def test_no_rate_limit_headers_without_limits(srv):
    response = oai(srv).chat.completions.with_raw_response.create(model="m", messages=[])
    assert not [name for name in response.headers if "ratelimit" in name.lower()]


def test_requests_per_minute_are_reported_and_enforced():
    with FakeServer(rpm=3) as server:
        client, remaining = oai(server), []
        for _ in range(3):
            response = client.chat.completions.with_raw_response.create(model="m", messages=[])
            assert response.headers["x-ratelimit-limit-requests"] == "3"
            assert re.fullmatch(r"(\d+m)?\d+(\.\d+)?s|\d+ms", response.headers["x-ratelimit-reset-requests"])
            remaining.append(int(response.headers["x-ratelimit-remaining-requests"]))
        assert remaining == [2, 1, 0] and "x-ratelimit-limit-tokens" not in response.headers
        with pytest.raises(openai.RateLimitError) as info:
            chat(client)
        headers = info.value.response.headers
        assert 1 <= int(headers["retry-after"]) <= 60 and headers["x-ratelimit-remaining-requests"] == "0"
        with pytest.raises(anthropic.RateLimitError) as info:
            message(claude(server))
        headers = info.value.response.headers
        assert headers["anthropic-ratelimit-requests-limit"] == "3"
        assert headers["anthropic-ratelimit-requests-remaining"] == "0"
        assert datetime.fromisoformat(headers["anthropic-ratelimit-requests-reset"]).timestamp() > time.time()
        assert server.stats.rejected == 2 and server.stats.requests == 5


def test_tokens_per_minute_count_prompt_and_reply_words():
    with FakeServer(tpm=30) as server:
        client, remaining = claude(server), []
        for _ in range(3):  # 6 words in, 5 out: 11 tokens a call
            messages = [{"role": "user", "content": "Hello, who are you?"}]
            response = client.messages.with_raw_response.create(model="m", max_tokens=9, system="Be Ada.",
                                                                messages=messages)
            assert response.headers["anthropic-ratelimit-tokens-limit"] == "30"
            remaining.append(int(response.headers["anthropic-ratelimit-tokens-remaining"]))
        assert remaining == [19, 8, 0] and "anthropic-ratelimit-requests-limit" not in response.headers
        with pytest.raises(openai.RateLimitError) as info:
            chat(oai(server))
        assert info.value.response.headers["x-ratelimit-remaining-tokens"] == "0"


def test_the_window_slides():
    with FakeServer(rpm=2, rate_window=0.5) as server:
        client = oai(server)
        chat(client)
        chat(client)
        with pytest.raises(openai.RateLimitError):
            chat(client)
        time.sleep(0.55)
        assert chat(client).choices[0].message.content


def test_a_span_enforces_the_window_pro_rata_while_the_headers_report_the_window():
    """OpenAI: "60,000 requests/minute may be enforced as 1,000 requests/second"; here 4 per 2 s as 2 per 1 s."""
    with FakeServer(rpm=4, rate_window=2.0, rate_span=1.0) as server:
        client = oai(server)
        chat(client)
        response = client.chat.completions.with_raw_response.create(model="m", messages=[])
        assert response.headers["x-ratelimit-remaining-requests"] == "2"
        with pytest.raises(openai.RateLimitError):  # the third in a second, with 2 of the window left
            chat(client)
        time.sleep(1.05)
        assert chat(client).choices[0].message.content


@pytest.mark.parametrize("seconds, spelled", [(360, "6m0s"), (1, "1s"), (1.5, "1.5s"), (0.02, "20ms"), (0, "0s")])
def test_openai_durations(seconds, spelled):
    assert _duration(seconds) == spelled


def test_lifecycle_is_clean():
    srv = FakeServer(latency=0.01).start()
    assert srv.base_url == f"http://127.0.0.1:{srv.port}/v1"
    idle = socket.create_connection(("127.0.0.1", srv.port))  # an open keep-alive connection
    srv.inject("stall")
    stalled = socket.create_connection(("127.0.0.1", srv.port))
    body = b'{"model": "m", "messages": []}'
    stalled.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
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
    argv = [sys.executable, "-m", "personagym.testing.fake_server", "--port", "0", "--latency", "0",
            "--structured", "tools", "--rpm", "100"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:") and line.endswith("/v1\n")
        port = int(line.rsplit(":", 1)[1].split("/")[0])
        hi = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        status, headers, body = raw(port, "/v1/chat/completions", hi)
        assert json.loads(body)["choices"][0]["message"]["content"] == "[fake] hi"
        assert headers["x-ratelimit-remaining-requests"] == "99"
        assert raw(port, "/v1/chat/completions", {**hi, "response_format": JSON_SCHEMA})[0] == 400
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0 and err == ""
    assert json.loads(out) == {"requests": 2, "rejected": 0, "max_in_flight_seen": 1}  # what benchmarks read
