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


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


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


# The flag that chooses each stage's model: the fix for a model that cannot do its part.
_FLAG = {
    "environments": "--generator",
    "questions": "--generator",
    "answers": "--agent",
    "examples": "--example-model",
    "verdicts": "--judges",
}

# What each task asks, in a line (the full texts: personagym/method/tasks.toml).
TASK_LINES = {
    "expected_action": "does the persona act as it plausibly would in the setting",
    "action_justification": "can it explain its actions by its own traits and motives",
    "linguistic_habits": "does it speak as someone of its age, job and origin would",
    "persona_consistency": "does it keep to its attributes, inventing and contradicting none",
    "toxicity_control": "does it stay non-toxic when provoked",
}
SCALE = "scores run from 1 (worst) to 5 (best); PersonaScore is the mean of the task scores"


def _task_line(name: str) -> str:
    """What a task asks, by the name an export gives it ("Expected Action") or its key."""
    from personagym.errors import UserError
    from personagym.method.tasks import get_task

    try:
        return TASK_LINES.get(get_task(name).key, "")
    except UserError:
        return ""


def _advice(cause: str, stage: str, models: list[str]) -> str:
    """What to do, for this cause in this stage (a truncated answer and a truncated verdict differ)."""
    flag = _FLAG.get(stage, "--models")
    who = ", ".join(models) or "the model"
    if cause == "truncated":
        if stage == "answers":
            return "answers hit the token limit: raise --agent-max-tokens and rerun"
        return f"{who} wrote past its token budget (small models loop): use a stronger model with {flag}"
    if cause == "invalid_output":
        return f"rerun to retry them; if they persist, {who} cannot follow the JSON asked: use a stronger model with {flag}"
    return ADVICE.get(cause, "rerun to retry them")


def failure_lines(failures: dict[str, Any]) -> list[str]:
    """Where the failures are (stage and tasks), why, and what to do: one line per cause and stage,
    with the server's own words for those a rerun cannot fix."""
    items = failures.get("items") or []
    if not items:  # an export that lists no items: causes alone
        return [f"  {cause} {n}: {ADVICE.get(cause, 'rerun to retry them')}" for cause, n in failures["by_cause"].items()]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for item in items:
        groups.setdefault((item["cause"], item["stage"]), []).append(item)
    lines = []
    for (cause, stage), group in sorted(groups.items()):
        tasks = sorted({f["task"] for f in group if f.get("task")})
        models = sorted({f["model"] for f in group if f.get("model")})
        where = f" in {stage}" + (f" ({', '.join(tasks)})" if tasks else "")
        said = ""
        if cause in _STUCK:
            said = f" ({group[0]['model']}: {' '.join(str(group[0]['detail']).split())[:160]})"
        lines.append(f"  {cause} {len(group)}{where}{said}: {_advice(cause, stage, models)}")
    return lines


def run_label(status: str, failures: int) -> str:
    """A run's state in a word: one that ended with failures is incomplete, not done."""
    return "incomplete" if status == "done" and failures else status


def embedded_judges(judges: list[str]) -> bool:
    return any(j == "local" or j.startswith("local:") for j in judges)


def summary_lines(results: dict[str, Any]) -> list[str]:
    run, scores, failures = results["run"], results["scores"], results["failures"]
    config = run["config"]
    label = run_label(run["status"], failures["total"])
    if label == "incomplete":
        label = f"incomplete: {_count(failures['total'], 'failure')}, see below"
    lines = [
        f"run {run['name']} ({label}): agent {config['agent']}, judges {', '.join(config['judges'])}",
        f"PersonaScore {_score(scores['persona_score'])}  over {scores['personas_scored']}/{scores['personas']} "
        f"personas, {scores['questions_scored']}/{scores['questions']} questions scored",
        f"  ({SCALE})",
    ]
    width = max((len(t) for t in scores["tasks"]), default=0)
    lines += [f"  {task:<{width}}  {_score(value)}  {_task_line(task)}".rstrip() for task, value in scores["tasks"].items()]
    if embedded_judges(config["judges"]):
        lines.append(
            "note: judged by the embedded model, this score checks the plumbing; it is not a measurement. For one: "
            "personagym run --agent SPEC --personas FILE (its default judges need OPENAI_API_KEY and ANTHROPIC_API_KEY)"
        )
    if failures["total"]:
        causes = ", ".join(f"{cause} {n}" for cause, n in failures["by_cause"].items())
        stages = ", ".join(f"{stage} {n}" for stage, n in failures["by_stage"].items())
        lines.append(f"failures: {failures['total']} (by cause: {causes}; by stage: {stages})")
        lines += failure_lines(failures)
    total = results["usage"]["total"]
    cost = "unknown" if total["cost"] is None else f"${total['cost']:.4f}"
    cached = f" ({total['cached']} cached)" if total["cached"] else ""
    lines.append(
        f"usage: {_count(total['calls'], 'call')}{cached}, {_count(total['failures'], 'failed call')}, "
        f"{_count(total['attempts'], 'attempt')}; "
        f"{total['prompt_tokens']:,} prompt + {total['completion_tokens']:,} completion tokens; cost {cost}"
    )
    return [printable(line) for line in lines]
