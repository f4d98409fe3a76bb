"""What users run, end to end: `personagym run` in its own process against the fake server, with the
results read back through `personagym export` as a user would read them.

The scripted evaluator below stands in for every model of a run, over either provider's API. Its judges
grade from the question text alone, so each stored verdict can be checked against the question it is
stored under.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import time
from statistics import fmean

import pytest

from personagym.testing import FakeServer
from tests.conftest import run_cli
from tests.pipeline_fakes import PREFLIGHT, TASK_NAMES, example_sets, kind_of, prompt_text, schema_of

PERSONA = "A 72-year-old doctor from Tokyo who loves hiking"
# Rotating a judge's scores keeps every judge's verdicts distinct within a judge call (see question_text).
JUDGE_SHIFT = {"judge-a": 0, "judge-b": 1, "fake-judge": 2}
ITEM = re.compile(r'<item index="(\d+)">\s*<question>\s*(.*?)\s*</question>', re.S)


def score_of(judge: str, question: str) -> int:
    """The score `judge` gives any answer to `question`: a function of the question's text and nothing else."""
    return 1 + (hashlib.sha256(question.encode()).digest()[0] + JUDGE_SHIFT[judge]) % 5


def question_text(task: str, i: int) -> str:
    """Question i of a task, worded so that scores run through all of 1..5 in every five questions in a row
    (one judge call at --judge-batch 5), from a start that differs between the first and second five and
    between the first two tasks: a verdict stored under a neighbour, or under the same place of another
    call, then shows as a wrong score."""
    wanted = 1 + (i % 5 + 2 * (i // 5) + TASK_NAMES.index(task)) % 5
    for take in itertools.count():
        text = f"{task}, question {i + 1} (take {take}): what would you do next?"
        if score_of("judge-a", text) == wanted:
            return text


def settings_listed(prompt: str) -> list[str]:
    return re.search(r"<settings>\n(.*?)\n</settings>", prompt, re.S).group(1).splitlines()


class Evaluator:
    """Every model of a run: the generator, the agent, the example writer and any number of judges."""

    def __init__(self) -> None:
        self.server: FakeServer | None = None
        self.arrivals: list[tuple[str, float]] = []  # (model, when its request reached the server)

    def __call__(self, api: str, body: dict):
        kind = kind_of(body)
        prompt = prompt_text(body)
        if kind is None and PREFLIGHT in prompt:
            return "OK"  # the run's check that each model answers, before it writes anything
        self.arrivals.append((body["model"], time.monotonic()))
        if kind == "EnvironmentChoice":
            return {"environments": settings_listed(prompt)[-2:]}  # the last two: not simply the catalog's head
        if kind == "Questions":
            task = re.search(r"^Task: (.+)$", prompt, re.M).group(1)
            n = int(re.search(r"Write exactly (\d+) distinct questions", prompt).group(1))
            return {"questions": [question_text(task, i) for i in range(n)]}
        if kind == "ScoreExamples":
            return {f"score_{level}": f"An answer that earns a {level}." for level in range(1, 6)}
        if kind == "ScoreExampleBatch":
            return example_sets(schema_of(body), lambda level: f"An answer that earns a {level}.")
        if kind == "Verdicts":
            judge = body["model"]
            graded = ITEM.findall(prompt)
            verdicts = [{"index": int(i), "reasoning": f"Graded on its question: {q}", "score": score_of(judge, q)}
                        for i, q in graded]
            return {"verdicts": verdicts}
        if kind is None:
            return f"{body['model']}, in character, on: {body['messages'][-1]['content'][:40]}"
        raise AssertionError(f"unexpected request for {kind}")


@pytest.fixture
def evaluator():
    script = Evaluator()
    with FakeServer(responder=script) as server:
        script.server = server
        yield script


def personagym(evaluator, tmp_path, *args: str, env: dict | None = None):
    result = run_cli(*args, env={"OPENAI_BASE_URL": evaluator.server.base_url, **(env or {})}, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def run_args(*extra: str, judges: str = "openai:judge-a,openai:judge-b", tasks: str = "expected_action",
             questions: int = 2) -> list[str]:
    return ["run", "--persona", PERSONA, "--agent", "openai:agent-x", "--generator", "openai:gen",
            "--example-model", "openai:ex", "--judges", judges, "--tasks", tasks,
            "--questions-per-task", str(questions), "--run", "r", "--quiet", *extra]


def exported(evaluator, tmp_path) -> dict:
    personagym(evaluator, tmp_path, "export", "r", "-o", "out.json")
    return json.loads((tmp_path / "out.json").read_text())


def requests_of(evaluator, kind: str) -> list[dict]:
    return [body for body in evaluator.server.requests if kind_of(body) == kind]


def test_every_verdict_is_stored_under_the_question_it_grades(evaluator, tmp_path):
    args = run_args("--judge-batch", "5", tasks="expected_action,action_justification", questions=10)
    personagym(evaluator, tmp_path, *args)
    data = exported(evaluator, tmp_path)

    assert len(data["questions"]) == 2 * 10
    for q in data["questions"]:
        expected = {f"openai:{judge}": score_of(judge, q["question"]) for judge in ("judge-a", "judge-b")}
        assert {v["judge"]: v["score"] for v in q["verdicts"]} == expected, q["question"]
        assert all(v["reasoning"] == f"Graded on its question: {q['question']}" for v in q["verdicts"])
        assert q["score"] == pytest.approx(fmean(expected.values()))
    for task in ("Expected Action", "Action Justification"):
        own = [q["score"] for q in data["questions"] if q["task"] == task]
        assert data["scores"]["tasks"][task] == pytest.approx(fmean(own))

    # The check above can see a misplaced verdict: every judge call held five questions of five
    # different scores (two judges x two tasks x two calls of five).
    calls = requests_of(evaluator, "Verdicts")
    assert len(calls) == 8
    for body in calls:
        graded = ITEM.findall(prompt_text(body))
        assert sorted(score_of("judge-a", question) for _, question in graded) == [1, 2, 3, 4, 5]


def test_an_anthropic_judge_beside_an_openai_judge(evaluator, tmp_path):
    anthropic_url = evaluator.server.base_url.removesuffix("/v1")
    args = run_args("--anthropic-base-url", anthropic_url, judges="openai:judge-a,anthropic:fake-judge",
                    tasks="expected_action,toxicity_control")
    result = personagym(evaluator, tmp_path, *args, env={"ANTHROPIC_API_KEY": "k-anthropic"})
    data = exported(evaluator, tmp_path)

    assert len(data["questions"]) == 2 * 2
    for q in data["questions"]:
        verdicts = [(v["judge"], v["score"]) for v in q["verdicts"]]
        assert verdicts == [
            ("openai:judge-a", score_of("judge-a", q["question"])),
            ("anthropic:fake-judge", score_of("fake-judge", q["question"])),
        ]
    score = data["scores"]["persona_score"]
    assert isinstance(score, float) and 1 <= score <= 5
    assert f"PersonaScore {score:.2f}" in result.stdout
    # The Claude judge really went over Anthropic's API, with the key from the environment.
    server = evaluator.server
    claude = [h for b, h in zip(server.requests, server.request_headers) if b["model"] == "fake-judge"]
    # Two judge calls and the run's preflight check of the model.
    assert len(claude) == 3 and server.stats.by_path["/v1/messages"] == 3
    keys = [h.get("x-api-key") or h.get("authorization", "").removeprefix("Bearer ") for h in claude]
    assert keys == ["k-anthropic"] * 3


CATALOG = """\
# Settings for a doctor who travels far
Moon Base Clinic - a pressurised sick bay under the lunar soil
Orbital Greenhouse: hydroponic racks tended by a rotating crew
Deep-Sea Research Lab - a station on the ocean floor, hours from the surface
Mountain Hut - a staffed refuge above the tree line
"""


def test_environments_come_from_the_users_catalog(evaluator, tmp_path):
    (tmp_path / "settings.txt").write_text(CATALOG)
    personagym(evaluator, tmp_path, *run_args("--catalog", "settings.txt", questions=1))
    data = exported(evaluator, tmp_path)

    names = ["Moon Base Clinic", "Orbital Greenhouse", "Deep-Sea Research Lab", "Mountain Hut"]
    (choice,) = requests_of(evaluator, "EnvironmentChoice")
    assert settings_listed(prompt_text(choice)) == names  # the user's list, and nothing of the packaged one
    assert data["personas"][0]["environments"] == ["Deep-Sea Research Lab", "Mountain Hut"]
    assert data["run"]["config"]["catalog"].startswith("custom:")
    # The questions are set in the chosen settings, as the catalog describes them.
    (writing,) = requests_of(evaluator, "Questions")
    assert "Deep-Sea Research Lab: a station on the ocean floor, hours from the surface" in prompt_text(writing)


def test_a_rate_limited_run_completes_at_that_rate(evaluator, tmp_path):
    personagym(evaluator, tmp_path, *run_args("--rpm", "600", "--tpm", "1000000", questions=5))
    data = exported(evaluator, tmp_path)

    assert data["run"]["status"] == "done" and data["failures"]["total"] == 0
    assert data["scores"]["questions_scored"] == 5
    assert data["usage"]["by_role"]["agent"]["calls"] == 5
    # 600 a minute is one every 0.1 s: the agent's five answers, asked for at once, arrive over 0.4 s
    # (unlimited, they arrive within milliseconds). The margin absorbs a loaded machine's delays.
    agent = sorted(when for model, when in evaluator.arrivals if model == "agent-x")
    assert len(agent) == 5 and agent[-1] - agent[0] >= 0.25


# USD per million (input, output) tokens, different for every model of the run, none of them built in.
PRICES = {"openai:agent-x": (1000.0, 3000.0), "openai:gen": (200.0, 400.0), "openai:ex": (50.0, 70.0),
          "openai:judge-a": (7.0, 11.0)}


def test_costs_follow_the_users_price_file(evaluator, tmp_path):
    table = "".join(f'["{model}"]\ninput = {i}\noutput = {o}\n\n' for model, (i, o) in PRICES.items())
    (tmp_path / "prices.toml").write_text(table)
    args = run_args("--prices", "prices.toml", judges="openai:judge-a", questions=2)
    result = personagym(evaluator, tmp_path, *args)
    data = exported(evaluator, tmp_path)

    by_model = data["usage"]["by_model"]
    assert set(by_model) == set(PRICES)
    expected = {
        model: (row["prompt_tokens"] * PRICES[model][0] + row["completion_tokens"] * PRICES[model][1]) / 1e6
        for model, row in by_model.items()
    }
    total = sum(expected.values())
    assert f"cost ${total:.4f}" in result.stdout
    # The export, read later without the flag, must show the bill the run showed.
    assert {model: row["cost"] for model, row in by_model.items()} == pytest.approx(expected)
    assert data["usage"]["total"]["cost"] == pytest.approx(total)
