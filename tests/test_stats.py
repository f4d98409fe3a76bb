"""The statistics behind compare, alignment and the report, checked against scipy, the `krippendorff`
package, published values and hand-computed cases."""

from __future__ import annotations

import itertools
import math
import time
from statistics import fmean

import krippendorff
import numpy as np
import pytest
from scipy import stats as sp

from personagym import agreement, stats

TASKS = ["Expected Action", "Action Justification", "Linguistic Habits", "Persona Consistency", "Toxicity Control"]


def make_results(name: str, verdicts: dict[tuple[str, str], list[list[int]]], *, judges=("j1", "j2"), failures=()):
    """A personagym.results/1 export built the way personagym.score.run_results builds one.

    `verdicts[(persona, task)]` lists, per question in order, the scores its judges gave (the i-th
    score is from the i-th judge; an empty list is a question nobody scored). Tasks are those present,
    in canonical order.
    """
    personas = list(dict.fromkeys(p for p, _ in verdicts))
    tasks = [t for t in TASKS if any(t == task for _, task in verdicts)]
    questions, task_scores = [], {}
    for (persona, task), items in verdicts.items():
        scored = []
        for i, scores in enumerate(items):
            vs = [{"judge": judges[j], "score": s, "reasoning": "r"} for j, s in enumerate(scores)]
            score = fmean(scores) if scores else None
            if score is not None:
                scored.append(score)
            questions.append(
                {
                    "persona": persona,
                    "task": task,
                    "index": i + 1,
                    "question": f"{task} question {i + 1} for {persona}?",
                    "answer": "an answer",
                    "examples": {},
                    "verdicts": vs,
                    "score": score,
                }
            )
        task_scores[(persona, task)] = fmean(scored) if scored else None
    persona_results = []
    for p in personas:
        ts = {t: task_scores.get((p, t)) for t in tasks}
        complete = all(v is not None for v in ts.values())
        persona_results.append(
            {"persona": p, "environments": None, "tasks": ts, "persona_score": fmean(ts.values()) if complete else None}
        )
    task_means = {}
    for t in tasks:
        present = [p["tasks"][t] for p in persona_results if p["tasks"][t] is not None]
        task_means[t] = fmean(present) if present else None
    scored_personas = [p["persona_score"] for p in persona_results if p["persona_score"] is not None]
    return {
        "schema": "personagym.results/1",
        "run": {"name": name, "status": "done", "created_at": 0, "updated_at": 0, "config": {"judges": list(judges)}},
        "scores": {
            "persona_score": fmean(scored_personas) if scored_personas else None,
            "tasks": task_means,
            "personas_scored": len(scored_personas),
            "personas": len(persona_results),
            "questions_scored": sum(q["score"] is not None for q in questions),
            "questions": len(questions),
        },
        "personas": persona_results,
        "questions": questions,
        "failures": {"total": len(failures), "by_cause": {}, "by_stage": {}, "items": list(failures)},
        "usage": {},
    }


def random_verdicts(rng, personas=20, per_task=3, tasks=TASKS, shift=0.0, missing=0.1):
    out = {}
    for p in range(personas):
        level = rng.normal(3 + shift, 0.6)
        for t in tasks:
            items = []
            for _ in range(per_task):
                scores = [int(np.clip(round(level + rng.normal(0, 0.8)), 1, 5)) for _ in range(2)]
                items.append([] if rng.random() < missing else scores)
            out[(f"persona {p}", t)] = items
    return out


# --- bootstrap -------------------------------------------------------------------------------------


def test_bootstrap_edge_cases():
    assert stats.bootstrap_mean([]) == stats.Interval(None, None, None, 0)
    assert stats.bootstrap_mean([4.0, None]) == stats.Interval(4.0, None, None, 1)
    constant = stats.bootstrap_mean([3.0] * 10)
    assert (constant.value, constant.low, constant.high, constant.n) == (3.0, 3.0, 3.0, 10)


def test_bootstrap_is_deterministic_by_seed_and_brackets_the_mean():
    values = np.random.default_rng(5).normal(size=80)
    first, again = stats.bootstrap_mean(values, seed=3), stats.bootstrap_mean(values, seed=3)
    assert first == again
    assert stats.bootstrap_mean(values, seed=4) != first
    assert first.low < first.value < first.high
    assert first.value == pytest.approx(values.mean(), rel=1e-12)
    # The percentile interval is close to the normal one for a mean of 80 normal values.
    se = values.std(ddof=1) / math.sqrt(80)
    assert first.high - first.low == pytest.approx(2 * 1.96 * se, rel=0.15)
    narrower = stats.bootstrap_mean(values, seed=3, level=0.5)
    assert first.low < narrower.low < narrower.high < first.high


