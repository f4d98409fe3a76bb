"""Stage 3: the agent under test answers each question, in character, single-turn.

An answer is graded as the agent gave it: one cut at the token budget is kept, flagged `truncated`
and counted, never re-asked for a shorter one (that would select answers for brevity). Reasoning the
agent wrote before answering is stored apart and never reaches the judges."""

from __future__ import annotations

from personagym.method import Stage
from personagym.pipeline.agents import Answer
from personagym.pipeline.context import Context, Question


async def answer(ctx: Context, question: Question, stored: str | None = None) -> str | None:
    """The agent's answer: `stored` (from an earlier attempt at this run), or asked for and saved
    with the call that gave it."""
    text = stored
    if text is None:

        def keep(given: Answer) -> None:
            ctx.store.save_answer(ctx.run_id, question.id, given.text, given.truncated, given.reasoning)

        given = await ctx.attempt(
            Stage.ANSWERS, ctx.agent.answer(question.persona.text, question.text, keep), question.persona,
            question.task, [question],
        )
        if given is None:
            return None
        text = given.text
    ctx.progress.done(Stage.ANSWERS)
    return text
