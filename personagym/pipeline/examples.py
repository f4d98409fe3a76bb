"""Stage 4: one example answer per rubric level, for this persona and question, to anchor the judges.

They depend on persona, question and rubric only, not on the agent's answer, so they are made once
and reused by every agent evaluated on the same questions. (Upstream wrote them and then never
showed them to its judges; here they are part of every judge prompt.)
"""

from __future__ import annotations

from personagym.method import ScoreExamples, Stage, prompts
from personagym.pipeline.context import Context, Question


async def write_examples(ctx: Context, question: Question) -> dict[int, str] | None:
    recipe = ctx.config.examples_recipe(question.task)
    examples = ctx.store.examples(question.id, recipe)
    if examples is None:
        completion = await ctx.ask(
            Stage.EXAMPLES,
            ctx.config.example_model,
            prompts.score_examples(question.persona.text, question.text, question.task),
            schema=ScoreExamples,
            persona=question.persona,
            task=question.task,
            questions=[question],
        )
        if completion is None:
            return None
        examples = completion.parsed.by_level()
        ctx.store.save_examples(question.id, recipe, examples)
    ctx.progress.done(Stage.EXAMPLES)
    return examples
