from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from personagym.errors import UserError
from personagym.store import connect, transaction
from personagym.store import db as store_db
from personagym.store.db import APPLICATION_ID, SCHEMA_VERSION, statements
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


def test_a_transaction_commits_or_rolls_back_whole(tmp_path):
    conn = connect(tmp_path / "t.db")
    with transaction(conn):
        conn.execute("INSERT INTO personas (text) VALUES ('kept')")
    for stop in (ValueError("bad row"), KeyboardInterrupt(), asyncio.CancelledError()):
        with pytest.raises(type(stop)):
            with transaction(conn):
                conn.execute("INSERT INTO personas (text) VALUES ('lost')")
                raise stop
        assert not conn.in_transaction  # the connection is usable again
    with pytest.raises(sqlite3.IntegrityError):
        with transaction(conn):
            conn.execute("INSERT INTO personas (text) VALUES ('lost too')")
            conn.execute("INSERT INTO personas (text) VALUES ('kept')")
    assert [r[0] for r in conn.execute("SELECT text FROM personas")] == ["kept"]


def test_the_migration_scripts_split_into_their_statements():
    script = "CREATE TABLE a (x DEFAULT ';'); -- a comment; with a semicolon\nCREATE TABLE b (y);\nALTER TABLE a ADD z"
    assert statements(script) == [
        "CREATE TABLE a (x DEFAULT ';');",
        "-- a comment; with a semicolon\nCREATE TABLE b (y);",
        "ALTER TABLE a ADD z",
    ]
    scratch = sqlite3.connect(":memory:")
    for _number, _name, sql in MIGRATIONS:
        for statement in statements(sql):
            assert sqlite3.complete_statement(statement if statement.endswith(";") else statement + ";")
            scratch.execute(statement)  # one statement each: execute() refuses two


def test_a_failing_migration_leaves_the_database_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "db.db"
    connect(path).close()
    broken = (SCHEMA_VERSION + 1, "broken", "CREATE TABLE half (x); CREATE TABLE half (y);")
    monkeypatch.setattr(store_db, "MIGRATIONS", [*MIGRATIONS, broken])
    monkeypatch.setattr(store_db, "SCHEMA_VERSION", broken[0])
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        connect(path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert raw.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half'").fetchone()[0] == 0
    raw.close()


def _open_and_close(path: str) -> int:
    conn = connect(path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def test_threads_creating_the_same_new_database_at_once_all_succeed(tmp_path):
    for attempt in range(5):
        path = tmp_path / f"new-{attempt}.db"
        start = threading.Barrier(4)

        def opener() -> int:
            start.wait()
            return _open_and_close(str(path))

        with ThreadPoolExecutor(4) as pool:
            versions = [f.result() for f in [pool.submit(opener) for _ in range(4)]]
        assert versions == [SCHEMA_VERSION] * 4


def test_processes_creating_the_same_new_database_at_once_all_succeed(tmp_path):
    # Each child says it is ready, then waits for the same file to appear: all open the database together.
    go = tmp_path / "go"
    child = (
        "import os, sys, time\n"
        "from personagym.store import connect\n"
        "print('ready', flush=True)\n"
        "while not os.path.exists(sys.argv[1]): time.sleep(0.001)\n"
        "print(connect(sys.argv[2]).execute('PRAGMA user_version').fetchone()[0])\n"
    )
    args = [sys.executable, "-c", child, str(go), str(tmp_path / "new.db")]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        for proc in procs:
            assert proc.stdout.readline() == "ready\n"
        go.touch()
        outcomes = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert [(p.returncode, out.strip()) for p, (out, _) in zip(procs, outcomes)] == [(0, str(SCHEMA_VERSION))] * 3, [
        err for _, err in outcomes
    ]
