"""The checks that a set of shard databases makes one whole run, before `personagym merge` joins
them (what a shard is: `personagym.pipeline.shards`; copying the rows: `personagym.store.merge`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from personagym.errors import UserError
from personagym.pipeline.shards import SHARD_KEY, parse_shard, shard_db, shard_suffix, shard_text
from personagym.store.db import connect_read
from personagym.store.merge import MergedRun, Part, show_value
from personagym.store.runs import RunRow, RunStore

# The least finished status first: a merged run is only as finished as its least finished shard.
_PROGRESS = ("running", "interrupted", "done")


@dataclass
class Shard:
    path: Path
    conn: sqlite3.Connection
    run: RunRow
    k: int
    n: int
    personas: list[tuple[int, int, str]]  # (position in the whole list, persona id here, text)


@dataclass
class ShardSet:
    shards: list[Shard]  # by K
    config: dict[str, Any]  # the unsharded run's config: the shards' without the shard
    personas: list[str]  # the whole list, in its order
    status: str
    name: str  # of the merged run

    def unfinished(self) -> list[Shard]:
        return [s for s in self.shards if s.run.status != "done"]

    def close(self) -> None:
        for shard in self.shards:
            shard.conn.close()

    def to_merge(self) -> MergedRun:
        """What the store needs to write the merged run."""
        parts = [Part(s.path, s.conn, s.run, [(pos, pid) for pos, pid, _text in s.personas]) for s in self.shards]
        return MergedRun(self.name, self.status, self.config, parts)


def read_shards(
    paths: Sequence[Path],
    out: Path,
    run: str | None,
    default_name: Callable[[dict[str, Any], list[str]], str],
) -> ShardSet:
    """Open the shard databases and check they make one whole run; nothing is written but migrations.

    `default_name(config, personas)` is the name an unsharded run of that config would get.
    """
    seen: dict[Path, Path] = {out.resolve(): out}
    for path in paths:
        if not path.is_file():
            raise UserError(f"shard database {path} does not exist: pass the files the --shard K/N runs wrote")
        if path.resolve() in seen:
            other = seen[path.resolve()]
            if other is out:
                raise UserError(f"{path} is both the output and a shard: write the merge into a new file")
            raise UserError(f"{path} is given twice: pass each shard's database once")
        seen[path.resolve()] = path
    shards: list[Shard] = []
    try:
        for path in paths:
            shards.append(_read_shard(path, run))
        whole = _check(shards, default_name)
    except BaseException:
        for shard in shards:
            shard.conn.close()
        raise
    return whole if run is None else _renamed(whole, run)


def _read_shard(path: Path, run: str | None) -> Shard:
    conn = connect_read(path, label="shard database", fix="pass the databases the --shard K/N runs wrote")
    try:
        runs = [r for r in RunStore(conn).runs() if SHARD_KEY in r.config]
        if run is not None:
            runs = [r for r in runs if run in (r.name, _base_name(r))]
        if not runs:
            if run is None:
                raise UserError(f"{path} holds no shard run: pass databases written by `personagym benchmark --shard K/N`")
            raise UserError(f"{path} holds no shard run named {run!r}: pass the --run NAME the shards were run with")
        if len(runs) > 1:
            names = ", ".join(r.name for r in runs)
            raise UserError(f"{path} holds {len(runs)} shard runs ({names}): choose one with --run NAME")
        found = runs[0]
        k, n = parse_shard(found.config[SHARD_KEY])
        personas = conn.execute(
            "SELECT rp.ordinal, p.id, p.text FROM run_personas rp JOIN personas p ON p.id = rp.persona_id "
            "WHERE rp.run_id = ? ORDER BY rp.ordinal",
            (found.id,),
        ).fetchall()
    except BaseException:
        conn.close()
        raise
    return Shard(path, conn, found, k, n, [tuple(p) for p in personas])


def _base_name(run: RunRow) -> str:
    """A shard run's name without its -shard-K-of-N (the whole run's default name, if it had one)."""
    return run.name.removesuffix(shard_suffix(*parse_shard(run.config[SHARD_KEY])))


def _check(shards: list[Shard], default_name: Callable[[dict[str, Any], list[str]], str]) -> ShardSet:
    first = shards[0]
    config = _unsharded(first.run.config)
    for shard in shards[1:]:
        other = _unsharded(shard.run.config)
        for key in sorted(set(config) | set(other)):
            if config.get(key) != other.get(key):
                raise UserError(
                    f"{shard.path} was run with a different {key} ({show_value(other.get(key))}) than {first.path} "
                    f"({show_value(config.get(key))}): merge shards run with the same settings, or rerun that shard"
                )
    n = first.n
    for shard in shards:
        if shard.n != n:
            raise UserError(
                f"{shard.path} is shard {shard.k}/{shard.n} but {first.path} is shard {first.k}/{n}: "
                "merge the shards of one split, all with the same N"
            )
    by_k: dict[int, Shard] = {}
    for shard in shards:
        if shard.k in by_k:
            raise UserError(
                f"shard {shard.k}/{n} is given twice ({by_k[shard.k].path} and {shard.path}): pass each shard once"
            )
        by_k[shard.k] = shard
    missing = [k for k in range(1, n + 1) if k not in by_k]
    if missing:
        listed = ", ".join(shard_text(k, n) for k in missing)
        files = " ".join(shard_db(k, n) for k in missing)
        raise UserError(f"shard {listed} missing: run it (--shard {shard_text(missing[0], n)}) and pass its database too ({files})")
    ordered = [by_k[k] for k in range(1, n + 1)]
    personas = _whole_list(ordered)
    status = min((s.run.status for s in ordered), key=lambda s: _PROGRESS.index(s) if s in _PROGRESS else -1)
    names = {s.run.name for s in ordered}
    name = names.pop() if len(names) == 1 else default_name(config, personas)  # a name the user chose, or ours
    for shard in ordered:
        if shard.run.name.endswith(shard_suffix(shard.k, n)) and shard.run.name != name + shard_suffix(shard.k, n):
            # Default names carry a digest of the whole persona list: this shard was split from another one.
            raise UserError(
                f"{shard.path} is a shard of another persona list than the other shards: run every shard "
                "on the same personas"
            )
    return ShardSet(ordered, config, personas, status, name)


def _whole_list(shards: list[Shard]) -> list[str]:
    """The personas of all shards in their original order, checking they tile it exactly."""
    at: dict[int, str] = {}
    owner: dict[str, Shard] = {}
    for shard in shards:
        for position, _pid, text in shard.personas:
            if text in owner:
                raise UserError(
                    f"persona {show_value(text)} is in both {owner[text].path} and {shard.path}: the shards overlap; "
                    "merge the shards of one split"
                )
            owner[text] = shard
            if position % shard.n != shard.k - 1 or position in at:
                raise UserError(
                    f"{shard.path} holds persona {show_value(text)} at position {position + 1}, which is not shard "
                    f"{shard_text(shard.k, shard.n)}'s: run every shard on the same personas"
                )
            at[position] = text
    if sorted(at) != list(range(len(at))):
        gap = next(i for i in range(len(at) + 1) if i not in at)
        raise UserError(
            f"no shard holds persona {gap + 1} of the whole list: the shards were split from different persona "
            "lists; run every shard on the same personas"
        )
    return [at[i] for i in range(len(at))]


def _unsharded(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != SHARD_KEY}


def _renamed(whole: ShardSet, name: str) -> ShardSet:
    whole.name = name
    return whole
