"""The `personagym` command: thin wrappers over the library, and the one place errors become exit codes.

Exit codes: 0 success, 1 a model or internal failure, 2 bad input (one line with the fix), 130 Ctrl-C.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from personagym.errors import InvalidParameter, UserError

DEFAULT_DB = "personagym.db"
# Library parameters whose flag has another name; the rest are the parameter with dashes.
FLAGS = {"max_environments": "--environments"}


def flag_for(param: str) -> str:
    return FLAGS.get(param, "--" + param.replace("_", "-"))


def settings_from(
    config: dict[str, Any], openai_base_url: str | None, anthropic_base_url: str | None, structured: str | None = None
) -> dict:
    from personagym.llm.spec import resolve_settings
    from personagym.llm.structured import parse_choice

    structured = structured or config.get("structured_output")
    parse_choice(structured, "--structured-output")  # refuse a typo before anything runs
    openai_flags = {"base_url": openai_base_url, "structured_output": structured}
    return {
        "openai": resolve_settings("openai", flags=openai_flags, config=config.get("openai")),
        "anthropic": resolve_settings(
            "anthropic", flags={"base_url": anthropic_base_url}, config=config.get("anthropic")
        ),
    }


def db_path(ctx: click.Context, db: str | None) -> str:
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


def _register() -> None:
    """Commands live in their own modules; importing them attaches them to `cli`."""
    from personagym.cli import cache, compare, merge, models, report, results, run  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    _register()
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
        # The library names its parameters; the user typed flags.
        message = f"{flag_for(exc.param)} {exc.problem}" if isinstance(exc, InvalidParameter) else str(exc)
        click.echo(f"error: {message}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if debug:
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True)
        sys.exit(1)
