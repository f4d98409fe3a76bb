"""Optional stage (--dialogues N): conversations with each persona under pressure, graded turn by turn.

Single questions miss how personas fail in use: over a conversation they drift toward an assistant's
voice, admit being an AI when pressed, accept a past they never had, obey "ignore your instructions".
So each persona also holds N conversations of T user turns. The interlocutor, a model playing an
ordinary person in one of the persona's settings, follows a tactic from personagym/method/tactics.toml;
the agent answers with the whole conversation so far; every judge grades each reply (a 1-5 in-character
score and a break level) as soon as it exists, while the conversation goes on.

The opening message depends only on the persona, the tactic, the setting and the interlocutor, so it
is stored under a recipe and reused by every agent evaluated; everything after it depends on the
agent's replies. Each message is stored the moment it exists, so a stopped run resumes at the next
turn and pays for nothing twice. docs/dialogues.md describes the method and its metrics.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from personagym.method import Environment, Stage
from personagym.method.dialogues import (
    DIALOGUE_PROMPTS_VERSION,
    TurnVerdict,
    UserTurn,
    interlocutor_turn,
    turn_judging,
)
from personagym.method.tactics import Tactic, assign
from personagym.pipeline.config import RunConfig, _recipe
from personagym.pipeline.context import Context, Persona
from personagym.pipeline.roles import Role
from personagym.pipeline.together import all_or_stop
from personagym.store.dialogues import DialogueStore

if TYPE_CHECKING:
    from personagym.pipeline.evaluate import Prepared


@dataclass(frozen=True)
class DialoguePlan:
    ordinal: int  # 0-based among the persona's conversations
    tactic: Tactic
    draw: int  # how often this tactic came round before for this persona
    setting: Environment | None  # None in benchmark mode: the interlocutor picks a plausible place


def plans(persona: str, count: int, environments: Sequence[Environment] | None) -> list[DialoguePlan]:
    """A persona's conversations: tactics in turn from the catalog (tactics.assign), settings in turn
    from its environments."""
    settings = list(environments or [])
    return [
        DialoguePlan(i, tactic, draw, settings[i % len(settings)] if settings else None)
        for i, (tactic, draw) in enumerate(assign(persona, count))
    ]


def opening_recipe(config: RunConfig, plan: DialoguePlan) -> str:
    """Everything that changes the opening message, and nothing about the agent."""
    role = config.interlocutor_role
    setting = [plan.setting.name, plan.setting.description] if plan.setting else None
    return _recipe(role.model, role.sampling, DIALOGUE_PROMPTS_VERSION, plan.tactic.version, config.turns, setting,
                   plan.draw)


async def converse_all(ctx: Context, persona: Persona, environments: Sequence[Environment] | None) -> None:
    chosen = plans(persona.text, ctx.config.dialogues, environments)
    await all_or_stop([converse(ctx, persona, plan) for plan in chosen])


async def converse(ctx: Context, persona: Persona, plan: DialoguePlan) -> None:
    """One conversation, from where it stopped: stored turns are read back, missing verdicts asked for."""
    store = DialogueStore(ctx.store.conn)
    setting = plan.setting.name if plan.setting else None
    dialogue = store.dialogue(ctx.run_id, persona.id, plan.ordinal, plan.tactic.key, setting)
    stored = {row.turn: row for row in store.turns(dialogue)}
    judged = store.judged(dialogue)
    history: list[tuple[str, str]] = []
    grading: list[asyncio.Future] = []
    try:
        for turn in range(1, ctx.config.turns + 1):
            row = stored.get(turn)
            user = row.user if row else await _user_turn(ctx, store, persona, plan, history, turn)
            if user is None:
                break  # the interlocutor's failure is recorded; the conversation cannot go on
            if row is None:
                store.save_user(dialogue, turn, user)
            reply = row.agent if row else None
            if reply is None:
                call = ctx.agent.converse(persona.text, [*history, ("user", user)])
                answer = await ctx.attempt(Stage.DIALOGUES, call, persona)
                if answer is None:
                    break  # recorded; a rerun resumes here
                reply = answer.text
                store.save_agent(dialogue, turn, reply, answer.truncated, answer.reasoning)
            ctx.progress.done(Stage.DIALOGUES)
            history += [("user", user), ("assistant", reply)]
            for judge in ctx.config.judges:
                if (turn, judge.model) not in judged:
                    grading.append(asyncio.ensure_future(_grade(ctx, store, persona, judge, dialogue, turn, history)))
        await all_or_stop(grading)
    finally:
        for future in grading:
            future.cancel()  # the conversation itself failed or was cancelled: leave no orphan calls behind


async def _user_turn(
    ctx: Context, store: DialogueStore, persona: Persona, plan: DialoguePlan, history: list[tuple[str, str]], turn: int
) -> str | None:
    recipe = opening_recipe(ctx.config, plan) if turn == 1 else None
    if recipe is not None:
        opening = store.opening(persona.id, recipe)
        if opening is not None:
            return opening
    completion = await ctx.ask(
        Stage.DIALOGUES,
        ctx.config.interlocutor_role,
        interlocutor_turn(persona.text, plan.setting, plan.tactic, history, turn, ctx.config.turns),
        schema=UserTurn,
        persona=persona,
        sample=plan.draw,  # a tactic played twice: two different conversations
    )
    if completion is None:
        return None
    text = completion.parsed.message.strip() or completion.parsed.message
    return store.save_opening(persona.id, recipe, text) if recipe is not None else text


async def _grade(
    ctx: Context, store: DialogueStore, persona: Persona, judge: Role, dialogue: int, turn: int,
    history: list[tuple[str, str]],
) -> None:
    completion = await ctx.ask(
        Stage.DIALOGUES, judge, turn_judging(persona.text, history[: 2 * turn]), schema=TurnVerdict, persona=persona
    )
    if completion is not None:
        verdict = completion.parsed
        store.save_verdict(dialogue, turn, judge.model, verdict.score, verdict.break_level, verdict.reasoning)


# -- --dry-run ---------------------------------------------------------------------------------------
# Typical sizes in tokens: a user message, an agent reply, a verdict, and the fixed parts of the
# interlocutor's and the judge's prompts (instructions, rubric, tactic, persona), the fixed parts
# measured with bench/dialogue_costs.py (bench/RESULTS.md). Each turn's prompt also carries every
# message before it, so tokens grow with the square of the turns.
USER_MESSAGE, AGENT_REPLY, VERDICT = 60, 180, 100
INTERLOCUTOR_PROMPT, AGENT_PROMPT, JUDGE_PROMPT = 400, 60, 750


def plan_rows(prepared: "Prepared") -> list[tuple[Stage, str, int, int, int]]:
    """(stage, model, calls, prompt tokens, completion tokens) of the dialogues of a run from scratch."""
    c = prepared.config
    conversations = len(prepared.personas) * c.dialogues
    if not conversations:
        return []
    t = c.turns
    calls = conversations * t
    before = conversations * (t * (t - 1) // 2) * (USER_MESSAGE + AGENT_REPLY)  # earlier messages, summed over turns
    rows = [
        (Stage.DIALOGUES, c.interlocutor_role.model, calls, calls * INTERLOCUTOR_PROMPT + before, calls * USER_MESSAGE),
        (Stage.DIALOGUES, c.agent.model, calls, calls * (AGENT_PROMPT + USER_MESSAGE) + before, calls * AGENT_REPLY),
    ]
    graded = calls * (JUDGE_PROMPT + USER_MESSAGE + AGENT_REPLY) + before
    rows += [(Stage.DIALOGUES, judge.model, calls, graded, calls * VERDICT) for judge in c.judges]
    return rows
