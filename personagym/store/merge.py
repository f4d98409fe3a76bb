"""Sharded runs: a shard's personas at their places in the whole list, and `personagym merge`,
which joins shard databases into the one run an unsharded run would have written.

A run split with ``--shard K/N`` evaluates persona i (0-based, in input order) when i mod N == K-1,
records "K/N" in its config, and keeps each persona's position in the whole list as its ordinal, so
a merge can restore the unsharded order. Merging copies the rows of each shard run (and everything
they rest on: personas, environments, questions, score examples, cached replies) into one database,
renumbering ids; columns are read from the schema, so a migration that adds a column needs no
change here.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from personagym.errors import UserError
from personagym.store.db import connect
from personagym.store.runs import RunRow, RunStore

SHARD_KEY = "shard"  # the config field of a shard run: "K/N"
_SHARD_FIX = "pass --shard K/N with 1 <= K <= N, e.g. --shard 2/4 for the second of four shards"

# The least finished status first: a merged run is only as finished as its least finished shard.
_PROGRESS = ("running", "interrupted", "done")


def parse_shard(value: str | Sequence[int]) -> tuple[int, int]:
    """'K/N' (or a (K, N) pair) as two checked numbers."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        k, n = value
    else:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(value))
        if match is None:
            raise UserError(f"--shard {value!r} is not of the form K/N: {_SHARD_FIX}")
        k, n = int(match[1]), int(match[2])
    if not (isinstance(k, int) and isinstance(n, int)) or not 1 <= k <= n:
        raise UserError(f"--shard {k}/{n} is out of range: {_SHARD_FIX}")
    return k, n


def shard_text(k: int, n: int) -> str:
    return f"{k}/{n}"


def shard_suffix(k: int, n: int) -> str:
    """What a shard run's default name adds to the default name of the whole run."""
    return f"-shard-{k}-of-{n}"


def shard_db(k: int, n: int) -> str:
    """A shard's default database: one file per shard, so shards can run side by side."""
    return f"personagym.shard-{k}-of-{n}.db"


def shard_positions(count: int, k: int, n: int) -> list[int]:
    """The 0-based positions, among `count` personas, that shard K of N evaluates."""
    return list(range(k - 1, count, n))


def add_personas_at(store: RunStore, run_id: int, persona_ids: Sequence[int], positions: Sequence[int]) -> None:
    """A shard's personas, each under its position in the whole list (not 0, 1, 2... as in a plain run)."""
    store.conn.execute("BEGIN IMMEDIATE")
    store.conn.executemany(
        "INSERT OR IGNORE INTO run_personas (run_id, persona_id, ordinal) VALUES (?, ?, ?)",
        [(run_id, pid, pos) for pid, pos in zip(persona_ids, positions)],
    )
    store.conn.execute("COMMIT")


# -- reading and checking the shards -----------------------------------------------------------


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
    conn = connect(path)
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
                    f"{shard.path} was run with a different {key} ({_show(other.get(key))}) than {first.path} "
                    f"({_show(config.get(key))}): merge shards run with the same settings, or rerun that shard"
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
                    f"persona {_show(text)} is in both {owner[text].path} and {shard.path}: the shards overlap; "
                    "merge the shards of one split"
                )
            owner[text] = shard
            if position % shard.n != shard.k - 1 or position in at:
                raise UserError(
                    f"{shard.path} holds persona {_show(text)} at position {position + 1}, which is not shard "
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


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- writing the merged run --------------------------------------------------------------------


def write_merged(out: Path, whole: ShardSet) -> None:
    """Write the merged run into `out`: all of it or, on any error, nothing.

    A new file is built beside the target and renamed into place; an existing one is written in a
    single transaction.
    """
    if out.exists():
        conn = connect(out)
        try:
            _merge_into(conn, out, whole)
        finally:
            conn.close()
        return
    if not out.parent.is_dir():
        raise UserError(f"the folder of {out} does not exist: create it or write the merge elsewhere")
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".merging")
    os.close(fd)
    try:
        conn = connect(tmp)
        try:
            _merge_into(conn, out, whole)
            conn.execute("PRAGMA journal_mode=DELETE")  # one self-contained file to rename; connect() restores WAL
        finally:
            conn.close()
        os.replace(tmp, out)
    finally:
        for leftover in (tmp, tmp + "-wal", tmp + "-shm"):
            if os.path.exists(leftover):
                os.unlink(leftover)