def test_bootstrap_interval_covers_the_true_mean_about_as_often_as_claimed():
    rng = np.random.default_rng(11)
    trials = 300
    covered = 0
    for seed in range(trials):
        iv = stats.bootstrap_mean(rng.normal(2.0, 1.0, size=60), resamples=500, seed=seed)
        covered += iv.low <= 2.0 <= iv.high
    assert 0.89 <= covered / trials <= 0.99


def test_run_intervals_values_are_the_exports_scores():
    results = make_results("r", random_verdicts(np.random.default_rng(2), missing=0.3))
    assert results["scores"]["personas_scored"] < results["scores"]["personas"]  # some personas lack a task
    iv = stats.run_intervals(results, resamples=300, seed=1)
    assert iv["persona_score"].value == pytest.approx(results["scores"]["persona_score"], rel=1e-12)
    assert iv["persona_score"].n == results["scores"]["personas_scored"]
    assert list(iv["tasks"]) == list(results["scores"]["tasks"])
    for task, interval in iv["tasks"].items():
        assert interval.value == pytest.approx(results["scores"]["tasks"][task], rel=1e-12)
        assert interval.low <= interval.value <= interval.high
    assert iv == stats.run_intervals(results, resamples=300, seed=1)


# --- compare ---------------------------------------------------------------------------------------


def test_compare_identical_runs():
    verdicts = random_verdicts(np.random.default_rng(3), missing=0.0)
    a, b = make_results("a", verdicts), make_results("b", verdicts)
    c = stats.compare(a, b, resamples=200, permutations=500)
    assert (c.a, c.b, c.personas, c.questions) == ("a", "b", 20, 20 * 5 * 3)
    assert c.a_score == c.b_score == pytest.approx(a["scores"]["persona_score"], rel=1e-12)
    assert (c.difference.value, c.difference.low, c.difference.high) == (0.0, 0.0, 0.0)
    assert c.p_value == 1.0


def test_compare_restricts_both_runs_to_what_both_scored():
    ea, pc = "Expected Action", "Persona Consistency"
    a = make_results(
        "a", {("p1", ea): [[5, 5], [3, 3]], ("p1", pc): [[4, 4]], ("p2", ea): [[2, 2]], ("p2", pc): [[1, 1]]}
    )
    # b failed p1's second question and every p2 question of one task: p2 has no PersonaScore to compare.
    b = make_results("b", {("p1", ea): [[4, 4], []], ("p1", pc): [[2, 2]], ("p2", ea): [[3, 3]], ("p2", pc): [[]]})
    c = stats.compare(a, b, resamples=100, permutations=1000)
    assert (c.personas, c.questions) == (1, 2)
    assert c.a_score == (5 + 4) / 2 and c.b_score == (4 + 2) / 2  # a's failed-in-b question left out
    assert c.difference.value == c.a_score - c.b_score
    assert c.difference.n == 1 and c.difference.low is None


def test_compare_uses_tasks_both_runs_have_and_personas_both_ran():
    ea, lh, tc = "Expected Action", "Linguistic Habits", "Toxicity Control"
    a = make_results("a", {("p1", ea): [[4]], ("p1", lh): [[2]], ("p2", ea): [[3]], ("p2", lh): [[3]]}, judges=("j",))
    b = make_results("b", {("p1", ea): [[2]], ("p1", tc): [[5]], ("p3", ea): [[1]], ("p3", tc): [[1]]}, judges=("j",))
    c = stats.compare(a, b, resamples=100, permutations=100)
    assert (c.personas, c.questions, c.a_score, c.b_score) == (1, 1, 4.0, 2.0)


def test_compare_with_nothing_shared():
    a = make_results("a", {("p1", "Expected Action"): [[4]]})
    b = make_results("b", {("p2", "Expected Action"): [[4]]})
    assert stats.compare(a, b) == stats.Comparison(
        "a", "b", 0, 0, None, None, stats.Interval(None, None, None, 0), None
    )


