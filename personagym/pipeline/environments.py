"""Stage 1: choose, from the catalog, the settings in which this persona would plausibly be found."""

from __future__ import annotations

import functools
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from personagym.method import Environment, EnvironmentChoice, Stage, prompts
from personagym.pipeline.context import Context, Persona


@functools.lru_cache(maxsize=8)
def choice_schema(names: tuple[str, ...], most: int) -> type:
    """Names constrained to the catalog (an enum in the JSON schema, so constrained decoders obey it
    and the gateway rejects anything else), between 1 and `most` of them."""
    return msgspec.defstruct(
        "EnvironmentChoice",
        [("environments", Annotated[list[Literal[names]], Meta(min_length=1, max_length=most)])],  # type: ignore[valid-type]
        bases=(EnvironmentChoice,),
    )


async def select_environments(ctx: Context, persona: Persona) -> list[Environment] | None:
    recipe = ctx.config.environments_recipe(ctx.catalog_id)
    names = ctx.store.environments(persona.id, recipe)
    if names is None:
        most = min(ctx.config.max_environments, len(ctx.catalog))
        completion = await ctx.ask(
            Stage.ENVIRONMENTS,
            ctx.config.generator,
            prompts.environment_selection(persona.text, ctx.catalog, most),
            schema=choice_schema(tuple(e.name for e in ctx.catalog), most),
            persona=persona,
        )
        if completion is None:
            return None
        names = list(dict.fromkeys(completion.parsed.environments))  # a repeated name counts once
        names = ctx.store.save_environments(persona.id, recipe, names)  # another run may have written first
    ctx.progress.done(Stage.ENVIRONMENTS)
    by_name = {e.name: e for e in ctx.catalog}
    return [by_name[n] for n in names if n in by_name]
