"""Audits stored with their run: one row per run and judge, replaced by the judge's next audit.

Written in one transaction for all the judges of an audit, so a report never shows half of one."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from personagym.store.db import transaction
from personagym.store.runs import finite_json


def save_audit(conn: sqlite3.Connection, run_id: int, judges: dict[str, dict[str, Any]]) -> None:
    """judges: judge -> {"settings": {...}, "probes": {...}, "created_at": seconds}."""
    rows = [
        (run_id, judge, finite_json(entry["settings"], "an audit's settings"),
         finite_json(entry["probes"], "an audit's results"), entry["created_at"])
        for judge, entry in judges.items()
    ]  # fmt: skip
    with transaction(conn):
        conn.executemany(
            "INSERT OR REPLACE INTO audits (run_id, judge, settings, probes, created_at) VALUES (?, ?, ?, ?, ?)", rows
        )


def load_audit(conn: sqlite3.Connection, run_id: int) -> dict[str, Any] | None:
    """{"judges": {judge: {"settings", "probes", "created_at"}}} for the run, or None if never audited."""
    rows = conn.execute(
        "SELECT judge, settings, probes, created_at FROM audits WHERE run_id = ? ORDER BY judge", (run_id,)
    ).fetchall()
    if not rows:
        return None
    return {
        "judges": {
            judge: {"settings": json.loads(settings), "probes": json.loads(probes), "created_at": created}
            for judge, settings, probes, created in rows
        }
    }
