"""The README's commands are run here, so they cannot rot."""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_cli

README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```sh\n(.*?)```", README, re.DOTALL)


def commands() -> list[str]:
    return [line.split("   #")[0].strip() for block in BLOCKS for line in block.splitlines() if line.strip()]


def personagym(command: str, **kwargs) -> subprocess.CompletedProcess:
    args = shlex.split(command)
    assert args[0] == "personagym"
    return run_cli(*args[1:], **kwargs)


def test_the_test_command_is_what_ci_runs():
    test_command = BLOCKS[1].strip()
    assert test_command == "bash scripts/test"
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith(test_command)
    script = (ROOT / "scripts" / "test").read_text()
    # Alone in a fresh shell: it makes the venv, installs what the tests need, lints, then runs pytest.
    for step in ("python3 -m venv .venv", "-e '.[local,test]'", "apt-get install", "ruff check", "-m pytest -q"):
        assert step in script, step


def test_the_first_command_plans_a_local_run(tmp_path):
    first = BLOCKS[0].strip().split("&&")[-1].strip()
    assert first.startswith("personagym run --models local --persona ")
    result = personagym(first + " --dry-run", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    n = re.search(r"--questions-per-task (\d+)", first).group(1)
    assert f"1 persona(s) x 5 task(s) x {n} question(s)" in result.stdout


@pytest.mark.local
def test_the_first_command_runs_on_the_embedded_model(tmp_path):
    """The README's main job for real, narrowed to one task and one question to keep CI short."""
    pytest.importorskip("llama_cpp")
    first = BLOCKS[0].strip().split("&&")[-1].strip()
    narrowed = first + " --tasks expected_action --quiet"
    result = personagym(narrowed, cwd=tmp_path, timeout=900)
    assert result.returncode in (0, 1), result.stderr  # 1: the 135M model's failures may leave no score
    assert "PersonaScore" in result.stdout and "usage:" in result.stdout
    assert "Traceback" not in result.stderr, result.stderr  # nor at exit, when llama.cpp's model is freed
    assert (tmp_path / "personagym.db").exists()


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


def test_every_subcommand_the_readme_shows_exists():
    groups = {"benchmark", "models", "cache"}  # their second word may be a subcommand
    names = set()
    for first, second in re.findall(r"^\s*personagym ([a-z]+)(?: ([a-z]+))?", "\n".join(BLOCKS), re.MULTILINE):
        names.add(f"{first} {second}" if first in groups and second else first)
    assert {"run", "benchmark", "report", "compare", "alignment"} <= names
    for name in sorted(names):
        result = personagym(f"personagym {name} --help", timeout=60)
        assert result.returncode == 0, (name, result.stderr)
