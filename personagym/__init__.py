"""personagym: PersonaGym (arXiv 2407.18416) and its metric, PersonaScore.

The package is kept import-light on purpose: `personagym --help` must start fast, so provider SDKs
and llama.cpp are imported only when a model of theirs is first used. Package data (tasks.toml,
prices.toml, the sha256 lists...) are read beside the module that uses them, `Path(__file__)`, not
through importlib.resources: its import brings tempfile, shutil, zipfile, bz2 and lzma, ~9 ms of CPU at
every start, and the package is always installed as plain files.
"""

__version__ = "0.1.0"
