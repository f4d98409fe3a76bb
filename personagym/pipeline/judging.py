"""Stage 5: each judge grades question/answer pairs in batches, reasoning first, then a score 1-5."""

from __future__ import annotations

import functools
import hashlib
import random

import msgspec

from personagym.llm import Completion
from personagym.method import Stage, Task, Verdict, Verdicts, prompts
from personagym.method.schemas import numbered
from personagym.pipeline.context import Context, Question
from personagym.pipeline.roles import Role


@functools.lru_cache(maxsize=16)
def verdicts_schema(k: int) -> type:
    """Exactly one verdict per item of a batch of k, in item order: verdict i has index i, written
    into the JSON schema (prefixItems with a const index), so constrained decoders produce it and the
    gateway rejects anything else. A verdict missing, doubled or misnumbered makes the reply
    invalid, so it is asked again rather than silently dropped (upstream's fate)."""
    items = tuple(numbered(Verdict, f"Verdict{i}", i) for i in range(1, k + 1))
    return msgspec.defstruct("Verdicts", [("verdicts", tuple[items])], bases=(Verdicts,))  # type: ignore[valid-type]


def batch_order(items: list, judge: Role, sample: int, shuffled: bool) -> list:
    """The items in the order the judge sees them. Shuffled by a permutation seeded from the judge,
    the draw and the questions, so position bias averages out over a run, a resumed run asks the same
    prompt again (and hits the cache), and each item's place is stored for later analysis."""
    if not shuffled or len(items) < 2:
        return list(items)
    # Seeded by texts, not database ids: a shard, a merge or another database asks the same prompt.
    seed = hashlib.sha256(f"{judge.model}|{sample}|{[(q.persona.text, q.text) for q, *_ in items]}".encode()).digest()
    order = list(items)
    random.Random(seed).shuffle(order)
    return order


async def judge_batch(
    ctx: Context, judge: Role, task: Task, items: list[tuple[Question, str, dict[int, str]]], sample: int = 0
) -> None:
    items = batch_order(items, judge, sample, ctx.config.judge_order == "shuffled")
    persona = items[0][0].persona

    def keep(completion: Completion) -> None:  # the verdicts, stored with the call that gave them
        by_index = {v.index: v for v in completion.parsed.verdicts}
        ctx.store.save_verdicts(
            ctx.run_id,
            judge.model,
            [(q.id, by_index[i].score, by_index[i].reasoning, i) for i, (q, _, _) in enumerate(items, start=1)],
            sample,
        )

    completion = await ctx.ask(
        Stage.VERDICTS,
        judge,
        prompts.judging(persona.text, task, [(q.text, answer) for q, answer, _ in items], [ex for *_, ex in items]),
        schema=verdicts_schema(len(items)),
        persona=persona,
        task=task,
        questions=[q for q, _, _ in items],
        sample=sample,
        keep=keep,
    )
    if completion is not None:
        ctx.progress.done(Stage.VERDICTS, len(items))
