"""Opening a personagym database: refuse foreign or newer files, then apply pending migrations."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from personagym.errors import UserError
from personagym.store.migrations import MIGRATIONS

# Written into the SQLite header so we can tell our databases from anybody else's and never
# migrate (write into) a file that is not ours.
APPLICATION_ID = 0x5047594D  # "PGYM"
SCHEMA_VERSION = MIGRATIONS[-1][0]
_SQLITE_MAGIC = b"SQLite format 3\x00"


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction on an autocommit connection: all of the block's writes or none.

    IMMEDIATE takes the write lock at the start, so a transaction that read something never finds
    at its first write that another process changed it (SQLite would answer "database is locked"
    without waiting). Any exception, Ctrl-C and task cancellation included, rolls back, and the
    connection is left outside a transaction, usable again.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back already (a failed COMMIT, a full disk)
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the connection is broken; the error that brought us here says more
        raise


def connect(path: str | Path) -> sqlite3.Connection:
    """Open (creating if absent) and migrate the database at `path`.

    Autocommit mode (isolation_level=None): every write states its own transaction, so a killed
    process loses at most the statement in flight.
    """
    path = Path(path)
    fix = "pass --db with the path of a personagym database or of a new file"
    if path.is_dir():
        raise UserError(f"--db {path} is a directory: {fix}")
    if path.exists() and path.stat().st_size > 0:
        with path.open("rb") as fh:
            if fh.read(16) != _SQLITE_MAGIC:
                raise UserError(f"{path} is not a personagym database (not SQLite at all): {fix}")
    elif not path.parent.exists():
        raise UserError(f"the folder of --db {path} does not exist: create it or {fix}")
    # A generous busy timeout from the first statement: a process creating the same new file holds
    # its write lock while it migrates.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    try:
        _check_and_migrate(conn, path, fix)
    except BaseException:
        conn.close()
        raise
    return conn


def _check_and_migrate(conn: sqlite3.Connection, path: Path, fix: str) -> None:
    # One statement, so one snapshot: read apart, a process migrating the same new file between the
    # reads would make it look like someone else's database (tables, but no application id yet).
    app_id, version, tables = conn.execute(
        "SELECT a.application_id, v.user_version, (SELECT count(*) FROM sqlite_master) "
        "FROM pragma_application_id() a, pragma_user_version() v"
    ).fetchone()
    has_tables = tables > 0
    if has_tables and app_id != APPLICATION_ID:
        raise UserError(f"{path} is a SQLite file but not a personagym database; it was left untouched: {fix}")
    if version > SCHEMA_VERSION:
        raise UserError(
            f"{path} has schema version {version}, newer than this personagym understands ({SCHEMA_VERSION}): "
            "upgrade with `pip install -U personagym`"
        )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for number, _name, sql in MIGRATIONS:
        if number <= version:
            continue
        with transaction(conn):
            # Another process opening the same new file may have applied it since we looked.
            if conn.execute("PRAGMA user_version").fetchone()[0] >= number:
                continue
            # Statement by statement: executescript() would COMMIT first, out of this transaction.
            for statement in statements(sql):
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={number}")


def statements(script: str) -> list[str]:
    """The SQL statements of a script, split where SQLite's own tokenizer says one ends, so a
    semicolon in a string or a comment does not split one."""
    *pieces, rest = script.split(";")
    found: list[str] = []
    current = ""
    for piece in pieces:
        current += piece + ";"
        if sqlite3.complete_statement(current):
            found.append(current.strip())
            current = ""
    if (current + rest).strip():
        found.append((current + rest).strip())
    return found
