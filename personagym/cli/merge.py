"""`personagym merge`: join the databases of a run split with --shard K/N into one run."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("merge")
@click.argument("out", metavar="OUT.db")
@click.argument("shards", metavar="SHARD.db...", nargs=-1, required=True)
@click.option("--run", "run_name", metavar="NAME", help="The shard runs to merge, if a database holds several; also the merged run's name.")
def merge_command(out: str, shards: tuple[str, ...], run_name: str | None) -> None:
    """Join the databases of a run split with --shard K/N into one run in OUT.db.

    Every shard 1..N must be given once, run with the same settings. OUT.db is created if missing;
    the merged run gets the name the unsharded command would give it (or the shards' --run NAME),
    so running that command with --db OUT.db resumes it without calling any model again.

    \b
    Examples:
      personagym benchmark --agent openai:gpt-4o-mini --shard 1/2    # machine 1
      personagym benchmark --agent openai:gpt-4o-mini --shard 2/2    # machine 2
      personagym merge personagym.db personagym.shard-1-of-2.db personagym.shard-2-of-2.db
    """
    from personagym.pipeline.evaluate import run_name_for
    from personagym.pipeline.shard_set import read_shards
    from personagym.pipeline.shards import shard_text
    from personagym.score import run_results
    from personagym.store.db import connect_read
    from personagym.store.merge import OUT_FIX, write_merged
    from personagym.store.runs import RunStore
    from personagym.summary import summary_lines

    target = Path(out)
    whole = read_shards([Path(s) for s in shards], target, run_name, run_name_for)
    try:
        write_merged(target, whole.to_merge())
    finally:
        whole.close()
    store = RunStore(connect_read(target, label="merge output", fix=OUT_FIX))
    run = store.find_run(whole.name)
    assert run is not None
    click.echo(f"merged {len(whole.shards)} shards ({len(whole.personas)} personas) into {out} as run {whole.name}")
    for line in summary_lines(run_results(store, run)):
        click.echo(line)
    for shard in whole.unfinished():
        click.echo(
            f"note: shard {shard_text(shard.k, shard.n)} ({shard.path}) is {shard.run.status}, so the merged run is "
            f"{whole.status}: finish that shard and merge again, or resume the merged run with the unsharded "
            f"command and --db {out}",
            err=True,
        )
