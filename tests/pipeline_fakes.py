"""A scripted fake for whole runs: the fake server answers each kind of PersonaGym call with known
content, so a run's scores are known exactly in advance."""

from __future__ import annotations

import json
from statistics import fmean

TASK_NAMES = ["Expected Action", "Action Justification", "Linguistic Habits", "Persona Consistency", "Toxicity Control"]
# judge-a gives 4 everywhere; judge-b's score depends on the task.
JUDGE_B = {"Expected Action": 5, "Action Justification": 3, "Linguistic Habits": 2, "Persona Consistency": 5, "Toxicity Control": 1}


def expected_task_scores(tasks=TASK_NAMES) -> dict[str, float]:
    return {t: (4 + JUDGE_B[t]) / 2 for t in tasks}


def expected_persona_score(tasks=TASK_NAMES) -> float:
    return fmean(expected_task_scores(tasks).values())


def prompt_text(body: dict) -> str:
    """Everything a chat request says, system prompt included, from either API's body."""
    parts = [body.get("system")] + [m.get("content") for m in body.get("messages", [])]
    texts = []
    for part in parts:
        if isinstance(part, list):  # content blocks
            texts += [block.get("text", "") for block in part if isinstance(block, dict)]
        elif part:
            texts.append(str(part))
    return "\n".join(texts)


# Told apart by their fields, not their names: Anthropic's structured output carries no schema name.
_KINDS = {"environments": "EnvironmentChoice", "questions": "Questions", "score_1": "ScoreExamples",
          "examples": "ScoreExampleBatch", "verdicts": "Verdicts"}


def example_sets(schema: dict, level_text) -> dict:
    """A batched score-examples reply: one set per question of the batch, numbered in order."""
    k = schema["properties"]["examples"]["minItems"]
    return {"examples": [{"index": i, **{f"score_{n}": level_text(n) for n in range(1, 6)}} for i in range(1, k + 1)]}


def _schema(body: dict) -> tuple[str | None, dict]:
    """(kind, schema) of the reply a request asks for; kind None for a plain-text answer."""
    fmt = body.get("response_format") or (body.get("output_config") or {}).get("format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") or fmt.get("schema")
    if schema is None:
        return None, {}
    fields = schema.get("properties") or {}
    return next((kind for field, kind in _KINDS.items() if field in fields), "unknown"), schema


def schema_of(body: dict) -> dict:
    """The JSON schema a request asks its reply to follow ({} for plain text)."""
    return _schema(body)[1]


def kind_of(body: dict) -> str | None:
    """What a request asks for: "Questions", "Verdicts" and so on, or None for a plain-text answer."""
    return _schema(body)[0]


def responder(api: str, body: dict):
    name, schema = _schema(body)
    text = prompt_text(body)
    if name == "EnvironmentChoice":
        enum = schema["properties"]["environments"]["items"]["enum"]
        return {"environments": enum[:2]}
    if name == "Questions":
        n = schema["properties"]["questions"]["minItems"]
        task = next((t for t in TASK_NAMES if t in text), "task")
        return {"questions": [f"{task} question {i + 1}: what would you do?" for i in range(n)]}
    if name == "ScoreExamples":
        return {f"score_{k}": f"EXAMPLE-{k} for this question" for k in range(1, 6)}
    if name == "ScoreExampleBatch":
        return example_sets(schema, lambda k: f"EXAMPLE-{k} for this question")
    if name == "Verdicts":
        k = schema["properties"]["verdicts"]["minItems"]
        score = 4 if body["model"] == "judge-a" else JUDGE_B[_judged_task(text)]
        return {"verdicts": [{"index": i, "reasoning": f"item {i} looks fine", "score": score} for i in range(1, k + 1)]}
    if name is None:
        return f"{body['model']}, in character: {body['messages'][-1]['content'][:40]}"
    raise AssertionError(f"unexpected schema {name}")


def _judged_task(text: str) -> str:
    hits = [(text.find(t), t) for t in TASK_NAMES if t in text]
    assert hits, "the judge prompt must name its task"
    return min(hits)[1]


PREFLIGHT = "Reply with the single word OK."


def preflights(server) -> int:
    """The one tiny request per model a run makes before it writes anything (pipeline/preflight.py)."""
    return sum(1 for body in server.requests if not _schema(body)[0] and PREFLIGHT in prompt_text(body))


def kinds(server) -> dict[str, int]:
    """How many requests of each kind the server received."""
    counts: dict[str, int] = {}
    for body in server.requests:
        name, _ = _schema(body)
        if not name and PREFLIGHT in prompt_text(body):
            continue  # the run's check that each model answers at all, before it writes anything
        key = name or "answer"
        if name == "Verdicts":
            key = f"Verdicts/{body['model']}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def dumps(value) -> str:
    return json.dumps(value, sort_keys=True)
