"""`personagym cache stats|clear`."""

from __future__ import annotations

import click

from personagym.cli import db_option, db_path


@click.group()
def cache() -> None:
    """Inspect or clear the cache of model replies."""


@cache.command("stats")
@db_option
@click.pass_context
def cache_stats(ctx: click.Context, db: str | None) -> None:
    """How many replies are cached, per model.

    \b
    Examples:
      personagym cache stats
    """
    from personagym.llm.cache import Cache
    from personagym.store.db import connect_read

    path = db_path(ctx, db)
    stats = Cache(connect_read(path)).stats()  # only reads: a mistyped --db is not created
    click.echo(f"{stats['entries']} cached replies in {path}")
    for m in stats["models"]:
        click.echo(f"  {m['model']}: {m['entries']} replies, {m['text_bytes'] / 1024:.1f} KiB of text")


@cache.command("clear")
@db_option
@click.option("--model", "model", metavar="SPEC", help="Only this model's replies.")
@click.pass_context
def cache_clear(ctx: click.Context, db: str | None, model: str | None) -> None:
    """Forget cached replies (all, or one model's), so the next run asks again.

    \b
    Examples:
      personagym cache clear --model local
      personagym cache clear
    """
    from personagym.llm.cache import Cache
    from personagym.llm.spec import parse_spec
    from personagym.store import connect

    name = str(parse_spec(model)) if model else None
    removed = Cache(connect(db_path(ctx, db), create=False)).clear(name)  # a mistyped --db is not created
    click.echo(f"removed {removed} cached replies" + (f" of {name}" if name else ""))
