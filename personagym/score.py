"""PersonaScore from what a run stored: question -> task -> persona -> run.

A question's score exists only when every judge gave every draw of its verdict (--judge-samples):
it is the mean over judges of each judge's mean over draws. A question some judges scored and some
did not is a failure of cause `incomplete_ensemble`: otherwise a judge's failures clustered in one
task would drift that task toward the other judge. A persona's task score is the mean over its scored
questions; its PersonaScore the unweighted mean of its task scores, defined only when every task has
one. The run's PersonaScore and its task scores are means over the same set: the personas with a
PersonaScore (their count is shown). Work that failed has no number: it is counted by cause and
listed, never averaged in. docs/results.md states these rules.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from typing import Any

from personagym.llm import jsonbytes
from personagym.llm.types import CallRecord
from personagym.llm.usage import PriceTable, Usage
from personagym.method import get_task
from personagym.store.runs import RunRow, RunStore

RESULTS_SCHEMA = "personagym.results/1"


def fmean(values: Any) -> float:
    """statistics.fmean of a non-empty list or dict view, which is exactly this: importing statistics
    (and fractions with it) cost every run ~2.5 ms of CPU at start."""
    return math.fsum(values) / len(values)


def _mean(values: list[float]) -> float | None:
    return fmean(values) if values else None


def run_results(store: RunStore, run: RunRow, prices: PriceTable | None = None) -> dict[str, Any]:
    """Everything a run produced, as plain data: the export format (documented in docs/results.md)."""
    conn = store.conn
    judges = run.config["judges"]
    draws = int(run.config.get("judge_samples", 1))
    personas = conn.execute(
        "SELECT p.id, p.text FROM run_personas rp JOIN personas p ON p.id = rp.persona_id "
        "WHERE rp.run_id = ? ORDER BY rp.ordinal",
        (run.id,),
    ).fetchall()
    rows = conn.execute(
        "SELECT q.id, q.persona_id, q.task, q.ordinal, q.text, a.text, a.truncated FROM run_questions rq "
        "JOIN questions q ON q.id = rq.question_id "
        "LEFT JOIN answers a ON a.run_id = rq.run_id AND a.question_id = q.id "
        "WHERE rq.run_id = ? ORDER BY q.persona_id, q.task, q.ordinal",
        (run.id,),
    ).fetchall()
    verdicts: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for qid, judge, sample, score, reasoning, position in conn.execute(
        "SELECT question_id, judge, sample, score, reasoning, position FROM verdicts WHERE run_id = ? "
        "ORDER BY question_id, judge, sample",
        (run.id,),
    ):
        verdicts[qid].append(
            {"judge": judge, "sample": sample, "score": score, "reasoning": reasoning, "position": position}
        )
    recipes = run.config.get("examples_recipes", {})
    example_rows: dict[int, dict[int, str]] = {}
    for qid, task, recipe, ex in conn.execute(
        "SELECT e.question_id, q.task, e.recipe, e.examples FROM examples e "
        "JOIN run_questions rq ON rq.question_id = e.question_id JOIN questions q ON q.id = e.question_id "
        "WHERE rq.run_id = ?",
        (run.id,),
    ):
        if recipes.get(task) == recipe:
            example_rows[qid] = {int(k): v for k, v in jsonbytes.loads(ex.encode()).items()}  # one per question
    failures = conn.execute(
        "SELECT stage, persona_id, task, question_id, model, cause, detail FROM failures WHERE run_id = ? ORDER BY id",
        (run.id,),
    ).fetchall()
    known_failures = {(f[3], f[4]) for f in failures if f[0] == "verdicts"}
    environments = {
        pid: json.loads(names)
        for pid, names in conn.execute(
            "SELECT es.persona_id, es.names FROM environment_sets es JOIN run_personas rp "
            "ON rp.persona_id = es.persona_id WHERE rp.run_id = ?",
            (run.id,),
        )
    }

    persona_text = {pid: text for pid, text in personas}
    tasks = [get_task(key).name for key in run.config["tasks"]]
    ordinal_of = {r[0]: r[3] + 1 for r in rows}
    questions = []
    by_persona_task: dict[tuple[int, str], list[float]] = defaultdict(list)
    # This loop runs once per question of the run (its cost grows with the run, as the calls' does):
    # each judge's place in the list is looked up, not searched for, and each question's verdicts
    # are gone through once, not once per judge.
    place: dict[str, int] = {}
    for i, judge in enumerate(judges):
        place.setdefault(judge, i)  # the first place, as judges.index gives it
    for qid, pid, task, ordinal, text, answer, truncated in rows:
        judged = sorted(verdicts.get(qid, []), key=lambda v: place.get(v["judge"], 99))
        by_judge: dict[str, list[int]] = {j: [] for j in judges}
        for v in judged:
            if v["judge"] in by_judge:
                by_judge[v["judge"]].append(v["score"])
        complete = all(len(scores) >= draws for scores in by_judge.values())
        # fmean of a list: the same sum over the same values as of a generator, without the fallback
        # fmean takes for an iterable it cannot measure.
        score = fmean([fmean(scores) for scores in by_judge.values()]) if complete and judges else None
        if score is not None:
            by_persona_task[(pid, task)].append(score)
        elif judged:  # some judges graded it, others not: never a score, always counted
            missing = [j for j, scores in by_judge.items() if len(scores) < draws]
            failures.append((
                "verdicts", pid, task, qid, ",".join(missing), "incomplete_ensemble",
                f"scored by {len(judged)} of {len(judges) * draws} verdicts (judge x draw); "
                + "; ".join(f"{j}: {'failed' if (qid, j) in known_failures else 'missing'}" for j in missing),
            ))
        questions.append(
            {
                "persona": persona_text[pid],
                "task": task,
                "index": ordinal + 1,
                "question": text,
                "answer": answer,
                "truncated": bool(truncated),
                "examples": {str(k): v for k, v in sorted(example_rows.get(qid, {}).items())},
                "verdicts": judged,
                "score": score,
            }
        )

    persona_results = []
    for pid, text in personas:
        task_scores = {t: _mean(by_persona_task.get((pid, t), [])) for t in tasks}
        complete = all(v is not None for v in task_scores.values()) and bool(task_scores)
        persona_results.append(
            {
                "persona": text,
                "environments": environments.get(pid),
                "tasks": task_scores,
                "persona_score": fmean(task_scores.values()) if complete else None,  # type: ignore[arg-type]
            }
        )

    # Task scores over the same personas as PersonaScore: a persona missing a task would otherwise
    # count in the other tasks' means and not in the mean of means.
    complete_personas = [p for p in persona_results if p["persona_score"] is not None]
    task_means = {t: _mean([p["tasks"][t] for p in complete_personas]) for t in tasks}
    scored = [p["persona_score"] for p in complete_personas]
    by_cause = Counter(f[5] for f in failures)
    by_stage = Counter(f[0] for f in failures)
    answered_by: dict[str, list[str]] = defaultdict(list)
    for model, said in conn.execute(
        "SELECT DISTINCT model, answered_by FROM calls WHERE run_id = ? AND answered_by IS NOT NULL ORDER BY 1, 2",
        (run.id,),
    ):
        answered_by[model].append(said)
    results = {
        "schema": RESULTS_SCHEMA,
        "run": {
            "name": run.name,
            "status": run.status,
            "created_at": run.created_at,
            "updated_at": run.updated_at,
            "config": run.config,
            # Per model spec, the ids the provider said answered (an alias resolves to a snapshot).
            "answered_by": dict(answered_by),
        },
        "scores": {
            "persona_score": _mean(scored),
            "tasks": task_means,
            "personas_scored": len(scored),
            "personas": len(personas),
            "questions_scored": sum(1 for q in questions if q["score"] is not None),
            "questions": len(questions),
            "questions_truncated": sum(1 for q in questions if q["truncated"]),
        },
        "personas": persona_results,
        "questions": questions,
        "failures": {
            "total": len(failures),
            "by_cause": dict(sorted(by_cause.items())),
            "by_stage": dict(sorted(by_stage.items())),
            "items": [
                {
                    "stage": stage,
                    "persona": persona_text.get(pid),
                    "task": task,
                    "question_index": ordinal_of.get(qid),
                    "model": model,
                    "cause": cause,
                    "detail": detail,
                }
                for stage, pid, task, qid, model, cause, detail in failures
            ],
        },
        "usage": run_usage(store, run.id, prices).as_dict(),
    }
    if run.config.get("dialogues"):  # conversations (--dialogues): reported beside PersonaScore, never in it
        from personagym.dialogue_metrics import dialogue_results

        results.update(dialogue_results(store, run))
    if draws >= 2:  # each judge against itself over repeated draws
        from personagym.agreement import retest_agreement

        results["judges_retest"] = retest_agreement(results)
    from personagym.store.audits import load_audit

    audit = load_audit(conn, run.id)  # `personagym audit`, when the run has had one (docs/audit.md)
    if audit is not None:
        results["audit"] = audit
    return results


def run_usage(store: RunStore, run_id: int, prices: PriceTable | None = None) -> Usage:
    """The run's bill, rebuilt from its stored calls (so it survives restarts and spans resumes)."""
    if prices is None:  # read later: the prices the run was billed at, over today's built-in table
        table = PriceTable.load()
        prices = PriceTable({**table.prices, **store.prices(run_id)})
    usage = Usage(prices)
    for model, role, ok, cached, attempts, pt, ct, cause, batch in store.conn.execute(
        "SELECT model, role, ok, cached, attempts, prompt_tokens, completion_tokens, cause, batch FROM calls "
        "WHERE run_id = ?",
        (run_id,),
    ):
        usage.record(CallRecord(model, role, bool(ok), bool(cached), attempts, pt, ct, cause, bool(batch)))
    return usage
