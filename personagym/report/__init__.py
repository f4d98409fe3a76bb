"""The HTML report: runs' scores with confidence intervals, pairwise comparisons, every question with
its verdicts, judge agreement and provenance, in one offline file (docs/report.md).

    html = render_report([results_a, results_b])   # results as from `personagym export`
"""

from __future__ import annotations

from typing import Any


def render_report(results_list: list[dict[str, Any]], *, resamples: int = 2000, seed: int = 0) -> str:
    from personagym.report.html import render
    from personagym.report.model import build_model

    return render(build_model(results_list, resamples=resamples, seed=seed))
