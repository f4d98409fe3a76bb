"""The HTML report: escaping of untrusted text, offline self-containment, numbers that agree with the
export, and the page as a real browser shows it (Debian's chromium, headless)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from statistics import fmean

import pytest

from personagym.report import render_report
from personagym.report.questions import embed_json
from personagym.testing import FakeServer
from tests.pipeline_fakes import TASK_NAMES, responder

PAYLOAD = (
    "<script>document.documentElement.dataset.pwned='1'</script>"
    "<img src=x onerror=\"document.documentElement.dataset.pwned='1'\">"
)
SECTIONS = ["overview", "leaderboard", "personas", "questions", "judges", "provenance"]
OUTPUT = Path(__file__).resolve().parents[1] / "test-output"


# --- synthetic results: the export format, built directly (fast, and any size) -----------------------

def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(["the", "persona", "would", "answer", "calmly", "hiking", "Tokyo", "doctor"])
                    for _ in range(n))


def synthetic_results(name: str, personas: int = 3, questions: int = 2, *, seed: int = 0,
                      persona_text: str = "Persona {i}", answer: str | None = None,
                      judges: tuple[str, ...] = ("openai:judge-a", "anthropic:judge-b")) -> dict:
    """A `personagym.results/1` export with random verdicts, its means computed as docs/results.md says."""
    rng = random.Random(seed)
    persona_rows, question_rows = [], []
    for i in range(personas):
        text = persona_text.format(i=i)
        task_scores = {}
        for task in TASK_NAMES:
            scores = []
            for k in range(questions):
                verdicts = [{"judge": j, "score": rng.randint(1, 5), "reasoning": _words(rng, 40)} for j in judges]
                score = fmean(v["score"] for v in verdicts)
                scores.append(score)
                question_rows.append({
                    "persona": text, "task": task, "index": k + 1, "question": f"{task} question {k + 1} for {i}",
                    "answer": answer if answer is not None else _words(rng, 90),
                    "examples": {str(s): _words(rng, 50) for s in range(1, 6)}, "verdicts": verdicts, "score": score,
                })
            task_scores[task] = fmean(scores)
        persona_rows.append({"persona": text, "environments": ["Wedding", "Hospital"], "tasks": task_scores,
                             "persona_score": fmean(task_scores.values())})
    usage = {"calls": 10, "cached": 0, "failures": 0, "attempts": 10, "prompt_tokens": 1000,
             "completion_tokens": 100, "cost": 0.25}
    return {
        "schema": "personagym.results/1",
        "run": {"name": name, "status": "done", "created_at": 1.7e9, "updated_at": 1.7e9 + 60, "config": {
            "agent": "openai:agent-x", "judges": list(judges), "generator": "openai:gen", "example_model": "openai:ex",
            "tasks": [], "task_versions": {"expected_action": "expected_action/1"}, "prompts_version": "prompts/1",
            "catalog": "environments/1", "benchmark": None, "questions_per_task": questions,
            "max_environments": 5, "judge_batch": 5, "agent_base_url": "https://secret-token@bots.example.com/v1",
            "sampling": {"agent": {"temperature": 0.9, "top_p": 0.9, "max_tokens": 600, "seed": 7}},
        }},
        "scores": {
            "persona_score": fmean(p["persona_score"] for p in persona_rows),
            "tasks": {t: fmean(p["tasks"][t] for p in persona_rows) for t in TASK_NAMES},
            "personas_scored": personas, "personas": personas,
            "questions_scored": len(question_rows), "questions": len(question_rows),
        },
        "personas": persona_rows,
        "questions": question_rows,
        "failures": {"total": 0, "by_cause": {}, "by_stage": {}, "items": []},
        "usage": {"by_role": {"agent": usage}, "by_model": {"openai:agent-x": usage}, "total": usage, "failures": []},
    }


class Page(HTMLParser):
    """What tests read from a report: numbers by data-k, the embedded data, tags and scripts."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.values: dict[str, str] = {}
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[tuple[dict, str]] = []
        self._script: dict | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if "data-k" in attrs:
            assert attrs["data-k"] not in self.values, f"two numbers named {attrs['data-k']}"
            self.values[attrs["data-k"]] = attrs["data-value"]
        if tag == "script":
            self._script = attrs
            self.scripts.append((attrs, ""))

    def handle_data(self, data):
        if self._script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None

    def data(self) -> dict:
        return json.loads(next(text for attrs, text in self.scripts if attrs.get("id") == "pg-questions"))

    def number(self, key: str) -> float | None:
        value = self.values[key]
        return None if value == "null" else float(value)


