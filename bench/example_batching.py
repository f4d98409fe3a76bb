"""Score examples written five questions a call (`--example-batch 5`, the default, as upstream) against
one question a call: calls and tokens per question, and calls per persona, side by side.

    python bench/example_batching.py [--personas 20]

Each size is its own benchmark-v1 run (20 personas, two judges) in one database: the second run
takes the first's answers from the cache, and only the example writer's calls differ (a batch size
is part of the examples' recipe, so neither reuses the other's). Token counts are the fake server's
(words), which measure prompt size the same way for both; figures are in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

from full_benchmark import by_batch_size, calls_by_role


def examples_bill(db: Path, run: str, personas: int) -> dict[str, float]:
    roles = calls_by_role(db, run)
    examples = roles["examples"]
    questions = sqlite3.connect(db).execute(
        "SELECT COUNT(*) FROM run_questions rq JOIN runs r ON r.id = rq.run_id WHERE r.name = ?", (run,)
    ).fetchone()[0]
    uncached = {role: v["calls"] for role, v in roles.items()}
    return {
        "questions": questions,
        "example_calls": examples["calls"],
        "example_calls_per_question": round(examples["calls"] / questions, 3),
        "prompt_tokens_per_question": round(examples["prompt_tokens"] / questions, 1),
        "completion_tokens_per_question": round(examples["completion_tokens"] / questions, 1),
        "calls_per_persona_first_agent": round((sum(uncached.values()) + sum(v["cached"] for v in roles.values()))
                                               / personas, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--personas", type=int, default=20)
    args = parser.parse_args()
    bills = by_batch_size("--example-batch", args.personas, lambda db, run: examples_bill(db, run, args.personas))
    report = {f"example_batch_{size}": bill for size, bill in bills.items()}
    five, one = report["example_batch_5"], report["example_batch_1"]
    report["batched_over_alone"] = {
        "prompt_tokens": round(five["prompt_tokens_per_question"] / one["prompt_tokens_per_question"], 2),
        "calls": round(five["example_calls_per_question"] / one["example_calls_per_question"], 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
