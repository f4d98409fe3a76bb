"""Stage 3: the agent under test answers each question, in character, single-turn."""

from __future__ import annotations

from personagym.method import Stage
from personagym.pipeline.context import Context, Question


async def answer(ctx: Context, question: Question) -> str | None:
    text = ctx.store.answer(ctx.run_id, question.id)
    if text is None:
        text = await ctx.attempt(
            Stage.ANSWERS, ctx.agent.answer(question.persona.text, question.text), question.persona, question.task, [question]
        )
        if text is None:
            return None
        ctx.store.save_answer(ctx.run_id, question.id, text)
    ctx.progress.done(Stage.ANSWERS)
    return text