# --- escaping and self-containment ----------------------------------------------------------------------

def test_embedded_json_cannot_close_its_script_element():
    hostile = "</script><script>alert(1)</script><!-- & \u2028\u2029 </SCRIPT >"
    text = embed_json({"persona": hostile})
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == {"persona": hostile}


def test_untrusted_text_is_escaped_everywhere():
    results = synthetic_results(f"run {PAYLOAD}", persona_text=f"Persona {{i}} </script>{PAYLOAD}", answer=PAYLOAD,
                                judges=(f"openai:{PAYLOAD}", "openai:b"))
    results["run"]["config"]["agent"] = f"openai:{PAYLOAD}"
    html = render_report([results, results], resamples=50)
    page = Page(html)
    # Only our two script elements and no image exist; the payload lives on as text and data.
    assert [attrs for tag, attrs in page.tags if tag == "script"] == [
        {"type": "application/json", "id": "pg-questions"}, {}]
    assert not [tag for tag, _ in page.tags if tag == "img"]
    assert not any(name.startswith("on") for _, attrs in page.tags for name in attrs)
    assert html.count("&lt;script&gt;document.documentElement") >= 4  # run name, persona, agent, judge
    data = page.data()
    assert data["personas"][0] == f"Persona 0 </script>{PAYLOAD}"
    assert {item["a"] for item in data["items"]} == {PAYLOAD}
    assert data["judges"][0] == f"openai:{PAYLOAD}"


def test_the_page_is_self_contained_and_only_its_own_script_may_run():
    html = render_report([synthetic_results("a")], resamples=50)
    links = re.findall(r"""\s(?:src|href|action|xlink:href)\s*=\s*["']?([^"'\s>]+)""", html, re.I)
    assert links and all(link.startswith("#") for link in links), links
    assert "url(" not in html and "@import" not in html
    page = Page(html)
    csp = next(attrs["content"] for tag, attrs in page.tags if attrs.get("http-equiv") == "Content-Security-Policy")
    script = page.scripts[-1][1]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp and "img-src data:" in csp


def test_secrets_and_unlisted_config_fields_stay_out():
    html = render_report([synthetic_results("a")], resamples=50)
    assert "secret-token" not in html and "bots.example.com" not in html
    assert "openai:agent-x" in html and "prompts/1" in html  # whitelisted provenance is there


def test_numbers_carry_their_exact_values():
    a = synthetic_results("a", personas=6, seed=1)
    b = synthetic_results("b", personas=6, seed=2, persona_text="Someone else {i}")
    page = Page(render_report([a, b], resamples=200, seed=3))
    for r, results in enumerate([a, b]):
        assert page.number(f"run{r}.persona_score") == results["scores"]["persona_score"]
        for task, value in results["scores"]["tasks"].items():
            assert page.number(f"run{r}.tasks.{task}") == value
        low, high = page.number(f"run{r}.persona_score.low"), page.number(f"run{r}.persona_score.high")
        assert low <= results["scores"]["persona_score"] <= high
    assert page.number("pair0.personas") == 0  # different persona texts: nothing shared, nothing compared
    # The same personas (same texts, questions) in both runs: compared on 6 personas and every question.
    b_shared = synthetic_results("b", personas=6, seed=1)
    b_shared["questions"][0]["verdicts"][0]["score"] = 1
    page = Page(render_report([a, b_shared], resamples=200))
    assert page.number("pair0.personas") == 6 and page.number("pair0.questions") == 60
    assert 0 < page.number("pair0.p_value") <= 1


