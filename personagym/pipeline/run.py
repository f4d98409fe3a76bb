"""One persona's evaluation as a graph of calls, and a whole run as many personas at once.

Per persona: environments -> questions (one call per task, concurrently) -> for every question, the
agent's answer, and its score examples (written for several questions of a task per call),
concurrently -> judge batches as soon as their answers and examples exist. With --dialogues, the persona's conversations run beside its tasks
(pipeline/dialogues.py). Personas run side by side; the gateway's per-model limits bound the calls in flight.
Every finished step is already in the store, so running the same run again skips it.
"""

from __future__ import annotations

import asyncio
from typing import Mapping, Sequence

from personagym.method import Stage, Task
from personagym.pipeline.answers import answer
from personagym.pipeline.context import Context, Persona, Question
from personagym.pipeline.environments import select_environments
from personagym.pipeline.examples import write_examples
from personagym.pipeline.judging import judge_batch
from personagym.pipeline.questions import fixed_questions, write_questions
from personagym.pipeline.roles import Role
from personagym.pipeline.together import all_or_stop


async def evaluate_persona(ctx: Context, persona: Persona, fixed: Mapping[str, Sequence[str]] | None) -> None:
    tasks = ctx.config.tasks
    environments = None  # benchmark mode chooses none; dialogues then let the interlocutor pick a place
    if fixed is not None:
        per_task = [fixed_questions(ctx, persona, task, list(fixed[task.name])) for task in tasks]
    else:
        environments = await select_environments(ctx, persona)
        if environments is None:
            return  # recorded as a failure; nothing can be asked without settings
        recipe = ctx.config.environments_recipe(ctx.catalog_id)
        per_task = await all_or_stop([write_questions(ctx, persona, environments, recipe, task) for task in tasks])
    talks = []
    if ctx.config.dialogues:
        from personagym.pipeline.dialogues import converse_all  # loaded only by runs that talk

        talks.append(converse_all(ctx, persona, environments))
    await all_or_stop([*(evaluate_task(ctx, task, qs) for task, qs in zip(tasks, per_task) if qs), *talks])


async def evaluate_task(ctx: Context, task: Task, questions: list[Question]) -> None:
    stored = ctx.store.answers(ctx.run_id, [q.id for q in questions])  # a resumed run's, read at once
    answers = {q.id: asyncio.ensure_future(answer(ctx, q, stored.get(q.id))) for q in questions}
    examples = write_examples(ctx, task, questions)  # several questions share one batch's future

    # --rubrics upstream: upstream's rubric files and grading prompt, its closing sentence for the score.
    grade_with = judge_batch
    if ctx.config.rubrics == "upstream":
        from personagym.pipeline.judging_upstream import judge_upstream  # loaded only by the runs that use it

        grade_with = judge_upstream

    async def grade(judge: Role, sample: int, batch: list[Question]) -> None:
        items = []
        for q in batch:
            text, anchors = await answers[q.id], (await examples[q.id])[q.id]
            if text is not None and anchors is not None:  # otherwise its failure is already recorded
                items.append((q, text, anchors))
        if items:
            await grade_with(ctx, judge, task, items, sample)

    size = ctx.config.judge_batch
    jobs = []
    for judge in ctx.config.judges:
        for sample in range(ctx.config.judge_samples):  # each draw graded, cached and resumed on its own
            done = ctx.store.judged(ctx.run_id, judge.model, [q.id for q in questions], sample)
            ctx.progress.done(Stage.VERDICTS, sum(q.id in done for q in questions))
            pending = [q for q in questions if q.id not in done]
            jobs += [grade(judge, sample, pending[i : i + size]) for i in range(0, len(pending), size)]
    await all_or_stop([*jobs, *answers.values(), *set(examples.values())])  # none left calling if one fails


async def evaluate_all(
    ctx: Context, personas: Sequence[Persona], fixed: Mapping[str, Mapping[str, Sequence[str]]] | None, in_flight: int
) -> None:
    """All personas, at most `in_flight` at once: enough to keep every model busy, few enough that
    memory stays flat and finished personas accumulate steadily (a stopped run keeps them)."""
    gate = asyncio.Semaphore(in_flight)
    # Personas start in order, each a turn of the event loop after the one before. Started in one
    # turn, every one of them built its requests (prompts, cache keys, lookups) before the loop sent
    # the first: for the 200 personas of the benchmark, 10,000 answers and 2.6 s of an idle server.
    started = [asyncio.Event() for _ in personas]

    async def one(place: int, persona: Persona) -> None:
        if place:
            await started[place - 1].wait()
        async with gate:
            await asyncio.sleep(0)  # the turn: the loop sends what the personas before have asked
            started[place].set()
            await evaluate_persona(ctx, persona, fixed[persona.text] if fixed is not None else None)
            ctx.progress.persona_done()

    await all_or_stop([one(place, p) for place, p in enumerate(personas)])
