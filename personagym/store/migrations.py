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
    (
        2,
        "runs",
        """
        CREATE TABLE personas (
            id INTEGER PRIMARY KEY,
            text TEXT NOT NULL UNIQUE
        );
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            status TEXT NOT NULL,          -- running | done | interrupted
            config TEXT NOT NULL,          -- JSON: models per role, sampling, versions, counts
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE run_personas (
            run_id INTEGER NOT NULL REFERENCES runs (id),
            persona_id INTEGER NOT NULL REFERENCES personas (id),
            ordinal INTEGER NOT NULL,
            PRIMARY KEY (run_id, persona_id)
        );
        -- What does not depend on the agent is keyed by its recipe (the models, sampling and versions
        -- that made it), so any run with the same recipe reuses it instead of paying again.
        CREATE TABLE environment_sets (
            persona_id INTEGER NOT NULL REFERENCES personas (id),
            recipe TEXT NOT NULL,
            names TEXT NOT NULL,           -- JSON list of catalog names
            PRIMARY KEY (persona_id, recipe)
        );
        CREATE TABLE questions (
            id INTEGER PRIMARY KEY,
            persona_id INTEGER NOT NULL REFERENCES personas (id),
            task TEXT NOT NULL,
            recipe TEXT NOT NULL,
            ordinal INTEGER NOT NULL,
            text TEXT NOT NULL,
            UNIQUE (persona_id, task, recipe, ordinal)
        );
        CREATE TABLE examples (
            question_id INTEGER NOT NULL REFERENCES questions (id),
            recipe TEXT NOT NULL,
            examples TEXT NOT NULL,        -- JSON {"1": ..., "5": ...}
            PRIMARY KEY (question_id, recipe)
        );
        CREATE TABLE run_questions (
            run_id INTEGER NOT NULL REFERENCES runs (id),
            question_id INTEGER NOT NULL REFERENCES questions (id),
            PRIMARY KEY (run_id, question_id)
        );
        CREATE TABLE answers (
            run_id INTEGER NOT NULL REFERENCES runs (id),
            question_id INTEGER NOT NULL REFERENCES questions (id),
            text TEXT NOT NULL,
            PRIMARY KEY (run_id, question_id)
        );
        CREATE TABLE verdicts (
            run_id INTEGER NOT NULL REFERENCES runs (id),
            question_id INTEGER NOT NULL REFERENCES questions (id),
            judge TEXT NOT NULL,
            score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
            reasoning TEXT NOT NULL,
            PRIMARY KEY (run_id, question_id, judge)
        );
        -- Work that failed after its retries. Cleared when a resumed run tries that work again.
        CREATE TABLE failures (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs (id),
            stage TEXT NOT NULL,           -- environments | questions | answers | examples | verdicts
            persona_id INTEGER NOT NULL REFERENCES personas (id),
            task TEXT,
            question_id INTEGER REFERENCES questions (id),
            model TEXT NOT NULL,
            cause TEXT NOT NULL,
            detail TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX failures_run ON failures (run_id);
        -- The bill of every call a run made, written as it completes.
        CREATE TABLE calls (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs (id),
            model TEXT NOT NULL,
            role TEXT NOT NULL,
            ok INTEGER NOT NULL,
            cached INTEGER NOT NULL,
            attempts INTEGER NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            cause TEXT,
            created_at REAL NOT NULL
        );
        CREATE INDEX calls_run ON calls (run_id);
        """,
    ),
    (
        3,
        "batch jobs",
        """
        -- Provider batch jobs (--batch), written as soon as submitted so a restart polls them again
        -- instead of paying twice. custom_ids are the items' cache keys; closed once every answer
        -- has been handed to its call.
        CREATE TABLE batch_jobs (
            id INTEGER PRIMARY KEY,
            model TEXT NOT NULL,
            job_id TEXT NOT NULL UNIQUE,
            custom_ids TEXT NOT NULL,      -- JSON list
            state TEXT NOT NULL,           -- running, ended, failed, expired, cancelled, lost, collected
            closed INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX batch_jobs_open ON batch_jobs (model, closed);
        -- Calls answered through a batch job are billed at the batch price.
        ALTER TABLE calls ADD COLUMN batch INTEGER NOT NULL DEFAULT 0;
        """,
    ),
    (
        4,
        "structured-output shapes",
        """
        -- The structured-output shape each OpenAI-compatible server was found to take
        -- (personagym.llm.structured), keyed by its public base URL, so the next run asks right away.
        CREATE TABLE server_shapes (
            server TEXT PRIMARY KEY,
            shape TEXT NOT NULL,
            updated_at REAL NOT NULL
        );
        """,
    ),
    (
        5,
        "run prices",
        """
        -- The prices a run was billed at (USD per million tokens, per model it used), so an export,
        -- `show` or a report later, without the user's --prices file, shows the bill the run showed.
        ALTER TABLE runs ADD COLUMN prices TEXT;
        """,
    ),
]
