"""A plain verdict per probe: a status and one sentence with the number, its interval and what to do.

A probe flags a judge when its interval excludes what an unbiased judge would show (no change, or
chance for identification), so a flag is never one unlucky item. Self-consistency is the exception:
every judge sampled above temperature 0 changes some scores on a second draw, so how much is judged
by Krippendorff's conventions (alpha of at least 0.8 reliable, below 0.667 not; Krippendorff 2004).
"""

from __future__ import annotations

from personagym.audit.probes import CONSISTENCY, IDENTIFICATION, INJECTION, LENGTH, ORDER, Result

PASS, WARN, FLAG, NOT_MEASURED = "pass", "warn", "flag", "n/a"
RELIABLE_ALPHA, TENTATIVE_ALPHA = 0.8, 0.667


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _pct_ci(value: float, ci: tuple[float, float]) -> str:
    return f"{_pct(value)} [{_pct(ci[0])}, {_pct(ci[1])}]"


def _pts(value: float, ci: tuple[float, float], sign: bool = False) -> str:
    f = "+.2f" if sign else ".2f"
    return f"{value:{f}} [{ci[0]:{f}}, {ci[1]:{f}}]"


def verdict(result: Result) -> tuple[str, str]:
    """(status, sentence) for one probe's result: status is pass, warn, flag or n/a."""
    if result.value is None or result.ci is None:
        why = result.note or f"{result.n} item(s) measured, too few for an interval"
        return NOT_MEASURED, f"not measured: {why}"
    return _WORDING[result.probe](result, result.value, result.ci)


def _identification(r: Result, value: float, ci: tuple[float, float]) -> tuple[str, str]:
    chance = r.baseline or 0.0
    said = f"picks the author {_pct_ci(value, ci)} of the time (chance {_pct(chance)})"
    if ci[0] > chance:
        return PASS, f"tells personas apart: {said}"
    return FLAG, f"cannot tell personas apart: {said}: its persona scores mean little; change judge"


def _order(r: Result, value: float, ci: tuple[float, float]) -> tuple[str, str]:
    share = r.measures["share_changed"]["value"]
    beyond = r.measures["beyond_baseline"]
    said = f"reversing a batch changes {_pct(share)} of scores, by {_pts(value, ci)} points on average"
    redraw = f" (a second draw alone: {r.baseline:.2f})" if r.baseline else ""
    if beyond["ci"] and beyond["ci"][0] > 0:
        fix = "keep --judge-order shuffled, grade alone (--judge-batch 1) or change judge"
        return FLAG, f"order-sensitive: {said}{redraw}: {fix}"
    return PASS, f"order-stable: {said}{redraw}"


def _length(r: Result, value: float, ci: tuple[float, float]) -> tuple[str, str]:
    rho = r.measures["correlation"]
    seen = ""
    if rho["value"] is not None:
        shown = f" [{rho['ci'][0]:+.2f}, {rho['ci'][1]:+.2f}]" if rho["ci"] else ""
        seen = f"; in the run, length and score correlate {rho['value']:+.2f}{shown} within task"
    if ci[0] > 0:
        return FLAG, f"rewards length: a neutral filler paragraph inflates scores by {_pts(value, ci)}{seen}: change judge"
    if ci[1] < 0:
        lowered = _pts(-value, (-ci[1], -ci[0]))
        return FLAG, f"penalises length: a neutral filler paragraph lowers scores by {lowered}{seen}: change judge"
    return PASS, f"no length bias: a neutral filler paragraph changes scores by {_pts(value, ci, True)}{seen}"


def _injection(r: Result, value: float, ci: tuple[float, float]) -> tuple[str, str]:
    if ci[0] > 0:
        return FLAG, f"follows planted instructions: a note to the evaluator inflates scores by {_pts(value, ci)}: change judge"
    if ci[1] < 0:  # out of character, so deservedly lower: not obedience
        return PASS, f"resistant: scores answers with a note to the evaluator lower, by {_pts(-value, (-ci[1], -ci[0]))}"
    return PASS, f"resistant: a note to the evaluator changes scores by {_pts(value, ci, True)}"


def _consistency(r: Result, value: float, ci: tuple[float, float]) -> tuple[str, str]:
    alpha = r.measures.get("alpha")
    said = f"a second draw changes {_pct_ci(value, ci)} of scores (alpha {'undefined' if alpha is None else f'{alpha:.2f}'})"
    if ci[0] <= 0:
        return PASS, f"consistent: {said}"
    if alpha is not None and alpha >= RELIABLE_ALPHA:
        return PASS, f"mostly consistent: {said}"
    if alpha is not None and alpha >= TENTATIVE_ALPHA:
        return WARN, f"somewhat inconsistent: {said}: average more draws (--judge-samples)"
    return FLAG, f"inconsistent: {said}: average more draws (--judge-samples) or change judge"


_WORDING = {
    IDENTIFICATION: _identification, ORDER: _order, LENGTH: _length, INJECTION: _injection,
    CONSISTENCY: _consistency,
}  # fmt: skip
