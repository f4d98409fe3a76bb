"""personagym against a server we did not write: llama-cpp-python's own OpenAI-compatible server,
running the embedded SmolLM2 GGUF on loopback. It refuses OpenAI's json_schema response format
(HTTP 500, "Input should be 'text' or 'json_object'"), as the llama.cpp family does, so this is where
structured-output negotiation meets the real thing (docs/servers.md)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import run_cli

pytest.importorskip("llama_cpp.server.app", reason="needs the test extra: pip install -e '.[local,test]'")
pytestmark = pytest.mark.local


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    from personagym.llm.providers.local import default_model_path

    port = _free_port()
    log = (tmp_path_factory.mktemp("llama-server") / "server.log").open("w")
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(default_model_path()), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", "4096", "--model_alias", "smollm2", "--n_threads", "2"]
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2) as reply:
                    json.loads(reply.read())
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"llama-cpp-python's server did not start: see {log.name}") from None
                time.sleep(0.3)
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_models_check_finds_the_shape_the_server_takes(llama_server, tmp_path):
    result = run_cli("models", "check", "openai:smollm2", "--openai-base-url", llama_server, cwd=tmp_path, timeout=300)
    assert "Traceback" not in result.stderr
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "a plain reply in" in result.stdout
    # json_schema is refused by this server; json_object with a schema is what it takes.
    assert "a structured reply as json_object in" in result.stdout


def test_a_run_with_every_role_on_the_real_server_ends_with_scores(llama_server, tmp_path):
    result = run_cli(
        "run", "--models", "openai:smollm2", "--openai-base-url", llama_server,
        "--persona", "A 72-year-old doctor from Tokyo who loves hiking",
        "--tasks", "expected_action,linguistic_habits", "--questions-per-task", "1", "--environments", "2",
        "--agent-max-tokens", "200", "--run", "real", cwd=tmp_path, timeout=1500,
    )
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert result.returncode in (0, 1), (result.stdout, result.stderr)
    # The shape was learned once for the whole run, not refused call after call.
    assert result.stderr.count("does not take structured output as json_schema") == 1
    data = json.loads(run_cli("export", "real", cwd=tmp_path).stdout)
    failures = data["failures"]["items"]
    # A 135M model may botch a reply: then it is a failure with a cause, never a crash or a made-up score.
    assert data["scores"]["questions_scored"] >= 1 or failures
    assert all(f["cause"] in ("invalid_output", "truncated") for f in failures), failures
    if data["scores"]["persona_score"] is not None:
        assert 1 <= data["scores"]["persona_score"] <= 5
    assert not [f for f in failures if "json_schema" in f["detail"]]  # the refused shape never became a failure
