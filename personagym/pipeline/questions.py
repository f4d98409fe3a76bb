"""Stage 2: for each task, N challenging questions addressed to the persona in its settings."""

from __future__ import annotations

import functools
from typing import Annotated

import msgspec
from msgspec import Meta

from personagym.method import Environment, Questions, Stage, Task, prompts
from personagym.method.schemas import QuestionText
from personagym.pipeline.context import Context, Persona, Question


def _distinct(questions: list[str]) -> list[str]:
    seen: set[str] = set()
    for q in questions:
        key = " ".join(q.lower().split())
        if not key:
            raise ValueError("a question is empty")
        if key in seen:
            raise ValueError(f"question repeated: {q[:60]!r}")
        seen.add(key)
    return questions


@functools.lru_cache(maxsize=16)
def questions_schema(n: int) -> type:
    """Exactly n distinct questions: a reply with more, fewer or repeats is invalid and asked again."""
    return msgspec.defstruct(
        "Questions",
        [("questions", Annotated[list[QuestionText], Meta(min_length=n, max_length=n)])],
        bases=(Questions,),
        namespace={"__post_init__": lambda self: _distinct(self.questions)},  # a ValueError makes the reply invalid
    )


async def write_questions(
    ctx: Context, persona: Persona, environments: list[Environment], environments_recipe: str, task: Task
) -> list[Question] | None:
    recipe = ctx.config.questions_recipe(task, environments_recipe)
    stored = ctx.store.questions(persona.id, task.name, recipe)
    if stored is None:
        n = ctx.config.questions_per_task
        completion = await ctx.ask(
            Stage.QUESTIONS,
            ctx.config.generator,
            prompts.question_writing(persona.text, environments, task, n),
            schema=questions_schema(n),
            persona=persona,
            task=task,
        )
        if completion is None:
            return None
        texts = [" ".join(q.split()) for q in completion.parsed.questions]
        stored = ctx.store.save_questions(persona.id, task.name, recipe, texts)
    ctx.progress.done(Stage.QUESTIONS)
    return attach(ctx, persona, task, stored)


def fixed_questions(ctx: Context, persona: Persona, task: Task, texts: list[str]) -> list[Question]:
    """Benchmark mode: the benchmark's own questions, stored once under the benchmark's name."""
    recipe = ctx.config.questions_recipe(task, "")
    stored = ctx.store.questions(persona.id, task.name, recipe) or ctx.store.save_questions(
        persona.id, task.name, recipe, texts
    )
    return attach(ctx, persona, task, stored[: ctx.config.questions_per_task])  # all stored, the first N asked


def attach(ctx: Context, persona: Persona, task: Task, stored: list[tuple[int, str]]) -> list[Question]:
    ctx.store.add_run_questions(ctx.run_id, [qid for qid, _ in stored])
    return [Question(qid, persona, task, text) for qid, text in stored]
