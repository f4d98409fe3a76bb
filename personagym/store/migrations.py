"""Schema changes, numbered and named. Never edit a released migration: append a new one."""

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "llm cache",
        """
        CREATE TABLE llm_cache (
            key TEXT PRIMARY KEY,          -- sha256 of everything that changes the output
            model TEXT NOT NULL,           -- the model spec, for stats and selective clearing
            text TEXT NOT NULL,
            finish TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX llm_cache_model ON llm_cache (model);
        """,
    ),
]
