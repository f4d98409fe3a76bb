"""The store under misuse: one writer per run, artifacts that are never replaced, and database files
that are broken, read-only, special or missing (issue 11)."""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from personagym import files
from personagym.errors import UserError
from personagym.files import write_atomic
from personagym.store import connect
from personagym.store import locks as store_locks
from personagym.store.db import SCHEMA_VERSION, connect_read
from personagym.store.locks import STALE_AFTER, RunLocked, check_before_run, this_host
from personagym.store.runs import RunStore

CONFIG = {"agent": "openai:a", "judges": ["openai:j"]}


def dead_pid() -> int:
    """The pid of a process that has ended (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def lock_row(conn: sqlite3.Connection, run_id: int) -> tuple:
    return conn.execute("SELECT pid, host, token FROM run_locks WHERE run_id = ?", (run_id,)).fetchone()


def plant_lock(path, run_id: int, *, pid: int, host: str, age: float = 0.0) -> None:
    """A lock as another process would have left it."""
    conn = connect(path)
    now = time.time() - age
    conn.execute("INSERT OR REPLACE INTO run_locks VALUES (?, ?, ?, 'theirs', ?, ?)", (run_id, pid, host, now, now))
    conn.close()


@pytest.fixture
def opened(tmp_path):
    """A run opened (and so locked) by this process, and the database's path."""
    path = tmp_path / "runs.db"
    store = RunStore(connect(path))
    run_id = store.open_run("r", CONFIG)
    return path, store, run_id


# --- one writer per run ----------------------------------------------------------------------------


def test_a_second_writer_of_a_live_run_is_refused_with_the_holder_and_nothing_written(opened):
    path, store, run_id = opened
    store.save_failure(run_id, "answers", store.persona_id("p"), "openai:a", "timeout", "slow")
    other = RunStore(connect(path))
    with pytest.raises(RunLocked) as refused:
        other.open_run("r", CONFIG)
    message = str(refused.value)
    assert f"pid {os.getpid()}" in message and "this machine" in message and "since" in message
    assert "kill" in message and "--run" in message and "\n" not in message
    # The refused process cleared no failures, changed no status, took no lock.
    assert other.conn.execute("SELECT count(*) FROM failures").fetchone()[0] == 1
    assert lock_row(other.conn, run_id)[2] == store.locks[run_id].token
    with pytest.raises(RunLocked):
        check_before_run(path, "r")  # the read-only check before anything is paid for
    check_before_run(path, "another run")
    check_before_run(path.parent / "absent.db", "r")
    assert not (path.parent / "absent.db").exists()


def test_the_lock_is_released_with_the_status_and_the_run_opens_again(opened):
    path, store, run_id = opened
    store.close_run(run_id, "done")
    assert lock_row(store.conn, run_id) is None
    assert store.find_run("r").status == "done"
    again = RunStore(connect(path))
    assert again.open_run("r", CONFIG) == run_id
    assert again.find_run("r").status == "running"


def test_a_dead_holders_lock_on_this_host_is_taken_over(tmp_path):
    path = tmp_path / "runs.db"
    first = RunStore(connect(path))
    run_id = first.open_run("r", CONFIG)
    plant_lock(path, run_id, pid=dead_pid(), host=this_host())  # as if killed with -9
    second = RunStore(connect(path))
    assert second.open_run("r", CONFIG) == run_id
    assert lock_row(second.conn, run_id)[0] == os.getpid()


def test_another_hosts_lock_is_taken_over_only_once_silent(tmp_path):
    path = tmp_path / "runs.db"
    run_id = RunStore(connect(path)).open_run("r", CONFIG)
    plant_lock(path, run_id, pid=1, host="elsewhere.example", age=60)
    with pytest.raises(RunLocked, match=r"pid 1 on elsewhere\.example.*kill 1 on elsewhere\.example"):
        RunStore(connect(path)).open_run("r", CONFIG)
    plant_lock(path, run_id, pid=1, host="elsewhere.example", age=STALE_AFTER + 1)
    RunStore(connect(path)).open_run("r", CONFIG)


