"""Opening a personagym database: refuse foreign, newer, damaged or unusable files, then apply pending
migrations (writers) or open read-only (readers: nothing created, nothing written)."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ContextManager, Iterator
from urllib.parse import quote

from personagym.errors import UserError
from personagym.store.migrations import MIGRATIONS

# Written into the SQLite header so we can tell our databases from anybody else's and never
# migrate (write into) a file that is not ours.
APPLICATION_ID = 0x5047594D  # "PGYM"
SCHEMA_VERSION = MIGRATIONS[-1][0]
_SQLITE_MAGIC = b"SQLite format 3\x00"
_HEADER = 100  # bytes of SQLite's file header
_BUSY_SECONDS = 10  # how long any statement waits for another process's write lock
DB_FIX = "pass --db with the path of a personagym database or of a new file"


def transaction(conn: sqlite3.Connection) -> ContextManager[sqlite3.Connection]:
    """A write transaction on an autocommit connection: all of the block's writes or none.

    IMMEDIATE takes the write lock at the start, so a transaction that read something never finds
    at its first write that another process changed it (SQLite would answer "database is locked"
    without waiting). Any exception, Ctrl-C and task cancellation included, rolls back, and the
    connection is left outside a transaction, usable again.

    Inside a transaction already open on the connection (a stage's writes, made while the gateway
    records the call that produced them), the block joins it: the outer one commits or rolls back.
    Transactions here never span an await, so an open one is always the caller's own.
    """
    return _Transaction(conn)


class _Transaction:
    """`transaction` as a class: every call opens one (or two, joined), and a generator-based
    context manager cost 1.5-2.5 us of its own each time, a class 0.7."""

    __slots__ = ("conn", "outer")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.outer = False

    def __enter__(self) -> sqlite3.Connection:
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN IMMEDIATE")
            self.outer = True
        return self.conn

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if not self.outer:
            return  # joined: the outer transaction commits or rolls back
        if kind is None:
            try:
                self.conn.execute("COMMIT")
            except BaseException:
                self._roll_back()
                raise
        else:
            self._roll_back()  # and the exception goes on

    def _roll_back(self) -> None:
        if self.conn.in_transaction:  # SQLite may have rolled back already (a failed COMMIT, a full disk)
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the connection is broken; the error that brought us here says more


def connect(path: str | Path, *, create: bool = True, label: str = "--db", fix: str = DB_FIX) -> sqlite3.Connection:
    """Open the database at `path` for writing (creating it if absent, unless `create` is false) and
    migrate it.

    Autocommit mode (isolation_level=None): every write states its own transaction, so a killed
    process loses at most the statement in flight. `label` is how messages name the path (the flag
    or argument that gave it) and `fix` what they advise.
    """
    path = Path(path)
    _check_file(path, label, fix, must_exist=not create)
    _check_writable(path, label)
    # A generous busy timeout from the first statement: a process creating the same new file holds
    # its write lock while it migrates.
    with _explained(path, label, fix):
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=_BUSY_SECONDS)
        try:
            _check_and_migrate(conn, path, label, fix)
        except BaseException:
            conn.close()
            raise
    return conn


def connect_read(path: str | Path, *, label: str = "--db", fix: str = DB_FIX) -> sqlite3.Connection:
    """Open an existing database only to read it: nothing is created or written, so a database on a
    read-only disk, or one the user may only read, serves `runs`, `show`, `export` and `report` as
    well as any. A database of an older schema is migrated first if it can be written, and refused
    (with the fix) if not.
    """
    path = Path(path)
    if _check_file(path, label, fix, must_exist=True) == "empty":
        raise UserError(f"{label} {path} is an empty file, not a personagym database yet: run an evaluation first, or {fix}")
    with _explained(path, label, fix):
        conn = _open_read_only(path)
        try:
            app_id, version, tables = _identity(conn)
        except BaseException:
            conn.close()
            raise
    try:
        _check_identity(path, app_id, version, tables, label, fix)
    except BaseException:
        conn.close()
        raise
    if version == SCHEMA_VERSION:
        return conn
    conn.close()
    if not _writable(path):
        raise UserError(
            f"{label} {path} was written by an older personagym (schema {version}, now {SCHEMA_VERSION}) and is "
            "read-only, so it cannot be upgraded: copy it to a writable folder and pass the copy"
        )
    return connect(path, create=False, label=label, fix=fix)


def check_writable(path: str | Path, *, label: str = "--db", fix: str = DB_FIX) -> str:
    """Refuse, without opening it, a database a writer could not use: a folder, a special or broken
    file, a read-only file or folder. Returns "absent" (it would be created), "empty" or "file"."""
    path = Path(path)
    kind = _check_file(path, label, fix, must_exist=False)
    _check_writable(path, label)
    return kind


def problem(exc: sqlite3.Error, what: str = "the database", fix: str = DB_FIX) -> str | None:
    """A one-line explanation, with the fix, of a SQLite error that is the file's or the disk's fault
    rather than ours; None for any other error."""
    text = str(exc).lower()
    if "disk is full" in text or "disk i/o error" in text:
        cause = "the disk is full" if "full" in text else "the disk failed to write it (I/O error)"
        return (
            f"cannot write {what}: {cause}: free some space (or fix the disk) and run the same command again; a run "
            "resumes where it stopped"
        )
    if "readonly" in text or "read-only" in text:
        return (
            f"{what} is read-only: this command writes into it; copy it to a writable folder and pass that path, "
            "or fix the permissions"
        )
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return f"{what} is damaged (SQLite says: {exc}): restore it from a backup, or {fix}"
    if "database is locked" in text or "database is busy" in text:
        return f"{what} is busy: another process held it for over 10 s; wait for it and run the command again"
    if "unable to open" in text:
        return f"{what} cannot be opened (SQLite says: {exc}): check the path and its permissions, or {fix}"
    return None


@contextmanager
def _explained(path: Path, label: str, fix: str) -> Iterator[None]:
    """SQLite's errors about the file or the disk as one line with the fix; and a file that could not
    be opened is left as it was, without the journal files SQLite made beside it on trying."""
    sidecars = [Path(f"{path}{suffix}") for suffix in ("-wal", "-shm")]
    existed = [p.exists() for p in sidecars]
    try:
        yield
    except sqlite3.DatabaseError as exc:
        explained = problem(exc, f"{label} {path}", fix)
        if explained is None:
            raise
        wal = sidecars[0]
        if not existed[0] and wal.exists() and wal.stat().st_size == 0:
            for sidecar, was_there in zip(sidecars, existed):
                if not was_there:
                    sidecar.unlink(missing_ok=True)
        raise UserError(explained) from None


def _check_file(path: Path, label: str, fix: str, must_exist: bool) -> str:
    """Refuse, before SQLite sees it, what SQLite would misread or hang on: a folder, a device or
    FIFO, a file that is not SQLite, a damaged header. Returns "absent", "empty" or "file"."""
    try:
        info = path.stat()
    except FileNotFoundError:
        if must_exist:
            raise UserError(f"no database at {path}: run an evaluation first, or {fix}") from None
        if not path.parent.is_dir():
            raise UserError(f"the folder of {label} {path} does not exist: create it or {fix}") from None
        return "absent"
    except OSError as exc:
        raise UserError(f"{label} {path} cannot be read ({exc.strerror or exc}): {fix}") from None
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"{label} {path} is a folder, not a database file: {fix}")
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{label} {path} is not a regular file (a device, pipe or socket): {fix}")
    if info.st_size == 0:
        return "empty"  # SQLite takes an empty file for a new database
    try:
        with path.open("rb") as fh:
            header = fh.read(_HEADER)
    except OSError as exc:
        raise UserError(f"{label} {path} cannot be read ({exc.strerror or exc}): {fix}") from None
    if header[: len(_SQLITE_MAGIC)] != _SQLITE_MAGIC:
        raise UserError(f"{path} is not a personagym database (not a SQLite file at all): {fix}")
    wal = Path(f"{path}-wal")
    # With a write-ahead log beside it, the file may lag its header (a checkpoint stopped by a full disk,
    # say): SQLite completes it from the log, so the sizes prove nothing then.
    damage = _header_damage(header, info.st_size, sized=not (wal.exists() and wal.stat().st_size > 0))
    if damage:
        raise UserError(f"{label} {path} is damaged ({damage}): restore it from a backup, or {fix}")
    return "file"


def _header_damage(header: bytes, size: int, sized: bool = True) -> str | None:
    """What SQLite's own header says is wrong with a file of this size: cut short, or garbled."""
    if len(header) < _HEADER:
        return f"{size} bytes, shorter than SQLite's {_HEADER}-byte header"
    page = int.from_bytes(header[16:18], "big")
    page = 65536 if page == 1 else page
    if page < 512 or page & (page - 1):
        return f"its header gives an impossible page size, {page}"
    if not sized:
        return None
    if size % page:
        return f"{size} bytes is not a whole number of {page}-byte pages: the file was cut short"
    pages = int.from_bytes(header[28:32], "big")
    # The page count is valid only when written by a version that keeps it (SQLite's own rule).
    if pages and header[24:28] == header[92:96] and size < pages * page:
        return f"{size} bytes of the {pages * page} its header promises: the file was cut short"
    return None


