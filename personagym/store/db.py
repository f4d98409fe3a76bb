"""Opening a personagym database: refuse foreign or newer files, then apply pending migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from personagym.errors import UserError
from personagym.store.migrations import MIGRATIONS

# Written into the SQLite header so we can tell our databases from anybody else's and never
# migrate (write into) a file that is not ours.
APPLICATION_ID = 0x5047594D  # "PGYM"
SCHEMA_VERSION = MIGRATIONS[-1][0]
_SQLITE_MAGIC = b"SQLite format 3\x00"


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
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        _check_and_migrate(conn, path, fix)
    except BaseException:
        conn.close()
        raise
    return conn


def _check_and_migrate(conn: sqlite3.Connection, path: Path, fix: str) -> None:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    has_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
    if has_tables and app_id != APPLICATION_ID:
        raise UserError(f"{path} is a SQLite file but not a personagym database; it was left untouched: {fix}")
    if version > SCHEMA_VERSION:
        raise UserError(
            f"{path} has schema version {version}, newer than this personagym understands ({SCHEMA_VERSION}): "
            "upgrade with `pip install -U personagym`"
        )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    for number, _name, sql in MIGRATIONS:
        if number <= version:
            continue
        # One script, one transaction: a migration applies whole or not at all.
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE; {sql};\nPRAGMA application_id={APPLICATION_ID}; PRAGMA user_version={number}; COMMIT;"
            )
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
