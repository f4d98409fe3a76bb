"""Judge batching (five answers per judge call, the default) against grading each answer alone:
calls and tokens per graded question, side by side, on the same benchmark personas.

    python bench/judge_batching.py [--personas 20]

Both runs share one database, so the second reuses the first's answers and examples from the cache
and only the judges' calls differ. Token counts are the fake server's (words, roughly), which
measure prompt size the same way for both; figures are recorded in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

from full_benchmark import by_batch_size


def judge_bill(db: Path, run: str) -> dict[str, float]:
    conn = sqlite3.connect(db)
    calls, prompt, completion = conn.execute(
        "SELECT COUNT(*), SUM(prompt_tokens), SUM(completion_tokens) FROM calls c JOIN runs r ON r.id = c.run_id "
        "WHERE r.name = ? AND c.role = 'judge' AND c.cached = 0",
        (run,),
    ).fetchone()
    graded = conn.execute(
        "SELECT COUNT(*) FROM verdicts v JOIN runs r ON r.id = v.run_id WHERE r.name = ?", (run,)
    ).fetchone()[0]
    return {"judge_calls": calls, "verdicts": graded, "calls_per_verdict": round(calls / graded, 3),
            "prompt_tokens_per_verdict": round(prompt / graded, 1),
            "completion_tokens_per_verdict": round(completion / graded, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--personas", type=int, default=20)
    args = parser.parse_args()
    bills = by_batch_size("--judge-batch", args.personas, judge_bill)
    report = {f"judge_batch_{size}": bill for size, bill in bills.items()}
    five, one = report["judge_batch_5"], report["judge_batch_1"]
    report["per_question_over_batched"] = {
        "prompt_tokens": round(one["prompt_tokens_per_verdict"] / five["prompt_tokens_per_verdict"], 2),
        "calls": round(one["calls_per_verdict"] / five["calls_per_verdict"], 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
