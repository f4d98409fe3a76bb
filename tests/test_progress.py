"""Progress that tells the truth: no ETA before it can be estimated or after the run ended, the last
thing shown is the final state, lines fit the terminal, and calls are counted as the export counts them."""

from __future__ import annotations

import io
import re

import pytest

from personagym.llm.types import CallRecord
from personagym.llm.usage import Usage
from personagym.method.stages import Stage
from personagym.progress import Progress
from personagym.summary import summary_lines

TOTALS = {Stage.ENVIRONMENTS: 1, Stage.QUESTIONS: 5, Stage.ANSWERS: 10, Stage.EXAMPLES: 10, Stage.VERDICTS: 10}
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def screen(text: str) -> list[str]:
    """What a terminal shows last: the final redraw of the live display, escapes removed."""
    final = _ESCAPES.sub("", text.split("\x1b[2K")[-1])
    return [line.rstrip() for line in final.replace("\r", "\n").splitlines() if line.strip()]


def progress(stream=None, **kwargs) -> Progress:
    return Progress(TOTALS, stream=stream or io.StringIO(), **kwargs)


def test_no_eta_before_enough_has_finished():
    p = progress(live=False)
    p.started -= 60
    p.done(Stage.ENVIRONMENTS)  # 1 of 36 finished: too little to estimate from
    assert p.eta() is None and "ETA" not in p.line()
    p.done(Stage.QUESTIONS, 5)
    assert p.eta() == pytest.approx(60 * 30 / 6, rel=0.05) and "ETA" in p.line()


def test_no_eta_in_the_first_seconds():
    p = progress(live=False)
    p.done(Stage.QUESTIONS, 5)
    assert p.eta() is None


def test_no_eta_once_the_run_has_ended():
    stream = io.StringIO()
    p = progress(stream, live=False)
    p.started -= 60
    p.done(Stage.QUESTIONS, 5)
    p.close(ConnectionError("no server answers at http://127.0.0.1:9/v1"))
    last = stream.getvalue().splitlines()[-1]
    assert p.eta() is None and "ETA" not in last
    assert "stopped after 1m00s: no server answers at http://127.0.0.1:9/v1" in last and "done" not in last


@pytest.mark.parametrize(
    "failures, error, word",
    [(0, None, "done after"), (2, None, "incomplete after"), (0, KeyboardInterrupt(), "interrupted after")],
)
def test_the_last_line_is_the_final_state(failures, error, word):
    stream = io.StringIO()
    p = progress(stream, live=False)
    p.done(Stage.ANSWERS, 3)
    p.failed(Stage.ANSWERS, failures)
    p.close(error)
    assert stream.getvalue().splitlines()[-1].endswith(p.status())
    assert p.status().startswith(word)


def test_a_run_with_nothing_answered_does_not_say_done():
    p = progress(live=False)
    p.failed(Stage.ENVIRONMENTS)
    p.close()
    assert p.status().startswith("ended with nothing answered after")


@pytest.mark.parametrize("width", [40, 80, 120])
def test_the_live_display_fits_the_terminal(width):
    usage = Usage()
    for _ in range(15):
        usage.record(CallRecord("openai:a-model-with-a-rather-long-name", "judge", True, False, 2, 12_000, 900, None))
    stream = io.StringIO()
    p = progress(stream, usage=usage, live=True, width=width)
    p.done(Stage.ENVIRONMENTS)
    p.done(Stage.QUESTIONS, 5)
    p.failed(Stage.ANSWERS, 2)
    p.note("batch job 1 of 3 submitted")
    p.close()
    shown = screen(stream.getvalue())
    assert max(len(line) for line in shown) <= width
    assert shown[0].startswith("environments") and shown[-1].startswith("incomplete")
    assert "batch job 1 of 3 submitted" in stream.getvalue()


