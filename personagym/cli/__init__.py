"""The `personagym` command: thin wrappers over the library, and the one place errors become exit codes.

Exit codes: 0 success, 1 a model or internal failure, 2 bad input or an unusable file or disk (one line
with the fix), 130 Ctrl-C, 143 SIGTERM (handled as Ctrl-C: a run is marked interrupted and resumes).
"""

from __future__ import annotations

import errno
import signal
import sqlite3
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

import click

from personagym.errors import InvalidParameter, UserError

if TYPE_CHECKING:
    from personagym.config import Key

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


# Each command's module, imported only when that command (or its help, or the list of commands) is
# wanted: importing all of them cost every run ~5 ms of CPU at start.
COMMANDS = {
    "alignment": "personagym.cli.compare:alignment_command",
    "audit": "personagym.cli.audit:audit_command",
    "benchmark": "personagym.cli.run:benchmark_command",
    "cache": "personagym.cli.cache:cache",
    "compare": "personagym.cli.compare:compare_command",
    "export": "personagym.cli.results:export_command",
    "merge": "personagym.cli.merge:merge_command",
    "models": "personagym.cli.models:models",
    "report": "personagym.cli.report:report_command",
    "run": "personagym.cli.run:run_command",
    "runs": "personagym.cli.results:runs_command",
    "show": "personagym.cli.results:show_command",
}


class LazyGroup(click.Group):
    """A group whose commands are named in COMMANDS and imported when one is looked up (click's
    "lazy loading subcommands" pattern): help, completion and dispatch all go through these two."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, name = COMMANDS[cmd_name].split(":")
        # __import__ rather than importlib.import_module: it takes the interpreter's own import path,
        # which `python -X importtime` times, so a command's module and its imports stay in that list.
        return getattr(__import__(module, fromlist=[name]), name)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple:
        if args and args[0] not in COMMANDS:
            # A mistyped command: click (8.4+) suggests the near names from self.commands, which holds
            # only what is loaded, so load them all; the process is about to stop anyway.
            for name in COMMANDS:
                self.add_command(self.get_command(ctx, name), name)
        return super().resolve_command(ctx, args)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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

        from personagym.secrets import install_log_redaction

        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
        for noisy in ("httpx", "httpx2", "httpcore", "openai", "anthropic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        install_log_redaction()  # every line and traceback --debug prints, whichever logger wrote it
    ctx.obj = {"config": load_config(config_path, keys=config_keys())}


def config_keys() -> dict[str, "Key"]:
    """What the config file may set: every flag of `run` and `benchmark` (by its setting's name or by
    the flag's, with underscores), the personas file and the benchmark folder. Read from the options
    themselves, so a new flag is a config key at once, of the flag's type."""
    from personagym.cli.run import run_options
    from personagym.config import Key

    keys = {"personas": Key("text"), "benchmark_dir": Key("text")}
    for param in click.command()(run_options(lambda **_: None)).params:
        if not isinstance(param, click.Option):
            continue
        if param.is_flag:
            key = Key("bool")
        elif isinstance(param.type, click.Choice):
            key = Key("choice", tuple(param.type.choices))
        elif isinstance(param.type, click.types.IntParamType):
            key = Key("int")
        elif isinstance(param.type, click.types.FloatParamType):
            key = Key("number")
        else:
            key = Key("texts" if "," in (param.metavar or "") else "text")
        keys[param.name] = key
        for flag in param.opts:
            alias = flag.lstrip("-").replace("-", "_")
            if flag.startswith("--") and alias != param.name:
                keys[alias] = Key(key.kind, key.choices, param=param.name)
    return keys


def main(argv: list[str] | None = None) -> None:
    from personagym.summary import printable

    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    stop = _Stop()
    try:
        with stop.on_sigterm():
            cli.main(args, prog_name="personagym", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo(stop.message(), err=True)
        sys.exit(stop.exit_code())
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UserError as exc:
        if debug:
            raise
        # The library names its parameters; the user typed flags.
        message = f"{flag_for(exc.param)} {exc.problem}" if isinstance(exc, InvalidParameter) else str(exc)
        click.echo(f"error: {printable(message)}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if debug:
            raise
        explained = environment_problem(exc)
        if explained is not None:
            click.echo(f"error: {printable(explained)}", err=True)
            sys.exit(UserError.exit_code)
        click.echo(
            f"internal error: {type(exc).__name__}: {printable(exc)} (rerun with --debug for the traceback)", err=True
        )
        sys.exit(1)


def environment_problem(exc: BaseException) -> str | None:
    """A failure that is the disk's or the database file's, not ours (a full disk, a read-only or
    damaged file), as one line with the fix; None for anything else. Runs write as they go, in
    transactions, so a run stopped by one of these resumes where it stopped."""
    if isinstance(exc, sqlite3.Error):
        from personagym.store.db import problem

        return problem(exc)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"{exc.filename or 'a file'}: {exc.strerror}: free some space and run the same command again "
            "(a run resumes where it stopped)"
        )
    if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{exc.filename or 'a file'}: {exc.strerror}: choose a path you may write, or fix the permissions"
    return None


class _Stop:
    """How the command was stopped: Ctrl-C (SIGINT), or SIGTERM (a `kill`, a service manager, a CI
    timeout), which is handled exactly as Ctrl-C and told apart only by the message and exit code."""

    def __init__(self) -> None:
        self.signal = signal.SIGINT

    def message(self) -> str:
        return "interrupted" if self.signal == signal.SIGINT else "interrupted (SIGTERM)"

    def exit_code(self) -> int:
        return 128 + int(self.signal)

    def _on_term(self, signum: int, frame: Any) -> None:
        self.signal = signal.SIGTERM
        # Whatever Ctrl-C would do now: asyncio.run's handler cancels the running task (so a run
        # marks itself interrupted and releases its lock), Python's own raises KeyboardInterrupt.
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    @contextmanager
    def on_sigterm(self) -> Iterator[None]:
        try:
            previous = signal.signal(signal.SIGTERM, self._on_term)
        except ValueError:  # not the main thread, where signals cannot be handled: leave them be
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)
