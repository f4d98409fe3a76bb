"""Stage 4: one example answer per rubric level, for this persona and question, to anchor the judges.

They depend on persona, question and rubric only, not on the agent's answer, so they are made once
and reused by every agent evaluated on the same questions. (Upstream wrote them and then never
showed them to its judges; here they are part of every judge prompt.)

As upstream, they are written for several questions of a task per call (`example_batch`, five by
default): the persona, task and rubric are sent once, not once per question. Each question's set
is checked on its own; a set that is missing or invalid is asked for again alone, so one bad set
costs one more call, not a whole batch.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Callable, Sequence

from personagym.llm import CallFailed, Cause, Completion, Request
from personagym.method import ScoreExamples, Stage, Task, prompts
from personagym.method.schemas import score_example_batch
from personagym.pipeline.context import Context, Question
from personagym.pipeline.together import all_or_stop

Examples = dict[int, str]  # rubric level -> example answer
# A batch that could not be read even after the gateway's retries with feedback: its questions are
# asked alone rather than left without examples.
_ASK_ALONE = (Cause.INVALID_OUTPUT, Cause.TRUNCATED)
_UNREADABLE = object()


def write_examples(ctx: Context, task: Task, questions: Sequence[Question]) -> dict[int, asyncio.Future]:
    """Every question's score examples, by question id, as futures of {question id: examples or None}
    (None: the failure is recorded). Stored ones come at once; the rest are written in batches, in
    question order, so the first judge batch waits only for the first example batch."""
    recipe = ctx.config.examples_recipe(task)
    futures: dict[int, asyncio.Future] = {}
    stored: dict[int, Examples | None] = dict(ctx.store.examples([q.id for q in questions], recipe))
    missing = [q for q in questions if q.id not in stored]
    if stored:
        ctx.progress.done(Stage.EXAMPLES, len(stored))
        done = asyncio.get_running_loop().create_future()
        done.set_result(stored)
        futures.update(dict.fromkeys(stored, done))
    size = ctx.config.example_batch
    for i in range(0, len(missing), size):
        batch = missing[i : i + size]
        futures.update(dict.fromkeys((q.id for q in batch), asyncio.ensure_future(_batch(ctx, task, batch, recipe))))
    return futures


async def _batch(ctx: Context, task: Task, questions: list[Question], recipe: str) -> dict[int, Examples | None]:
    if len(questions) == 1:
        return {questions[0].id: await _alone(ctx, questions[0], recipe)}
    role = ctx.config.example_model
    persona = questions[0].persona
    # The same room to write in per question as when asked alone.
    sampling = dataclasses.replace(role.sampling, max_tokens=role.sampling.max_tokens * len(questions))
    request = Request.of(
        *prompts.score_examples_batch(persona.text, [q.text for q in questions], task),
        schema=score_example_batch(len(questions)),
        sampling=sampling,
        role=role.kind,
    )
    saved: dict[int, Examples] = {}

    def keep(completion: Completion) -> None:  # the valid sets, stored with the call that wrote them
        for index, found in completion.parsed.valid_sets(len(questions)).items():
            q = questions[index - 1]
            saved[q.id] = ctx.store.save_examples(q.id, recipe, found.by_level())

    completion = await ctx.attempt(Stage.EXAMPLES, _unless_unreadable(ctx, role, request, keep), persona, task, questions)
    results: dict[int, Examples | None] = {}
    again = []
    for q in questions:
        if q.id in saved:
            results[q.id] = saved[q.id]
            ctx.progress.done(Stage.EXAMPLES)
        elif completion is None:
            results[q.id] = None  # the batch failed for a reason asking alone would not cure: recorded
        else:
            again.append(q)
    for q, examples in zip(again, await all_or_stop([_alone(ctx, q, recipe) for q in again])):
        results[q.id] = examples
    return results


async def _unless_unreadable(ctx: Context, role, request: Request, keep: Callable[[Completion], None]):
    """The batch's completion; _UNREADABLE when its replies stayed unreadable (each question is then
    asked alone); CallFailed otherwise, recorded for every question by Context.attempt."""
    try:
        return await ctx.gateway.complete(ctx.models[role], request, keep)
    except CallFailed as exc:
        if exc.failure.cause in _ASK_ALONE:
            return _UNREADABLE
        raise


async def _alone(ctx: Context, question: Question, recipe: str) -> Examples | None:
    saved: list[Examples] = []
    completion = await ctx.ask(
        Stage.EXAMPLES,
        ctx.config.example_model,
        prompts.score_examples(question.persona.text, question.text, question.task),
        schema=ScoreExamples,
        persona=question.persona,
        task=question.task,
        questions=[question],
        keep=lambda completion: saved.append(ctx.store.save_examples(question.id, recipe, completion.parsed.by_level())),
    )
    if completion is None:
        return None
    ctx.progress.done(Stage.EXAMPLES)
    return saved[0]