@dataclass(frozen=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    auto_id: str | None  # an INTEGER PRIMARY KEY: renumbered in the merged database
    refs: dict[str, str]  # column -> the table whose id it holds


def _table(conn: sqlite3.Connection, name: str) -> _Table:
    info = conn.execute(f"PRAGMA table_info({name})").fetchall()  # cid, name, type, notnull, default, pk
    keys = [row for row in info if row[5]]
    auto = keys[0][1] if len(keys) == 1 and keys[0][2].upper() == "INTEGER" else None
    refs = {row[3]: row[2] for row in conn.execute(f"PRAGMA foreign_key_list({name})")}  # id, seq, table, from
    return _Table(name, tuple(row[1] for row in info), auto, refs)


# Rows shared between runs, found again by these keys; an existing row must hold the same content.
_KEYS = {
    "personas": ("text",),
    "environment_sets": ("persona_id", "recipe"),
    "questions": ("persona_id", "task", "recipe", "ordinal"),
    "examples": ("question_id", "recipe"),
    "llm_cache": ("key",),
}
_RUN_PERSONAS = "SELECT persona_id FROM run_personas WHERE run_id = ?"
# Whole groups of questions (a persona's questions of one recipe), not only the ones the run asked:
# the store treats a stored group as complete, and benchmark mode stores all ten of a task's questions.
_RUN_QUESTIONS = (
    f"SELECT id FROM questions WHERE persona_id IN ({_RUN_PERSONAS}) AND recipe IN "
    "(SELECT q.recipe FROM run_questions rq JOIN questions q ON q.id = rq.question_id WHERE rq.run_id = ?)"
)


class _Copier:
    """Copies rows of one shard into the merged database, translating ids as it goes."""

    def __init__(self, dst: sqlite3.Connection, out: Path, shard: Shard, run_id: int):
        self.dst, self.out, self.shard = dst, out, shard
        self.maps: dict[str, dict[Any, Any]] = {"runs": {shard.run.id: run_id}, "personas": {}, "questions": {}}
        self.tables: dict[str, _Table] = {}

    def table(self, name: str) -> _Table:
        if name not in self.tables:
            self.tables[name] = _table(self.dst, name)
        return self.tables[name]

    def read(self, name: str, where: str, args: tuple) -> list[dict[str, Any]]:
        table = self.table(name)
        rows = self.shard.conn.execute(f"SELECT {', '.join(table.columns)} FROM {name} {where}", args)
        items = []
        for row in rows:
            item = dict(zip(table.columns, row))
            for column, target in table.refs.items():
                if item[column] is None:
                    continue
                if target not in self.maps:  # a newer table merge does not carry yet: refuse, never dangle
                    raise RuntimeError(f"merge cannot carry {name}.{column}, which refers to table {target}")
                item[column] = self.maps[target][item[column]]
            items.append(item)
        return items

    def copy(self, name: str, where: str, args: tuple) -> None:
        for item in self.read(name, where, args):
            self.insert(name, item)

    def insert(self, name: str, item: dict[str, Any]) -> None:
        table = self.table(name)
        columns = [c for c in table.columns if c != table.auto_id]
        values = [item[c] for c in columns]
        key = _KEYS.get(name)
        sql = f"INTO {name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        if key is None:
            new_id = self.dst.execute("INSERT " + sql, values).lastrowid
        else:
            self.dst.execute("INSERT OR IGNORE " + sql, values)
            new_id = self._existing(table, columns, item, key, values)
        if table.auto_id is not None and name in self.maps:
            self.maps[name][item[table.auto_id]] = new_id

    def _existing(self, table: _Table, columns: list[str], item: dict, key: tuple[str, ...], values: list) -> Any:
        """The merged database's row under this key, refused if it says something else than the shard's."""
        match = " AND ".join(f"{c} = ?" for c in key)
        found = self.dst.execute(
            f"SELECT {table.auto_id or 'rowid'}, {', '.join(columns)} FROM {table.name} WHERE {match}",
            [item[c] for c in key],
        ).fetchone()
        if table.name != "llm_cache":  # any accepted reply to the same request will do for the cache
            content = [i for i, c in enumerate(columns) if not c.endswith("_at")]
            if [found[1 + i] for i in content] != [values[i] for i in content]:
                raise UserError(
                    f"{self.out} already holds different {table.name.replace('_', ' ')} for a persona of "
                    f"{self.shard.path} (made by another run): merge into a new file"
                )
        return found[0]


def _merge_into(dst: sqlite3.Connection, out: Path, whole: ShardSet) -> None:
    versions = {c.execute("PRAGMA user_version").fetchone()[0] for c in [dst, *(s.conn for s in whole.shards)]}
    if len(versions) != 1:  # connect() migrates every file to this version: a mismatch is a bug
        raise RuntimeError(f"the databases are at different schema versions {sorted(versions)}")
    dst.execute("BEGIN IMMEDIATE")
    try:
        run_id = _open_run(dst, out, whole)
        copiers = [_Copier(dst, out, shard, run_id) for shard in whole.shards]
        # Personas in the order of the whole list, so a new database numbers them as the unsharded
        # run would have (the export orders questions by persona id).
        placed = sorted((pos, i, pid) for i, s in enumerate(whole.shards) for pos, pid, _ in s.personas)
        for _pos, i, pid in placed:
            for item in copiers[i].read("personas", "WHERE id = ?", (pid,)):
                copiers[i].insert("personas", item)
        timed: dict[str, list[tuple[dict[str, Any], _Copier]]] = {"failures": [], "calls": []}
        for copier in copiers:
            rid = copier.shard.run.id
            copier.copy("run_personas", "WHERE run_id = ?", (rid,))
            copier.copy("environment_sets", f"WHERE persona_id IN ({_RUN_PERSONAS})", (rid,))
            copier.copy("questions", f"WHERE id IN ({_RUN_QUESTIONS}) ORDER BY id", (rid, rid))
            copier.copy("examples", f"WHERE question_id IN ({_RUN_QUESTIONS})", (rid, rid))
            for name in ("run_questions", "answers", "verdicts"):
                copier.copy(name, "WHERE run_id = ?", (rid,))
            for name in timed:
                timed[name] += [(item, copier) for item in copier.read(name, "WHERE run_id = ?", (rid,))]
            copier.copy("llm_cache", "", ())
        for name, rows in timed.items():  # interleaved in time, as one run would have written them
            for item, copier in sorted(rows, key=lambda pair: pair[0]["created_at"]):
                copier.insert(name, item)
        dst.execute("COMMIT")
    except BaseException:
        dst.execute("ROLLBACK")
        raise


def _open_run(dst: sqlite3.Connection, out: Path, whole: ShardSet) -> int:
    """The merged run's row: new, or an earlier merge of the same run, emptied to be written again."""
    created = min(s.run.created_at for s in whole.shards)
    updated = max(s.run.updated_at for s in whole.shards)
    row = dst.execute("SELECT id, config FROM runs WHERE name = ?", (whole.name,)).fetchone()
    if row is None:
        return dst.execute(
            "INSERT INTO runs (name, status, config, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            (whole.name, whole.status, json.dumps(whole.config, sort_keys=True), created, updated),
        ).lastrowid
    run_id, config = row[0], json.loads(row[1])
    for key in sorted(set(config) | set(whole.config)):
        if config.get(key) != whole.config.get(key):
            raise UserError(
                f"{out} already has a run {whole.name!r} with a different {key} ({_show(config.get(key))}, the "
                f"shards' is {_show(whole.config.get(key))}): merge into a new file"
            )
    # The same run merged again (say, after rerunning a shard's failures): the shards' state replaces it.
    tables = [r[0] for r in dst.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        for ref in dst.execute(f"PRAGMA foreign_key_list({table})").fetchall():
            if ref[2] == "runs":
                dst.execute(f"DELETE FROM {table} WHERE {ref[3]} = ?", (run_id,))
    dst.execute(
        "UPDATE runs SET status = ?, created_at = min(created_at, ?), updated_at = ? WHERE id = ?",
        (whole.status, created, updated, run_id),
    )
    return run_id