def test_compare_difference_matches_the_restricted_persona_scores_and_is_deterministic():
    rng = np.random.default_rng(4)
    a = make_results("a", random_verdicts(rng, shift=0.4, missing=0.2))
    b = make_results("b", random_verdicts(rng, missing=0.2))
    c = stats.compare(a, b, resamples=500, permutations=2000, seed=9)
    assert c.difference.value == c.a_score - c.b_score
    assert c.difference.low < c.difference.value < c.difference.high
    assert c == stats.compare(a, b, resamples=500, permutations=2000, seed=9)
    assert 1 / 2001 <= c.p_value <= 1


def test_sign_flip_p_value_matches_scipy_paired_permutation_test():
    # One task, one question per persona: every question weighs the same, so the statistic is the mean
    # paired difference and scipy's exact paired ("samples") permutation test is the reference.
    rng = np.random.default_rng(7)
    x = rng.integers(1, 6, size=12)
    y = np.clip(x - rng.integers(-1, 3, size=12), 1, 5)
    task = "Expected Action"
    a = make_results("a", {(f"p{i}", task): [[int(v)]] for i, v in enumerate(x)}, judges=("j",))
    b = make_results("b", {(f"p{i}", task): [[int(v)]] for i, v in enumerate(y)}, judges=("j",))
    reference = sp.permutation_test(
        (x, y), lambda u, v: np.mean(u - v), permutation_type="samples", alternative="two-sided"
    ).pvalue
    assert 0.01 < reference < 0.5  # a case where the comparison means something
    permutations = 20000
    p = stats.compare(a, b, resamples=100, permutations=permutations, seed=1).p_value
    assert p == pytest.approx(reference, abs=4 * math.sqrt(reference * (1 - reference) / permutations) + 1e-3)


def test_sign_flip_p_value_weights_questions_as_the_score_does():
    # Unequal numbers of questions per persona and task: enumerate all 2^10 sign flips of the real
    # statistic (the restricted PersonaScore difference) and compare with the Monte Carlo p-value.
    ea, lh = "Expected Action", "Linguistic Habits"
    # Weighted by 1 / (P * T * n_pt), the lone large differences dominate (p = 0.38); counted equally,
    # the five small negative ones would cancel them (p = 0.84).
    a_v = {("p1", ea): [[4], [3], [4]], ("p1", lh): [[5]], ("p2", ea): [[4]], ("p2", lh): [[2], [2], [3], [2], [2]]}
    b_v = {("p1", ea): [[3], [4], [3]], ("p1", lh): [[2]], ("p2", ea): [[2]], ("p2", lh): [[3], [3], [3], [3], [3]]}
    a, b = make_results("a", a_v, judges=("j",)), make_results("b", b_v, judges=("j",))
    cells = [[a_v[k][i][0] - b_v[k][i][0] for i in range(len(a_v[k]))] for k in a_v]

    def statistic(signs):
        it = iter(signs)
        by_cell = [fmean(d * next(it) for d in cell) for cell in cells]
        return fmean([fmean(by_cell[0:2]), fmean(by_cell[2:4])])

    observed = statistic([1] * 10)
    flips = [statistic(s) for s in itertools.product([1, -1], repeat=10)]
    exact = sum(abs(f) >= abs(observed) - 1e-12 for f in flips) / len(flips)
    c = stats.compare(a, b, resamples=100, permutations=20000, seed=2)
    assert exact == 0.3828125
    assert c.difference.value == pytest.approx(observed, rel=1e-12)
    assert c.p_value == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / 20000) + 1e-3)


def test_leaderboard_compares_every_pair_in_order():
    rng = np.random.default_rng(8)
    runs = [make_results(n, random_verdicts(rng, personas=5)) for n in "xyz"]
    pairs = stats.leaderboard(runs, resamples=50, permutations=50)
    assert [(c.a, c.b) for c in pairs] == [("x", "y"), ("x", "z"), ("y", "z")]
    assert pairs[2] == stats.compare(runs[1], runs[2], resamples=50, permutations=50)


def test_compare_is_fast_on_a_benchmark_sized_run():
    rng = np.random.default_rng(0)
    a = make_results("a", random_verdicts(rng, personas=200, per_task=10, missing=0.02))
    b = make_results("b", random_verdicts(rng, personas=200, per_task=10, missing=0.02))
    start = time.perf_counter()
    c = stats.compare(a, b)
    assert time.perf_counter() - start < 10  # 0.2-0.7 s measured on 2 shared cores
    assert c.personas == 200 and c.questions > 9000


# --- Krippendorff's alpha and judge agreement ------------------------------------------------------

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 observers x 12 units.
_ = None
RELIABILITY = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, _, _, _],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, _, 3],
    [_, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, _],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, _],
]
UNITS = [list(column) for column in zip(*RELIABILITY)]


