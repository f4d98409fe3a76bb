"""`--dry-run`: the calls a run would make per stage, and what they would roughly cost.

Token figures are estimates from typical prompt and reply sizes of each call kind (characters / 4),
not measurements: good for deciding whether a run is affordable, not for accounting.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from personagym.llm.usage import PriceTable
from personagym.method import Stage

if TYPE_CHECKING:
    from personagym.pipeline.evaluate import Prepared

# (prompt tokens, reply tokens) per call, typical of this project's prompts.
SIZES = {
    Stage.ENVIRONMENTS: (350, 60),
    Stage.QUESTIONS: (700, 45),  # reply: per question written
    Stage.ANSWERS: (120, 220),
    Stage.EXAMPLES: (640, 600),  # prompt: fixed part, each question adds EXAMPLE_ITEM_PROMPT; reply: per question
    Stage.VERDICTS: (900, 160),  # prompt: fixed part; each item adds ITEM_PROMPT, each verdict 160
}
ITEM_PROMPT = 900  # a question, its answer and five example answers
EXAMPLE_ITEM_PROMPT = 60  # a question, in a score-example prompt


def plan(prepared: "Prepared") -> list[tuple[Stage, str, int, int, int]]:
    """(stage, model, calls, prompt tokens, completion tokens) for a run from scratch."""
    c = prepared.config
    personas = len(prepared.personas)
    tasks = len(c.tasks)
    questions = personas * tasks * c.questions_per_task
    rows = []
    if prepared.fixed is None:
        p, r = SIZES[Stage.ENVIRONMENTS]
        catalog_tokens = sum(len(e.name) for e in prepared.catalog) // 4 + 2 * len(prepared.catalog)
        rows.append((Stage.ENVIRONMENTS, c.generator.model, personas, personas * (p + catalog_tokens), personas * r))
        p, r = SIZES[Stage.QUESTIONS]
        calls = personas * tasks
        rows.append((Stage.QUESTIONS, c.generator.model, calls, calls * p, calls * r * c.questions_per_task))
    p, r = SIZES[Stage.ANSWERS]
    rows.append((Stage.ANSWERS, c.agent.model, questions, questions * p, questions * r))
    p, r = SIZES[Stage.EXAMPLES]
    calls = personas * tasks * math.ceil(c.questions_per_task / c.example_batch)
    rows.append((Stage.EXAMPLES, c.example_model.model, calls, calls * p + questions * EXAMPLE_ITEM_PROMPT, questions * r))
    p, r = SIZES[Stage.VERDICTS]
    batches = personas * tasks * math.ceil(c.questions_per_task / c.judge_batch)
    batches *= c.judge_samples
    questions_graded = questions * c.judge_samples
    for judge in c.judges:
        rows.append((Stage.VERDICTS, judge.model, batches, batches * p + questions_graded * ITEM_PROMPT, questions_graded * r))
    from personagym.pipeline.dialogues import plan_rows

    return rows + plan_rows(prepared)  # --dialogues: none unless asked for


def plan_lines(prepared: "Prepared", prices: PriceTable | None = None) -> list[str]:
    prices = prices or PriceTable.load()
    c = prepared.config
    lines = [
        f"dry run of {prepared.name!r}: {len(prepared.personas)} persona(s) x {len(c.tasks)} task(s) x "
        f"{c.questions_per_task} question(s)"
        + (f", {c.dialogues} dialogue(s) of {c.turns} turn(s)" if c.dialogues else "")
        + "; nothing will be called",
        f"{'stage':<13}{'model':<38}{'calls':>8}{'prompt tok':>13}{'reply tok':>12}{'cost':>11}",
    ]
    total_calls, total_cost, unknown = 0, 0.0, False
    for stage, model, calls, pt, ct in plan(prepared):
        cost = prices.cost(model, pt, ct)
        unknown |= cost is None
        total_calls += calls
        total_cost += cost or 0.0
        shown = "unknown" if cost is None else f"${cost:,.2f}"
        lines.append(f"{stage.value:<13}{model[:37]:<38}{calls:>8,}{pt:>13,}{ct:>12,}{shown:>11}")
    tail = " (plus models without a known price)" if unknown else ""
    lines.append(f"total: {total_calls:,} calls, about ${total_cost:,.2f}{tail}; cached work is not paid again")
    return lines
