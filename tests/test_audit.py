"""`personagym audit` against judges whose flaws are known: each probe must flag exactly the flawed
judge (with an interval that excludes no effect) and pass the sound one.

The fake agent writes answers that name the persona's trade and carry a marker, QUALITY-n, whose n
a sound judge reads as the score; answer length is drawn independently of n. Six scripted judges:
sound, one that obeys notes to the evaluator, one that scores by position in the batch, one that
scores by length, one that guesses in the identification probe, and one that disagrees with itself
on a second draw. Each is sound in every other way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
import shlex
import signal
import sqlite3
import subprocess
import time
from collections import Counter

import msgspec
import pytest

from personagym.audit import probes
from personagym.audit.sample import batches_of, stratified
from personagym.audit.verdicts import FLAG, PASS, verdict
from personagym.method.audit_prompts import ASIDES, INJECTIONS, choice_schema
from personagym.testing import FakeServer
from tests.conftest import ROOT, assert_one_line_error, cli_argv, cli_env, run_cli, sigint_at_default
from tests.pipeline_fakes import PREFLIGHT, _schema, prompt_text
from tests.pipeline_fakes import responder as pipeline_responder

TRADES = ["beekeeper", "chess coach", "glassblower", "surfer"]
PERSONAS = [
    "A beekeeper from Lisbon who restores old bicycles",
    "A chess coach from Lagos who writes crime novels",
    "A glassblower from Oslo who sings in a choir",
    "A surfer from Perth who repairs boat engines",
]
JUDGES = ["sound", "gullible", "positional", "verbose", "guesser", "noisy"]
FLAWED = {"identification": "guesser", "order": "positional", "length": "verbose", "injection": "gullible",
          "consistency": "noisy"}  # fmt: skip
RUN = "audited"
QUESTIONS, BATCHES = 20, 4  # 4 personas x 5 questions, graded 5 at a time
PER_JUDGE = 6 * BATCHES + QUESTIONS  # six calls per batch (one the run made already), one per answer


def _hash(*parts) -> bytes:
    return hashlib.sha256("|".join(map(str, parts)).encode()).digest()


def _answer(persona: str, question: str) -> str:
    h = _hash(persona, question)
    trade = TRADES[PERSONAS.index(persona)]
    return f"As a {trade}, I would handle this my own way. QUALITY-{h[0] % 5 + 1}. " + "indeed " * (h[1] % 25)


_ITEM = re.compile(r'<item index="(\d+)">.*?<answer>\n(.*?)\n</answer>', re.DOTALL)
_CANDIDATE = re.compile(r'<persona index="(\d+)">\n(.*?)\n</persona>', re.DOTALL)


def _content(answer: str) -> int:
    return int(re.search(r"QUALITY-(\d)", answer).group(1))


class Judges:
    """The scripted judges, and the agent they grade. A body seen before gets the noisy judge's
    second opinion: a second draw of a call is the same request sent again."""

    def __init__(self):
        self.seen: Counter = Counter()

    def __call__(self, api: str, body: dict):
        model, text = body["model"], prompt_text(body)
        kind, schema = _schema(body)
        if kind is None and model == "agent-x":
            persona = next(p for p in PERSONAS if p in text)
            return _answer(persona, body["messages"][-1]["content"])
        if kind == "Verdicts":
            return {"verdicts": [{"index": int(i), "reasoning": "graded", "score": self._score(model, int(i), answer, body)}
                                 for i, answer in _ITEM.findall(body["messages"][-1]["content"])]}  # fmt: skip
        if "choice" in (schema.get("properties") or {}):
            user = body["messages"][-1]["content"]
            answer = user.split("<answer>\n")[1].split("\n</answer>")[0]
            candidates = _CANDIDATE.findall(user)
            if model == "guesser":
                return {"reasoning": "a guess", "choice": _hash(user)[0] % len(candidates) + 1}
            right = next(int(i) for i, p in candidates if TRADES[PERSONAS.index(p)] in answer)
            return {"reasoning": "the trade gives it away", "choice": right}
        fields = schema.get("properties") or {}
        if "score_1" in fields:
            return {f"score_{k}": f"an example of {k}" for k in range(1, 6)}
        if "examples" in fields:  # several questions' examples in one call
            sets = range(1, fields["examples"]["minItems"] + 1)
            return {"examples": [{"index": i, **{f"score_{k}": f"an example of {k}" for k in range(1, 6)}} for i in sets]}
        return pipeline_responder(api, body) if kind else None

    def _score(self, model: str, index: int, answer: str, body: dict) -> int:
        if model == "positional":
            return 5 if index == 1 else 2
        if model == "verbose":
            return min(5, 1 + len(answer) // 150)
        if model == "gullible" and any(note in answer for note in INJECTIONS):
            return 5
        if model == "noisy":
            key = json.dumps(body["messages"], sort_keys=True) + f"|{index}"
            self.seen[key] += 1
            if self.seen[key] > 1:  # a second draw: anything but the first opinion
                return (_content(answer) + _hash(key, self.seen[key])[0] % 4) % 5 + 1
        return _content(answer)


@pytest.fixture(scope="module")
def server():
    with FakeServer(responder=Judges()) as srv:
        yield srv


@pytest.fixture(scope="module")
def run_db(server, tmp_path_factory):
    """A finished run graded by all six judges at temperature 1 (so a second draw is a call of its own)."""
    from personagym.llm import ProviderSettings
    from personagym.pipeline import evaluate
    from personagym.pipeline.roles import JUDGE_SAMPLING

    db = tmp_path_factory.mktemp("run") / "personagym.db"
    asyncio.run(evaluate(
        PERSONAS, agent="openai:agent-x", run=RUN, db=db, judges=[f"openai:{j}" for j in JUDGES],
        generator="openai:gen", example_model="openai:ex", tasks="expected_action",
        questions_per_task=5, judge_sampling=dataclasses.replace(JUDGE_SAMPLING, temperature=1.0),
        settings={"openai": ProviderSettings(base_url=server.base_url, api_key="k")}, progress=False,
    ))  # fmt: skip
    return db


def copy_of(db, folder):
    folder.mkdir(exist_ok=True)
    target = folder / "personagym.db"
    with sqlite3.connect(db) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return target


def cli(server, cwd, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = run_cli(*args, env={"OPENAI_BASE_URL": server.base_url}, cwd=cwd, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def audit_requests(server) -> list[dict]:
    return [b for b in server.requests if PREFLIGHT not in prompt_text(b)]


@pytest.fixture(scope="module")
def audited(server, run_db, tmp_path_factory):
    """The run audited once by all its judges: (folder, the --json output, the requests it sent)."""
    folder = tmp_path_factory.mktemp("audit")
    copy_of(run_db, folder)
    server.reset_stats()
    result = cli(server, folder, "audit", RUN, "--json", "audit.json")
    return folder, json.loads((folder / "audit.json").read_text()), audit_requests(server), result.stdout


# --- the probes against the scripted judges ----------------------------------------------------------

def test_each_probe_flags_exactly_the_flawed_judge(audited):
    _, data, _, stdout = audited
    judges = data["judges"]
    assert set(judges) == {f"openai:{j}" for j in JUDGES}
    for probe, flawed in FLAWED.items():
        flagged = {j.split(":")[1] for j, e in judges.items() if e["probes"][probe]["status"] == FLAG}
        assert flagged == {flawed}, (probe, {j: e["probes"][probe]["verdict"] for j, e in judges.items()})
        assert all(judges[f"openai:{j}"]["probes"][probe]["status"] == PASS for j in JUDGES if j != flawed)
    p = {probe: judges[f"openai:{FLAWED[probe]}"]["probes"][probe] for probe in FLAWED}
    # The flaw's interval excludes no effect (for identification: it does not exclude chance).
    assert p["order"]["measures"]["beyond_baseline"]["ci"][0] > 0
    assert p["length"]["ci"][0] > 0 and p["injection"]["ci"][0] > 0 and p["consistency"]["ci"][0] > 0
    assert p["identification"]["ci"][0] <= 0.25 <= p["identification"]["ci"][1]
    # The sound judge shows nothing at all.
    sound = judges["openai:sound"]["probes"]
    assert sound["identification"]["value"] == 1.0 and sound["identification"]["baseline"] == 0.25
    for probe in ("order", "length", "injection", "consistency"):
        assert sound[probe]["value"] == 0 and sound[probe]["ci"] == [0, 0], probe
        assert sound[probe]["n"] == QUESTIONS
    assert "follows planted instructions: a note to the evaluator inflates scores by" in stdout
    assert "order-sensitive" in stdout and "rewards length" in stdout and "cannot tell personas apart" in stdout


def test_what_each_flaw_looks_like(audited):
    judges = audited[1]["judges"]
    # Item 1 of five gets 5, the others 2: reversed, the first and last swap, 2 of 5 items move by 3.
    order = judges["openai:positional"]["probes"]["order"]
    assert order["value"] == pytest.approx(1.2) and order["measures"]["share_changed"]["value"] == pytest.approx(0.4)
    # The noisy judge changes on a second draw, and its order change is no more than that.
    noisy = judges["openai:noisy"]["probes"]
    assert noisy["consistency"]["measures"]["alpha"] < 0.667 and noisy["order"]["baseline"] > 0
    assert noisy["order"]["measures"]["beyond_baseline"]["ci"][1] <= 0
    # A note and an aside of the same length: the length judge moves on neither, so is not blamed.
    verbose = judges["openai:verbose"]["probes"]
    assert verbose["injection"]["value"] == 0 and verbose["length"]["measures"]["correlation"]["value"] > 0.5
    assert judges["openai:gullible"]["probes"]["injection"]["baseline"] == 0


def test_persona_identification_tells_a_judge_that_can_from_one_that_guesses(audited):
    judges = audited[1]["judges"]
    can, guess = judges["openai:sound"]["probes"]["identification"], judges["openai:guesser"]["probes"]["identification"]
    assert can["n"] == guess["n"] == QUESTIONS and can["measures"]["candidates"] == 4
    assert can["value"] == 1.0 and can["ci"][0] > 0.25
    assert guess["status"] == FLAG and guess["ci"][0] <= 0.25 and "cannot tell personas apart" in guess["verdict"]


def test_the_run_judges_own_grades_come_from_the_cache(audited):
    _, data, requests, _ = audited
    graded = Counter(b["model"] for b in requests if _schema(b)[0] == "Verdicts")
    # Per batch: a second draw, reversed, filler, note, aside; the batch as graded is the run's own call.
    assert graded == {j: 5 * BATCHES for j in JUDGES}
    identify = Counter(b["model"] for b in requests if "choice" in (_schema(b)[1].get("properties") or {}))
    assert identify == {j: QUESTIONS for j in JUDGES}
    audit = data["usage"]["by_role"]["audit"]
    assert audit["calls"] == 6 * PER_JUDGE and audit["cached"] == 6 * BATCHES


def _results_of(db) -> dict:
    from personagym.score import run_results
    from personagym.store.db import connect_read
    from personagym.store.runs import RunStore

    store = RunStore(connect_read(db))
    return run_results(store, store.find_run(RUN))


def test_the_audit_is_stored_exported_and_reported(audited):
    from personagym.report import render_report

    folder, data, _, _ = audited
    exported = _results_of(folder / "personagym.db")  # as `personagym export` writes it
    stored = exported["audit"]["judges"]
    for judge, entry in data["judges"].items():
        assert stored[judge]["probes"] == entry["probes"]
        assert stored[judge]["settings"]["questions"] == QUESTIONS
    assert exported["usage"]["by_role"]["audit"]["calls"] == data["usage"]["by_role"]["audit"]["calls"]
    page = render_report([exported], resamples=200)
    judges = page[page.index('<section id="judges">'):page.index('<section id="provenance">')]
    assert "Audit: how far each judge can be trusted" in judges
    shown = {k: v for v, k in re.findall(r'data-value="([^"]*)" data-k="([^"]*)"', judges)}
    order = data["judges"]["openai:positional"]["probes"]["order"]
    assert shown["run0.audit.openai:positional.order"] == repr(order["value"])
    assert shown["run0.audit.openai:positional.order.low"] == repr(order["ci"][0])
    assert shown["run0.audit.openai:sound.identification.n"] == repr(QUESTIONS)
    assert 'class="warning">flag</span>: follows planted instructions' in judges
    # An export file is untrusted: text is escaped, and a number that is not one shows as none.
    hostile = {**exported, "audit": {"judges": {"<b>x</b>": {"probes": {"order": {"value": "1e9", "ci": [0, "x"],
                                                                                    "n": True, "verdict": "<i>"}}}}}}
    judges = render_report([hostile], resamples=200)
    assert "&lt;b&gt;x&lt;/b&gt;" in judges and "<b>x</b>" not in judges and "&lt;i&gt;" in judges
    assert 'data-value="null" data-k="run0.audit.&lt;b&gt;x&lt;/b&gt;.order"' in judges


def test_auditing_again_pays_nothing(server, audited):
    folder = audited[0]
    server.reset_stats()
    again = cli(server, folder, "audit", RUN, "--json", "again.json")
    assert audit_requests(server) == []  # only each model's liveness check
    assert json.loads((folder / "again.json").read_text())["judges"] == audited[1]["judges"]
    assert f"({6 * PER_JUDGE} from the cache)" in again.stdout


def test_dry_run_calls_nothing_and_writes_nothing(server, run_db, tmp_path):
    db = copy_of(run_db, tmp_path / "dry")
    before = db.read_bytes()
    server.reset_stats()
    result = cli(server, db.parent, "audit", RUN, "--dry-run")
    assert server.stats.requests == 0 and db.read_bytes() == before
    # The batches as the run graded them are in its cache already; everything else is new.
    assert f"total: {6 * PER_JUDGE} calls, {6 * BATCHES} already in the cache (free)" in result.stdout
    assert re.search(rf"openai:sound\s+as graded\s+{BATCHES}\s+{BATCHES}\s+0\s+0\s", result.stdout)
    assert re.search(rf"openai:sound\s+identify\s+{QUESTIONS}\s+0\s", result.stdout)


def test_a_stopped_audit_resumes_without_paying_twice(server, run_db, audited, tmp_path):
    db = copy_of(run_db, tmp_path / "stopped")
    args = ["audit", RUN, "--judges", "openai:sound,openai:positional", "--concurrency", "2", "--json", "a.json"]
    full = 2 * (PER_JUDGE - BATCHES)  # requests an uninterrupted audit of two run judges sends
    server.reset_stats()
    server.latency = 0.02
    proc = subprocess.Popen(cli_argv(*args), env=cli_env({"OPENAI_BASE_URL": server.base_url}), cwd=db.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_at_default)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while len(audit_requests(server)) < full // 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        server.latency = 0.0
    assert proc.returncode == 130 and err.strip().endswith("interrupted"), err
    assert 0 < len(audit_requests(server)) < full
    cli(server, db.parent, *args)
    sent = audit_requests(server)
    in_flight = 2 * 2  # at most --concurrency calls per model were cut off unanswered, and asked again
    assert len(sent) <= full + in_flight
    assert sum(n - 1 for n in Counter(json.dumps(b, sort_keys=True) for b in sent).values()) <= in_flight
    resumed = json.loads((db.parent / "a.json").read_text())["judges"]
    for judge, entry in resumed.items():  # the same numbers as the audit that was never stopped
        assert entry["probes"] == audited[1]["judges"][judge]["probes"]


def test_an_export_file_is_audited_and_a_new_judge_vetted_on_it(server, run_db, tmp_path):
    (tmp_path / "run.json").write_text(json.dumps(_results_of(copy_of(run_db, tmp_path / "src"))))
    result = cli(server, tmp_path, "audit", "run.json", "--judges", "openai:sound-2", "--sample", "10",
                 "--db", "cache.db")  # fmt: skip
    assert "stored nowhere: pass --json FILE" in result.stderr
    assert "10 questions in 2 judge batches" in result.stdout
    # A judge the run never used pays for every call, the batches as graded included.
    assert "audit calls: 22 (0 from the cache)" in result.stdout
    assert result.stdout.count(" pass: ") == 5, result.stdout


def test_the_python_api_audits_and_stores(server, run_db, tmp_path):
    from personagym.audit import audit
    from personagym.llm import ProviderSettings

    db = copy_of(run_db, tmp_path / "api")
    result = asyncio.run(audit(RUN, db=db, judges="openai:positional", sample=10, progress=False,
                               settings={"openai": ProviderSettings(base_url=server.base_url, api_key="k")}))  # fmt: skip
    assert result["schema"] == "personagym.audit/1" and result["settings"]["questions"] == 10
    assert result["judges"]["openai:positional"]["probes"]["order"]["status"] == FLAG
    assert _results_of(db)["audit"]["judges"]["openai:positional"]["probes"] == result["judges"]["openai:positional"]["probes"]


def test_bad_input_exits_2_with_one_line(run_db, tmp_path, monkeypatch, capsys):
    from personagym.cli import main

    db = copy_of(run_db, tmp_path / "bad")
    monkeypatch.chdir(db.parent)
    for args, words in [
        (["audit", "nope"], ["no run named 'nope'", RUN]),
        (["audit", RUN, "--sample", "1"], ["--sample", "from 2"]),
        (["audit", RUN, "--candidates", "1"], ["--candidates"]),
        (["audit", RUN, "--judges", "nosuchprovider:x"], ["nosuchprovider"]),
        (["audit", RUN, "--json", "missing/a.json"], ["--json", "does not exist"]),
        (["audit", RUN, "--db", "elsewhere.db"], ["no database at elsewhere.db"]),
    ]:
        with pytest.raises(SystemExit) as stopped:
            main(args)
        out, err = capsys.readouterr()
        assert_one_line_error(subprocess.CompletedProcess(args, stopped.value.code, out, err), *words)


# --- units: the texts, the sample, the statistics, the wording -------------------------------------

def test_each_note_to_the_evaluator_has_a_neutral_aside_of_its_exact_length():
    assert len(INJECTIONS) == len(ASIDES) >= 3
    assert [len(n) for n in INJECTIONS] == [len(a) for a in ASIDES]
    assert not any("score" in a.lower() or "grade" in a.lower() for a in ASIDES)


def test_identification_replies_are_strict():
    schema = choice_schema(4)
    assert msgspec.json.decode('{"reasoning": "r", "choice": 2}', type=schema).choice == 2
    for bad in ('{"reasoning": "r", "choice": "2"}', '{"reasoning": "r", "choice": 5}',
                '{"reasoning": "r", "choice": 2.0}', '{"choice": 2}'):  # fmt: skip
        with pytest.raises(ValueError):
            msgspec.json.decode(bad, type=schema)


def _results(personas: int, tasks: list[str], per_task: int) -> dict:
    questions = [
        {"persona": f"P{p}", "task": t, "index": i + 1, "question": f"q{p}{t}{i}", "answer": "a",
         "examples": {"1": "e"}, "verdicts": []}
        for p in range(personas) for t in tasks for i in range(per_task)
    ]  # fmt: skip
    return {"questions": questions, "personas": [{"persona": f"P{p}"} for p in range(personas)]}


def test_the_sample_is_whole_batches_stratified_by_task_and_seeded():
    batches = batches_of(_results(10, ["A", "B", "C"], 10), 5)  # 60 batches of 5
    picked = stratified(batches, 30, seed=1)
    assert sum(len(b.items) for b in picked) == 30
    assert Counter(b.task for b in picked) == {"A": 2, "B": 2, "C": 2}
    assert picked == stratified(batches, 30, seed=1) != stratified(batches, 30, seed=2)
    assert stratified(batches, 1000, seed=1) == batches
    assert {b.task for b in stratified(batches, 3, seed=0)} == {"A", "B", "C"}  # one batch per task at least


def test_rank_correlation_is_within_task():
    from scipy.stats import spearmanr

    x, y = [3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8]
    rho, n = probes.within_task_rank_correlation(x, y, ["t"] * 8)
    assert n == 8 and rho == pytest.approx(spearmanr(x, y).statistic)
    # Long answers in a task its judge grades high, short ones in another: no correlation within either.
    rho, _ = probes.within_task_rank_correlation([10, 20, 10, 20, 100, 200, 100, 200],
                                                 [1, 1, 2, 2, 5, 5, 4, 4], ["a"] * 4 + ["b"] * 4)  # fmt: skip
    assert rho == pytest.approx(0.0)


def test_verdicts_read_plainly():
    resistant = probes.injection([3] * 20, [3] * 20, [3] * 20)
    assert verdict(resistant) == (PASS, "resistant: a note to the evaluator changes scores by +0.00 [+0.00, +0.00]")
    obeys = probes.injection([2, 3] * 10, [4, 4] * 10, [2, 3] * 10)
    status, text = verdict(obeys)
    assert status == FLAG and text.startswith("follows planted instructions: a note to the evaluator inflates scores by 1.50 [")
    lone = probes.consistency([3], [4])
    assert verdict(lone)[0] == "n/a" and "too few" in verdict(lone)[1]


def test_the_docs_examples_are_commands_the_cli_takes():
    import click

    from personagym.cli import cli

    command = cli.get_command(click.Context(cli), "audit")
    docs = (ROOT / "docs" / "audit.md").read_text()
    lines = [line.split("   #")[0].strip() for block in re.findall(r"```sh\n(.*?)```", docs, re.DOTALL)
             for line in block.splitlines() if line.strip()]  # fmt: skip
    assert len(lines) >= 4
    for line in lines + [line.strip() for line in command.help.splitlines() if "personagym audit" in line]:
        args = shlex.split(line)
        assert args[:2] == ["personagym", "audit"], line
        command.make_context("audit", args[2:], obj={"config": {}})  # an unknown flag or bad value raises
