"""The optional TOML config file: anything a flag sets can live here; flags win.

Looked for at --config, then $PERSONAGYM_CONFIG, then ./personagym.toml. Example:

    db = "runs/personagym.db"
    concurrency = 32
    prices = "my-prices.toml"

    [openai]
    base_url = "http://localhost:8000/v1"   # vLLM, Ollama, llama.cpp server, ...
    api_key_env = "TOGETHER_API_KEY"        # read the key from another variable

    [anthropic]
    api_key_env = "ANTHROPIC_API_KEY"
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from personagym.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_FILE = "personagym.toml"


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    explicit = path or os.environ.get("PERSONAGYM_CONFIG")
    candidate = Path(explicit) if explicit else Path(DEFAULT_FILE)
    if not candidate.exists():
        if explicit:
            raise UserError(f"config file {candidate} does not exist: fix the path given to --config")
        return {}
    try:
        data = tomllib.loads(candidate.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"config file {candidate} is not valid TOML ({exc}): fix it or pass another --config") from None
    for table in ("openai", "anthropic"):
        if table in data and not isinstance(data[table], dict):
            raise UserError(f"config file {candidate}: `{table}` must be a table ([{table}]), not a value")
    return data
