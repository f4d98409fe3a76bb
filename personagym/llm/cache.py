"""A persistent cache of accepted replies, in the run database.

The key is a hash of everything that changes a model's output and nothing else: provider, base URL
(without credentials), model, messages, every sampling parameter, the schema (or a plain-text
reply's parser), and the sample index when sampling is random. Only replies the gateway accepted are
stored: an error, a truncated or an invalid reply is never cached, so a retry tomorrow really asks
the model again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sqlite3
import time
from typing import Any, ContextManager

from personagym.llm import jsonbytes
from personagym.llm.jsonschema import json_schema
from personagym.llm.types import Reply, Request
from personagym.store.db import transaction

# Bump when the meaning of a cached entry changes, so old entries stop matching.
KEY_VERSION = 1


@functools.lru_cache(maxsize=256)
def _schema_text(schema: Any) -> str | None:
    if schema is None:
        return None
    return json.dumps(json_schema(schema), sort_keys=True)


def parser_id(parser: Any) -> str:
    """A plain-text parser's name and version: bump its `version` when its rules change."""
    return getattr(parser, "version", None) or f"{parser.__module__}.{parser.__qualname__}"


def cache_key(identity: dict[str, Any], request: Request) -> str:
    s = request.sampling
    payload = {
        "v": KEY_VERSION,
        "model": identity,
        "messages": [[m.role, m.content] for m in request.messages],
        "temperature": s.temperature,
        "top_p": s.top_p,
        "max_tokens": s.max_tokens,
        "seed": s.seed,
        "schema": _schema_text(request.schema),
        "extra_body": request.extra_body,
        # At temperature 0 every draw is the same call; above it, or where the provider takes no
        # temperature at all, each draw is its own answer.
        "sample": request.sample if s.temperature > 0 or identity.get("sampling") else 0,
    }
    if request.parser is not None:
        # Which rules accepted the reply; only in plain-text-format keys, so every other key stays as it was.
        payload["parser"] = parser_id(request.parser)
    return hashlib.sha256(jsonbytes.canonical(payload)).hexdigest()


class Cache:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def get(self, key: str) -> Reply | None:
        row = self.conn.execute(
            "SELECT text, finish, prompt_tokens, completion_tokens FROM llm_cache WHERE key = ?", (key,)
        ).fetchone()
        return Reply(*row) if row else None

    def writing(self) -> ContextManager[sqlite3.Connection]:
        """A transaction on the cache's database, for writes that belong together."""
        return transaction(self.conn)

    def put(self, key: str, model: str, reply: Reply) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO llm_cache VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, model, reply.text, reply.finish, reply.prompt_tokens, reply.completion_tokens, time.time()),
        )

    def stats(self) -> dict[str, Any]:
        rows = self.conn.execute(
            "SELECT model, count(*), sum(length(text)), min(created_at), max(created_at) "
            "FROM llm_cache GROUP BY model ORDER BY model"
        ).fetchall()
        models = [
            {"model": m, "entries": n, "text_bytes": b or 0, "oldest": lo, "newest": hi} for m, n, b, lo, hi in rows
        ]
        return {"entries": sum(m["entries"] for m in models), "models": models}

    def clear(self, model: str | None = None) -> int:
        if model is None:
            cur = self.conn.execute("DELETE FROM llm_cache")
        else:
            cur = self.conn.execute("DELETE FROM llm_cache WHERE model = ?", (model,))
        return cur.rowcount


def learned_shapes(conn: sqlite3.Connection) -> dict[str, str]:
    """The structured-output shape each server was found to take, by public base URL."""
    return dict(conn.execute("SELECT server, shape FROM server_shapes"))


def remember_shape(conn: sqlite3.Connection, server: str, shape: str) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO server_shapes (server, shape, updated_at) VALUES (?, ?, ?)", (server, shape, time.time())
    )
