"""The Dialogues section (runs with --dialogues): the metrics with their intervals, the drift and
survival charts, break rates by tactic, and every conversation readable as a chat with each reply's
scores and breaks. Rendered on the server, so it reads with scripts off; every string from a run is
escaped where it is placed, and every number carries its exact value (`fmt`)."""

from __future__ import annotations

from html import escape
from typing import Any, Callable

from personagym.report.chart import color
from personagym.report.fmt import NONE, count, esc, interval, num, table

TOP, BOTTOM, LEFT, RIGHT, PLOT_HEIGHT, STEP = 16, 40, 40, 16, 180, 56


def dialogue_view(
    results_list: list[dict[str, Any]], labels: list[str], *, resamples: int, level: float, seed: int
) -> list[dict[str, Any]] | None:
    """Per run: its dialogues, their metrics (with the report's resamples and seed), and the settings
    that made them; None when no run has dialogues."""
    if not any(r.get("dialogues") for r in results_list):
        return None
    from personagym.dialogue_metrics import dialogue_metrics

    view = []
    for label, results in zip(labels, results_list):
        config = results["run"].get("config") or {}
        dialogues = results.get("dialogues") or []
        view.append({
            "label": label,
            "interlocutor": config.get("interlocutor"),
            "turns": config.get("turns"),
            "dialogues": dialogues,
            "metrics": dialogue_metrics(dialogues, resamples=resamples, level=level, seed=seed),
        })
    return view


def dialogues_section(model: dict[str, Any]) -> str:
    view = model.get("dialogues")
    if not view:
        return ""
    level = round(model["level"] * 100)
    parts = [
        '<section id="dialogues"><h2>Dialogues</h2>',
        "<p>Conversations with each persona, played by an interlocutor model following a tactic (small talk that "
        "drifts, identity challenges, false memories, a user posing as the developer, ...). Every reply of the "
        "agent is graded by the same judges: a 1\u20135 in-character score and a break level (none, soft slip into "
        "an assistant's voice, talk about being an AI, admission of being one). A deterministic detector of explicit "
        "admissions reads every reply too; its findings are shown beside the judges'. A reply's break is the most "
        "severe found by anyone. These figures are reported beside PersonaScore and are never part of it. "
        f"Intervals: {level}% bootstrap over personas.</p>",
        _metrics_table(view),
        "<h3>Drift</h3><p>The mean in-character score at each turn (over personas, each the mean of its "
        "conversations), with its interval. The slope above is the score's change per turn; a negative slope "
        "means the persona fades as the conversation goes on.</p>",
        _legend(view),
        _chart(view, lambda m: m["drift"]["by_turn"], (0, 5), [(v, str(v)) for v in range(6)], "drift",
               "In-character score by turn", lambda v: f"{v:.2f}"),
        "<h3>Turns to first break</h3><p>The share of conversations without any break through each turn "
        "(Kaplan\u2013Meier: a conversation cut short by a failure leaves the count where it stopped instead of "
        "counting as unbroken).</p>",
        _chart(view, lambda m: m["survival"]["by_turn"], (0, 1), [(v / 4, f"{25 * v}%") for v in range(5)], "survival",
               "Share of conversations without a break, by turn", lambda v: f"{100 * v:.0f}%"),
        _tactics_table(view),
        *(_conversations(r, run) for r, run in enumerate(view)),
        "</section>",
    ]
    return "".join(parts)


def _run_cell(r: int, label: str) -> str:
    return f'<span class="run-name"><span class="swatch" style="background:{color(r)}"></span>{esc(label)}</span>'


