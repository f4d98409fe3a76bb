"""The PersonaGym method as stages over plain data: environments, questions, answers, score
examples, verdicts. `evaluate` runs them all for an agent and returns the results."""

from personagym.pipeline.config import RunConfig
from personagym.pipeline.evaluate import Options, evaluate, execute, prepare

__all__ = ["Options", "RunConfig", "evaluate", "execute", "prepare"]
