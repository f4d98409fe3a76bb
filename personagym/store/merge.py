"""Joining runs kept in several databases into one run of one database: the writing half of
`personagym merge` (which runs make one whole, and in what order, is for the caller to decide).

Merging copies the rows of each part's run (and everything they rest on: personas, environments,
questions, score examples, cached replies) into one database, renumbering ids; columns are read
from the schema, so a migration that adds a column needs no change here.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from personagym.errors import UserError
from personagym.files import atomic_path
from personagym.store.db import connect, transaction
from personagym.store.locks import check_free
from personagym.store.runs import RunRow

OUT_FIX = "merge into a new file (another OUT.db)"


@dataclass(frozen=True)
class Part:
    """One database's run, a part of the merged run."""

    path: Path  # named in errors
    conn: sqlite3.Connection
    run: RunRow
    personas: Sequence[tuple[int, int]]  # (position in the merged run's persona list, persona id here)


@dataclass(frozen=True)
class MergedRun:
    name: str
    status: str
    config: dict[str, Any]
    parts: Sequence[Part]


def show_value(value: Any) -> str:
    """A config value or persona, short enough for a one-line error."""
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def write_merged(out: Path, whole: MergedRun) -> None:
    """Write the merged run into `out`: all of it or, on any error, nothing.

    A new file is built beside the target and renamed into place; an existing one is written in a
    single transaction.
    """
    if out.exists():
        conn = connect(out, create=False, label="merge output", fix=OUT_FIX)
        try:
            _merge_into(conn, out, whole)
        finally:
            conn.close()
        return
    if not out.parent.is_dir():
        raise UserError(f"the folder of {out} does not exist: create it or write the merge elsewhere")
    with atomic_path(out) as tmp:
        conn = connect(tmp, label="merge output", fix=OUT_FIX)
        try:
            _merge_into(conn, out, whole)
            conn.execute("PRAGMA journal_mode=DELETE")  # one self-contained file to rename; connect() restores WAL
        finally:
            conn.close()


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
    """Copies rows of one part into the merged database, translating ids as it goes."""

    def __init__(self, dst: sqlite3.Connection, out: Path, part: Part, run_id: int):
        self.dst, self.out, self.part = dst, out, part
        self.maps: dict[str, dict[Any, Any]] = {"runs": {part.run.id: run_id}, "personas": {}, "questions": {}}
        self.tables: dict[str, _Table] = {}

    def table(self, name: str) -> _Table:
        if name not in self.tables:
            self.tables[name] = _table(self.dst, name)
        return self.tables[name]

    def read(self, name: str, where: str, args: tuple) -> list[dict[str, Any]]:
        table = self.table(name)
        rows = self.part.conn.execute(f"SELECT {', '.join(table.columns)} FROM {name} {where}", args)
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
        """The merged database's row under this key, refused if it says something else than the part's."""
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
                    f"{self.part.path} (made by another run): merge into a new file"
                )
        return found[0]


def _merge_into(dst: sqlite3.Connection, out: Path, whole: MergedRun) -> None:
    versions = {c.execute("PRAGMA user_version").fetchone()[0] for c in [dst, *(p.conn for p in whole.parts)]}
    if len(versions) != 1:  # connect() migrates every file to this version: a mismatch is a bug
        raise RuntimeError(f"the databases are at different schema versions {sorted(versions)}")
    with transaction(dst):
        run_id = _open_run(dst, out, whole)
        copiers = [_Copier(dst, out, part, run_id) for part in whole.parts]
        # Personas in the order of the whole list, so a new database numbers them as the unsharded
        # run would have (the export orders questions by persona id).
        placed = sorted((pos, i, pid) for i, p in enumerate(whole.parts) for pos, pid in p.personas)
        for _pos, i, pid in placed:
            for item in copiers[i].read("personas", "WHERE id = ?", (pid,)):
                copiers[i].insert("personas", item)
        timed: dict[str, list[tuple[dict[str, Any], _Copier]]] = {"failures": [], "calls": []}
        for copier in copiers:
            rid = copier.part.run.id
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


def _open_run(dst: sqlite3.Connection, out: Path, whole: MergedRun) -> int:
    """The merged run's row: new, or an earlier merge of the same run, emptied to be written again."""
    created = min(p.run.created_at for p in whole.parts)
    updated = max(p.run.updated_at for p in whole.parts)
    row = dst.execute("SELECT id, config FROM runs WHERE name = ?", (whole.name,)).fetchone()
    if row is None:
        return dst.execute(
            "INSERT INTO runs (name, status, config, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            (whole.name, whole.status, json.dumps(whole.config, sort_keys=True), created, updated),
        ).lastrowid
    run_id, config = row[0], json.loads(row[1])
    check_free(dst, run_id, whole.name)  # a process evaluating it now would write beside the merge
    for key in sorted(set(config) | set(whole.config)):
        if config.get(key) != whole.config.get(key):
            raise UserError(
                f"{out} already has a run {whole.name!r} with a different {key} ({show_value(config.get(key))}, the "
                f"shards' is {show_value(whole.config.get(key))}): merge into a new file"
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
