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
    (
        6,
        "grading as it happened",
        """
        -- Repeated judge draws (--judge-samples): a verdict per judge and draw; the place each item had
        -- in its judge batch (shuffled order), so position effects can be measured later.
        CREATE TABLE verdicts_by_draw (
            run_id INTEGER NOT NULL REFERENCES runs (id),
            question_id INTEGER NOT NULL REFERENCES questions (id),
            judge TEXT NOT NULL,
            sample INTEGER NOT NULL DEFAULT 0,
            score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
            reasoning TEXT NOT NULL,
            position INTEGER,               -- 1-based place in the judge batch as sent
            batch_size INTEGER,
            PRIMARY KEY (run_id, question_id, judge, sample)
        );
        INSERT INTO verdicts_by_draw (run_id, question_id, judge, sample, score, reasoning)
            SELECT run_id, question_id, judge, 0, score, reasoning FROM verdicts;
        DROP TABLE verdicts;
        ALTER TABLE verdicts_by_draw RENAME TO verdicts;
        -- Answers as the agent gave them: cut at the token budget is a flag, not a failure; reasoning
        -- the agent emitted (<think> blocks, reasoning fields) is kept apart and never shown to judges.
        ALTER TABLE answers ADD COLUMN truncated INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE answers ADD COLUMN reasoning TEXT;
        -- The model id the provider says answered (a dated snapshot behind an alias, say).
        ALTER TABLE calls ADD COLUMN answered_by TEXT;
        """,
    ),
    (
        7,
        "run locks",
        """
        -- One writer per run (personagym.store.locks): the process evaluating a run, so a second one is
        -- refused while it lives and takes over once it is gone (its pid dead on its host, or its
        -- heartbeat silent). token tells this holder's lock from a later one of the same pid.
        CREATE TABLE run_locks (
            run_id INTEGER PRIMARY KEY REFERENCES runs (id),
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            token TEXT NOT NULL,
            since REAL NOT NULL,
            heartbeat REAL NOT NULL
        );
        """,
    ),
    (
        8,
        "dialogues",
        """
        -- Conversations (--dialogues, personagym.store.dialogues). A conversation's opening message does
        -- not depend on the agent: it is kept by its recipe (interlocutor, sampling, versions, tactic,
        -- setting, draw) and reused by every run that would write it the same way.
        CREATE TABLE dialogue_openings (
            persona_id INTEGER NOT NULL REFERENCES personas (id),
            recipe TEXT NOT NULL,
            text TEXT NOT NULL,
            PRIMARY KEY (persona_id, recipe)
        );
        CREATE TABLE dialogues (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs (id),
            persona_id INTEGER NOT NULL REFERENCES personas (id),
            ordinal INTEGER NOT NULL,       -- 0-based, among the persona's conversations
            tactic TEXT NOT NULL,           -- a key of personagym/method/tactics.toml
            setting TEXT,                   -- the environment it is set in; null when none was chosen
            UNIQUE (run_id, persona_id, ordinal)
        );
        -- One row per user turn, written as soon as the interlocutor wrote it; the agent's reply is
        -- filled in when it comes, so a stopped run resumes at the first turn without one.
        CREATE TABLE dialogue_turns (
            dialogue_id INTEGER NOT NULL REFERENCES dialogues (id),
            turn INTEGER NOT NULL,          -- 1-based
            user TEXT NOT NULL,
            agent TEXT,
            truncated INTEGER NOT NULL DEFAULT 0,
            reasoning TEXT,
            PRIMARY KEY (dialogue_id, turn)
        );
        CREATE TABLE turn_verdicts (
            dialogue_id INTEGER NOT NULL REFERENCES dialogues (id),
            turn INTEGER NOT NULL,
            judge TEXT NOT NULL,
            score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
            break_level TEXT NOT NULL CHECK (break_level IN ('none', 'soft_slip', 'talks_about_ai', 'admits_ai')),
            reasoning TEXT NOT NULL,
            PRIMARY KEY (dialogue_id, turn, judge)
        );
        """,
    ),
    (
        9,
        "judge audits",
        """
        -- `personagym audit` (personagym.store.audits): per run and judge, the latest audit's probes
        -- (value, interval, n, baseline, verdict) and the settings that make two audits comparable. The
        -- calls themselves are in llm_cache and calls, so a stopped audit resumes without paying twice.
        CREATE TABLE audits (
            run_id INTEGER NOT NULL REFERENCES runs (id),
            judge TEXT NOT NULL,
            settings TEXT NOT NULL,        -- JSON: sample, seed, candidates, prompt versions
            probes TEXT NOT NULL,          -- JSON: probe -> {value, ci, n, baseline, status, verdict, ...}
            created_at REAL NOT NULL,
            PRIMARY KEY (run_id, judge)
        );
        """,
    ),
]