def _writable(path: Path) -> bool:
    """Whether SQLite can write the database: its file and its folder (for the journal files)."""
    folder_ok = os.access(path.parent, os.W_OK | os.X_OK)
    return folder_ok and (not path.exists() or os.access(path, os.W_OK))


def _check_writable(path: Path, label: str) -> None:
    if not _writable(path):
        state = "is read-only" if path.exists() else "cannot be created (its folder is read-only)"
        raise UserError(
            f"{label} {path} {state}: this command writes into the database; pass a path in a writable folder "
            "(copy the database there first), or fix the permissions"
        )


def _open_read_only(path: Path) -> sqlite3.Connection:
    uri = "file:" + quote(str(path.absolute()))
    conn = sqlite3.connect(uri + "?mode=ro", uri=True, isolation_level=None, check_same_thread=False, timeout=_BUSY_SECONDS)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        conn.close()
        if os.access(path.parent, os.W_OK):
            raise
    # A WAL database in a folder nobody may write (a read-only disk): SQLite cannot make the shared-
    # memory file readers need. Nothing can change such a file, so it may be read as immutable.
    return sqlite3.connect(uri + "?immutable=1", uri=True, isolation_level=None, check_same_thread=False)


def _identity(conn: sqlite3.Connection) -> tuple[int, int, int]:
    # One statement, so one snapshot: read apart, a process migrating the same new file between the
    # reads would make it look like someone else's database (tables, but no application id yet).
    return conn.execute(
        "SELECT a.application_id, v.user_version, (SELECT count(*) FROM sqlite_master) "
        "FROM pragma_application_id() a, pragma_user_version() v"
    ).fetchone()


