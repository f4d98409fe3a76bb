from __future__ import annotations

import sqlite3

import pytest

from personagym.errors import UserError
from personagym.store import connect
from personagym.store.db import APPLICATION_ID, SCHEMA_VERSION
from personagym.store.migrations import MIGRATIONS


def test_a_new_database_gets_every_migration(tmp_path):
    conn = connect(tmp_path / "new.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_oldest_schema_migrates_forward(tmp_path):
    path = tmp_path / "old.db"
    raw = sqlite3.connect(path)
    number, _name, sql = MIGRATIONS[0]
    raw.executescript(sql)
    raw.execute(f"PRAGMA application_id={APPLICATION_ID}")
    raw.execute(f"PRAGMA user_version={number}")
    raw.execute("INSERT INTO llm_cache VALUES ('k', 'local', 'text', 'stop', 1, 2, 0)")
    raw.commit()
    raw.close()
    conn = connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT text FROM llm_cache").fetchone()[0] == "text"


def test_a_foreign_sqlite_file_is_refused_and_untouched(tmp_path):
    path = tmp_path / "theirs.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE precious (x)")
    raw.commit()
    raw.close()
    before = path.read_bytes()
    with pytest.raises(UserError, match="not a personagym database"):
        connect(path)
    assert path.read_bytes() == before


def test_a_non_sqlite_file_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("my notes")
    with pytest.raises(UserError, match="not a personagym database"):
        connect(path)
    assert path.read_text() == "my notes"


def test_a_newer_database_is_refused(tmp_path):
    path = tmp_path / "future.db"
    connect(path).execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(UserError, match="newer than this personagym"):
        connect(path)