def package_alpha(units, level):
    data = np.array([[np.nan if v is None else v for v in row] for row in units], dtype=float).T
    return krippendorff.alpha(reliability_data=data, level_of_measurement=level)


@pytest.mark.parametrize("level,published", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)])
def test_alpha_on_krippendorffs_published_example(level, published):
    alpha = stats.krippendorff_alpha(UNITS, level)
    assert round(alpha, 3) == published
    assert alpha == pytest.approx(package_alpha(UNITS, level), rel=1e-12)


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alpha_matches_the_krippendorff_package_with_missing_values(level, seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, 6, size=40)
    units = []
    for t in truth:
        row = [int(np.clip(t + rng.integers(-1, 2), 1, 5)) for _ in range(3)]
        units.append([None if rng.random() < 0.25 else v for v in row])
    assert stats.krippendorff_alpha(units, level) == pytest.approx(package_alpha(units, level), rel=1e-9)


def test_alpha_perfect_agreement_and_undefined_cases():
    assert stats.krippendorff_alpha([[1, 1], [3, 3], [5, 5, None]], "ordinal") == 1.0
    assert stats.krippendorff_alpha([[4, 4], [4, 4, 4]]) is None  # no variation at all
    assert stats.krippendorff_alpha([[1, None], [None, 5]]) is None  # nothing pairable
    assert stats.krippendorff_alpha([]) is None
    with pytest.raises(ValueError, match="level"):
        stats.krippendorff_alpha(UNITS, "ratio")


def test_judge_agreement_on_a_small_run():
    ea = "Expected Action"
    failure = {"stage": "verdicts", "persona": "p1", "task": ea, "question_index": 4, "model": "j2", "cause": "timeout"}
    other = dict(failure, stage="answers", model="agent")
    results = make_results("r", {("p1", ea): [[5, 5], [4, 2], [3, 4], [2]]}, failures=[failure, other])
    found = agreement.judge_agreement(results)
    assert found["judges"] == ["j1", "j2"]
    assert found["units"] == 3
    assert found["pairs"] == [{"a": "j1", "b": "j2", "n": 3, "exact": 1 / 3, "within_one": 2 / 3}]
    assert found["distribution"] == {
        "j1": {"1": 0, "2": 1, "3": 1, "4": 1, "5": 1},
        "j2": {"1": 0, "2": 1, "3": 0, "4": 1, "5": 1},
    }
    assert found["failures"] == {"j1": {"failed": 0, "rate": 0.0}, "j2": {"failed": 1, "rate": 0.25}}
    assert found["alpha"] == pytest.approx(package_alpha([[5, 5], [4, 2], [3, 4], [2, None]], "ordinal"))


def test_disagreement():
    assert agreement.disagreement({"verdicts": [{"score": 2}, {"score": 5}, {"score": 4}]}) == 3
    assert agreement.disagreement({"verdicts": [{"score": 2}]}) is None


# --- rank correlations -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tied", [False, True])
def test_rank_correlations_match_scipy(seed, tied):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 6, size=60) if tied else rng.normal(size=60)
    y = x + (rng.integers(-2, 3, size=60) if tied else rng.normal(size=60))
    assert stats.spearman(x, y) == pytest.approx(sp.spearmanr(x, y).statistic, rel=1e-12)
    assert stats.kendall_tau(x, y) == pytest.approx(sp.kendalltau(x, y).statistic, rel=1e-12)


def test_rank_correlations_undefined_cases():
    for f in (stats.spearman, stats.kendall_tau):
        assert f([1, 2, 3, 4], [3, 3, 3, 3]) is None
        assert f([1, 2], [1, 2]) is None
        assert f([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        stats.spearman([1, 2, 3], [1, 2])


def test_correlation_interval_is_the_fisher_z_interval():
    low, high = stats.correlation_interval(0.5, 30, "spearman")
    half = 1.959963984540054 * math.sqrt(1.06 / 27)
    assert (low, high) == pytest.approx((math.tanh(math.atanh(0.5) - half), math.tanh(math.atanh(0.5) + half)))
    assert stats.correlation_interval(0.5, 300, "kendall")[1] - stats.correlation_interval(0.5, 300, "kendall")[0] < (
        high - low
    )
    assert stats.correlation_interval(None, 30, "spearman") is None
    assert stats.correlation_interval(1.0, 30, "spearman") is None
    assert stats.correlation_interval(0.5, 4, "kendall") is None