def _check_identity(path: Path, app_id: int, version: int, tables: int, label: str, fix: str) -> None:
    if tables > 0 and app_id != APPLICATION_ID:
        raise UserError(f"{path} is a SQLite file but not a personagym database; it was left untouched: {fix}")
    if version > SCHEMA_VERSION:
        raise UserError(
            f"{path} has schema version {version}, newer than this personagym understands ({SCHEMA_VERSION}): "
            "upgrade with `pip install -U personagym`"
        )


def _check_and_migrate(conn: sqlite3.Connection, path: Path, label: str, fix: str) -> None:
    app_id, version, tables = _identity(conn)
    _check_identity(path, app_id, version, tables, label, fix)
    _enter_wal(conn)
    conn.execute("PRAGMA synchronous=NORMAL")
    if version >= MIGRATIONS[-1][0]:
        return
    # Every pending migration in one transaction: a new file is whole or not there at all, and costs
    # one commit, not one per migration (16 commits took 20-40 ms of a fresh run's start).
    with transaction(conn):
        # Another process opening the same new file may have applied some since we looked.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, _name, sql in MIGRATIONS:
            if number <= version:
                continue
            # Statement by statement: executescript() would COMMIT first, out of this transaction.
            for statement in statements(sql):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={number}")
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")


def _enter_wal(conn: sqlite3.Connection, patience: float = _BUSY_SECONDS) -> None:
    """Switch the file to write-ahead logging. SQLite answers "database is locked" at once, without
    its busy handler, when another connection is switching the same new file at that moment (four
    threads opening one new file failed this way about once in a hundred tries), so the switch is
    tried again for as long as any other statement would wait."""
    deadline = time.monotonic() + patience
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


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
