"""The terminal summary printed at the end of every run and by `personagym show`."""

from __future__ import annotations

from typing import Any


def _score(value: float | None) -> str:
    return "  -  " if value is None else f"{value:.2f}"


def summary_lines(results: dict[str, Any]) -> list[str]:
    run, scores, failures = results["run"], results["scores"], results["failures"]
    config = run["config"]
    lines = [
        f"run {run['name']} ({run['status']}): agent {config['agent']}, judges {', '.join(config['judges'])}",
        f"PersonaScore {_score(scores['persona_score'])}  over {scores['personas_scored']}/{scores['personas']} "
        f"personas, {scores['questions_scored']}/{scores['questions']} questions scored",
    ]
    width = max((len(t) for t in scores["tasks"]), default=0)
    lines += [f"  {task:<{width}}  {_score(value)}" for task, value in scores["tasks"].items()]
    if failures["total"]:
        causes = ", ".join(f"{cause} {n}" for cause, n in failures["by_cause"].items())
        stages = ", ".join(f"{stage} {n}" for stage, n in failures["by_stage"].items())
        lines.append(f"failures: {failures['total']} (by cause: {causes}; by stage: {stages}); rerun to retry them")
    total = results["usage"]["total"]
    cost = "unknown" if total["cost"] is None else f"${total['cost']:.4f}"
    lines.append(
        f"usage: {total['calls'] + total['failures']} calls ({total['cached']} cached), "
        f"{total['prompt_tokens']:,} prompt + {total['completion_tokens']:,} completion tokens, cost {cost}"
    )
    return lines