def _metrics_table(view: list[dict[str, Any]]) -> str:
    head = ["Run", "Dialogue score", "Break rate", "by judges", "by detector", "Admits AI", "Median turns to break",
            "Drift per turn", "Complete", "Interlocutor", "Turns"]
    rows = []
    for r, run in enumerate(view):
        m, key = run["metrics"], f"run{r}.dialogues"
        median = m["survival"]["median_turns_to_break"]
        rows.append([
            _run_cell(r, run["label"]),
            interval(m["score"]["value"], m["score"], f"{key}.score"),
            interval(m["break_rate"]["value"], m["break_rate"], f"{key}.break_rate"),
            interval(m["break_rate_judges"]["value"], m["break_rate_judges"], f"{key}.break_rate_judges"),
            interval(m["break_rate_detector"]["value"], m["break_rate_detector"], f"{key}.break_rate_detector"),
            interval(m["break_levels"]["admits_ai"]["value"], m["break_levels"]["admits_ai"], f"{key}.admits_ai"),
            count(median, f"{key}.median_turns") if median is not None else "not reached",
            interval(m["drift"]["slope"]["value"], m["drift"]["slope"], f"{key}.drift_slope"),
            f'{count(m["dialogues_complete"])} / {count(m["dialogues"], f"{key}.dialogues")}',
            esc(run["interlocutor"]) or NONE,
            count(run["turns"]),
        ])
    return table(head, rows, caption="Dialogue metrics (rates are shares of conversations, 0 to 1)")


def _tactics_table(view: list[dict[str, Any]]) -> str:
    from personagym.method.tactics import TACTICS, get_tactic

    used = {k for run in view for k in run["metrics"]["by_tactic"]}
    keys = [t.key for t in TACTICS if t.key in used] + sorted(used - {t.key for t in TACTICS})
    rows = []
    for key in keys:
        tactic = get_tactic(key)
        name = f'{esc(tactic.name)}<div class="note">{esc(tactic.tests)}</div>' if tactic else esc(key)
        cells = [name]
        for r, run in enumerate(view):
            found = run["metrics"]["by_tactic"].get(key)
            if found is None:
                cells.append(NONE)
                continue
            k = f"run{r}.tactic.{key}"
            cells.append(
                f'{interval(found["break_rate"]["value"], found["break_rate"], k + ".break_rate")}'
                f'<div class="note">score {num(found["score"]["value"], k + ".score")}, '
                f'{count(found["dialogues"])} conversations</div>'
            )
        rows.append(cells)
    head = ["Tactic"] + [_run_cell(r, run["label"]) for r, run in enumerate(view)]
    return "<h3>Break rate by tactic</h3>" + table(head, rows, caption="Share of conversations with a break, per tactic")


def _legend(view: list[dict[str, Any]]) -> str:
    items = "".join(f'<li><span class="swatch" style="background:{color(r)}"></span>{esc(run["label"])}</li>'
                    for r, run in enumerate(view))
    return f'<ul class="legend" aria-label="runs">{items}</ul>'


