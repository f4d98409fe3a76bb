"""The report page: one self-contained HTML file (styles, script, data and charts inline).

Personas and model outputs are untrusted, so the page has two defences: everything from a run is
escaped where it is placed (HTML text, attributes, or JSON with markup characters as \\uXXXX), and
a Content-Security-Policy lets only our one inline script run (by its hash), loads nothing from
anywhere, and allows images only as data: URLs. An escaping slip would show as garbled text, not run.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from personagym.report.details import judges, provenance
from personagym.report.dialogues import dialogues_section
from personagym.report.fmt import esc
from personagym.report.questions import embed_json
from personagym.report.sections import leaderboard, overview, personas

SECTIONS = [("overview", "Overview"), ("leaderboard", "Leaderboard"), ("personas", "Personas"),
            ("questions", "Questions"), ("judges", "Judges"), ("provenance", "Provenance")]


@cache
def asset(name: str) -> str:
    return Path(__file__).with_name(name).read_text(encoding="utf-8")


def script_hash(script: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")


def csp(script: str) -> str:
    return (
        f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src '{script_hash(script)}'; "
        "base-uri 'none'; form-action 'none'"
    )


def questions_section(model: dict[str, Any]) -> str:
    data = model["questions"]
    return (
        '<section id="questions"><h2>Questions</h2>'
        f"<p>All {len(data['items']):,} questions: the question, the agent's answer, the score examples the "
        "judges were given, each judge's score and reasoning, the ensemble score (their mean) and any failure "
        "with its cause. Disagreement is the gap between the highest and the lowest judge score.</p>"
        "<noscript><p>The questions are embedded in this file; browsing them needs JavaScript. "
        "<code>personagym export</code> gives them as JSON or CSV.</p></noscript>"
        '<form id="q-filters" class="filters" hidden>'
        '<label>Run <select id="f-run"><option value="">all</option></select></label>'
        '<label>Task <select id="f-task"><option value="">all</option></select></label>'
        '<label class="wide">Persona <select id="f-persona"><option value="">all</option></select></label>'
        '<label>Score from <input id="f-min" type="number" min="1" max="5" step="0.5" inputmode="decimal"></label>'
        '<label>to <input id="f-max" type="number" min="1" max="5" step="0.5" inputmode="decimal"></label>'
        '<label>Disagreement \u2265 <input id="f-dis" type="number" min="0" max="4" step="1" inputmode="numeric">'
        "</label>"
        '<label class="check"><input id="f-failed" type="checkbox"> failed or unscored only</label>'
        '<label>Sort <select id="f-sort"><option value="order">as run</option>'
        '<option value="score-asc">score, lowest first</option><option value="score-desc">score, highest first</option>'
        '<option value="dis-desc">disagreement, largest first</option><option value="persona">persona</option>'
        "</select></label></form>"
        '<p id="q-count" aria-live="polite"></p><ol id="q-list" class="questions"></ol>'
        '<nav class="pager" aria-label="question pages" hidden><button type="button" id="q-prev">Previous</button>'
        '<span id="q-page"></span><button type="button" id="q-next">Next</button></nav>'
        "</section>"
    )


def render(model: dict[str, Any]) -> str:
    """The whole page for a view model from `personagym.report.model.build_model`."""
    script = asset("report.js")
    # A script element ends at the first "</script" whatever the context; ours must not contain one.
    if "</script" in script.lower() or "<!--" in script:
        raise RuntimeError("report.js must not contain '</script' or '<!--'")
    names = ", ".join(run["label"] for run in model["runs"])
    sections = SECTIONS[:3] + ([("dialogues", "Dialogues")] if model.get("dialogues") else []) + SECTIONS[3:]
    nav = "".join(f'<a href="#{key}">{label}</a>' for key, label in sections)
    return "".join(
        [
            "<!DOCTYPE html>\n",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{esc(csp(script))}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="referrer" content="no-referrer">',
            f"<title>PersonaGym report: {esc(names)}</title>",
            f"<style>{asset('report.css')}</style></head><body>",
            f"<header><h1>PersonaGym report</h1><p class=\"runs\">{esc(names)}</p><nav>{nav}</nav></header><main>",
            overview(model),
            leaderboard(model),
            personas(model),
            dialogues_section(model),  # empty unless a run has dialogues
            questions_section(model),
            judges(model),
            provenance(model),
            "</main>",
            f'<script type="application/json" id="pg-questions">{embed_json(model["questions"])}</script>',
            f"<script>{script}</script>",
            "</body></html>\n",
        ]
    )
