"""Bad input to `run` and `benchmark`: one line naming the problem, exit 2, no traceback, no database."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from tests.conftest import assert_one_line_error, run_cli

BASE = ["run", "--agent", "openai:a", "--judges", "openai:j", "--generator", "openai:g", "--example-model", "openai:e"]


def run(tmp_path, *args: str, env: dict | None = None):
    # A key is set so that the check under test, not the missing key, is what fails.
    return run_cli(*args, env={"OPENAI_API_KEY": "k", **(env or {})}, cwd=tmp_path)


def assert_bad_input(result, tmp_path, *words: str, db_expected: bool = False) -> None:
    assert_one_line_error(result, *words)
    if not db_expected:
        assert not (tmp_path / "personagym.db").exists()


def write(tmp_path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return name


@pytest.mark.parametrize(
    "args, words",
    [
        (["--persona", "   "], ["is blank"]),
        (["--personas", "missing.txt"], ["missing.txt", "does not exist"]),
        (["--tasks", "empathy", "--persona", "x"], ["unknown task 'empathy'", "expected_action"]),
        (["--questions-per-task", "0", "--persona", "x"], ["--questions-per-task", "20"]),
        (["--judge-batch", "0", "--persona", "x"], ["--judge-batch"]),
        ([], ["no personas given"]),
        (["--persona", "x", "--judges", "gemini:pro"], ["unknown provider 'gemini'"]),
        (["--persona", "x", "--agent-template", "nope.txt"], ["nope.txt", "{persona}"]),
        # Zero must not quietly mean "unlimited", nor a negative rate end in an internal error.
        (["--persona", "x", "--rpm", "0"], ["--rpm"]),
        (["--persona", "x", "--rpm", "-5"], ["--rpm"]),
        (["--persona", "x", "--tpm", "0"], ["--tpm"]),
        (["--persona", "x", "--tpm", "-5"], ["--tpm"]),
    ],
)
def test_bad_run_flags(tmp_path, args, words):
    assert_bad_input(run(tmp_path, *BASE, *args), tmp_path, *words)


def test_a_missing_agent_is_named(tmp_path):
    assert_bad_input(run(tmp_path, "run", "--persona", "x"), tmp_path, "--agent")


def test_a_missing_key_is_named_before_anything_is_written(tmp_path):
    result = run(tmp_path, *BASE, "--persona", "x", env={"OPENAI_API_KEY": ""})
    assert_bad_input(result, tmp_path, "OPENAI_API_KEY")


@pytest.mark.parametrize(
    "name, text, words",
    [
        ("empty.txt", "\n\n", ["empty.txt", "no personas"]),
        ("p.yaml", "- a", ["p.yaml", ".txt"]),
        ("p.jsonl", '{"persona": "ok"}\n["not an object"]\n', ["p.jsonl", "line 2"]),
        ("p.csv", "name,age\nBob,3\n", ["p.csv", "persona", "'name', 'age'"]),
        ("p.json", "[1, 2", ["p.json", "JSON"]),
    ],
)
def test_bad_persona_files(tmp_path, name, text, words):
    write(tmp_path, name, text)
    assert_bad_input(run(tmp_path, *BASE, "--personas", name), tmp_path, *words)


def test_a_template_without_the_placeholder(tmp_path):
    write(tmp_path, "t.txt", "You are someone.")
    assert_bad_input(run(tmp_path, *BASE, "--persona", "x", "--agent-template", "t.txt"), tmp_path, "{persona}")


def test_benchmark_dir_missing_or_tampered(tmp_path, shared_benchmark):
    args = ["benchmark", "--agent", "openai:a", "--judges", "openai:j", "--example-model", "openai:e"]
    assert_bad_input(run(tmp_path, *args, "--benchmark-dir", "nowhere"), tmp_path, "nowhere", "benchmark download")
    copy = tmp_path / "bench"
    shutil.copytree(shared_benchmark, copy)
    victim = sorted((copy / "questions").iterdir())[3]
    data = json.loads(victim.read_text())
    data["Expected Action"][0] = "A question someone slipped in?"
    victim.write_text(json.dumps(data))
    assert_bad_input(run(tmp_path, *args, "--benchmark-dir", "bench"), tmp_path, victim.name[:30], "sha256")


def test_resuming_with_a_conflicting_config_names_the_field(tmp_path, server):
    server_env = {"OPENAI_BASE_URL": server.base_url}
    first = run(tmp_path, *BASE, "--persona", "x", "--run", "r", "--questions-per-task", "1", "--quiet", env=server_env)
    assert first.returncode in (0, 1), first.stderr
    again = run(tmp_path, *BASE, "--persona", "x", "--run", "r", "--questions-per-task", "2", env=server_env)
    assert_bad_input(again, tmp_path, "run 'r'", "questions_per_task", "--run", db_expected=True)


def test_a_foreign_or_newer_db_is_refused_and_kept(tmp_path):
    write(tmp_path, "notes.db", "precious notes")
    assert_bad_input(run(tmp_path, *BASE, "--persona", "x", "--db", "notes.db"), tmp_path, "not a personagym database")
    assert (tmp_path / "notes.db").read_text() == "precious notes"
    from personagym.store import connect
    from personagym.store.db import SCHEMA_VERSION

    connect(tmp_path / "future.db").execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")
    result = run(tmp_path, *BASE, "--persona", "x", "--db", "future.db")
    assert_bad_input(result, tmp_path, "newer than this personagym")
    assert sqlite3.connect(tmp_path / "future.db").execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 5


@pytest.mark.parametrize(
    "command",
    [["run"], ["benchmark"], ["benchmark", "download"], ["export"], ["show"], ["runs"], ["models", "check"],
     ["cache", "stats"], ["cache", "clear"]],
)
def test_every_command_has_help_with_examples(tmp_path, command):
    result = run(tmp_path, *command, "--help")
    assert result.returncode == 0 and "Usage:" in result.stdout and "Examples:" in result.stdout
