"""The overview chart: PersonaScore and the task scores of every run as grouped bars with their
confidence intervals, drawn as inline SVG so the report needs no script or library to show it."""

from __future__ import annotations

from html import escape
from typing import Any

# Distinguishable in light and dark mode and for the common colour-vision deficiencies (Okabe-Ito).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999"]

TOP, BOTTOM, LEFT, RIGHT = 20, 56, 36, 12
PLOT_HEIGHT = 220
BAR, GAP = 16, 22


def color(run: int) -> str:
    return PALETTE[run % len(PALETTE)]


def _y(score: float) -> float:
    """Scores run from 1 to 5; the axis starts at 0 so bar lengths stay proportional to the score."""
    return TOP + PLOT_HEIGHT * (1 - score / 5)


def _fmt(value: float | None) -> str:
    return "no score" if value is None else f"{value:.2f}"


def _label_lines(text: str) -> list[str]:
    """Task names are two words at most in the method; split them so groups can stay narrow."""
    words = text.split()
    if len(words) < 2:
        return [text]
    half = (len(words) + 1) // 2
    return [" ".join(words[:half]), " ".join(words[half:])]


def score_chart(model: dict[str, Any]) -> str:
    runs = model["runs"]
    groups = [("PersonaScore", lambda run: (run["scores"]["persona_score"], run["intervals"]["persona_score"]))]
    for task in model["tasks"]:
        groups.append(
            (task, lambda run, t=task: (run["scores"]["tasks"].get(t), run["intervals"]["tasks"].get(t)))
        )
    group_width = max(len(runs) * BAR, 60) + GAP
    width = LEFT + RIGHT + group_width * len(groups)
    height = TOP + PLOT_HEIGHT + BOTTOM
    level = round(model["level"] * 100)
    parts = [
        # At least its natural size (the box scrolls on a phone), growing by half on a wide screen.
        f'<svg class="chart" viewBox="0 0 {width} {height}" style="min-width:{width}px;max-width:{width * 3 // 2}px" '
        'role="img" aria-labelledby="chart-title">',
        f'<title id="chart-title">PersonaScore and task scores per run, 1 to 5, with {level}% confidence '
        "intervals (exact figures in the table above)</title>",
    ]
    for tick in range(0, 6):
        y = _y(tick)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>')
    for g, (name, pick) in enumerate(groups):
        x0 = LEFT + g * group_width + GAP / 2 + (group_width - GAP - len(runs) * BAR) / 2
        for r, run in enumerate(runs):
            value, iv = pick(run)
            x = x0 + r * BAR
            label = escape(f"{run['label']}, {name}: {_fmt(value)}", quote=False)
            if iv and iv["low"] is not None and iv["high"] is not None:
                label += escape(f" ({level}% CI {iv['low']:.2f} to {iv['high']:.2f})", quote=False)
            parts.append(f"<g><title>{label}</title>")
            if value is not None:
                parts.append(
                    f'<rect x="{x + 1:.1f}" y="{_y(value):.1f}" width="{BAR - 2}" '
                    f'height="{_y(0) - _y(value):.1f}" fill="{color(r)}"/>'
                )
            else:
                parts.append(
                    f'<text class="none" x="{x + BAR / 2:.1f}" y="{_y(0) - 4:.1f}" text-anchor="middle">-</text>'
                )
            if iv and iv["low"] is not None and iv["high"] is not None:
                cx, lo, hi = x + BAR / 2, _y(iv["low"]), _y(iv["high"])
                parts.append(
                    f'<path class="whisker" d="M{cx:.1f} {lo:.1f}V{hi:.1f}'
                    f'M{cx - 4:.1f} {lo:.1f}h8M{cx - 4:.1f} {hi:.1f}h8"/>'
                )
            parts.append("</g>")
        cx = LEFT + g * group_width + group_width / 2
        for line, text in enumerate(_label_lines(name)):
            parts.append(
                f'<text class="label" x="{cx:.1f}" y="{_y(0) + 16 + 13 * line:.1f}" text-anchor="middle">'
                f"{escape(text, quote=False)}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def legend(model: dict[str, Any]) -> str:
    """Run names are free text of any length: an HTML legend wraps where an SVG one would not."""
    items = "".join(
        f'<li><span class="swatch" style="background:{color(r)}"></span>{escape(run["label"])}</li>'
        for r, run in enumerate(model["runs"])
    )
    return f'<ul class="legend" aria-label="runs">{items}</ul>'
