"""personagym: PersonaGym (arXiv 2407.18416) and its metric, PersonaScore.

The package is kept import-light on purpose: `personagym --help` must start fast, so provider SDKs
and llama.cpp are imported only when a model of theirs is first used.
"""

__version__ = "0.1.0"
