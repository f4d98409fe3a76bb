"""Whole runs through the CLI against the scripted fake server: exact scores, resume, reuse, failures."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.conftest import cli_argv, cli_env, run_cli, sigint_at_default
from tests.pipeline_fakes import expected_persona_score, expected_task_scores, kinds, preflights, responder

PERSONAS = ["A 72-year-old doctor from Tokyo who loves hiking", "A 19-year-old farmer from New York who is a fitness freak"]


def cli(server, tmp_path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = run_cli(*args, env={"OPENAI_BASE_URL": server.base_url}, cwd=tmp_path, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def run_args(*extra: str, agent: str = "openai:agent-x", qpt: str = "3") -> list[str]:
    args = ["run", "--agent", agent, "--judges", "openai:judge-a,openai:judge-b", "--generator", "openai:gen"]
    args += ["--example-model", "openai:ex", "--questions-per-task", qpt, "--quiet"]
    for p in PERSONAS:
        args += ["--persona", p]
    return args + list(extra)


@pytest.fixture
def scripted(server):
    server.responder = responder
    return server


def export(server, tmp_path, run: str) -> dict:
    return json.loads(cli(server, tmp_path, "export", run).stdout)


def test_a_dynamic_run_gives_the_known_scores(scripted, tmp_path):
    result = cli(scripted, tmp_path, *run_args("--run", "r1"))
    assert f"PersonaScore {expected_persona_score():.2f}" in result.stdout
    data = export(scripted, tmp_path, "r1")
    assert data["schema"] == "personagym.results/1"
    assert data["scores"]["persona_score"] == pytest.approx(expected_persona_score())
    assert data["scores"]["tasks"] == pytest.approx(expected_task_scores())
    assert data["scores"]["questions_scored"] == data["scores"]["questions"] == 2 * 5 * 3
    for persona in data["personas"]:
        assert persona["persona_score"] == pytest.approx(expected_persona_score())
        assert len(persona["environments"]) == 2
    q = data["questions"][0]
    assert [v["judge"] for v in q["verdicts"]] == ["openai:judge-a", "openai:judge-b"]
    assert q["examples"]["5"] == "EXAMPLE-5 for this question"
    assert data["failures"]["total"] == 0
    # Calls per persona: 1 environments + 5 questions + 15 answers + 15 examples + 2 judges x 5 tasks x 1 batch.
    assert kinds(scripted) == {
        "EnvironmentChoice": 2, "Questions": 10, "answer": 30, "ScoreExampleBatch": 10,
        "Verdicts/judge-a": 10, "Verdicts/judge-b": 10,
    }
    usage = data["usage"]["by_role"]
    assert usage["agent"]["calls"] == 30 and usage["judge"]["calls"] == 20


def test_score_examples_reach_the_judges(scripted, tmp_path):
    cli(scripted, tmp_path, *run_args("--run", "r1"))
    judge_prompts = [json.dumps(b["messages"]) for b in scripted.requests if "Verdicts" in json.dumps(b.get("response_format"))]
    assert judge_prompts and all("EXAMPLE-1 for this question" in p and "EXAMPLE-5" in p for p in judge_prompts)


def test_a_second_agent_reuses_everything_agent_independent(scripted, tmp_path):
    cli(scripted, tmp_path, *run_args("--run", "first"))
    scripted.reset_stats()
    cli(scripted, tmp_path, *run_args("--run", "second", agent="openai:agent-y"))
    assert kinds(scripted) == {"answer": 30, "Verdicts/judge-a": 10, "Verdicts/judge-b": 10}
    assert export(scripted, tmp_path, "second")["scores"]["persona_score"] == pytest.approx(expected_persona_score())


def test_running_again_redoes_nothing(scripted, tmp_path):
    cli(scripted, tmp_path, *run_args("--run", "r1"))
    scripted.reset_stats()
    again = cli(scripted, tmp_path, *run_args("--run", "r1"))
    # Only the check that each model still answers (one tiny request per model), no work again.
    assert scripted.stats.requests == preflights(scripted) == 5
    assert f"PersonaScore {expected_persona_score():.2f}" in again.stdout


def test_the_models_are_checked_all_at_once_not_one_after_another(scripted, tmp_path):
    cli(scripted, tmp_path, *run_args("--run", "r1"))
    scripted.reset_stats()
    scripted.latency = 0.3  # long enough that five pings sent one after another never overlap
    cli(scripted, tmp_path, *run_args("--run", "r1"))
    assert scripted.stats.requests == 5 and scripted.stats.max_in_flight_seen == 5


def test_resume_after_kill_9_gives_the_same_scores_without_repeating_calls(scripted, tmp_path):
    reference = tmp_path / "reference"
    reference.mkdir()
    cli(scripted, reference, *run_args("--run", "r"))
    uninterrupted = scripted.stats.requests
    scripted.reset_stats()
    scripted.latency = 0.05

    proc = subprocess.Popen(
        cli_argv(*run_args("--run", "r", "--concurrency", "4")),
        env=cli_env({"OPENAI_BASE_URL": scripted.base_url}), cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while scripted.stats.requests < uninterrupted // 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before_kill = scripted.stats.requests
    assert 0 < before_kill < uninterrupted
    scripted.latency = 0.0
    cli(scripted, tmp_path, *run_args("--run", "r", "--concurrency", "4"))
    in_flight_allowance = 4 * 5  # at most `concurrency` calls per model (five models) were lost
    assert scripted.stats.requests <= uninterrupted + in_flight_allowance
    resumed, fresh = export(scripted, tmp_path, "r"), export(scripted, reference, "r")
    assert resumed["scores"] == fresh["scores"]
    assert resumed["run"]["status"] == "done"


def test_failures_are_counted_and_never_scored(scripted, tmp_path):
    # Every answer request fails: the questions have no score, the failures say why.
    original = scripted.responder

    def failing(api, body):
        if body["model"] == "agent-x":
            raise RuntimeError("agent down")
        return original(api, body)

    scripted.responder = failing
    result = cli(scripted, tmp_path, *run_args("--run", "f", "--tasks", "linguistic_habits", "--max-attempts", "2"), check=False)
    assert result.returncode == 1
    assert "failures: 6" in result.stdout and "server_error 6" in result.stdout
    data = export(scripted, tmp_path, "f")
    assert data["scores"]["persona_score"] is None and data["scores"]["questions_scored"] == 0
    assert all(q["score"] is None and q["answer"] is None for q in data["questions"])
    assert {f["stage"] for f in data["failures"]["items"]} == {"answers"}
    # Rerunning retries them; now they succeed.
    scripted.responder = original
    cli(scripted, tmp_path, *run_args("--run", "f", "--tasks", "linguistic_habits"))
    assert export(scripted, tmp_path, "f")["scores"]["tasks"] == {"Linguistic Habits": pytest.approx(3.0)}


def test_csv_export_and_show_and_runs(scripted, tmp_path):
    cli(scripted, tmp_path, *run_args("--run", "r1", "--tasks", "expected_action"))
    cli(scripted, tmp_path, "export", "r1", "--format", "csv", "-o", "r1.csv")
    lines = (tmp_path / "r1.csv").read_text().splitlines()
    assert lines[0] == "run,persona,task,index,question,answer,score,judges"
    assert len(lines) == 1 + 2 * 3 and ",4.5," in lines[1]
    assert "PersonaScore 4.50" in cli(scripted, tmp_path, "show", "r1").stdout
    runs = cli(scripted, tmp_path, "runs").stdout
    assert runs.startswith("r1") and "done" in runs and "4.50" in runs


def test_dry_run_calls_nothing_and_writes_nothing(scripted, tmp_path):
    result = cli(scripted, tmp_path, *run_args("--dry-run"))
    assert "total: 72 calls" in result.stdout  # 2 x (1 + 5 + 15 + 5 example batches + 2 x 5)
    assert scripted.stats.requests == 0 and not list(tmp_path.iterdir())


def test_benchmark_mode_uses_the_fixed_questions(scripted, tmp_path, shared_benchmark):
    args = ["benchmark", "--benchmark-dir", str(shared_benchmark), "--limit", "1", "--agent", "openai:agent-x",
            "--judges", "openai:judge-a,openai:judge-b", "--example-model", "openai:ex", "--questions-per-task", "2",
            "--run", "b", "--quiet"]
    cli(scripted, tmp_path, *args)
    data = export(scripted, tmp_path, "b")
    assert data["scores"]["persona_score"] == pytest.approx(expected_persona_score())
    assert len(data["questions"]) == 10 and "EnvironmentChoice" not in kinds(scripted)
    first = json.loads((shared_benchmark / "personas.json").read_text())[0]
    assert data["personas"][0]["persona"] == first


async def test_the_python_api_with_a_callable_agent(scripted, tmp_path):
    from personagym.llm import ProviderSettings
    from personagym.pipeline import evaluate

    seen = []

    async def my_agent(persona: str, question: str) -> str:
        seen.append((persona, question))
        return f"Speaking as myself about: {question[:30]}"

    results = await evaluate(
        PERSONAS[:1],
        agent=my_agent,
        db=tmp_path / "api.db",
        run="api",
        judges=["openai:judge-a", "openai:judge-b"],
        generator="openai:gen",
        example_model="openai:ex",
        questions_per_task=2,
        settings={"openai": ProviderSettings(base_url=scripted.base_url, api_key="k")},
        progress=False,
    )
    assert results["scores"]["persona_score"] == pytest.approx(expected_persona_score())
    assert len(seen) == 10 and {p for p, _ in seen} == {PERSONAS[0]}
    assert results["run"]["config"]["agent"].startswith("callable:")
    assert "answer" not in kinds(scripted)  # the callable answered, not the server


def test_a_users_own_endpoint_with_the_persona_in_a_field(scripted, tmp_path):
    args = run_args("--run", "bot", "--tasks", "expected_action", agent="openai:their-bot")
    cli(scripted, tmp_path, *args, "--agent-base-url", scripted.base_url, "--persona-field", "persona")
    agent_calls = [b for b in scripted.requests if b["model"] == "their-bot" and "persona" in b]
    assert len(agent_calls) == 6
    assert all(b["persona"] in PERSONAS and [m["role"] for m in b["messages"]] == ["user"] for b in agent_calls)


def test_the_config_file_sets_what_flags_leave_unset(scripted, tmp_path):
    (tmp_path / "personagym.toml").write_text(
        'judges = ["openai:judge-a", "openai:judge-b"]\ngenerator = "openai:gen"\nexample_model = "openai:ex"\n'
        'questions_per_task = 1\ntasks = "toxicity_control"\nagent = "openai:agent-x"\n'
    )
    cli(scripted, tmp_path, "run", "--persona", PERSONAS[0], "--run", "cfg", "--quiet")
    data = export(scripted, tmp_path, "cfg")
    assert data["run"]["config"]["questions_per_task"] == 1 and data["run"]["config"]["tasks"] == ["toxicity_control"]
    cli(scripted, tmp_path, "run", "--persona", PERSONAS[0], "--run", "cfg2", "--questions-per-task", "2", "--quiet")
    assert export(scripted, tmp_path, "cfg2")["run"]["config"]["questions_per_task"] == 2  # the flag wins


def test_ctrl_c_leaves_an_interrupted_run_that_resumes(scripted, tmp_path):
    scripted.latency = 0.2
    proc = subprocess.Popen(
        cli_argv(*run_args("--run", "c")),
        env=cli_env({"OPENAI_BASE_URL": scripted.base_url}), cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=sigint_at_default,
    )
    deadline = time.monotonic() + 60
    while scripted.stats.requests < 5 + 5 and time.monotonic() < deadline:  # past the 5 preflight pings
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and err.strip().endswith("interrupted")
    assert "interrupted" in cli(scripted, tmp_path, "runs").stdout
    scripted.latency = 0.0
    cli(scripted, tmp_path, *run_args("--run", "c"))
    assert export(scripted, tmp_path, "c")["scores"]["persona_score"] == pytest.approx(expected_persona_score())


def test_credentials_in_an_endpoint_url_never_reach_the_store(scripted, tmp_path):
    secret_url = scripted.base_url.replace("http://", "http://user:hunter2secret@")
    args = run_args("--run", "s", "--tasks", "expected_action", "--questions-per-task", "1", agent="openai:their-bot")
    cli(scripted, tmp_path, *args, "--agent-base-url", secret_url)
    for path in tmp_path.glob("personagym.db*"):
        assert b"hunter2secret" not in path.read_bytes()
    assert "hunter2secret" not in json.dumps(export(scripted, tmp_path, "s"))


def test_personas_start_in_turns_so_the_first_requests_leave_before_the_next_persona_starts(monkeypatch):
    """All at once, 200 personas built 10,000 requests before the first was sent (2.6 s of idle server)."""
    import asyncio
    from types import SimpleNamespace

    from personagym.pipeline import run

    events = []

    async def persona(ctx, who, fixed):
        events.append(("starts", who))
        await asyncio.sleep(0)  # its requests are built a turn later, as evaluate_persona's are
        events.append(("asks", who))

    monkeypatch.setattr(run, "evaluate_persona", persona)
    ctx = SimpleNamespace(progress=SimpleNamespace(persona_done=lambda: None))
    asyncio.run(run.evaluate_all(ctx, list(range(50)), None, in_flight=50))
    assert [who for kind, who in events if kind == "starts"] == list(range(50))  # in order
    assert events.index(("asks", 0)) < events.index(("starts", 1))
    assert len(events) == 100