def test_a_lock_left_by_an_earlier_evaluation_in_this_process_is_taken_over(opened):
    path, store, run_id = opened
    store_locks._LIVE.clear()  # that evaluation ended without releasing (its store is gone)
    RunStore(connect(path)).open_run("r", CONFIG)


def test_a_zombie_holder_counts_as_dead():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while store_locks.pid_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)  # ended but not yet reaped: a zombie
    assert not store_locks.pid_alive(proc.pid)
    proc.wait()
    assert store_locks.pid_alive(os.getpid())


def test_a_holder_whose_lock_was_taken_over_stops_and_leaves_the_status_alone(opened):
    path, store, run_id = opened
    lock = store.locks[run_id]

    async def evaluating() -> None:
        async with lock.kept(interval=0.01):
            plant_lock(path, run_id, pid=1, host="elsewhere.example")
            await asyncio.sleep(30)

    with pytest.raises(UserError, match=r"taken over by pid 1 on elsewhere\.example"):
        asyncio.run(asyncio.wait_for(evaluating(), 20))
    store.close_run(run_id, "interrupted")
    assert store.find_run("r").status == "running"  # the new holder's to set
    assert lock_row(store.conn, run_id)[1] == "elsewhere.example"


def test_a_live_holder_keeps_its_heartbeat_fresh(opened):
    path, store, run_id = opened
    before = store.conn.execute("SELECT heartbeat FROM run_locks").fetchone()[0]

    async def evaluating() -> None:
        async with store.locks[run_id].kept(interval=0.01):
            await asyncio.sleep(0.2)

    asyncio.run(evaluating())
    assert store.conn.execute("SELECT heartbeat FROM run_locks").fetchone()[0] > before


def test_a_merge_into_a_run_being_evaluated_is_refused(opened):
    from personagym.store.locks import check_free

    path, store, run_id = opened
    with pytest.raises(RunLocked):
        check_free(connect(path), run_id, "r")


def test_a_non_finite_config_is_never_stored(tmp_path):
    store = RunStore(connect(tmp_path / "runs.db"))
    with pytest.raises(UserError, match="not finite"):
        store.open_run("r", {**CONFIG, "sampling": {"agent": {"temperature": float("nan")}}})
    assert store.runs() == []


# --- agent-independent artifacts: first writer wins ----------------------------------------------


def test_examples_and_environments_are_never_replaced_once_written(tmp_path):
    path = tmp_path / "runs.db"
    a, b = RunStore(connect(path)), RunStore(connect(path))
    pid = a.persona_id("p")
    (qid, _), = a.save_questions(pid, "expected_action", "q-recipe", ["what now?"])
    assert a.save_examples(qid, "e-recipe", {1: "first"}) == {1: "first"}
    assert b.save_examples(qid, "e-recipe", {1: "second"}) == {1: "first"}  # the other run reuses it
    assert a.examples([qid], "e-recipe") == {qid: {1: "first"}}
    assert a.save_environments(pid, "env-recipe", ["Wedding"]) == ["Wedding"]
    assert b.save_environments(pid, "env-recipe", ["Hospital"]) == ["Wedding"]
    assert b.environments(pid, "env-recipe") == ["Wedding"]
    assert b.save_questions(pid, "expected_action", "q-recipe", ["another?"]) == [(qid, "what now?")]


# --- broken, special and missing database files --------------------------------------------------


def _real_db(path) -> bytes:
    conn = connect(path)
    conn.execute("INSERT INTO personas (text) VALUES (?)", ("x" * 20000,))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path.read_bytes()


