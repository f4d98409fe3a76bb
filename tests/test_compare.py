"""`personagym compare` and `personagym alignment`, driven as a user would: exported runs as JSON files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sp

from personagym import stats
from tests.test_stats import make_results, random_verdicts

DOCS = Path(__file__).resolve().parent.parent / "docs" / "statistics.md"


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "personagym", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def write(tmp_path: Path, name: str, results: dict) -> str:
    (tmp_path / name).write_text(json.dumps(results), encoding="utf-8")
    return name


def assert_user_error(proc: subprocess.CompletedProcess, *phrases: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for phrase in phrases:
        assert phrase in lines[0]


@pytest.fixture
def two_runs(tmp_path):
    rng = np.random.default_rng(21)
    a = make_results("strong", random_verdicts(rng, personas=30, shift=0.8))
    b = make_results("weak", random_verdicts(rng, personas=30))
    return tmp_path, a, b, write(tmp_path, "a.json", a), write(tmp_path, "b.json", b)


# --- compare ---------------------------------------------------------------------------------------


def test_compare_prints_scores_intervals_and_the_pair(two_runs):
    tmp_path, a, b, fa, fb = two_runs
    proc = run_cli(tmp_path, "compare", fa, fb, "--resamples", "500", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for results in (a, b):
        iv = stats.run_intervals(results, resamples=500, seed=3)["persona_score"]
        cells = [results["run"]["name"], f"{iv.value:.2f}", f"[{iv.low:.2f}, {iv.high:.2f}]", "30/30"]
        assert re.search(" +".join(map(re.escape, cells)), out), out
    c = stats.compare(a, b, resamples=500, seed=3)
    d = c.difference
    cells = [
        "strong", "weak", str(c.personas), str(c.questions), f"{c.a_score:.2f}", f"{c.b_score:.2f}",
        f"{d.value:+.2f}", f"[{d.low:+.2f}, {d.high:+.2f}]", f"{c.p_value:.4f}",
    ]  # fmt: skip
    pair = " +".join(re.escape(cell) for cell in cells)
    assert re.search(pair, out), out
    assert c.p_value < 0.01 and d.low > 0  # a clearly better run is reported as such
    assert re.search(r"Expected Action +\d\.\d\d +\d\.\d\d", out)


def test_compare_json_is_the_library_result_and_repeatable(two_runs):
    tmp_path, a, b, fa, fb = two_runs
    args = ("compare", fa, fb, "--json", "--resamples", "300", "--permutations", "2000", "--seed", "5")
    first, again = run_cli(tmp_path, *args), run_cli(tmp_path, *args)
    assert first.returncode == 0 and first.stdout == again.stdout
    data = json.loads(first.stdout)
    c = stats.compare(a, b, resamples=300, permutations=2000, seed=5)
    assert data["comparisons"] == [
        {
            "a": "strong",
            "b": "weak",
            "personas": c.personas,
            "questions": c.questions,
            "a_score": c.a_score,
            "b_score": c.b_score,
            "difference": {
                "value": c.difference.value,
                "low": c.difference.low,
                "high": c.difference.high,
                "n": c.personas,
            },
            "p_value": c.p_value,
        }
    ]
    assert [r["name"] for r in data["runs"]] == ["strong", "weak"]
    assert data["runs"][0]["persona_score"]["value"] == pytest.approx(a["scores"]["persona_score"], rel=1e-12)
    assert data["runs"][1]["tasks"]["Toxicity Control"]["value"] == pytest.approx(
        b["scores"]["tasks"]["Toxicity Control"], rel=1e-12
    )


def test_compare_marks_a_pair_without_shared_personas(two_runs):
    tmp_path, a, b, fa, fb = two_runs
    fc = write(tmp_path, "c.json", make_results("elsewhere", {("someone else", "Expected Action"): [[3, 4]]}))
    proc = run_cli(tmp_path, "compare", fa, fb, fc, "--resamples", "100", "--permutations", "100")
    assert proc.returncode == 0, proc.stderr
    assert "strong vs elsewhere: no shared personas" in proc.stdout
    assert "weak vs elsewhere: no shared personas" in proc.stdout
    assert re.search(r"^strong +weak +\d+ +\d+ ", proc.stdout, re.M)
    assert re.search(r"^elsewhere +3\.50 +- +1/1", proc.stdout, re.M)  # one persona: no interval


def test_compare_bad_input_is_one_line_with_exit_2(two_runs, tmp_path):
    _, a, _, fa, _ = two_runs
    assert_user_error(run_cli(tmp_path, "compare", fa), "at least two runs")
    fc = write(tmp_path, "c.json", make_results("elsewhere", {("someone else", "Expected Action"): [[3, 4]]}))
    assert_user_error(run_cli(tmp_path, "compare", fa, fc), "share")
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    assert_user_error(run_cli(tmp_path, "compare", fa, "broken.json"), "broken.json")
    assert_user_error(run_cli(tmp_path, "compare", fa, "no-such-run", "--db", str(tmp_path / "none.db")), "none.db")


# --- alignment -------------------------------------------------------------------------------------


def small_run() -> dict:
    ea, lh = "Expected Action", "Linguistic Habits"
    return make_results(
        "mini",
        {
            ("Ana, a nurse", ea): [[5, 4], [2, 2], [3, 3], [4, 5]],
            ("Ana, a nurse", lh): [[4, 4], [1, 2], []],  # the third question has no score: left out
            ("Bo, a pilot", ea): [[1, 1], [3, 2], [5, 5], [2, 3]],
            ("Bo, a pilot", lh): [[3, 3], [2, 2], [5, 4]],
        },
    )


def test_alignment_per_question_matches_scipy_and_names_unmatched_rows(tmp_path):
    results = small_run()
    write(tmp_path, "run.json", results)
    human = {  # (persona, task, index) -> ratings by one or two people
        ("Ana, a nurse", "Expected Action", 1): [5, 4],
        ("Ana, a nurse", "Expected Action", 2): [1],
        ("Ana, a nurse", "Expected Action", 3): [3],
        ("Ana, a nurse", "Expected Action", 4): [4],
        ("Bo, a pilot", "Expected Action", 1): [2, 1],
        ("Bo, a pilot", "Expected Action", 2): [2],
        ("Bo, a pilot", "Expected Action", 3): [5],
        ("Bo, a pilot", "Expected Action", 4): [3],
        ("Ana, a nurse", "Linguistic Habits", 1): [4],
        ("Ana, a nurse", "Linguistic Habits", 2): [2],
        ("Ana, a nurse", "Linguistic Habits", 3): [3],
        ("Bo, a pilot", "Linguistic Habits", 1): [3],
        ("Bo, a pilot", "Linguistic Habits", 2): [1],
        ("Bo, a pilot", "Linguistic Habits", 3): [5],
    }
    lines = ["persona,task,index,score"]
    for (persona, task, index), scores in human.items():
        key = task.lower().replace(" ", "_") if index == 2 else task  # names and keys both accepted
        lines += [f'"{persona}",{key},{index},{s}' for s in scores]
    lines += ['"Cy, a cook",Expected Action,1,3', '"Bo, a pilot",Flying,1,3', '"Bo, a pilot",Expected Action,9,3']
    (tmp_path / "ratings.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    proc = run_cli(tmp_path, "alignment", "run.json", "--human", "ratings.csv", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    auto = {(q["persona"], q["task"], q["index"]): q["score"] for q in results["questions"]}
    pairs = [(np.mean(h), auto[k]) for k, h in human.items() if auto[k] is not None]
    rho, tau = sp.spearmanr(*zip(*pairs)).statistic, sp.kendalltau(*zip(*pairs)).statistic
    overall = report["overall"]
    assert overall["n"] == 13 and report["excluded"] == 1 and report["items"] == 14
    assert overall["spearman"] == pytest.approx(rho, rel=1e-12)
    assert overall["kendall"] == pytest.approx(tau, rel=1e-12)
    assert overall["spearman_ci"][0] < rho < overall["spearman_ci"][1]
    ea = [(np.mean(h), auto[k]) for k, h in human.items() if k[1] == "Expected Action"]
    assert report["tasks"]["Expected Action"]["spearman"] == pytest.approx(sp.spearmanr(*zip(*ea)).statistic)
    assert report["level"] == "question" and report["rows"] == 19 and report["matched_rows"] == 16
    assert [u["row"] for u in report["unmatched"]] == [18, 19, 20]  # the header is row 1
    assert "unknown persona 'Cy, a cook'" in proc.stderr
    assert "row 19: unknown task 'Flying'" in proc.stderr
    assert "row 20: unknown question" in proc.stderr

    table = run_cli(tmp_path, "alignment", "run.json", "--human", "ratings.csv")
    assert re.search(rf"^overall +13 +{rho:.2f} +\[", table.stdout, re.M), table.stdout


def test_alignment_per_persona_task_and_by_question_text(tmp_path):
    results = small_run()
    write(tmp_path, "run.json", results)
    rows = ["persona,task,score"] + [
        f'"{p["persona"]}",{task},{score}'
        for p, scores in zip(results["personas"], [(4, 1), (2, 5)])
        for task, score in zip(results["scores"]["tasks"], scores)
    ]
    (tmp_path / "tasks.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    report = json.loads(run_cli(tmp_path, "alignment", "run.json", "--human", "tasks.csv", "--json").stdout)
    assert report["level"] == "task" and report["items"] == 4 and report["overall"]["n"] == 4
    human = [4, 1, 2, 5]
    auto = [p["tasks"][t] for p in results["personas"] for t in results["scores"]["tasks"]]
    assert report["overall"]["spearman"] == pytest.approx(sp.spearmanr(human, auto).statistic)
    assert report["tasks"]["Expected Action"]["spearman"] is None  # two items: undefined

    q = results["questions"][0]
    text = ["persona,task,question,score", f'"{q["persona"]}",{q["task"]},"  {q["question"]}  ",4']
    (tmp_path / "text.csv").write_text("\n".join(text) + "\n", encoding="utf-8")
    report = json.loads(run_cli(tmp_path, "alignment", "run.json", "--human", "text.csv", "--json").stdout)
    assert report["items"] == 1 and report["unmatched"] == []

    # Spreadsheets save whole numbers as "2.0"; a fractional index matches nothing.
    saved = ["persona,task,index,score", f'"{q["persona"]}",{q["task"]},2.0,4', f'"{q["persona"]}",{q["task"]},2.5,4']
    (tmp_path / "saved.csv").write_text("\n".join(saved) + "\n", encoding="utf-8")
    report = json.loads(run_cli(tmp_path, "alignment", "run.json", "--human", "saved.csv", "--json").stdout)
    assert report["items"] == 1 and [u["row"] for u in report["unmatched"]] == [3]


def test_alignment_bad_input(tmp_path):
    write(tmp_path, "run.json", small_run())
    cases = {
        "noscore.csv": ("persona,task,index\nx,y,1\n", "no score column"),
        "letters.csv": ('persona,task,index,score\n"Ana, a nurse",Expected Action,1,4\n"Bo, a pilot",Expected Action,1,high\n',
                        "row 3: score 'high' is not a number"),
        "nomatch.csv": ("persona,task,index,score\nnobody,Expected Action,1,4\n", "no rating in nomatch.csv matches"),
        "empty.csv": ("", "empty"),
    }  # fmt: skip
    for name, (text, phrase) in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert_user_error(run_cli(tmp_path, "alignment", "run.json", "--human", name), phrase)
    assert_user_error(run_cli(tmp_path, "alignment", "run.json", "--human", "missing.csv"), "missing.csv")
    assert run_cli(tmp_path, "alignment", "run.json").returncode == 2  # --human is required


def test_alignment_lists_the_first_20_unmatched_rows_and_counts_the_rest(tmp_path):
    write(tmp_path, "run.json", small_run())
    rows = ['persona,task,index,score\n"Ana, a nurse",Expected Action,1,4\n"Bo, a pilot",Expected Action,1,2']
    rows += [f"stranger {i},Expected Action,1,3" for i in range(25)]
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    proc = run_cli(tmp_path, "alignment", "run.json", "--human", "r.csv")
    assert proc.returncode == 0
    assert "25 rows of r.csv match nothing" in proc.stderr
    assert "row 23: unknown persona 'stranger 19'" in proc.stderr
    assert "stranger 20" not in proc.stderr and "... and 5 more" in proc.stderr


def test_the_ratings_example_in_the_docs_works(tmp_path):
    example = re.search(r"```csv\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S).group(1)
    (tmp_path / "ratings.csv").write_text(example, encoding="utf-8")
    doctor, captain = "A 72-year-old doctor from Tokyo who loves hiking", "A retired ship captain from Norway"
    ea, lh = "Expected Action", "Linguistic Habits"
    results = make_results(
        "docs",
        {(doctor, ea): [[4], [2], [3]], (doctor, lh): [[3]], (captain, ea): [[5], [1], [3]], (captain, lh): [[2]]},
        judges=("j",),
    )
    write(tmp_path, "run.json", results)
    proc = run_cli(tmp_path, "alignment", "run.json", "--human", "ratings.csv", "--json")
    assert proc.returncode == 0 and proc.stderr == ""
    report = json.loads(proc.stdout)
    assert report["items"] == 7 and report["rows"] == 8
    assert report["overall"]["spearman"] > 0.8
