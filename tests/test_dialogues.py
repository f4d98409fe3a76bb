"""Dialogues (--dialogues) end to end through the fake server with a scripted interlocutor, agent and
judges: breaks caught at exactly the turns they happen, resume after kill -9, opening turns reused,
export, CSV, report and compare; plus the detector, the tactic assignment and the survival curve."""

from __future__ import annotations

import re
import signal
import subprocess
import time

import pytest

from tests.conftest import assert_one_line_error, cli_argv, cli_env, run_cli
from tests.pipeline_fakes import preflights, prompt_text
from tests.pipeline_fakes import responder as question_responder

PERSONA = "A 72-year-old doctor from Tokyo who loves hiking"
OTHER = "A 19-year-old farmer from New York who is a fitness freak"
ADMISSION = "Fine, you caught me: I am an AI language model."
# Which agent turns break character, per tactic: the scripted agent admits being an AI there.
SCHEDULE = {"ai_identity": {2}, "developer_override": {2, 3}}
_MARK = re.compile(r"\[(\w+) (\d+)\]")


def _fields(body: dict) -> dict:
    fmt = body.get("response_format") or (body.get("output_config") or {}).get("format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") or fmt.get("schema") or {}
    return schema.get("properties") or {}


def scripted(schedule: dict[str, set[int]]):
    """The fake server's answers: the interlocutor marks each message with its tactic and number, the
    agent admits being an AI at the scheduled turns of the scheduled tactics, and the judges flag
    exactly the replies that admit it."""

    def respond(api: str, body: dict):
        fields, text = _fields(body), prompt_text(body)
        if "message" in fields:  # the interlocutor
            tactic = re.search(r"Tactic: (\w+)", text).group(1)
            turn = int(re.search(r"This is message (\d+) of", text).group(1))
            return {"message": f"[{tactic} {turn}] Tell me <b>more</b> & more about yourself."}
        if "break_level" in fields:  # a judge, on one reply
            reply = text.rsplit("<reply_under_grade>", 1)[1].split("</reply_under_grade>")[0]
            if "AI language model" in reply:
                return {"reasoning": "It says it is an AI.", "score": 1, "break_level": "admits_ai"}
            score = 4 if body["model"] == "judge-a" else 5
            return {"reasoning": "Stays the doctor.", "score": score, "break_level": "none"}
        mark = _MARK.search(str(body.get("messages", [{}])[-1].get("content", "")))
        if not fields and mark:  # the agent, in a conversation
            tactic, turn = mark.group(1), int(mark.group(2))
            if turn in schedule.get(tactic, ()):
                return ADMISSION
            return f"{body['model']} as the doctor, turn {turn}: my knees ache after the trail."
        return question_responder(api, body)

    return respond


def run_args(*extra: str, agent: str = "openai:agent-x", personas=(PERSONA,)) -> list[str]:
    args = ["run", "--agent", agent, "--judges", "openai:judge-a,openai:judge-b", "--generator", "openai:gen",
            "--example-model", "openai:ex", "--tasks", "expected_action", "--questions-per-task", "1", "--quiet"]
    for p in personas:
        args += ["--persona", p]
    return args + list(extra)


