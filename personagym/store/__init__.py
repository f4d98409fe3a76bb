"""The SQLite database a run lives in: schema migrations, and the tables each layer writes."""

from personagym.store.db import connect, transaction

__all__ = ["connect", "transaction"]
