"""Stage 5 as upstream PersonaGym grades (`--rubrics upstream`): its rubric and grading prompt, read
from a verified copy of its files, up to five items per call, each verdict read from its closing
sentence "Therefore, the final score is N" (personagym.method.upstream; docs/upstream-rubrics.md).

The reply is plain text, so the request carries a parser instead of a JSON schema: a reply in which
any item lacks a score 1..5 is invalid, asked again and, if never valid, a recorded failure of every
item in the call, never a silent 0. Verdicts are stored as in the default mode, each with its
item's whole evaluation as the reasoning.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from personagym.benchmark import default_method_dir
from personagym.llm import Completion, Request
from personagym.method import Stage, Task
from personagym.method.upstream import UpstreamMethod, VerdictParser, load_method
from personagym.pipeline.config import RunConfig
from personagym.pipeline.context import Context, Question
from personagym.pipeline.judging import batch_order
from personagym.pipeline.roles import Role


def upstream_method(config: RunConfig) -> UpstreamMethod:
    """The run's copy of upstream's method files (--rubrics-dir, else the downloaded one), verified."""
    return _load(Path(config.rubrics_dir or default_method_dir()).expanduser().resolve())


@lru_cache(maxsize=4)
def _load(directory: Path) -> UpstreamMethod:
    return load_method(directory)  # once per process: the files are checked, and then they cannot change


async def judge_upstream(
    ctx: Context, judge: Role, task: Task, items: list[tuple[Question, str, dict[int, str]]], sample: int = 0
) -> None:
    items = batch_order(items, judge, sample, ctx.config.judge_order == "shuffled")
    persona = items[0][0].persona
    messages = upstream_method(ctx.config).messages(
        persona.text, task.name, [(q.text, answer, examples) for q, answer, examples in items]
    )
    request = Request.of(
        *messages, sampling=judge.sampling, role=judge.kind, sample=sample, parser=VerdictParser(len(items))
    )
    questions = [q for q, _, _ in items]

    def keep(completion: Completion) -> None:  # the verdicts, stored with the call that gave them
        ctx.store.save_verdicts(
            ctx.run_id,
            judge.model,
            [(q.id, v.score, v.evaluation, v.index) for q, v in zip(questions, completion.parsed)],
            sample,
        )

    completion = await ctx.attempt(
        Stage.VERDICTS, ctx.gateway.complete(ctx.models[judge], request, keep), persona, task, questions, judge
    )
    if completion is not None:
        ctx.progress.done(Stage.VERDICTS, len(items))