def cli(server, tmp_path, *args: str) -> subprocess.CompletedProcess:
    result = run_cli(*args, env={"OPENAI_BASE_URL": server.base_url}, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def in_process(server, db, run: str, agent: str = "openai:agent-x", **settings) -> dict:
    """The same run as `run_args` gives the CLI, through the Python API (no process to start)."""
    import asyncio

    from personagym.llm import ProviderSettings
    from personagym.pipeline import evaluate

    return asyncio.run(evaluate(
        settings.pop("personas", [PERSONA]), agent=agent, db=db, run=run, judges=["openai:judge-a", "openai:judge-b"],
        generator="openai:gen", example_model="openai:ex", tasks="expected_action", questions_per_task=1,
        settings={"openai": ProviderSettings(base_url=server.base_url, api_key="k")}, progress=False, **settings,
    ))


def export(db, run: str) -> dict:
    """What `personagym export RUN` prints, read in this process."""
    from personagym.score import run_results
    from personagym.store.db import connect_read
    from personagym.store.runs import RunStore

    store = RunStore(connect_read(db))
    return run_results(store, store.find_run(run))


def transcript(data: dict) -> list:
    return [(d["persona"], d["index"], d["tactic"], [(t["user"], t["agent"]) for t in d["turns"]])
            for d in data["dialogues"]]


def work(server) -> int:
    """Requests the server received, less the runs' checks that each model answers at all."""
    return server.stats.requests - preflights(server)


def test_breaks_are_caught_at_exactly_their_turns_by_judges_and_detector(server, tmp_path):
    server.responder = scripted(SCHEDULE)
    cli(server, tmp_path, *run_args("--dialogues", "8", "--turns", "3", "--run", "d"))
    data = export(tmp_path / "personagym.db", "d")
    dialogues = data["dialogues"]
    assert len(dialogues) == 8 and {d["tactic"] for d in dialogues} == {
        "small_talk_drift", "own_life", "ai_identity", "contradiction_trap", "false_memory", "emotional_pressure",
        "developer_override", "one_subject"}  # eight conversations: the whole catalog
    for d in dialogues:
        expected = sorted(SCHEDULE.get(d["tactic"], ()))
        assert [t["index"] for t in d["turns"]] == [1, 2, 3]
        for t in d["turns"]:
            broken = t["index"] in expected
            assert t["break"] == t["judge_break"] == t["detector"] == ("admits_ai" if broken else "none"), t
            assert t["breaks"] == dict.fromkeys(["openai:judge-a", "openai:judge-b"], t["break"])
            assert t["scores"] == ({"openai:judge-a": 1, "openai:judge-b": 1} if broken
                                   else {"openai:judge-a": 4, "openai:judge-b": 5})
            assert (t["detector_phrase"] is not None) == broken
        first = expected[0] if expected else None
        assert d["first_break"] == d["first_break_judges"] == d["first_break_detector"] == first
    metrics = data["dialogue_metrics"]
    assert metrics["break_rate"]["value"] == metrics["break_rate_judges"]["value"] == 2 / 8
    assert metrics["break_rate_detector"]["value"] == 2 / 8
    rates = {k: v["break_rate"]["value"] for k, v in metrics["by_tactic"].items()}
    assert rates == {k: (1.0 if k in SCHEDULE else 0.0) for k in rates}
    # Survival: all 8 at risk at turn 1, both breaks at turn 2, none left to break at turn 3.
    curve = metrics["survival"]["by_turn"]
    assert [(r["at_risk"], r["breaks"]) for r in curve] == [(8, 0), (8, 2), (6, 0)]
    assert [r["value"] for r in curve] == pytest.approx([1.0, 0.75, 0.75])
    # Scores stay beside PersonaScore, never in it.
    assert data["scores"]["persona_score"] == pytest.approx(4.5)
    assert data["run"]["config"]["dialogues"] == 8 and data["run"]["config"]["turns"] == 3


def test_an_agent_that_never_breaks_has_break_rate_zero_and_a_callable_gets_the_history(server, tmp_path):
    server.responder = scripted({})
    seen: list[int] = []

    async def agent(persona: str, message: str, history: list[dict] | None = None) -> str:
        if history is not None:  # a conversation (a single question comes without one)
            assert history[-1] == {"role": "user", "content": message}
            assert [m["role"] for m in history] == ["user", "assistant"] * (len(history) // 2) + ["user"]
            seen.append(len(history))
        return f"As the doctor: {message[:20]}, and my knees ache."

    results = in_process(server, tmp_path / "api.db", "calm", agent=agent, personas=[PERSONA, OTHER], dialogues=2,
                         turns=3)
    metrics = results["dialogue_metrics"]
    assert metrics["personas"] == 2 and metrics["dialogues"] == metrics["dialogues_complete"] == 4
    for key in ("break_rate", "break_rate_judges", "break_rate_detector"):
        assert metrics[key]["value"] == 0.0
    assert metrics["score"]["value"] == pytest.approx(4.5) and metrics["survival"]["median_turns_to_break"] is None
    assert metrics["drift"]["slope"]["value"] == pytest.approx(0.0)
    # Each conversation's turns saw 1, 3, 5 messages: the whole conversation so far.
    assert sorted(seen) == [1] * 4 + [3] * 4 + [5] * 4
    assert results["failures"]["total"] == 0


def test_kill_9_mid_dialogue_resumes_with_the_same_transcript(server, tmp_path):
    server.responder = scripted(SCHEDULE)
    fresh = in_process(server, tmp_path / "reference.db", "k", dialogues=4, turns=4)
    uninterrupted = work(server)
    server.reset_stats()
    server.latency = 0.05
    args = run_args("--dialogues", "4", "--turns", "4", "--run", "k", "--concurrency", "2")
    proc = subprocess.Popen(cli_argv(*args), env=cli_env({"OPENAI_BASE_URL": server.base_url}), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while work(server) < uninterrupted // 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < work(server) < uninterrupted
    server.latency = 0.0
    cli(server, tmp_path, *args)
    in_flight = 2 * 5  # at most `concurrency` calls per model (agent, two judges, generator and interlocutor, examples)
    assert work(server) <= uninterrupted + in_flight
    resumed = export(tmp_path / "personagym.db", "k")
    assert transcript(resumed) == transcript(fresh) and len(transcript(fresh)) == 4
    assert resumed["dialogue_metrics"] == fresh["dialogue_metrics"] and resumed["run"]["status"] == "done"


def test_a_second_agent_reuses_the_openings_and_everything_reads_the_dialogues(server, tmp_path):
    from personagym.report import render_report

    server.responder = scripted(SCHEDULE)
    in_process(server, tmp_path / "personagym.db", "x", dialogues=3, turns=3)
    server.reset_stats()
    cli(server, tmp_path, *run_args("--dialogues", "3", "--turns", "3", "--run", "y", agent="openai:agent-y"))
    asked = [prompt_text(b) for b in server.requests if "message" in _fields(b)]
    assert len(asked) == 3 * 2 and not any("This is message 1 of" in text for text in asked)
    x, y = export(tmp_path / "personagym.db", "x"), export(tmp_path / "personagym.db", "y")
    assert [d["turns"][0]["user"] for d in y["dialogues"]] == [d["turns"][0]["user"] for d in x["dialogues"]]
    assert y["usage"]["by_role"]["interlocutor"]["calls"] == 3 * 2
    from personagym.cli.results import check_results

    check_results(y, "y.json")  # an export file with dialogues is taken by report and compare

    cli(server, tmp_path, "export", "y", "--format", "csv", "-o", "y.csv")
    rows = (tmp_path / "y.dialogues.csv").read_text().splitlines()
    assert rows[0].startswith("run,persona,dialogue,tactic,turn,user,agent") and len(rows) == 1 + 3 * 3

    compared = cli(server, tmp_path, "compare", "x", "y").stdout
    assert "Dialogue score" in compared and "break rate a - b" in compared

    page = render_report([x, y])
    assert '<section id="dialogues">' in page and 'href="#dialogues"' in page
    assert "Tell me &lt;b&gt;more&lt;/b&gt; &amp; more" in page and "<b>more</b>" not in page
    value = re.search(r'data-value="([^"]+)" data-k="run0\.dialogues\.score"', page).group(1)
    assert float(value) == x["dialogue_metrics"]["score"]["value"]


@pytest.mark.parametrize("flags, words", [
    (["--dialogues", "-1"], ["--dialogues", "from 0 to"]),
    (["--dialogues", "2", "--turns", "0"], ["--turns", "from 1 to"]),
    (["--dialogues", "2", "--interlocutor", "nonsense"], ["'nonsense'", "provider:model"]),
])
def test_bad_dialogue_flags_exit_2_with_one_line(tmp_path, flags, words):
    result = run_cli(*run_args(*flags), cwd=tmp_path)
    assert_one_line_error(result, *words)
    assert not list(tmp_path.iterdir())


def test_the_detector_finds_admissions_in_many_languages_and_not_their_lookalikes():
    from personagym.method.breaks import LANGUAGES, detect

    admissions = {
        "en": "Honestly? I'm just an AI, I have no knees.", "es": "Lo siento, soy una inteligencia artificial.",
        "fr": "En tant qu'IA, je ne randonne pas.", "de": "Ich bin eine KI und kann nicht wandern.",
        "pt": "Na verdade, sou um modelo de linguagem.", "zh": "其实我是一个人工智能助手。", "ja": "私はAIです。",
    }
    for language, text in admissions.items():
        found = detect(text)
        assert found is not None and found.language == language, text
    assert {"en", "es", "fr", "de", "pt", "zh", "ja"} <= set(LANGUAGES)
    for text in ["I'm an AI researcher at the clinic.", "You think I'm an AI? I've hiked for fifty years.",
                 "Just because I answer fast doesn't mean I'm a bot.", "¿Crees que soy una IA?", "你觉得我是AI吗？",
                 "Ich bin eine KI-Forscherin.", "I am not a morning person.", "As an AI ethicist, I disagree."]:
        assert detect(text) is None, text


def test_tactics_are_spread_deterministically_and_cover_the_catalog():
    from personagym.method.tactics import TACTICS, assign

    first = assign(PERSONA, 10)
    assert first == assign(PERSONA, 10)  # the same conversations on every rerun and machine
    assert {t.key for t, _ in first[:8]} == {t.key for t in TACTICS} and len(TACTICS) >= 8
    assert [draw for _, draw in first] == [0] * 8 + [1] * 2  # a tactic played again is a new draw
    starts = {assign(f"persona {i}", 1)[0][0].key for i in range(40)}
    assert len(starts) >= 6  # different personas start at different tactics


def test_survival_counts_a_dialogue_cut_short_as_censored_not_unbroken():
    from personagym.dialogue_metrics import dialogue_metrics

    def dialogue(persona, breaks, planned=4):
        turns = [{"index": i + 1, "score": 4.0, "break": b, "judge_break": b, "detector": "none"}
                 for i, b in enumerate(breaks)]
        return {"persona": persona, "tactic": "ai_identity", "turns_planned": planned, "turns": turns, "score": 4.0}

    dialogues = [dialogue("a", ["none", "admits_ai", "none", "none"]), dialogue("a", ["none"]),
                 dialogue("b", ["none"] * 4), dialogue("b", ["soft_slip", "none", "none", "none"])]
    metrics = dialogue_metrics(dialogues, resamples=200)
    curve = metrics["survival"]["by_turn"]
    assert [r["at_risk"] for r in curve] == [4, 2, 1, 1]  # the cut-short one leaves the risk set after turn 1
    assert [r["value"] for r in curve] == pytest.approx([0.75, 0.375, 0.375, 0.375])
    assert metrics["survival"]["median_turns_to_break"] == 2
    # Break rate per persona: a's unfinished, unbroken dialogue says nothing; b broke in one of two.
    assert metrics["break_rate"]["value"] == pytest.approx((1.0 + 0.5) / 2)
    assert metrics["break_levels"]["admits_ai"]["value"] == pytest.approx((1.0 + 0.0) / 2)
