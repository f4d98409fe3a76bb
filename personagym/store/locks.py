"""One writer per run: a row in the run's database naming the process that evaluates it.

Two processes on one run would both pay for every call and interleave their writes. The process that
opens a run takes its lock (in the same transaction that creates or resumes the run) and a second one
is refused with the holder's pid, host and start time. A holder that died without releasing (kill -9,
a crash, a machine that went away) is recognised and its lock taken over: on this host when its pid
no longer runs, from any host when its heartbeat has been silent for STALE_AFTER seconds. Reading the
lock and taking it over happen in one write transaction, so two processes never both take it over.

A holder whose lock was taken over all the same (it was silent too long: a suspended laptop, say)
finds out at its next heartbeat and stops instead of writing beside the new holder.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import sqlite3
import time
import weakref
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from personagym.errors import UserError

HEARTBEAT = 30.0  # seconds between a holder's signs of life
STALE_AFTER = 600.0  # a lock silent this long is a dead holder's, whatever its host

# The locks this process holds, by token: a lock row with our own pid but a token not in here was
# left by an earlier evaluation in this process that ended without releasing it.
_LIVE: "weakref.WeakValueDictionary[str, RunLock]" = weakref.WeakValueDictionary()


def this_host() -> str:
    return socket.gethostname()


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    since: float
    heartbeat: float
    token: str

    def where(self) -> str:
        return f"pid {self.pid} on {'this machine' if self.host == this_host() else self.host}"

    def stale(self, now: float) -> bool:
        if now - self.heartbeat > STALE_AFTER:
            return True  # silent far longer than any live holder is (or its pid was reused)
        if self.host != this_host():
            return False  # another machine's processes cannot be seen from here
        if self.pid == os.getpid():
            return self.token not in _LIVE
        return not pid_alive(self.pid)


def pid_alive(pid: int) -> bool:
    """Whether a process of this id runs on this machine (a zombie, killed but not yet reaped by its
    parent, does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state != b"Z"
    except (OSError, IndexError):
        return True  # no /proc (not Linux): the signal check is all there is


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


class RunLocked(UserError):
    """Another live process is evaluating this run."""

    def __init__(self, name: str, holder: Holder):
        stop = f"kill {holder.pid}" if holder.host == this_host() else f"kill {holder.pid} on {holder.host}"
        super().__init__(
            f"run {name!r} is being evaluated by another process ({holder.where()}, since {_when(holder.since)}): "
            f"let it finish, or stop it ({stop}) and run again; pass another --run name for a separate run"
        )
        self.holder = holder


def holder_of(conn: sqlite3.Connection, run_id: int) -> Holder | None:
    row = conn.execute("SELECT pid, host, since, heartbeat, token FROM run_locks WHERE run_id = ?", (run_id,)).fetchone()
    return Holder(*row) if row else None


def check_free(conn: sqlite3.Connection, run_id: int, name: str) -> None:
    """Refuse if a live process holds the run's lock (for writers that take no lock of their own
    because they write the run in a single transaction, like a merge)."""
    holder = holder_of(conn, run_id)
    if holder is not None and not holder.stale(time.time()):
        raise RunLocked(name, holder)


def check_before_run(db: str | Path, name: str) -> None:
    """Before a run pays for anything: the database can be written (or created), and no live process
    holds run `name` in it. Only reads; the lock itself is taken when the run is opened."""
    from personagym.store.db import check_writable, connect_read

    if check_writable(db) == "absent":
        return
    conn = connect_read(db)
    try:
        row = conn.execute("SELECT id FROM runs WHERE name = ?", (name,)).fetchone()
        if row is not None:
            check_free(conn, row[0], name)
    finally:
        conn.close()


class RunLock:
    """This process's hold on one run. `take` and `release` run inside the caller's transaction."""

    def __init__(self, conn: sqlite3.Connection, run_id: int, name: str):
        self.conn, self.run_id, self.name = conn, run_id, name
        self.token = secrets.token_hex(8)
        self.lost = False  # another process took the lock over while we held it
        self.lost_to: Holder | None = None

    def take(self) -> None:
        """Hold the run, taking over a dead holder's lock; RunLocked if a live process holds it."""
        check_free(self.conn, self.run_id, self.name)
        now = time.time()
        self.conn.execute(
            "INSERT OR REPLACE INTO run_locks (run_id, pid, host, token, since, heartbeat) VALUES (?, ?, ?, ?, ?, ?)",
            (self.run_id, os.getpid(), this_host(), self.token, now, now),
        )
        _LIVE[self.token] = self

    def held(self) -> bool:
        row = self.conn.execute("SELECT token FROM run_locks WHERE run_id = ?", (self.run_id,)).fetchone()
        return row is not None and row[0] == self.token

    def release(self) -> None:
        self.conn.execute("DELETE FROM run_locks WHERE run_id = ? AND token = ?", (self.run_id, self.token))
        _LIVE.pop(self.token, None)

    def beat(self) -> bool:
        """A sign of life; False once the lock is no longer ours."""
        cur = self.conn.execute(
            "UPDATE run_locks SET heartbeat = ? WHERE run_id = ? AND token = ?", (time.time(), self.run_id, self.token)
        )
        return cur.rowcount == 1

    @asynccontextmanager
    async def kept(self, interval: float = HEARTBEAT) -> AsyncIterator[None]:
        """Keep the lock alive while the block runs; if another process took it over, the block is
        cancelled and ends in a UserError, so two processes never go on writing one run."""
        owner = asyncio.current_task()

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    ours = self.beat()
                except sqlite3.Error:
                    continue  # busy or full for now: the next beat tries again
                if not ours:
                    self.lost = True
                    try:
                        self.lost_to = holder_of(self.conn, self.run_id)
                    except sqlite3.Error:
                        pass
                    if owner is not None:
                        owner.cancel()
                    return

        beating = asyncio.ensure_future(heartbeat())
        try:
            yield
        except asyncio.CancelledError:
            if not self.lost:
                raise
            who = self.lost_to.where() if self.lost_to else "another process"
            raise UserError(
                f"run {self.name!r} was taken over by {who} after this process was silent for over "
                f"{STALE_AFTER:.0f} s; this process stopped so that only one writes the run: let the other finish"
            ) from None
        finally:
            beating.cancel()
