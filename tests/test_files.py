"""write_atomic and atomic_path: a reader sees the old file or the new one, and no failure leaves
a temporary file behind."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from personagym import files
from personagym.errors import UserError
from personagym.files import atomic_path, write_atomic


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it after."""
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_text_and_bytes_and_leaves_only_the_target(tmp_path):
    write_atomic(tmp_path / "a.txt", "naïve\r\nline\n")
    write_atomic(tmp_path / "b.bin", b"\x00\xff")
    assert (tmp_path / "a.txt").read_bytes() == "naïve\r\nline\n".encode()  # no newline translation
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin"]


def test_the_temporary_file_is_in_the_targets_folder(tmp_path):
    target = tmp_path / "sub" / "report.html"
    target.parent.mkdir()
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.exists() and not target.exists()
        tmp.write_text("new")
    assert target.read_text() == "new" and not tmp.exists()
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]


def test_an_existing_target_is_untouched_when_the_write_fails_midway(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_text("old")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            raise Boom
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]

    def interrupted_fsync(fd):
        raise KeyboardInterrupt  # Ctrl-C after the whole file was written, before the rename

    monkeypatch.setattr(files.os, "fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_failed_rename_removes_the_temporary_file(tmp_path, monkeypatch):
    def refused(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(files.os, "replace", refused)
    with pytest.raises(PermissionError):
        write_atomic(tmp_path / "out.csv", "a,b\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_permissions_follow_the_umask_like_any_new_file(tmp_path, umask, mask):
    umask(mask)
    write_atomic(tmp_path / "shared.html", "<p>hi</p>")
    (tmp_path / "plain.html").write_text("<p>hi</p>")
    assert mode(tmp_path / "shared.html") == 0o666 & ~mask == mode(tmp_path / "plain.html")


def test_a_sqlite_database_built_in_the_path_is_renamed_whole(tmp_path):
    target = tmp_path / "merged.db"
    with atomic_path(target) as tmp:
        conn = sqlite3.connect(tmp)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.commit()
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.close()
    with sqlite3.connect(target) as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]
    conn.close()
    assert [p.name for p in tmp_path.iterdir()] == ["merged.db"]


def test_a_failed_sqlite_build_leaves_no_database_nor_its_journals(tmp_path):
    target = tmp_path / "merged.db"
    with pytest.raises(sqlite3.IntegrityError):
        with atomic_path(target) as tmp:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("CREATE TABLE t (x UNIQUE)")
                conn.execute("INSERT INTO t VALUES (1)")
                assert Path(f"{tmp}-wal").exists()
                conn.execute("INSERT INTO t VALUES (1)")
            finally:
                # What a crashed writer leaves: its journals stay beside the file.
                for suffix in ("-wal", "-shm"):
                    Path(f"{tmp}{suffix}").touch()
                conn.close()
    assert list(tmp_path.iterdir()) == []


def test_a_missing_folder_or_a_folder_target_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="folder .* does not exist; create it") as missing:
        write_atomic(tmp_path / "nowhere" / "out.json", "{}")
    assert "\n" not in str(missing.value)
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="is not a folder"):
        write_atomic(tmp_path / "file" / "out.json", "{}")
    (tmp_path / "dir").mkdir()
    with pytest.raises(UserError, match="is a folder, not a file"):
        write_atomic(tmp_path / "dir", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file"]
    assert list((tmp_path / "dir").iterdir()) == []