@pytest.mark.parametrize(
    "kind, words",
    [
        ("zero-filled", "not a personagym database"),
        ("header only", "damaged"),
        ("truncated", "damaged"),
        ("garbled page size", "damaged"),
        ("text", "not a personagym database"),
    ],
)
def test_a_broken_database_file_is_one_line_and_left_untouched(tmp_path, kind, words):
    whole = _real_db(tmp_path / "good.db")
    content = {
        "zero-filled": bytes(len(whole)),
        "header only": whole[:100],
        "truncated": whole[: len(whole) // 2],
        "garbled page size": whole[:16] + b"\x03\x00" + whole[18:],
        "text": b"these are my notes\n" * 50,
    }[kind]
    path = tmp_path / "broken.db"
    path.write_bytes(content)
    for opener in (connect, connect_read):
        with pytest.raises(UserError, match=words) as refused:
            opener(path)
        assert "\n" not in str(refused.value) and str(path) in str(refused.value)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.db", "good.db"]


def test_a_page_sqlite_cannot_read_is_one_line_too(tmp_path):
    whole = bytearray(_real_db(tmp_path / "good.db"))
    whole[100:4096] = os.urandom(4096 - 100)  # the schema's page, garbage under a sound header
    path = tmp_path / "garbage.db"
    path.write_bytes(bytes(whole))
    for opener in (connect, connect_read):
        with pytest.raises(UserError, match="damaged|not a personagym database"):
            opener(path)


def test_special_files_and_folders_are_refused_without_hanging(tmp_path):
    fifo = tmp_path / "pipe.db"
    os.mkfifo(fifo)
    for target, words in [(fifo, "not a regular file"), ("/dev/null", "not a regular file"), (tmp_path, "folder")]:
        for opener in (connect, connect_read):
            with pytest.raises(UserError, match=words):
                opener(target)
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_reading_never_creates_a_database(tmp_path):
    for opener in (connect_read, lambda p: connect(p, create=False)):
        with pytest.raises(UserError, match="no database at"):
            opener(tmp_path / "typo.db")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "empty.db").touch()
    with pytest.raises(UserError, match="empty file"):
        connect_read(tmp_path / "empty.db")
    assert (tmp_path / "empty.db").read_bytes() == b""


def test_a_read_only_open_reads_and_cannot_write(tmp_path):
    path = tmp_path / "runs.db"
    RunStore(connect(path)).open_run("r", CONFIG)
    conn = connect_read(path)
    assert RunStore(conn).find_run("r").name == "r"
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("INSERT INTO personas (text) VALUES ('x')")


def test_an_older_schema_read_only_is_refused_with_the_fix(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    connect(path).execute(f"PRAGMA user_version={SCHEMA_VERSION - 1}")
    monkeypatch.setattr("personagym.store.db._writable", lambda p: False)
    with pytest.raises(UserError, match="older personagym.*copy it"):
        connect_read(path)


def test_a_read_only_database_refuses_writers_in_one_line(tmp_path, monkeypatch):
    path = tmp_path / "runs.db"
    connect(path).close()
    monkeypatch.setattr(os, "access", lambda p, mode: not mode & os.W_OK)  # as on a read-only disk
    with pytest.raises(UserError, match="is read-only: this command writes"):
        connect(path)
    with pytest.raises(UserError, match="cannot be created"):
        connect(tmp_path / "new.db")
    assert connect_read(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


# --- writes on a full disk ---------------------------------------------------------------------


def test_a_full_disk_leaves_no_partial_file_and_names_the_target(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    target.write_text("old")
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(OSError) as failed:
        write_atomic(target, "new content")
    assert failed.value.errno == errno.ENOSPC and failed.value.filename == str(target)
    monkeypatch.setattr(files.os, "fsync", real_fsync)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.json"]

    from personagym.cli import environment_problem

    line = environment_problem(failed.value)
    assert str(target) in line and "free some space" in line


def test_a_special_target_is_written_into_not_replaced(tmp_path):
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    write_atomic(fifo, "hello")
    reader.join(10)
    assert got == [b"hello"] and not fifo.is_file() and fifo.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]


def test_sqlite_errors_of_the_disk_or_file_are_explained():
    from personagym.cli import environment_problem

    assert "free some space" in environment_problem(sqlite3.OperationalError("database or disk is full"))
    assert "damaged" in environment_problem(sqlite3.DatabaseError("database disk image is malformed"))
    assert "read-only" in environment_problem(sqlite3.OperationalError("attempt to write a readonly database"))
    assert environment_problem(sqlite3.OperationalError("no such column: x")) is None
    assert environment_problem(ValueError("x")) is None