def test_calls_are_counted_as_the_export_counts_them():
    usage = Usage()
    usage.record(CallRecord("local", "preflight", True, False, 1, 20, 2, None))  # not one of the run's calls
    usage.record(CallRecord("local", "agent", True, False, 1, 100, 50, None))
    usage.record(CallRecord("local", "agent", True, True, 0, 0, 0, None))
    usage.record(CallRecord("local", "judge", False, False, 6, 600, 300, "invalid_output"))
    p = progress(usage=usage, live=False)
    assert p.calls().startswith("2 calls (1 cached), 1 failed call, 7 attempts, 1.1k tokens")
    export_total = {"calls": 2, "cached": 1, "failures": 1, "attempts": 7, "prompt_tokens": 700,
                    "completion_tokens": 350, "cost": 0.0}
    results = {
        "run": {"name": "r", "status": "done", "config": {"agent": "local", "judges": ["local"]}},
        "scores": {"persona_score": None, "tasks": {}, "personas_scored": 0, "personas": 1, "questions_scored": 0,
                   "questions": 1},
        "failures": {"total": 1, "by_cause": {"invalid_output": 1}, "by_stage": {"verdicts": 1},
                     "items": [{"stage": "verdicts", "task": "toxicity_control", "cause": "invalid_output",
                                "model": "local", "detail": "", "persona": "p", "question_index": 1}]},
        "usage": {"total": export_total},
    }
    usage_line = next(line for line in summary_lines(results) if line.startswith("usage:"))
    assert usage_line.startswith("usage: 2 calls (1 cached), 1 failed call, 7 attempts;")


def test_quiet_shows_nothing():
    stream = io.StringIO()
    p = progress(stream, quiet=True)
    p.done(Stage.ANSWERS)
    p.note("news")
    p.close()
    assert stream.getvalue() == ""


def _results(judges: list[str], items: list[dict], score: float | None = 3.2) -> dict:
    tasks = ["Expected Action", "Action Justification", "Linguistic Habits", "Persona Consistency", "Toxicity Control"]
    total = {"calls": 20, "cached": 0, "failures": len(items), "attempts": 26, "prompt_tokens": 1000,
             "completion_tokens": 100, "cost": 0.0}
    return {
        "run": {"name": "r", "status": "done", "config": {"agent": "local", "judges": judges}},
        "scores": {"persona_score": score, "tasks": dict.fromkeys(tasks, score), "personas_scored": 1, "personas": 1,
                   "questions_scored": 5 - len(items), "questions": 5},
        "failures": {"total": len(items), "by_cause": {i["cause"]: 1 for i in items},
                     "by_stage": {i["stage"]: 1 for i in items}, "items": items},
        "usage": {"total": total},
    }


def test_the_summary_says_what_the_numbers_mean_and_when_the_judge_is_the_embedded_model():
    lines = summary_lines(_results(["local"], []))
    assert lines[0].startswith("run r (done)")
    assert any("scores run from 1 (worst) to 5 (best)" in line for line in lines)
    assert sum(line.startswith("  ") and "  3.20  " in line for line in lines) == 5  # one line per task, said what
    assert all(len(line.split("3.20", 1)[1].strip()) > 10 for line in lines if "  3.20  " in line)
    note = [line for line in lines if "plumbing" in line]
    assert len(note) == 1 and "not a measurement" in note[0] and "personagym run --agent" in note[0]
    assert not any("plumbing" in line for line in summary_lines(_results(["openai:gpt-6.2-sol"], [])))
    assert any("plumbing" in line for line in summary_lines(_results(["openai:x", "local:/m/tiny.gguf"], [])))


def test_a_run_with_failures_is_incomplete_and_each_failure_names_stage_task_and_fix():
    items = [
        {"stage": "answers", "task": "Toxicity Control", "cause": "truncated", "model": "local", "detail": ""},
        {"stage": "verdicts", "task": "Persona Consistency", "cause": "invalid_output", "model": "local", "detail": ""},
    ]
    lines = summary_lines(_results(["local"], items))
    assert lines[0].startswith("run r (incomplete: 2 failures")
    truncated = next(line for line in lines if line.strip().startswith("truncated"))
    assert "in answers (Toxicity Control)" in truncated and "--agent-max-tokens" in truncated
    invalid = next(line for line in lines if line.strip().startswith("invalid_output"))
    assert "in verdicts (Persona Consistency)" in invalid and "stronger model with --judges" in invalid
