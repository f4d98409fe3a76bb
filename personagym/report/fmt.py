"""Small HTML pieces shared by the sections. Every string from a run goes through `esc`; every number
carries its exact value in `data-value` (the float's repr, or "null") beside the rounded text, so a
reader sees 3.60 and a test can compare 3.6000000000000005 with the export."""

from __future__ import annotations

import html
from datetime import datetime, timezone
from typing import Any

NONE = "\u2013"  # what a missing score shows: an en dash, never a made-up number


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _attrs(value: Any, key: str | None) -> str:
    text = f' data-value="{"null" if value is None else esc(repr(value))}"'
    return text + (f' data-k="{esc(key)}"' if key else "")


def num(value: float | None, key: str | None = None, digits: int = 2) -> str:
    shown = NONE if value is None else f"{value:.{digits}f}"
    return f'<span class="num"{_attrs(value, key)}>{shown}</span>'


def count(value: int | None, key: str | None = None) -> str:
    shown = NONE if value is None else f"{value:,}"
    return f'<span class="num"{_attrs(value, key)}>{shown}</span>'


def pct(value: float | None, key: str | None = None) -> str:
    shown = NONE if value is None else f"{100 * value:.1f}%"
    return f'<span class="num"{_attrs(value, key)}>{shown}</span>'


def cost(value: float | None, key: str | None = None) -> str:
    shown = "unknown" if value is None else f"${value:,.4f}"
    return f'<span class="num"{_attrs(value, key)}>{shown}</span>'


def pvalue(value: float | None, key: str | None = None) -> str:
    shown = NONE if value is None else ("< 0.001" if value < 0.001 else f"{value:.3f}")
    return f'<span class="num"{_attrs(value, key)}>{shown}</span>'


def when(timestamp: float | None, key: str | None = None) -> str:
    if timestamp is None:
        return f'<span class="num"{_attrs(None, key)}>{NONE}</span>'
    iso = datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f'<time class="num"{_attrs(timestamp, key)}>{iso}</time>'


def interval(score: float | None, iv: dict[str, Any] | None, key: str) -> str:
    """A score and its confidence interval; the CI bounds keep their own exact values."""
    if iv is None or iv["low"] is None or iv["high"] is None:
        ci = f'<span class="ci">{NONE}</span>'
    else:
        ci = f'<span class="ci">{num(iv["low"], key + ".low")}\u2013{num(iv["high"], key + ".high")}</span>'
    return f"{num(score, key)} {ci}"


def table(head: list[str], rows: list[list[str]], *, caption: str | None = None, sortable: bool = False) -> str:
    """A table in a container that scrolls sideways on a narrow screen instead of squeezing."""
    cls = ' class="sortable"' if sortable else ""
    cap = f"<caption>{caption}</caption>" if caption else ""
    ths = "".join(f'<th scope="col">{h}</th>' for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table{cls}>{cap}<thead><tr>{ths}</tr></thead><tbody>{body}</tbody></table></div>'
