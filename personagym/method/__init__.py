"""The PersonaGym method: tasks and rubrics, the environment catalog, prompts and output schemas.

Everything here is plain data and pure functions: no LLM calls, no I/O beyond reading packaged data
and the user's catalog file.
"""

from personagym.method.environments import CATALOG_VERSION, MAX_NAME_CHARS, Environment, load_catalog
from personagym.method.prompts import (
    DEFAULT_AGENT_TEMPLATE,
    PROMPTS_VERSION,
    Messages,
    agent_messages,
    check_template,
    environment_selection,
    judging,
    question_writing,
    score_examples,
)
from personagym.method.schemas import (
    MAX_BATCH,
    MAX_ENVIRONMENTS,
    MAX_QUESTIONS,
    EnvironmentChoice,
    Questions,
    ScoreExamples,
    Verdict,
    Verdicts,
)
from personagym.method.stages import STAGES, Stage
from personagym.method.tasks import LENSES, TASKS, Task, get_task, parse_tasks

__all__ = [
    "CATALOG_VERSION",
    "DEFAULT_AGENT_TEMPLATE",
    "LENSES",
    "MAX_BATCH",
    "MAX_ENVIRONMENTS",
    "MAX_NAME_CHARS",
    "MAX_QUESTIONS",
    "PROMPTS_VERSION",
    "STAGES",
    "TASKS",
    "Environment",
    "EnvironmentChoice",
    "Messages",
    "Questions",
    "ScoreExamples",
    "Stage",
    "Task",
    "Verdict",
    "Verdicts",
    "agent_messages",
    "check_template",
    "environment_selection",
    "get_task",
    "judging",
    "load_catalog",
    "parse_tasks",
    "question_writing",
    "score_examples",
]
