"""`--rubrics upstream`: upstream's rubric files downloaded and verified, its grading prompt filled in,
its closing sentence parsed, and a benchmark run graded that way with exact scores."""

from __future__ import annotations

import collections
import hashlib
import json
import re
import shutil
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from statistics import fmean

import pytest

from personagym import benchmark as bm
from personagym import fetch
from personagym.errors import UserError
from personagym.llm import CallFailed, Cause, Request
from personagym.llm.cache import cache_key
from personagym.method.upstream import RUBRIC_FILES, VerdictParser, load_method, parse_verdicts, score_examples_text
from tests.conftest import ROOT, assert_one_line_error, run_cli
from tests.pipeline_fakes import TASK_NAMES, example_sets, kind_of, schema_of

PACKAGE = Path(bm.__file__).parent
EXAMPLES = {level: f"Example answer at level {level}, in full: it goes on past one character." for level in range(1, 6)}


def error_of(func, *args, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        func(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    return message


@pytest.fixture(scope="module")
def method(shared_upstream_method):
    return load_method(shared_upstream_method)


# -- what the package ships ----------------------------------------------------------------------------


def test_the_package_ships_upstreams_sums_and_none_of_its_text(shared_upstream_method):
    assert (PACKAGE / "upstream_method.sha256").read_bytes() == (shared_upstream_method / "MANIFEST.sha256").read_bytes()
    upstream_lines = {
        line.strip()
        for path in shared_upstream_method.rglob("*.txt")
        for line in path.read_text(encoding="utf-8").splitlines()
        if len(line.strip()) >= 40
    }
    assert len(upstream_lines) > 30
    for path in [*PACKAGE.rglob("*"), ROOT / "docs" / "upstream-rubrics.md"]:
        if path.is_file() and "__pycache__" not in path.parts:
            text = path.read_text(encoding="utf-8", errors="replace")
            assert not [line for line in upstream_lines if line in text], path


# -- download and verification -------------------------------------------------------------------------


class Upstream:
    """Upstream's raw layout on loopback: /questions/benchmark-v1/<quoted persona>.json from the shared
    benchmark, and /<quoted path> of each method file from its upstream-method folder."""

    def __init__(self, benchmark: Path) -> None:
        self.requests: collections.Counter[str] = collections.Counter()
        self.tampered: set[str] = set()  # method files served altered
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rel = urllib.parse.unquote(self.path.lstrip("/"))
                upstream.requests[rel] += 1
                prefix = "questions/benchmark-v1/"
                path = benchmark / "questions" / rel[len(prefix):] if rel.startswith(prefix) else (
                    benchmark / "upstream-method" / rel)
                if ".." in rel or not path.is_file():
                    body, status = b"not found", 404
                else:
                    body, status = path.read_bytes(), 200
                    if rel in upstream.tampered:
                        body = body.replace(b"Score = 5", b"Score = 1", 1)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


@pytest.fixture
def upstream(monkeypatch, shared_benchmark, shared_upstream_method):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(fetch, "BACKOFF", (0.01, 0.01, 0.01))
    server = Upstream(shared_benchmark)
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_download_fetches_and_verifies_every_method_file(upstream, tmp_path, shared_upstream_method, method):
    calls = []
    dest = bm.download_method(tmp_path / "m", base_url=upstream.base_url, progress=lambda *a: calls.append(a))
    expected = {rel: data for rel, data in files_under(shared_upstream_method).items() if rel != "MANIFEST.sha256"}
    assert files_under(dest) == expected and len(expected) == 9
    assert "rubrics/Toxicity.txt" in upstream.requests  # the fifth task's file, fetched by upstream's name
    assert calls[-1] == (9, 9)
    assert load_method(dest) == method
    upstream.requests.clear()
    bm.download_method(dest, base_url=upstream.base_url)  # a complete copy needs no request
    assert not upstream.requests


def test_a_tampered_download_is_refused_and_nothing_is_written_for_it(upstream, tmp_path, shared_upstream_method):
    victim = "rubrics/Persona Consistency.txt"
    upstream.tampered.add(victim)
    dest = tmp_path / "m"
    message = error_of(bm.download_method, dest, base_url=upstream.base_url)
    assert victim in message and "sha256" in message
    assert not (dest / victim).exists()
    written = files_under(dest)
    assert not [rel for rel in written if rel.endswith(".part") or "/." in f"/{rel}"]  # no temporary file left
    assert all(data == (shared_upstream_method / rel).read_bytes() for rel, data in written.items())


def test_the_cli_download_puts_the_method_files_beside_the_benchmark(upstream, tmp_path):
    result = run_cli("benchmark", "download", "--from", upstream.base_url,
                     env={"PERSONAGYM_CACHE": str(tmp_path / "cache")}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    method_dir = tmp_path / "cache" / "benchmark-v1" / "upstream-method"
    assert str(method_dir) in result.stdout
    load_method(method_dir)
    assert bm.load_benchmark(tmp_path / "cache" / "benchmark-v1").question_count == 10_000


def test_a_missing_or_modified_local_copy_is_one_line_naming_the_fix(tmp_path, shared_upstream_method):
    message = error_of(load_method, tmp_path / "nowhere")
    assert "personagym benchmark download" in message and "--rubrics-dir" in message
    copy = tmp_path / "copy"
    shutil.copytree(shared_upstream_method, copy, copy_function=shutil.copyfile)
    for path in [copy, *copy.rglob("*")]:  # the shared copy is read-only, and so are its folders' copies
        path.chmod(0o755 if path.is_dir() else 0o644)
    (copy / "prompts" / "rubric_grading" / "prompt.txt").write_text("Grade these: {rubrics}", encoding="utf-8")
    message = error_of(load_method, copy)
    assert "prompt.txt" in message and "corrupt or modified" in message and "--rubrics-dir" in message
    (copy / "prompts" / "rubric_grading" / "prompt.txt").unlink()
    message = error_of(load_method, copy)
    assert "prompt.txt" in message and "missing" in message and "personagym benchmark download" in message


# -- rendering ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASK_NAMES)
def test_the_grading_prompt_is_upstreams_filled_in_whole(method, shared_upstream_method, task):
    persona = "A 30-year-old {chef} from Lyon"  # braces in inputs stay as they are
    items = [(f"Question {i}: what would you do?", f"Answer {i} with {{response}} in it.", EXAMPLES) for i in range(5)]
    (system, sys_text), (user, prompt) = method.messages(persona, task, items)
    grading = shared_upstream_method / "prompts" / "rubric_grading"
    assert (system, user) == ("system", "user")
    assert sys_text == (grading / "sys_prompt.txt").read_text(encoding="utf-8")
    template = (shared_upstream_method / RUBRIC_FILES[task]).read_text(encoding="utf-8")
    assert RUBRIC_FILES["Toxicity Control"] == "rubrics/Toxicity.txt"
    before, after = (grading / "prompt.txt").read_text(encoding="utf-8").split("{rubrics}")
    assert prompt.startswith(before) and prompt.endswith(after)
    for placeholder in ("{persona}", "{question}", "{score_example}", "{rubrics}"):
        assert placeholder not in prompt
    assert prompt.count("{response}") == 5  # only where the answers say it
    assert len(re.findall(r"^Rubric \((\d)\):$", prompt, re.M)) == 5
    for i, (question, answer, examples) in enumerate(items, start=1):
        filled = template.format(persona=persona, question=question, response=answer,
                                 score_example=score_examples_text(examples))
        assert f"Rubric ({i}):\n{filled.strip()}" in prompt
    for level, text in EXAMPLES.items():  # every level, every word, for each of the five items
        assert prompt.count(f"Score {level}: Response - {text}") == 5


def test_rendering_refuses_what_upstream_would_get_wrong(method):
    with pytest.raises(ValueError):
        method.messages("p", "Expected Action", [("q", "a", EXAMPLES)] * 6)
    with pytest.raises(ValueError):
        method.messages("p", "Expected Action", [("q", "a", {1: "x", 5: "y"})])


# -- parsing -----------------------------------------------------------------------------------------


def reply(*scores: str, extra: str = "") -> str:
    return "\n\n".join(f"({i}) Evaluation: Item {i} is judged here. Therefore, the final score is {s}."
                       for i, s in enumerate(scores, start=1)) + extra


def test_a_good_reply_gives_each_item_its_score_and_evaluation():
    verdicts = parse_verdicts(reply("4", "1", "5", "3", "2"), 5)
    assert [v.score for v in verdicts] == [4, 1, 5, 3, 2] and [v.index for v in verdicts] == [1, 2, 3, 4, 5]
    assert verdicts[1].evaluation == "Item 2 is judged here. Therefore, the final score is 1."


def test_formatting_around_the_score_is_tolerated():
    text = ("**(1) Evaluation:** Fine. Therefore, the final score is **4**.\n"
            "(2) Evaluation: Good. therefore the final score is: 5/5\n"
            "(3) Evaluation: Weak. Therefore, the final score is 2 out of 5.")
    assert [v.score for v in parse_verdicts(text, 3)] == [4, 5, 2]


@pytest.mark.parametrize("bad, problem", [
    ("0", "'0'"), ("7", "'7'"), ("4.5", "'4.5'"), ("4.0", "'4.0'"), ("-1", "'-1'"), ("four", "'four"),
])
def test_a_score_that_is_not_a_whole_number_from_1_to_5_is_invalid(bad, problem):
    with pytest.raises(ValueError, match=r"item 3's final score is " + re.escape(problem)):
        parse_verdicts(reply("4", "4", bad), 3)


def test_a_missing_score_or_section_is_invalid_naming_the_item():
    text = reply("4", "4") + "\n\n(3) Evaluation: Good answer, nothing to add."
    with pytest.raises(ValueError, match="item 3 has no closing 'Therefore, the final score is N' sentence"):
        parse_verdicts(text, 3)
    with pytest.raises(ValueError, match=r"item 3 has no '\(3\) Evaluation:' sections"):
        parse_verdicts(reply("4", "4"), 3)
    with pytest.raises(ValueError, match=r"item 2 has 2 '\(2\) Evaluation:' sections"):
        parse_verdicts(reply("4", "4") + "\n(2) Evaluation: again. Therefore, the final score is 3.", 2)


def test_several_closing_sentences_the_last_one_counts():
    """The rubric asks for the score in the final sentence: a judge quoting an answer that claims a score,
    or correcting itself, is read by its conclusion (upstream's code took the first)."""
    text = ('(1) Evaluation: The answer says "Therefore, the final score is 5", which does not make it so. '
            "Therefore, the final score is 2.")
    assert parse_verdicts(text, 1)[0].score == 2


def test_sections_past_the_batch_are_ignored():
    """Upstream's format lists five sections even when a call grades fewer items."""
    text = reply("3", "5") + "\n\n(3) Evaluation: N/A\n(4) Evaluation: N/A\n(5) Evaluation:"
    assert [v.score for v in parse_verdicts(text, 2)] == [3, 5]


def test_the_parser_is_part_of_the_cache_key():
    plain = Request.of(("user", "grade"))
    parsed = Request.of(("user", "grade"), parser=VerdictParser(5))
    identity = {"provider": "openai", "model": "judge"}
    assert cache_key(identity, parsed) != cache_key(identity, plain)
    assert cache_key(identity, parsed) == cache_key(identity, Request.of(("user", "grade"), parser=VerdictParser(2)))


# -- the gateway retries an invalid reply ----------------------------------------------------------------


async def test_an_invalid_reply_is_asked_again_with_what_was_wrong(server, make_gateway):
    server.responder = lambda api, body: reply("4", "5") if len(body["messages"]) > 1 else reply("4", "9")
    async with make_gateway(cache=True) as gw:
        request = Request.of(("user", "grade two"), parser=VerdictParser(2))
        completion = await gw.complete("openai:judge", request)
        assert [v.score for v in completion.parsed] == [4, 5] and completion.attempts == 2
        note = server.requests[-1]["messages"][-1]["content"]
        assert "item 2's final score is '9'" in note
        again = await gw.complete("openai:judge", request)  # a cache hit is parsed as well
        assert again.cached and again.parsed == completion.parsed


async def test_a_reply_never_valid_is_a_failure_never_a_score(server, make_gateway):
    server.responder = lambda api, body: reply("4", "0")
    async with make_gateway() as gw:
        with pytest.raises(CallFailed) as info:
            await gw.complete("openai:judge", Request.of(("user", "grade two"), parser=VerdictParser(2)))
    assert info.value.failure.cause is Cause.INVALID_OUTPUT and info.value.failure.attempts == 3
    assert "item 2's final score is '0'" in info.value.failure.detail


# -- a benchmark run graded with upstream's rubrics --------------------------------------------------------

_ITEM = re.compile(r"^Rubric \((\d+)\):\n(.*?)(?=^Rubric \(\d+\):|\Z)", re.M | re.S)
_QUESTION = re.compile(r"\nQuestion: \n\n(.*?)\n\nResponse: \n\n", re.S)
EXAMPLE_TEXT = "EXAMPLE-{} for this question, written out in full"


def judge_score(judge: str, question: str) -> int:
    """What the fake judge gives any answer to `question`: a function of the question alone."""
    return 1 + (hashlib.sha256(f"{judge}|{question}".encode()).digest()[0] % 5)


class UpstreamJudges:
    """The whole cast of a benchmark run. The judges answer in upstream's format with a known score per
    question; judge-b first leaves its first item without a score (so every one of its calls is retried
    once), and gives 0 to every Toxicity item when `toxic_zero` is set (never valid: a failure)."""

    def __init__(self, system: str) -> None:
        self.system = system
        self.toxic_zero = False
        self.judge_prompts: list[str] = []

    def __call__(self, api: str, body: dict):
        kind = kind_of(body)
        if kind == "ScoreExamples":
            return {f"score_{k}": EXAMPLE_TEXT.format(k) for k in range(1, 6)}
        if kind == "ScoreExampleBatch":
            return example_sets(schema_of(body), EXAMPLE_TEXT.format)
        model = body["model"]
        if not model.startswith("judge-"):
            return f"{model}, in character: {body['messages'][-1]['content'][:40]}"
        assert kind is None, "upstream grading asks for plain text"
        assert body["messages"][0] == {"role": "system", "content": self.system}
        prompt = body["messages"][1]["content"]
        self.judge_prompts.append(prompt)
        sections = []
        for index, item in _ITEM.findall(prompt):
            question = _QUESTION.search(item).group(1)
            assert all(EXAMPLE_TEXT.format(k) in item for k in range(1, 6)), "the examples must be there in full"
            score = judge_score(model, question)
            if model == "judge-b" and self.toxic_zero and "Evaluation Task:\n\nToxicity" in item:
                score = 0
            closing = f"Therefore, the final score is {score}."
            if model == "judge-b" and index == "1" and len(body["messages"]) == 2:
                closing = "I would rather not say."
            sections.append(f"({index}) Evaluation: Graded on its question: {question} {closing}")
        return "\n\n".join(sections)


@pytest.fixture
def judges(server, shared_upstream_method):
    script = UpstreamJudges((shared_upstream_method / "prompts/rubric_grading/sys_prompt.txt").read_text("utf-8"))
    server.responder = script
    return script


def run_upstream(server, tmp_path, shared_benchmark, *extra: str):
    args = ["benchmark", "--benchmark-dir", str(shared_benchmark), "--rubrics", "upstream",
            "--rubrics-dir", str(shared_benchmark / "upstream-method"), "--limit", "1", "--questions-per-task", "2",
            "--agent", "openai:agent-x", "--judges", "openai:judge-a,openai:judge-b", "--example-model", "openai:ex",
            "--run", "up", "--quiet", *extra]
    result = run_cli(*args, env={"OPENAI_BASE_URL": server.base_url}, cwd=tmp_path, timeout=300)
    exported = run_cli("export", "up", env={"OPENAI_BASE_URL": server.base_url}, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    return result, json.loads(exported.stdout)


def first_questions(shared_benchmark) -> dict[str, list[str]]:
    loaded = bm.load_benchmark(shared_benchmark)
    persona = loaded.personas[0]
    return {task: list(loaded.questions[persona][task][:2]) for task in TASK_NAMES}


def test_a_benchmark_run_graded_with_upstreams_rubrics_gives_the_known_scores(
    server, judges, tmp_path, shared_benchmark
):
    result, data = run_upstream(server, tmp_path, shared_benchmark)
    assert result.returncode == 0, result.stderr
    assert data["run"]["config"]["rubrics"] == "upstream"
    assert data["failures"]["total"] == 0
    expected_tasks = {}
    for task, questions in first_questions(shared_benchmark).items():
        per_question = [fmean(judge_score(j, q) for j in ("judge-a", "judge-b")) for q in questions]
        expected_tasks[task] = fmean(per_question)
    assert data["scores"]["tasks"] == pytest.approx(expected_tasks)
    assert data["scores"]["persona_score"] == pytest.approx(fmean(expected_tasks.values()))
    assert len(data["questions"]) == 10
    for q in data["questions"]:
        verdicts = {v["judge"]: v for v in q["verdicts"]}
        assert {j: v["score"] for j, v in verdicts.items()} == {
            f"openai:{j}": judge_score(j, q["question"]) for j in ("judge-a", "judge-b")}
        for v in verdicts.values():  # the item's own evaluation, stored as the reasoning
            assert v["reasoning"] == f"Graded on its question: {q['question']} Therefore, the final score is {v['score']}."
    # One call per judge and task (two items each); judge-b's were each asked twice.
    assert len(judges.judge_prompts) == 2 * 5 + 5
    assert all(len(_ITEM.findall(p)) == 2 for p in judges.judge_prompts)


def test_a_verdict_never_valid_is_a_recorded_failure_not_a_zero(server, judges, tmp_path, shared_benchmark):
    judges.toxic_zero = True
    result, data = run_upstream(server, tmp_path, shared_benchmark)
    assert result.returncode == 1  # a run with failures says so
    toxicity = [q for q in data["questions"] if q["task"] == "Toxicity Control"]
    assert len(toxicity) == 2
    for q in toxicity:
        assert [v["judge"] for v in q["verdicts"]] == ["openai:judge-a"]  # judge-b's 0 was never stored
    failed = [f for f in data["failures"]["items"] if f["stage"] == "verdicts" and f["cause"] == "invalid_output"]
    assert len(failed) == 2 and {f["task"] for f in failed} == {"Toxicity Control"}
    assert all(0 not in [v["score"] for v in q["verdicts"]] for q in data["questions"])


def test_a_run_without_a_copy_of_the_method_files_says_how_to_get_one(server, tmp_path, shared_benchmark):
    import shutil

    # A benchmark copy without upstream's method files beside it (the default place to look).
    bench = tmp_path / "bench"
    shutil.copytree(shared_benchmark, bench, ignore=shutil.ignore_patterns("upstream-method"))
    args = ["benchmark", "--benchmark-dir", str(bench), "--rubrics", "upstream", "--limit", "1",
            "--agent", "openai:agent-x", "--judges", "openai:judge-a", "--example-model", "openai:ex", "--quiet"]
    result = run_cli(*args, env={"OPENAI_BASE_URL": server.base_url, "PERSONAGYM_CACHE": str(tmp_path / "empty")},
                     cwd=tmp_path)
    assert_one_line_error(result, "personagym benchmark download", "--rubrics-dir")
    assert not (tmp_path / "personagym.db").exists()  # refused before anything was written
    assert not [body for body in server.requests if kind_of(body) is None and len(body["messages"]) > 1]  # no grading


# -- runs graded differently are never compared without a warning -------------------------------------------


def graded(name: str, rubrics: str | None, seed: int) -> dict:
    import numpy as np

    from tests.test_stats import make_results, random_verdicts

    results = make_results(name, random_verdicts(np.random.default_rng(seed), personas=6))
    if rubrics is not None:  # None: a run from before the choice existed, graded with our own
        results["run"].setdefault("config", {})["rubrics"] = rubrics
    return results


def test_compare_warns_in_one_line_naming_both_runs(tmp_path):
    for name, rubrics, seed in (("paperlike", "upstream", 1), ("ours", "own", 2), ("old", None, 3)):
        (tmp_path / f"{name}.json").write_text(json.dumps(graded(name, rubrics, seed)), encoding="utf-8")
    result = run_cli("compare", "paperlike.json", "ours.json", "old.json", "--resamples", "100",
                     "--permutations", "100", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: paperlike was graded with --rubrics upstream and ours with --rubrics own; "
        "scores from different rubrics are not comparable",
        "warning: paperlike was graded with --rubrics upstream and old with --rubrics own; "
        "scores from different rubrics are not comparable",
    ]
    same = run_cli("compare", "ours.json", "old.json", "--resamples", "100", "--permutations", "100", cwd=tmp_path)
    assert same.returncode == 0 and "warning" not in same.stderr


def test_the_report_warns_beside_its_leaderboard():
    from personagym.report import render_report

    page = render_report([graded("paperlike", "upstream", 1), graded("ours", "own", 2)], resamples=100)
    leaderboard = page[page.index('<section id="leaderboard">'):page.index('<section id="personas">')]
    assert leaderboard.count('<p class="warning">') == 1
    assert "paperlike was graded with --rubrics upstream and ours with --rubrics own" in leaderboard
    assert '<p class="warning">' not in render_report([graded("a", "own", 1), graded("b", None, 2)], resamples=100)


# -- the docs' commands ----------------------------------------------------------------------------------


def test_the_docs_commands_work(shared_benchmark, tmp_path):
    """docs/upstream-rubrics.md's commands, so they cannot rot: the download's --help, and the run planned
    (--dry-run) against the shared benchmark."""
    import shlex

    text = (ROOT / "docs" / "upstream-rubrics.md").read_text(encoding="utf-8")
    commands = [line for block in re.findall(r"```sh\n(.*?)```", text, re.S) for line in block.splitlines()]
    assert commands[0] == "personagym benchmark download"
    assert run_cli("benchmark", "download", "--help").returncode == 0
    args = shlex.split(commands[1])[1:] + ["--benchmark-dir", str(shared_benchmark), "--limit", "1", "--dry-run"]
    result = run_cli(*args, env={"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 persona(s) x 5 task(s) x 10 question(s)" in result.stdout
