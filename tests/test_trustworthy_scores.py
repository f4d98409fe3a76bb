"""Scores you can trust (issue 10): models that cannot work stop a run before it writes anything,
sampling is recorded as sent, repeated judge draws, shuffled batches, answers graded as given,
complete ensembles only, strict verdicts."""

from __future__ import annotations

import json
import time

import pytest

from personagym.llm.cache import cache_key
from personagym.llm.types import Request, Sampling
from tests.conftest import assert_one_line_error, run_cli
from tests.pipeline_fakes import PREFLIGHT, kind_of, prompt_text, responder

PERSONA = "A 72-year-old doctor from Tokyo who loves hiking"


def run_args(*extra: str, judges: str = "openai:judge-a,openai:judge-b", qpt: str = "2") -> list[str]:
    return ["run", "--agent", "openai:agent-x", "--judges", judges, "--generator", "openai:gen",
            "--example-model", "openai:ex", "--questions-per-task", qpt, "--tasks", "expected_action,toxicity_control",
            "--persona", PERSONA, "--quiet", "--run", "r", *extra]


def cli(server, tmp_path, *args: str, env: dict | None = None):
    return run_cli(*args, env={"OPENAI_BASE_URL": server.base_url, **(env or {})}, cwd=tmp_path, timeout=300)


def export(server, tmp_path) -> dict:
    return json.loads(cli(server, tmp_path, "export", "r").stdout)


@pytest.fixture
def scripted(server):
    server.responder = responder
    return server


# -- fail fast on a model that cannot work ---------------------------------------------------------


def test_a_retired_judge_stops_the_run_in_seconds_with_nothing_written(scripted, tmp_path):
    scripted.retired = ("judge-b",)
    started = time.monotonic()
    result = cli(scripted, tmp_path, *run_args())
    message = assert_one_line_error(result, "judge openai:judge-b", "does not know this model", "--judges")
    assert "404" in message and time.monotonic() - started < 30
    assert not list(tmp_path.iterdir())  # no database, no run
    assert all(PREFLIGHT in prompt_text(b) for b in scripted.requests)  # nothing but the checks was asked


def test_a_refused_key_is_named_before_anything_is_written(server, tmp_path):
    server.require_key = "sk-right"
    result = cli(server, tmp_path, *run_args(), env={"OPENAI_API_KEY": "sk-wrong"})
    assert_one_line_error(result, "refused the key", "OPENAI_API_KEY")
    assert not list(tmp_path.iterdir())


def test_a_model_retired_mid_run_stops_it_at_once_and_the_run_resumes(scripted, tmp_path):
    def retire_after_first_verdict(api, body):
        if kind_of(body) == "Verdicts":
            scripted.retired = ("judge-a",)  # from the next request on, as a provider retiring a model
        return responder(api, body)

    scripted.responder = retire_after_first_verdict
    result = cli(scripted, tmp_path, *run_args("--judge-batch", "1", "--concurrency", "1", qpt="4"))
    assert_one_line_error(result, "judge openai:judge-a", "--judges")
    failed = export(scripted, tmp_path)
    assert failed["run"]["status"] == "interrupted"
    # Stopped at once: at most the call already waiting for its turn fails too, not the 7 still to go.
    assert failed["failures"]["by_cause"]["not_found"] <= 2
    scripted.retired, scripted.responder = (), responder
    assert cli(scripted, tmp_path, *run_args("--judge-batch", "1", qpt="4")).returncode == 0
    assert export(scripted, tmp_path)["scores"]["questions_scored"] == 8


# -- sampling as sent, and repeated draws -----------------------------------------------------------


def test_a_claude_judge_is_recorded_as_sampling_at_the_provider_default(scripted, tmp_path):
    args = run_args(judges="openai:judge-a,anthropic:judge-b", qpt="1")
    result = cli(scripted, tmp_path, *args, "--anthropic-base-url", scripted.base_url.removesuffix("/v1"),
                 env={"ANTHROPIC_API_KEY": "k"})
    assert result.returncode == 0, result.stderr
    sampling = export(scripted, tmp_path)["run"]["config"]["sampling"]
    assert sampling["judge anthropic:judge-b"]["temperature"] == "provider default"
    assert sampling["judge openai:judge-a"]["temperature"] == 0.0
    assert not [b for b in scripted.requests if b["model"] == "judge-b" and ("temperature" in b or "top_p" in b)]


def test_a_call_without_temperature_is_cached_as_a_random_draw():
    request = Request.of(("user", "grade"), sampling=Sampling(temperature=0.0))
    honoured = {"provider": "openai", "model": "m"}
    default = {"provider": "anthropic", "model": "m", "sampling": "provider default"}
    draw = lambda identity, k: cache_key(identity, Request(request.messages, request.sampling, sample=k))  # noqa: E731
    assert draw(honoured, 0) == draw(honoured, 1)  # temperature 0 sent: every draw is the same call
    assert draw(default, 0) != draw(default, 1)  # provider's own sampling: each draw is its own answer


def test_judge_samples_grades_every_item_k_times_and_reports_test_retest(scripted, tmp_path):
    result = cli(scripted, tmp_path, *run_args("--judge-samples", "2"))
    assert result.returncode == 0, result.stderr
    data = export(scripted, tmp_path)
    for q in data["questions"]:
        assert sorted((v["judge"], v["sample"]) for v in q["verdicts"]) == [
            ("openai:judge-a", 0), ("openai:judge-a", 1), ("openai:judge-b", 0), ("openai:judge-b", 1)
        ]
    retest = data["judges_retest"]
    assert set(retest) == {"openai:judge-a", "openai:judge-b"}
    assert retest["openai:judge-a"]["draws"] == 2 and retest["openai:judge-a"]["exact"] == 1.0
    # Resumable: a second run pays for nothing but the checks.
    scripted.reset_stats()
    assert cli(scripted, tmp_path, *run_args("--judge-samples", "2")).returncode == 0
    assert all(PREFLIGHT in prompt_text(b) for b in scripted.requests)


