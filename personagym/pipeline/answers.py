"""Stage 3: the agent under test answers each question, in character, single-turn."""

from __future__ import annotations

from personagym.llm import CallFailed
from personagym.pipeline.context import Context, Question


async def answer(ctx: Context, question: Question) -> str | None:
    text = ctx.store.answer(ctx.run_id, question.id)
    if text is None:
        try:
            text = await ctx.agent.answer(question.persona.text, question.text)
        except CallFailed as exc:
            ctx.fail("answers", question.persona, exc.failure, task=question.task, question=question)
            return None
        ctx.store.save_answer(ctx.run_id, question.id, text)
    ctx.progress.done("answers")
    return text