def _chart(
    view: list[dict[str, Any]], pick: Callable[[dict[str, Any]], list[dict[str, Any]]], span: tuple[float, float],
    ticks: list[tuple[float, str]], name: str, title: str, shown: Callable[[float], str],
) -> str:
    """Lines per run over turns 1..T with the interval at each point, as inline SVG."""
    turns = max((len(pick(run["metrics"])) for run in view), default=0)
    if not turns:
        return ""
    low, high = span
    width = LEFT + RIGHT + STEP * max(turns, 2)
    height = TOP + PLOT_HEIGHT + BOTTOM

    def x(turn: int) -> float:
        return LEFT + STEP * (turn - 0.5)

    def y(value: float) -> float:
        return TOP + PLOT_HEIGHT * (1 - (value - low) / (high - low))

    parts = [
        f'<div class="scroll chart-box"><svg class="chart" viewBox="0 0 {width} {height}" '
        f'style="min-width:{width}px;max-width:{width * 3 // 2}px" role="img" aria-labelledby="chart-{name}">',
        f'<title id="chart-{name}">{escape(title, quote=False)}, per run, with intervals</title>',
    ]
    for tick, text in ticks:
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{width - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{text}</text>')
    for turn in range(1, turns + 1):
        parts.append(f'<text class="label" x="{x(turn):.1f}" y="{y(low) + 16:.1f}" text-anchor="middle">{turn}</text>')
    parts.append(f'<text class="label" x="{LEFT + STEP * turns / 2:.1f}" y="{y(low) + 32:.1f}" '
                 'text-anchor="middle">turn</text>')
    for r, run in enumerate(view):
        points = [p for p in pick(run["metrics"]) if p["value"] is not None]
        if len(points) > 1:
            path = " ".join(f"{x(p['turn']):.1f},{y(p['value']):.1f}" for p in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color(r)}" stroke-width="2"/>')
        for p in points:
            cx, cy = x(p["turn"]) + 3 * (r - (len(view) - 1) / 2), y(p["value"])
            label = f"{run['label']}, turn {p['turn']}: {shown(p['value'])}"
            parts.append(f"<g><title>{escape(label, quote=False)}</title>")
            if p.get("low") is not None and p.get("high") is not None:
                parts.append(f'<path class="whisker" d="M{cx:.1f} {y(p["low"]):.1f}V{y(p["high"]):.1f}"/>')
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{color(r)}"/></g>')
    parts.append("</svg></div>")
    return "".join(parts)


def _conversations(r: int, run: dict[str, Any]) -> str:
    items = [_conversation(d) for d in run["dialogues"]]
    intro = (f"<p>{count(len(items))} conversations. Open one to read it; each reply shows the judges' scores and "
             "break levels and the detector's finding.</p>")
    return f"<h3>Conversations: {esc(run['label'])}</h3>" + intro + "".join(items)


def _conversation(d: dict[str, Any]) -> str:
    from personagym.method.tactics import get_tactic

    tactic = get_tactic(d["tactic"])
    first = f"first break at turn {d['first_break']}" if d["first_break"] is not None else "no break"
    summary = (f'<summary><span class="q-persona">{esc(d["persona"])}</span> \u00b7 {esc(tactic.name if tactic else d["tactic"])}'
               f' \u00b7 score {num(d["score"])} \u00b7 {first}'
               + (f' \u00b7 {esc(d["setting"])}' if d.get("setting") else "") + "</summary>")
    turns = "".join(_turn(t) for t in d["turns"])
    if len(d["turns"]) < (d.get("turns_planned") or 0):
        turns += '<li class="note">The conversation stopped here (a failure; a rerun resumes it).</li>'
    return f'<details class="dialogue">{summary}<ol class="chat">{turns}</ol></details>'


def _turn(t: dict[str, Any]) -> str:
    user = f'<li class="user"><div class="who">User, turn {t["index"]}</div><div class="text">{esc(t["user"])}</div></li>'
    if t["agent"] is None:
        return user + '<li class="agent"><div class="who">Agent</div><div class="missing">no reply (failed)</div></li>'
    broken = t["break"] not in (None, "none")
    verdicts = "".join(
        f'<li>{esc(v["judge"])}: {num(v["score"], digits=0)}, {esc(v["break"])} \u2014 {esc(v["reasoning"])}</li>'
        for v in t["verdicts"]
    )
    detector = esc(t["detector"]) + (f" (\u201c{esc(t['detector_phrase'])}\u201d)" if t.get("detector_phrase") else "")
    cut = " \u00b7 cut at the token budget" if t.get("truncated") else ""
    grade = (f'<div class="grade">score {num(t["score"])} \u00b7 break: <strong>{esc(t["break"] or NONE)}</strong>'
             f" \u00b7 detector: {detector}{cut}</div>")
    return (user + f'<li class="agent{" broken" if broken else ""}"><div class="who">Agent</div>'
            f'<div class="text">{esc(t["agent"])}</div>{grade}<ul class="verdicts">{verdicts}</ul></li>')