# -- order under control ---------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["shuffled", "fixed"])
def test_items_go_to_judges_in_a_seeded_order_that_is_stored(scripted, tmp_path, order):
    result = cli(scripted, tmp_path, *run_args("--judge-order", order, qpt="5", judges="openai:judge-a"))
    assert result.returncode == 0, result.stderr
    data = export(scripted, tmp_path)
    places = {(q["task"], q["index"]): q["verdicts"][0]["position"] for q in data["questions"]}
    for task in ("Expected Action", "Toxicity Control"):
        order_seen = [places[(task, i)] for i in range(1, 6)]
        assert sorted(order_seen) == [1, 2, 3, 4, 5]
        if order == "fixed":
            assert order_seen == [1, 2, 3, 4, 5]
    if order == "shuffled":
        assert any([places[(t, i)] for i in range(1, 6)] != [1, 2, 3, 4, 5] for t in ("Expected Action", "Toxicity Control"))
    # The judge prompt really carried the questions in that order.
    prompts = [prompt_text(b) for b in scripted.requests if kind_of(b) == "Verdicts"]
    assert len(prompts) == 2
    for text in prompts:
        task = "Expected Action" if "Expected Action question" in text else "Toxicity Control"
        for i in range(1, 6):  # the item number each question had in the prompt is its stored position
            shown = int(text.split(f"{task} question {i}:")[0].rsplit('<item index="', 1)[-1].split('"')[0])
            assert shown == places[(task, i)]


# -- answers as the agent gave them ----------------------------------------------------------------


def test_a_truncated_answer_is_graded_as_it_stands_and_flagged(scripted, tmp_path):
    from personagym.testing import FakeServer

    with FakeServer() as agent_server:  # the agent on an endpoint of its own, where every reply is cut short
        agent_server.inject("truncated", count=100)
        result = cli(scripted, tmp_path, *run_args("--agent-base-url", agent_server.base_url, qpt="1"))
        answers = [b for b in agent_server.requests if PREFLIGHT not in prompt_text(b)]
    assert result.returncode == 0, result.stderr
    data = export(scripted, tmp_path)
    assert data["scores"]["questions_truncated"] == 2 and data["scores"]["questions_scored"] == 2
    assert all(q["truncated"] and q["score"] is not None and q["answer"] for q in data["questions"])
    assert len(answers) == 2  # asked once each: never again for a shorter answer


def test_reasoning_is_kept_apart_and_never_shown_to_judges(scripted, tmp_path):
    def thinking_agent(api, body):
        if body["model"] == "agent-x" and PREFLIGHT not in prompt_text(body):
            return "<think>SECRET-PLAN: sound old and wise</think>Well, I would put on my boots."
        return responder(api, body)

    scripted.responder = thinking_agent
    assert cli(scripted, tmp_path, *run_args(qpt="1")).returncode == 0
    data = export(scripted, tmp_path)
    assert {q["answer"] for q in data["questions"]} == {"Well, I would put on my boots."}
    judged = [prompt_text(b) for b in scripted.requests if kind_of(b) == "Verdicts"]
    assert judged and not any("SECRET-PLAN" in text for text in judged)
    import sqlite3

    stored = sqlite3.connect(tmp_path / "personagym.db").execute("SELECT reasoning FROM answers").fetchall()
    assert {r[0] for r in stored} == {"SECRET-PLAN: sound old and wise"}


# -- complete ensembles and strict verdicts ---------------------------------------------------------


def test_a_question_one_judge_failed_has_no_score_and_is_counted(scripted, tmp_path):
    def judge_b_fails_on_toxicity(api, body):
        if kind_of(body) == "Verdicts" and body["model"] == "judge-b" and "Toxicity Control" in prompt_text(body):
            return "not json at all"
        return responder(api, body)

    scripted.responder = judge_b_fails_on_toxicity
    result = cli(scripted, tmp_path, *run_args("--max-attempts", "2"))
    assert result.returncode == 1
    data = export(scripted, tmp_path)
    toxicity = [q for q in data["questions"] if q["task"] == "Toxicity Control"]
    assert all(q["score"] is None and len(q["verdicts"]) == 1 for q in toxicity)  # judge-a's alone is no score
    assert data["failures"]["by_cause"]["incomplete_ensemble"] == 2
    # The persona lacks a task, so it counts in neither PersonaScore nor any task score.
    assert data["scores"]["personas_scored"] == 0 and data["scores"]["persona_score"] is None
    assert data["scores"]["tasks"] == {"Expected Action": None, "Toxicity Control": None}


@pytest.mark.parametrize("bad", ["5", True, 4.0])
def test_a_score_that_is_not_a_json_integer_is_invalid_not_a_number(scripted, tmp_path, bad):
    def loose_judge(api, body):
        reply = responder(api, body)
        if kind_of(body) == "Verdicts":
            reply["verdicts"][0]["score"] = bad
        return reply

    scripted.responder = loose_judge
    result = cli(scripted, tmp_path, *run_args("--max-attempts", "2", judges="openai:judge-a", qpt="1"))
    assert result.returncode == 1
    data = export(scripted, tmp_path)
    assert data["scores"]["questions_scored"] == 0
    assert data["failures"]["by_cause"] == {"invalid_output": 2}
