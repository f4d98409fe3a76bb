"""The terminal summary printed at the end of every run and by `personagym show`."""

from __future__ import annotations

import re
from typing import Any

# Terminal control: C0 and C1 controls and DEL (escape sequences that retitle a window, move the
# cursor or hide text start with these), and the bidirectional overrides that reorder what is shown.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    """Text from outside (run names from export files, personas, servers' messages) made safe to print
    on a terminal line: control characters go, line breaks and tabs become spaces."""
    from personagym.secrets import redact  # and no key the process knows, whatever the text quotes

    return _CONTROL.sub(lambda m: " " if m.group() in "\t\n\r\v\f" else "", redact(str(text)))


def _score(value: float | None) -> str:
    return "  -  " if value is None else f"{value:.2f}"


# What to do about each cause of failure. Only some go away by running the same command again.
ADVICE = {
    "timeout": "rerun to retry them",
    "rate_limited": "rerun to retry them (or lower --concurrency, --rpm, --tpm)",
    "server_error": "rerun to retry them",
    "connection": "start the server or fix its base URL, then rerun",
    "malformed_response": "rerun to retry them",
    "invalid_output": "rerun to retry them; if they persist, the model cannot follow the JSON asked: use a stronger one",
    "truncated": "answers hit the token limit: raise --agent-max-tokens (or the model's budget) and rerun",
    "auth": "a key was refused: fix OPENAI_API_KEY / ANTHROPIC_API_KEY (or the config's api_key), then rerun",
    "not_found": "a server does not know a model (it may be retired): choose another with the role's flag",
    "oversized": "a reply passed the size cap (no honest reply comes near it): check the server; raise "
    "max_reply_bytes in the config only if you trust it",
    "incomplete_ensemble": "some judges scored these questions and others did not, so they have no score: rerun to "
    "retry the missing verdicts",
    "bad_request": "a server refused the request itself (see its message): a rerun will not help; check it speaks the "
    "provider's API, or set --structured-output",
}
_STUCK = ("auth", "not_found", "bad_request", "oversized")  # the server's own words matter for these


def failure_lines(failures: dict[str, Any]) -> list[str]:
    """Where the failures are, why, and what to do: one line per cause, with the server's own words
    for those a rerun cannot fix."""
    lines = []
    for cause, n in failures["by_cause"].items():
        items = [f for f in failures.get("items", []) if f["cause"] == cause]
        stages = sorted({f["stage"] for f in items})
        where = f" in {', '.join(stages)}" if stages else ""
        said = ""
        if cause in _STUCK and items:
            said = f" ({items[0]['model']}: {' '.join(str(items[0]['detail']).split())[:160]})"
        lines.append(f"  {cause} {n}{where}{said}: {ADVICE.get(cause, 'rerun to retry them')}")
    return lines


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
        lines.append(f"failures: {failures['total']} (by cause: {causes}; by stage: {stages})")
        lines += failure_lines(failures)
    total = results["usage"]["total"]
    cost = "unknown" if total["cost"] is None else f"${total['cost']:.4f}"
    lines.append(
        f"usage: {total['calls'] + total['failures']} calls ({total['cached']} cached), "
        f"{total['prompt_tokens']:,} prompt + {total['completion_tokens']:,} completion tokens, cost {cost}"
    )
    return [printable(line) for line in lines]
