"""The PersonaGym method as stages over plain data: environments, questions, answers, score
examples, verdicts. `evaluate` runs them all for an agent and returns the results."""

from personagym.pipeline.config import RunConfig
from personagym.pipeline.evaluate import evaluate, execute, prepare
from personagym.pipeline.roles import Role

__all__ = ["Role", "RunConfig", "evaluate", "execute", "prepare"]
