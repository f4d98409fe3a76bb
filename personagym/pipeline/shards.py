"""Sharded runs: a shard's personas at their places in the whole list. The checks that a set of
shard databases makes one whole run, before `personagym merge` joins them, are in
`personagym.pipeline.shard_set` (a run does not load them).

A run split with ``--shard K/N`` evaluates persona i (0-based, in input order) when i mod N == K-1,
records "K/N" in its config, and keeps each persona's position in the whole list as its ordinal, so
a merge can restore the unsharded order. Copying the rows is the store's part
(`personagym.store.merge`).
"""

from __future__ import annotations

import re
from typing import Sequence

from personagym.errors import UserError

SHARD_KEY = "shard"  # the config field of a shard run: "K/N"
_SHARD_FIX = "pass --shard K/N with 1 <= K <= N, e.g. --shard 2/4 for the second of four shards"


def parse_shard(value: str | Sequence[int]) -> tuple[int, int]:
    """'K/N' (or a (K, N) pair) as two checked numbers."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        k, n = value
    else:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(value))
        if match is None:
            raise UserError(f"--shard {value!r} is not of the form K/N: {_SHARD_FIX}")
        k, n = int(match[1]), int(match[2])
    if not (isinstance(k, int) and isinstance(n, int)) or not 1 <= k <= n:
        raise UserError(f"--shard {k}/{n} is out of range: {_SHARD_FIX}")
    return k, n


def shard_text(k: int, n: int) -> str:
    return f"{k}/{n}"


def shard_suffix(k: int, n: int) -> str:
    """What a shard run's default name adds to the default name of the whole run."""
    return f"-shard-{k}-of-{n}"


def shard_db(k: int, n: int) -> str:
    """A shard's default database: one file per shard, so shards can run side by side."""
    return f"personagym.shard-{k}-of-{n}.db"


def shard_positions(count: int, k: int, n: int) -> list[int]:
    """The 0-based positions, among `count` personas, that shard K of N evaluates."""
    return list(range(k - 1, count, n))
