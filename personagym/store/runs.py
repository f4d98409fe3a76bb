"""Reads and writes of runs and everything they produce. Each write is its own transaction, made
as the work completes, so a run stopped by Ctrl-C or kill -9 loses only the calls in flight."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from personagym.errors import UserError
from personagym.llm.types import CallRecord
from personagym.store.db import transaction


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
        """Create the run, or resume it if its config matches; a conflicting config is refused."""
        existing = self.find_run(name)
        now = time.time()
        if existing is None:
            cur = self.conn.execute(
                "INSERT INTO runs (name, status, config, created_at, updated_at) VALUES (?, 'running', ?, ?, ?)",
                (name, json.dumps(config, sort_keys=True), now, now),
            )
            return cur.lastrowid
        for key in sorted(set(existing.config) | set(config)):
            if existing.config.get(key) != config.get(key):
                raise UserError(
                    f"run {name!r} exists with a different {key} ({_show(existing.config.get(key))}, now "
                    f"{_show(config.get(key))}): resume it with the same settings or pass a new --run name"
                )
        with transaction(self.conn):
            self.conn.execute("UPDATE runs SET status = 'running', updated_at = ? WHERE id = ?", (now, existing.id))
            self.conn.execute("DELETE FROM failures WHERE run_id = ?", (existing.id,))  # retried now
        return existing.id

    def set_prices(self, run_id: int, prices: dict[str, dict[str, float]]) -> None:
        self.conn.execute("UPDATE runs SET prices = ? WHERE id = ?", (json.dumps(prices, sort_keys=True), run_id))

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

    def save_environments(self, persona_id: int, recipe: str, names: list[str]) -> None:
        self.conn.execute("INSERT OR REPLACE INTO environment_sets VALUES (?, ?, ?)", (persona_id, recipe, json.dumps(names)))

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
        self.conn.executemany("INSERT OR IGNORE INTO run_questions VALUES (?, ?)", [(run_id, q) for q in question_ids])

    # -- examples, answers, verdicts ----------------------------------------------------------
    def examples(self, question_id: int, recipe: str) -> dict[int, str] | None:
        row = self.conn.execute(
            "SELECT examples FROM examples WHERE question_id = ? AND recipe = ?", (question_id, recipe)
        ).fetchone()
        return {int(k): v for k, v in json.loads(row[0]).items()} if row else None

    def save_examples(self, question_id: int, recipe: str, examples: dict[int, str]) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO examples VALUES (?, ?, ?)", (question_id, recipe, json.dumps(examples))
        )

    def answer(self, run_id: int, question_id: int) -> str | None:
        row = self.conn.execute(
            "SELECT text FROM answers WHERE run_id = ? AND question_id = ?", (run_id, question_id)
        ).fetchone()
        return row[0] if row else None

    def save_answer(self, run_id: int, question_id: int, text: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?)", (run_id, question_id, text))

    def judged(self, run_id: int, judge: str, question_ids: list[int]) -> set[int]:
        """Which of these questions the judge has already graded in this run."""
        marks = ",".join("?" * len(question_ids))
        rows = self.conn.execute(
            f"SELECT question_id FROM verdicts WHERE run_id = ? AND judge = ? AND question_id IN ({marks})",
            (run_id, judge, *question_ids),
        )
        return {r[0] for r in rows}

    def save_verdicts(self, run_id: int, judge: str, verdicts: list[tuple[int, int, str]]) -> None:
        """verdicts: (question_id, score, reasoning); a batch lands whole or not at all."""
        with transaction(self.conn):
            self.conn.executemany(
                "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?)",
                [(run_id, qid, judge, score, reasoning) for qid, score, reasoning in verdicts],
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
        self.conn.execute(
            "INSERT INTO failures (run_id, stage, persona_id, task, question_id, model, cause, detail, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, stage, persona_id, task, question_id, model, cause, detail[:1000], time.time()),
        )

    def save_call(self, run_id: int, call: CallRecord) -> None:
        self.conn.execute(
            "INSERT INTO calls (run_id, model, role, ok, cached, attempts, prompt_tokens, completion_tokens, cause, "
            "created_at, batch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            ),
        )


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."
