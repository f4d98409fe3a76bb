"""Reads and writes of runs and everything they produce. Each write is its own transaction, made
as the work completes, so a run stopped by Ctrl-C or kill -9 loses only the calls in flight."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, AsyncContextManager, Iterable, Sequence

from personagym.errors import UserError
from personagym.llm.types import CallRecord
from personagym.store.db import transaction
from personagym.store.locks import RunLock


@dataclass(frozen=True)
class RunRow:
    id: int
    name: str
    status: str
    config: dict[str, Any]
    created_at: float
    updated_at: float


class RunStore:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.locks: dict[int, RunLock] = {}  # the runs this store's process holds (open_run)

    # -- runs -------------------------------------------------------------------------------
    def find_run(self, name: str) -> RunRow | None:
        found = self._runs("WHERE name = ?", (name,))
        return found[0] if found else None

    def runs(self) -> list[RunRow]:
        return self._runs("ORDER BY created_at")

    def _runs(self, where: str, args: tuple = ()) -> list[RunRow]:
        rows = self.conn.execute(f"SELECT id, name, status, config, created_at, updated_at FROM runs {where}", args)
        return [RunRow(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5]) for r in rows]

    def open_run(self, name: str, config: dict[str, Any]) -> int:
        """Create the run, or resume it if its config matches, and take its lock (one writer per run,
        personagym.store.locks); a conflicting config or a live holder is refused, with nothing written."""
        text = finite_json(config, f"the config of run {name!r}")
        now = time.time()
        with transaction(self.conn):
            existing = self.find_run(name)
            if existing is None:
                run_id = self.conn.execute(
                    "INSERT INTO runs (name, status, config, created_at, updated_at) VALUES (?, 'running', ?, ?, ?)",
                    (name, text, now, now),
                ).lastrowid
            else:
                for key in sorted(set(existing.config) | set(config)):
                    if existing.config.get(key) != config.get(key):
                        raise UserError(
                            f"run {name!r} exists with a different {key} ({_show(existing.config.get(key))}, now "
                            f"{_show(config.get(key))}): resume it with the same settings or pass a new --run name"
                        )
                run_id = existing.id
            lock = RunLock(self.conn, run_id, name)
            lock.take()
            if existing is not None:
                self.conn.execute("UPDATE runs SET status = 'running', updated_at = ? WHERE id = ?", (now, run_id))
                self.conn.execute("DELETE FROM failures WHERE run_id = ?", (run_id,))  # retried now
        self.locks[run_id] = lock
        return run_id

    def keeping(self, run_id: int) -> AsyncContextManager[None]:
        """Keep this process's lock on the run alive while the block runs (see RunLock.kept)."""
        lock = self.locks.get(run_id)
        return lock.kept() if lock is not None else nullcontext()

    def close_run(self, run_id: int, status: str) -> None:
        """Record how the run ended and release its lock, in one transaction; a process whose lock was
        taken over meanwhile leaves the status to the new holder."""
        lock = self.locks.pop(run_id, None)
        with transaction(self.conn):
            if lock is None or lock.held():
                self.conn.execute(
                    "UPDATE runs SET status = ?, updated_at = ? WHERE id = ?", (status, time.time(), run_id)
                )
            if lock is not None:
                lock.release()

    def set_prices(self, run_id: int, prices: dict[str, dict[str, float]]) -> None:
        self.conn.execute("UPDATE runs SET prices = ? WHERE id = ?", (finite_json(prices, "a price table"), run_id))

    def prices(self, run_id: int) -> dict[str, dict[str, float]]:
        row = self.conn.execute("SELECT prices FROM runs WHERE id = ?", (run_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else {}

    def set_status(self, run_id: int, status: str) -> None:
        self.conn.execute("UPDATE runs SET status = ?, updated_at = ? WHERE id = ?", (status, time.time(), run_id))

    # -- personas and questions -------------------------------------------------------------
    def persona_id(self, text: str) -> int:
        self.conn.execute("INSERT OR IGNORE INTO personas (text) VALUES (?)", (text,))
        return self.conn.execute("SELECT id FROM personas WHERE text = ?", (text,)).fetchone()[0]

    def add_run_personas(
        self, run_id: int, persona_ids: Sequence[int], positions: Sequence[int] | None = None
    ) -> None:
        """The run's personas in order; `positions` are their places in a longer list when the run
        covers only part of it (a shard), so the whole run's order can be restored."""
        places = range(len(persona_ids)) if positions is None else positions
        with transaction(self.conn):
            self.conn.executemany(
                "INSERT OR IGNORE INTO run_personas (run_id, persona_id, ordinal) VALUES (?, ?, ?)",
                [(run_id, pid, place) for pid, place in zip(persona_ids, places, strict=True)],
            )

    def environments(self, persona_id: int, recipe: str) -> list[str] | None:
        row = self.conn.execute(
            "SELECT names FROM environment_sets WHERE persona_id = ? AND recipe = ?", (persona_id, recipe)
        ).fetchone()
        return json.loads(row[0]) if row else None

    # Agent-independent artifacts (environments, questions, examples) are shared by every run of the
    # same recipe: the first one written stays, and a run that made its own meanwhile gets the stored
    # one back to use, so no run's export shows an artifact its judges never saw.
    def save_environments(self, persona_id: int, recipe: str, names: list[str]) -> list[str]:
        self.conn.execute(
            "INSERT OR IGNORE INTO environment_sets VALUES (?, ?, ?)", (persona_id, recipe, json.dumps(names))
        )
        return self.environments(persona_id, recipe) or names

    def questions(self, persona_id: int, task: str, recipe: str) -> list[tuple[int, str]] | None:
        rows = self.conn.execute(
            "SELECT id, text FROM questions WHERE persona_id = ? AND task = ? AND recipe = ? ORDER BY ordinal",
            (persona_id, task, recipe),
        ).fetchall()
        return [(r[0], r[1]) for r in rows] or None

    def save_questions(self, persona_id: int, task: str, recipe: str, texts: list[str]) -> list[tuple[int, str]]:
        with transaction(self.conn):
            self.conn.executemany(
                "INSERT OR IGNORE INTO questions (persona_id, task, recipe, ordinal, text) VALUES (?, ?, ?, ?, ?)",
                [(persona_id, task, recipe, i, t) for i, t in enumerate(texts)],
            )
        return self.questions(persona_id, task, recipe) or []

    def add_run_questions(self, run_id: int, question_ids: Iterable[int]) -> None:
        # One transaction: outside one, autocommit makes every row its own commit.
        with transaction(self.conn):
            self.conn.executemany("INSERT OR IGNORE INTO run_questions VALUES (?, ?)", [(run_id, q) for q in question_ids])

    # -- examples, answers, verdicts ----------------------------------------------------------
    def examples(self, question_ids: Sequence[int], recipe: str) -> dict[int, dict[int, str]]:
        """The stored score examples of these questions, by question id (those that have them)."""
        rows = self.conn.execute(
            f"SELECT question_id, examples FROM examples WHERE recipe = ? AND question_id IN ({_marks(question_ids)})",
            (recipe, *question_ids),
        )
        return {qid: {int(k): v for k, v in json.loads(text).items()} for qid, text in rows}

    def save_examples(self, question_id: int, recipe: str, examples: dict[int, str]) -> dict[int, str]:
        added = self.conn.execute(
            "INSERT OR IGNORE INTO examples VALUES (?, ?, ?)", (question_id, recipe, json.dumps(examples))
        ).rowcount
        return examples if added else self.examples([question_id], recipe).get(question_id, examples)

    def answers(self, run_id: int, question_ids: Sequence[int]) -> dict[int, str]:
        """This run's stored answers to these questions, by question id (those that have one)."""
        rows = self.conn.execute(
            f"SELECT question_id, text FROM answers WHERE run_id = ? AND question_id IN ({_marks(question_ids)})",
            (run_id, *question_ids),
        )
        return dict(rows.fetchall())

    def save_answer(
        self, run_id: int, question_id: int, text: str, truncated: bool = False, reasoning: str | None = None
    ) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO answers (run_id, question_id, text, truncated, reasoning) VALUES (?, ?, ?, ?, ?)",
            (run_id, question_id, text, truncated, reasoning),
        )

    def judged(self, run_id: int, judge: str, question_ids: list[int], sample: int = 0) -> set[int]:
        """Which of these questions the judge has already graded in this run (in this draw)."""
        rows = self.conn.execute(
            f"SELECT question_id FROM verdicts WHERE run_id = ? AND judge = ? AND sample = ? "
            f"AND question_id IN ({_marks(question_ids)})",
            (run_id, judge, sample, *question_ids),
        )
        return {r[0] for r in rows}

    def save_verdicts(
        self, run_id: int, judge: str, verdicts: list[tuple[int, int, str, int]], sample: int = 0
    ) -> None:
        """verdicts: (question_id, score, reasoning, place in the batch as sent); a batch lands whole or
        not at all."""
        with transaction(self.conn):
            self.conn.executemany(
                "INSERT OR REPLACE INTO verdicts (run_id, question_id, judge, sample, score, reasoning, position, "
                "batch_size) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, qid, judge, sample, score, why, place, len(verdicts)) for qid, score, why, place in verdicts],
            )

    # -- failures and calls -------------------------------------------------------------------
    def save_failure(
        self,
        run_id: int,
        stage: str,
        persona_id: int,
        model: str,
        cause: str,
        detail: str,
        task: str | None = None,
        question_id: int | None = None,
    ) -> None:
        from personagym import secrets

        self.conn.execute(
            "INSERT INTO failures (run_id, stage, persona_id, task, question_id, model, cause, detail, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            # Redacted here too, as a last line: a detail from any path never stores a secret.
            (run_id, stage, persona_id, task, question_id, model, cause, secrets.clip(str(detail), 1000), time.time()),
        )

    def save_call(self, run_id: int, call: CallRecord) -> None:
        self.conn.execute(
            "INSERT INTO calls (run_id, model, role, ok, cached, attempts, prompt_tokens, completion_tokens, cause, "
            "created_at, batch, answered_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                call.model,
                call.role,
                call.ok,
                call.cached,
                call.attempts,
                call.prompt_tokens,
                call.completion_tokens,
                call.cause,
                time.time(),
                call.batch,
                call.answered_by,
            ),
        )


def _marks(values: Sequence[Any]) -> str:
    """The placeholders of an IN list. A task holds at most a few dozen questions, far below
    SQLite's limit on parameters (32,766)."""
    return ",".join("?" * len(values))


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


def finite_json(value: Any, what: str) -> str:
    """JSON of `value` as stored: NaN and infinities are refused (they are not JSON, and would make
    every export of the run unreadable)."""
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except ValueError:
        raise UserError(f"{what} holds a number that is not finite (NaN or infinity): give finite numbers") from None
