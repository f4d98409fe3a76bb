"""The README's commands are run here, so they cannot rot."""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```sh\n(.*?)```", README, re.DOTALL)


def commands() -> list[str]:
    return [line.split("   #")[0].strip() for block in BLOCKS for line in block.splitlines() if line.strip()]


def personagym(command: str, **kwargs) -> subprocess.CompletedProcess:
    args = shlex.split(command)
    assert args[0] == "personagym"
    return subprocess.run([sys.executable, "-m", "personagym", *args[1:]], capture_output=True, text=True, **kwargs)


def test_the_test_command_is_what_ci_runs():
    test_command = BLOCKS[1].strip()
    assert test_command == "python -m pytest -q"
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith(test_command)


@pytest.mark.local
def test_the_first_command_ends_in_a_working_check(tmp_path):
    pytest.importorskip("llama_cpp")
    first = BLOCKS[0].strip().split("&&")[-1].strip()
    assert first == "personagym models check local"
    result = personagym(first, cwd=tmp_path, timeout=300)
    assert result.returncode == 0 and result.stdout.startswith("ok    local: answered"), result.stderr


def test_the_dry_run_example_works(tmp_path):
    serve = next(c for c in commands() if "personagym.testing.fake_server" in c)
    check = next(c for c in commands() if "--openai-base-url http://127.0.0.1:8000" in c)
    with socket.socket() as s:  # the README says 8000; a test must not depend on that port being free
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    argv = shlex.split(serve.rstrip("&").replace("python", sys.executable, 1).replace("8000", port))
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().startswith("listening on")
        result = personagym(check.replace("8000", port), cwd=tmp_path, timeout=60)
        assert result.returncode == 0, result.stderr
    finally:
        server.terminate()
        server.wait(timeout=10)
