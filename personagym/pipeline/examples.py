"""Stage 4: one example answer per rubric level, for this persona and question, to anchor the judges.

They depend on persona, question and rubric only, not on the agent's answer, so they are made once
and reused by every agent evaluated on the same questions. (Upstream wrote them and then never
showed them to its judges; here they are part of every judge prompt.)
"""

from __future__ import annotations

from personagym.llm import CallFailed, Request
from personagym.method import ScoreExamples, prompts
from personagym.pipeline.context import Context, Question


async def write_examples(ctx: Context, question: Question) -> dict[int, str] | None:
    recipe = ctx.config.examples_recipe(question.task)
    examples = ctx.store.examples(question.id, recipe)
    if examples is None:
        request = Request.of(
            *prompts.score_examples(question.persona.text, question.text, question.task),
            schema=ScoreExamples,
            sampling=ctx.config.example_sampling,
            role="examples",
        )
        try:
            completion = await ctx.gateway.complete(ctx.config.example_model, request)
        except CallFailed as exc:
            ctx.fail("examples", question.persona, exc.failure, task=question.task, question=question)
            return None
        examples = completion.parsed.by_level()
        ctx.store.save_examples(question.id, recipe, examples)
    ctx.progress.done("examples")
    return examples
