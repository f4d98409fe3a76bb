"""Tokens and dollars, per model and per role, for every call the gateway makes."""

from __future__ import annotations

import logging
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from personagym.errors import UserError
from personagym.llm.types import CallRecord

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


BATCH_DISCOUNT = 0.5  # the share of the online price a batch call costs
# No call reads or writes a billion tokens (the largest context windows are a few million): a count
# beyond this, or one that is negative or not a whole number, is a server lying, not a bill.
MAX_TOKENS_PER_CALL = 10**9

log = logging.getLogger("personagym.llm")


def plausible_tokens(value: Any, attempts: int = 1) -> int:
    """A token count as reported, when it can be one (a whole number from 0 to the per-call cap,
    times the attempts it covers); 0, meaning unknown, for anything else."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS_PER_CALL * max(1, attempts):
        return value
    return 0
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


class PriceTable:
    """USD per million tokens. Unknown models have no cost (None), which reports show as unknown."""

    def __init__(self, prices: dict[str, dict[str, float]]):
        self.prices = prices

    @classmethod
    def load(cls, user_file: str | Path | None = None) -> "PriceTable":
        table = tomllib.loads(Path(__file__).with_name("prices.toml").read_text())
        if user_file:
            path = Path(user_file)
            try:
                table.update(tomllib.loads(path.read_text()))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise UserError(f"cannot read price file {path}: {exc}: fix the file or drop --prices") from None
        for spec, entry in table.items():
            if not isinstance(entry, dict) or not {"input", "output"} <= entry.keys():
                raise UserError(f"price entry {spec!r} needs `input` and `output` (USD per million tokens)")
        return cls(table)

    def lookup(self, spec: str) -> dict[str, float] | None:
        if spec.startswith("local"):
            return self.prices.get("local")
        if spec in self.prices:
            return self.prices[spec]
        # A dated snapshot or alias costs what its family does; any other suffix is another model.
        family = _SNAPSHOT.sub("", spec)
        return self.prices.get(family)

    def cost(self, spec: str, prompt_tokens: int, completion_tokens: int, batch: bool = False) -> float | None:
        price = self.lookup(spec)
        if price is None:
            return None
        # OpenAI's Batch and Anthropic's Message Batches both charge half; an entry may say otherwise.
        factor = price.get("batch", BATCH_DISCOUNT) if batch else 1.0
        return factor * (prompt_tokens * price["input"] + completion_tokens * price["output"]) / 1_000_000


@dataclass
class UsageRow:
    calls: int = 0  # calls that ended with an accepted reply (fresh or cached)
    cached: int = 0  # of those, answered from the cache (free)
    failures: int = 0  # calls that ended as a recorded failure
    attempts: int = 0  # requests actually sent, retries included
    prompt_tokens: int = 0  # tokens paid for, retries and rejected replies included
    completion_tokens: int = 0
    cost: float | None = 0.0  # None once any paid call had no known price

    def add(self, other: "UsageRow") -> None:
        for name in ("calls", "cached", "failures", "attempts", "prompt_tokens", "completion_tokens"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.cost = None if self.cost is None or other.cost is None else self.cost + other.cost


class Usage:
    def __init__(self, prices: PriceTable | None = None):
        self.prices = prices or PriceTable.load()
        self.rows: dict[tuple[str, str], UsageRow] = {}
        self.causes: Counter[tuple[str, str]] = Counter()  # (model, cause) -> failed calls

    def _row(self, model: str, role: str) -> UsageRow:
        row = self.rows.get((model, role))
        if row is None:
            row = self.rows[(model, role)] = UsageRow()
        return row

    def record(self, call: CallRecord) -> None:
        row = self._row(call.model, call.role)
        # The providers already refuse implausible counts; this is the second line, so that no path
        # (a new provider, a cache row) can put a wrong number into a sum.
        prompt = plausible_tokens(call.prompt_tokens, call.attempts)
        completion = plausible_tokens(call.completion_tokens, call.attempts)
        if (prompt, completion) != (call.prompt_tokens, call.completion_tokens):
            log.warning("%s: implausible token counts %r/%r counted as unknown (0)", call.model,
                        call.prompt_tokens, call.completion_tokens)
        row.attempts += call.attempts
        row.prompt_tokens += prompt
        row.completion_tokens += completion
        if row.cost is not None and call.attempts:
            cost = self.prices.cost(call.model, prompt, completion, batch=call.batch)
            row.cost = None if cost is None else row.cost + cost
        if call.ok:
            row.calls += 1
            row.cached += call.cached
        else:
            row.failures += 1
            self.causes[(call.model, call.cause or "unknown")] += 1

    def _sum(self, index: int) -> dict[str, UsageRow]:
        out: dict[str, UsageRow] = {}
        for key, row in self.rows.items():
            out.setdefault(key[index], UsageRow()).add(row)
        return out

    def by_model(self) -> dict[str, UsageRow]:
        return self._sum(0)

    def by_role(self) -> dict[str, UsageRow]:
        return self._sum(1)

    def total(self) -> UsageRow:
        total = UsageRow()
        for row in self.rows.values():
            total.add(row)
        return total

    def as_dict(self) -> dict[str, Any]:
        return {
            "by_model": {k: asdict(v) for k, v in self.by_model().items()},
            "by_role": {k: asdict(v) for k, v in self.by_role().items()},
            "total": asdict(self.total()),
            "failures": [{"model": m, "cause": c, "count": n} for (m, c), n in sorted(self.causes.items())],
        }
