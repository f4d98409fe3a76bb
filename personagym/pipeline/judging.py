"""Stage 5: each judge grades question/answer pairs in batches, reasoning first, then a score 1-5."""

from __future__ import annotations

import functools

from pydantic import Field, create_model, model_validator

from personagym.llm import CallFailed, Request
from personagym.method import Task, Verdict, Verdicts, prompts
from personagym.pipeline.context import Context, Question


def _one_per_item(k: int):
    def check(self):  # noqa: ANN001 - a pydantic "after" validator
        if sorted(v.index for v in self.verdicts) != list(range(1, k + 1)):
            raise ValueError(f"expected one verdict for each of items 1..{k}")
        return self

    return check


@functools.lru_cache(maxsize=16)
def verdicts_schema(k: int) -> type:
    """Exactly one verdict per item of a batch of k: a verdict missing, doubled or misnumbered makes
    the reply invalid, so it is asked again rather than silently dropped (upstream's fate)."""
    return create_model(
        "Verdicts",
        __base__=Verdicts,
        verdicts=(list[Verdict], Field(min_length=k, max_length=k)),
        __validators__={"one_per_item": model_validator(mode="after")(_one_per_item(k))},
    )


async def judge_batch(
    ctx: Context, judge: str, task: Task, items: list[tuple[Question, str, dict[int, str]]]
) -> None:
    persona = items[0][0].persona
    request = Request.of(
        *prompts.judging(persona.text, task, [(q.text, answer) for q, answer, _ in items], [ex for *_, ex in items]),
        schema=verdicts_schema(len(items)),
        sampling=ctx.config.judge_sampling,
        role="judge",
    )
    try:
        completion = await ctx.gateway.complete(judge, request)
    except CallFailed as exc:
        for question, _, _ in items:
            ctx.fail("verdicts", persona, exc.failure, task=task, question=question)
        return
    by_index = {v.index: v for v in completion.parsed.verdicts}
    ctx.store.save_verdicts(
        ctx.run_id,
        judge,
        [(q.id, by_index[i].score, by_index[i].reasoning) for i, (q, _, _) in enumerate(items, start=1)],
    )
    ctx.progress.done("verdicts", len(items))