def test_the_report_command_reports_bad_input_in_one_line(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(synthetic_results("a")))
    missing = _cli(tmp_path, "report", "a.json", "-o", "no/such/folder/r.html", check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    unknown = _cli(tmp_path, "report", "nope", "-o", "r.html", check=False)
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: no database")
    assert unknown.stderr.count("\n") == 1
    assert not (tmp_path / "r.html").exists()
    done = _cli(tmp_path, "report", "a.json", "-o", "r.html", "--resamples", "100")
    assert done.stderr.strip() == "wrote r.html"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


# --- real runs, a real browser --------------------------------------------------------------------------

PERSONAS = ["A 72-year-old doctor from Tokyo who loves hiking", f"A 40-year-old sailor {PAYLOAD}"]


def _cli(cwd: Path, *args: str, server: FakeServer | None = None, check: bool = True):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    if server is not None:
        env["OPENAI_BASE_URL"] = server.base_url
    result = subprocess.run([sys.executable, "-m", "personagym", *args], capture_output=True, text=True, env=env,
                            cwd=cwd, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def hostile(api: str, body: dict):
    """The scripted run, with the payload in every answer and every judge's reasoning; agent-y fails
    one question so the report has a failure to show."""
    kind = ((body.get("response_format") or {}).get("json_schema") or {}).get("name")
    last = str(body["messages"][-1]["content"])
    if body["model"] == "agent-y" and "Toxicity Control question 2" in last:
        raise RuntimeError("agent down")
    reply = responder(api, body)
    if kind is None:
        return f"{PAYLOAD} {reply}"
    if kind == "Verdicts":
        for verdict in reply["verdicts"]:
            verdict["reasoning"] = f"{PAYLOAD} {verdict['reasoning']}"
    return reply


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Two runs of different agents on the same two personas; the second exported and reported from its file."""
    folder = tmp_path_factory.mktemp("report")
    common = ["--judges", "openai:judge-a,openai:judge-b", "--generator", "openai:gen", "--example-model", "openai:ex",
              "--questions-per-task", "3", "--max-attempts", "2", "--quiet"]
    for persona in PERSONAS:
        common += ["--persona", persona]
    with FakeServer() as server:
        server.responder = hostile
        _cli(folder, "run", "--agent", "openai:agent-x", "--run", "base", *common, server=server)
        other = _cli(folder, "run", "--agent", "openai:agent-y", "--run", "other", *common, server=server, check=False)
        # Failures, but a PersonaScore: the run succeeds, and its summary says it is incomplete.
        assert other.returncode == 0 and "server_error" in other.stdout and "incomplete" in other.stdout
        _cli(folder, "export", "other", "-o", "other.json")
        exports = [json.loads(_cli(folder, "export", "base").stdout), json.loads((folder / "other.json").read_text())]
        _cli(folder, "report", "base", "other.json", "-o", "report.html")
    return folder, exports


def test_export_and_report_agree_on_every_number(built):
    folder, exports = built
    page = Page((folder / "report.html").read_text(encoding="utf-8"))
    data = page.data()
    items = iter(data["items"])
    for r, results in enumerate(exports):
        assert page.number(f"run{r}.persona_score") == results["scores"]["persona_score"]
        for task, value in results["scores"]["tasks"].items():
            assert page.number(f"run{r}.tasks.{task}") == value
        for j, persona in enumerate(results["personas"]):
            assert page.number(f"run{r}.persona{j}.persona_score") == persona["persona_score"]
            for task, value in persona["tasks"].items():
                assert page.number(f"run{r}.persona{j}.tasks.{task}") == value
        for q in results["questions"]:
            item = next(items)
            assert item["r"] == r and data["personas"][item["p"]] == q["persona"]
            assert data["tasks"][item["t"]] == q["task"] and item["i"] == q["index"]
            assert data["texts"][item["q"]] == q["question"]
            assert item["a"] == q["answer"] and item["s"] == q["score"]
            assert [(data["judges"][j], s, why) for j, s, why in item["v"]] == [
                (v["judge"], v["score"], v["reasoning"]) for v in q["verdicts"]]
            assert [data["texts"][e] for e in item["e"]] == list(q["examples"].values())
        assert page.number(f"run{r}.failures") == results["failures"]["total"]
    assert next(items, None) is None
    failed = [item for item in data["items"] if item["f"]]
    assert len(failed) == 2 and all(item["a"] is None and item["f"][0][2] == "server_error" for item in failed)
    # The runs share both personas; the failed questions leave the comparison, not the personas.
    assert page.number("pair0.personas") == 2 and page.number("pair0.questions") == 28


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed: .ci/run installs it (apt-get install chromium); the report's "
                    "browser test needs it")
    return path


def _browse(page: Path, profile: Path, *args: str) -> str:
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--hide-scrollbars", f"--user-data-dir={profile}", *args, page.as_uri()]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _assert_inert_and_rendered(dom: str) -> None:
    for section in SECTIONS:
        assert f'id="{section}"' in dom
    assert dom.count('<li class="q">') == 50  # the first page of 60 questions, built by the script
    assert "60 of 60 questions" in dom and "page 1 of 2" in dom
    assert "&lt;script&gt;document.documentElement.dataset.pwned='1'&lt;/script&gt;&lt;img src=x" in dom
    assert "data-pwned" not in dom
    assert not re.search(r"<img\b", dom)


def test_a_browser_renders_the_report_and_the_payload_stays_text(built, tmp_path):
    folder, _ = built
    report = folder / "report.html"
    _assert_inert_and_rendered(_browse(report, tmp_path / "p1", "--dump-dom"))
    # Escaping alone must hold, without the Content-Security-Policy as a second line of defence.
    text = report.read_text(encoding="utf-8")
    bare = tmp_path / "no-csp.html"
    bare.write_text(re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text, count=1), encoding="utf-8")
    assert "Content-Security-Policy" not in bare.read_text(encoding="utf-8")
    _assert_inert_and_rendered(_browse(bare, tmp_path / "p2", "--dump-dom"))
    # And the check can fail: the same payload placed raw in a page does run in this browser.
    raw = tmp_path / "raw.html"
    raw.write_text(f"<!DOCTYPE html><html><body>{PAYLOAD}</body></html>", encoding="utf-8")
    assert "data-pwned" in _browse(raw, tmp_path / "p3", "--dump-dom")

    OUTPUT.mkdir(exist_ok=True)
    for name, size in [("report-laptop.png", "1280,2400"), ("report-phone.png", "390,1600")]:
        shot = OUTPUT / name
        shot.unlink(missing_ok=True)
        _browse(report, tmp_path / f"s-{name}", f"--screenshot={shot}", f"--window-size={size}")
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")


# Drives the page's own controls as a user would and records what the page then shows.
DRIVER = """<script>
(function () {
  var out = {};
  function set(id, value) {
    var el = document.getElementById(id);
    if (el.type === "checkbox") el.checked = value; else el.value = value;
    el.dispatchEvent(new Event("input", {bubbles: true}));
  }
  function reset() {
    set("f-run", ""); set("f-task", ""); set("f-persona", ""); set("f-min", ""); set("f-max", "");
    set("f-dis", ""); set("f-failed", false); set("f-sort", "order");
  }
  function seen(name) {
    var cards = document.querySelectorAll("#q-list li.q");
    out[name] = {count: document.getElementById("q-count").textContent, cards: cards.length,
      scores: Array.prototype.map.call(cards, function (c) {
        return c.querySelector(".q-score").getAttribute("data-value"); }),
      failures: document.querySelectorAll("#q-list ul.failures").length};
  }
  set("f-failed", true); seen("failed");
  reset(); set("f-run", "1"); set("f-task", String(JSON.parse(document.getElementById("pg-questions").textContent)
    .tasks.indexOf("Toxicity Control"))); seen("run_task");
  reset(); set("f-dis", "3"); seen("disagreement");
  reset(); set("f-min", "4.5"); seen("min");
  reset(); set("f-sort", "score-asc"); seen("ascending");
  reset(); set("f-sort", "score-desc"); document.getElementById("q-next").click(); seen("descending_page2");
  reset(); document.querySelectorAll("button.to-questions")[0].click(); seen("persona");
  var pre = document.createElement("pre");
  pre.id = "driver";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def test_filters_sorting_and_paging_work_in_the_browser(built, tmp_path):
    folder, _ = built
    text = (folder / "report.html").read_text(encoding="utf-8")
    page = tmp_path / "driven.html"
    # The driver is a second script, which the policy would rightly refuse: this copy goes without it.
    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text, count=1)
    page.write_text(text.replace("</body>", DRIVER + "</body>"), encoding="utf-8")
    dom = _browse(page, tmp_path / "profile", "--dump-dom")
    found = re.search(r'<pre id="driver">(.*?)</pre>', dom, re.S)
    assert found, "the driver did not run"
    out = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert out["failed"] == {"count": "2 of 60 questions", "cards": 2, "scores": ["null", "null"], "failures": 2}
    assert out["run_task"]["count"] == "6 of 60 questions"  # 2 personas x 3 questions, the failed ones too
    # judge-a gives 4 and judge-b 1 on Toxicity Control: 3 apart, in every scored question of that task.
    assert out["disagreement"]["count"] == "10 of 60 questions"
    assert out["min"]["count"] == "24 of 60 questions" and set(out["min"]["scores"]) == {"4.5"}
    assert out["ascending"]["scores"][:10] == ["2.5"] * 10
    # Highest first, and the two unscored questions last: the end of page 2.
    assert out["descending_page2"]["cards"] == 10 and out["descending_page2"]["scores"][-2:] == ["null", "null"]
    assert out["persona"]["count"] == "15 of 60 questions"


def test_the_docs_examples_run(built, tmp_path):
    folder, _ = built
    docs = (Path(__file__).resolve().parents[1] / "docs" / "report.md").read_text(encoding="utf-8")
    lines = [line for block in re.findall(r"```sh\n(.*?)```", docs, re.S) for line in block.splitlines()]
    assert len(lines) == 2
    names = {"mini-v1": "base", "mini-v2": "other", "other-machine.json": "other.json"}
    for line in lines:
        args = [names.get(arg, arg) for arg in line.split()[1:]]
        _cli(folder, *args)
        output = folder / args[args.index("-o") + 1]
        assert Page(output.read_text(encoding="utf-8")).number("run0.persona_score") is not None


def measure() -> None:
    """The figures in docs/report.md: a two-run, 200-persona x 50-question report, built and opened."""
    import copy
    import tempfile
    import time

    a = synthetic_results("agent-a", personas=200, questions=10, seed=1)
    b = copy.deepcopy(a)  # another agent on the same personas: same questions and examples, new answers
    b["run"]["name"] = "agent-b"
    rng = random.Random(2)
    for q in b["questions"]:
        q["answer"] = _words(rng, 90)
        for v in q["verdicts"]:
            v["score"], v["reasoning"] = rng.randint(1, 5), _words(rng, 40)
        q["score"] = fmean(v["score"] for v in q["verdicts"])
    export_bytes = sum(len((json.dumps(r, indent=2, ensure_ascii=False) + "\n").encode()) for r in (a, b))
    start = time.perf_counter()
    html = render_report([a, b])
    built = time.perf_counter() - start
    print(f"{len(a['questions']) + len(b['questions'])} questions: exports {export_bytes / 1e6:.1f} MB, "
          f"report {len(html.encode()) / 1e6:.1f} MB, built in {built:.2f} s")
    if shutil.which("chromium"):
        # Without the policy, one more script may report how long the page took to show its questions.
        timer = ('<script>var t = document.createElement("pre"); t.id = "ms"; '
                 't.textContent = Math.round(performance.now()); document.body.appendChild(t);'
                 'document.getElementById("pg-questions").remove();</script></body>')
        page = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html, count=1)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "timed.html"
            path.write_text(page.replace("</body>", timer), encoding="utf-8")
            dom = _browse(path, Path(tmp) / "profile", "--dump-dom")
        shown = re.search(r'<pre id="ms">(\d+)', dom).group(1)
        print(f"chromium showed the first page of questions after {shown} ms")


if __name__ == "__main__":
    measure()
