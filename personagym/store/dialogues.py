"""Reads and writes of dialogues: openings by recipe, each run's conversations, their turns and the
judges' verdicts on them. Every turn is written the moment it exists (the user's message as soon as
the interlocutor wrote it, the agent's reply as soon as it came), so a run stopped anywhere resumes at
the next turn and pays for nothing twice."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from personagym.store.db import transaction


@dataclass(frozen=True)
class TurnRow:
    turn: int  # 1-based
    user: str
    agent: str | None  # None until the agent has answered
    truncated: bool = False


@dataclass(frozen=True)
class TurnVerdictRow:
    turn: int
    judge: str
    score: int
    break_level: str
    reasoning: str


class DialogueStore:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    # -- openings: agent-independent, shared by recipe ---------------------------------------------
    def opening(self, persona_id: int, recipe: str) -> str | None:
        row = self.conn.execute(
            "SELECT text FROM dialogue_openings WHERE persona_id = ? AND recipe = ?", (persona_id, recipe)
        ).fetchone()
        return row[0] if row else None

    def save_opening(self, persona_id: int, recipe: str, text: str) -> str:
        """The first one written stays: a run that wrote its own meanwhile gets the stored one back."""
        self.conn.execute("INSERT OR IGNORE INTO dialogue_openings VALUES (?, ?, ?)", (persona_id, recipe, text))
        return self.opening(persona_id, recipe) or text

    # -- a run's conversations ----------------------------------------------------------------------
    def dialogue(self, run_id: int, persona_id: int, ordinal: int, tactic: str, setting: str | None) -> int:
        """The conversation's id, made on first use."""
        with transaction(self.conn):
            self.conn.execute(
                "INSERT OR IGNORE INTO dialogues (run_id, persona_id, ordinal, tactic, setting) VALUES (?, ?, ?, ?, ?)",
                (run_id, persona_id, ordinal, tactic, setting),
            )
            return self.conn.execute(
                "SELECT id FROM dialogues WHERE run_id = ? AND persona_id = ? AND ordinal = ?",
                (run_id, persona_id, ordinal),
            ).fetchone()[0]

    def turns(self, dialogue_id: int) -> list[TurnRow]:
        rows = self.conn.execute(
            "SELECT turn, user, agent, truncated FROM dialogue_turns WHERE dialogue_id = ? ORDER BY turn",
            (dialogue_id,),
        )
        return [TurnRow(t, u, a, bool(cut)) for t, u, a, cut in rows]

    def save_user(self, dialogue_id: int, turn: int, text: str) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO dialogue_turns (dialogue_id, turn, user) VALUES (?, ?, ?)", (dialogue_id, turn, text)
        )

    def save_agent(
        self, dialogue_id: int, turn: int, text: str, truncated: bool = False, reasoning: str | None = None
    ) -> None:
        self.conn.execute(
            "UPDATE dialogue_turns SET agent = ?, truncated = ?, reasoning = ? WHERE dialogue_id = ? AND turn = ?",
            (text, truncated, reasoning, dialogue_id, turn),
        )

    def judged(self, dialogue_id: int) -> set[tuple[int, str]]:
        """(turn, judge) pairs already graded."""
        rows = self.conn.execute("SELECT turn, judge FROM turn_verdicts WHERE dialogue_id = ?", (dialogue_id,))
        return {(t, j) for t, j in rows}

    def save_verdict(
        self, dialogue_id: int, turn: int, judge: str, score: int, break_level: str, reasoning: str
    ) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO turn_verdicts (dialogue_id, turn, judge, score, break_level, reasoning) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (dialogue_id, turn, judge, score, break_level, reasoning),
        )

    # -- reading a whole run back (the export) ----------------------------------------------------
    def run_dialogues(self, run_id: int) -> list[tuple[int, int, str, int, str, str | None]]:
        """(dialogue id, persona id, persona text, ordinal, tactic, setting), in the run's persona order."""
        return self.conn.execute(
            "SELECT d.id, d.persona_id, p.text, d.ordinal, d.tactic, d.setting FROM dialogues d "
            "JOIN personas p ON p.id = d.persona_id "
            "LEFT JOIN run_personas rp ON rp.run_id = d.run_id AND rp.persona_id = d.persona_id "
            "WHERE d.run_id = ? ORDER BY rp.ordinal, d.persona_id, d.ordinal",
            (run_id,),
        ).fetchall()

    def run_turns(self, run_id: int) -> dict[int, list[TurnRow]]:
        found: dict[int, list[TurnRow]] = {}
        for did, t, u, a, cut in self.conn.execute(
            "SELECT t.dialogue_id, t.turn, t.user, t.agent, t.truncated FROM dialogue_turns t "
            "JOIN dialogues d ON d.id = t.dialogue_id WHERE d.run_id = ? ORDER BY t.dialogue_id, t.turn",
            (run_id,),
        ):
            found.setdefault(did, []).append(TurnRow(t, u, a, bool(cut)))
        return found

    def run_verdicts(self, run_id: int) -> dict[int, list[TurnVerdictRow]]:
        found: dict[int, list[TurnVerdictRow]] = {}
        for did, *row in self.conn.execute(
            "SELECT v.dialogue_id, v.turn, v.judge, v.score, v.break_level, v.reasoning FROM turn_verdicts v "
            "JOIN dialogues d ON d.id = v.dialogue_id WHERE d.run_id = ? ORDER BY v.dialogue_id, v.turn, v.judge",
            (run_id,),
        ):
            found.setdefault(did, []).append(TurnVerdictRow(*row))
        return found
