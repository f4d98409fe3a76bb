"""Every default of a run, in one place: the library's config, the CLI's help and the docs read them
from here. Plain values only, so the CLI can show them without importing the library."""

# Models per role, as the paper's roles (one strong model writes environments, questions and score
# examples; two judges of two families). Chosen on 2026-12-01 from the providers' model and
# deprecation pages (docs/providers.md): the paper's GPT-4o is deprecated (shutdown 2027-01-14) and
# claude-sonnet-4-5 was retired on 2026-11-30. Neither provider offers dated snapshots of these
# models any more (each id is a fixed version), and every call records the id that answered.
JUDGES = ("openai:gpt-6.2-sol", "anthropic:claude-sonnet-5-5")
GENERATOR = "openai:gpt-6.2-astra"
EXAMPLE_MODEL = "openai:gpt-6.2-astra"

# Sampling (paper: the agent at temperature 0.9 and top_p 0.9; everything else at 0).
AGENT_TEMPERATURE = 0.9
AGENT_TOP_P = 0.9
AGENT_MAX_TOKENS = 3000  # as upstream; a longer answer is graded as it stands, flagged truncated
GENERATOR_MAX_TOKENS = 2500
EXAMPLE_MAX_TOKENS = 2500
JUDGE_MAX_TOKENS = 3000

# Counts (the paper's).
QUESTIONS_PER_TASK = 10
ENVIRONMENTS = 5
JUDGE_BATCH = 5
EXAMPLE_BATCH = 5  # questions per score-example call (upstream writes them for five at a time)

# Dialogues (--dialogues N: off by default; docs/dialogues.md). The interlocutor is the generator's
# model unless --interlocutor names another, sampled warmer so conversations do not all sound alike.
DIALOGUES = 0  # conversations per persona
TURNS = 8  # user turns per conversation (each answered by the agent)
# The most of each a run may ask for. Here rather than in method/tactics.py, which reads its catalog
# when imported (~4 ms), so that checking them costs a run without dialogues nothing.
MAX_DIALOGUES = 64
MAX_TURNS = 40
INTERLOCUTOR_TEMPERATURE = 0.8
INTERLOCUTOR_MAX_TOKENS = 600

# Grading.
RUBRICS = "own"  # this project's rubrics ("upstream": upstream's files, downloaded and verified)
JUDGE_SAMPLES = 1  # draws per judge and item, averaged
JUDGE_ORDER = "shuffled"  # items in a judge batch: a seeded permutation ("fixed": upstream's order)

# How hard to push and how long to wait.
CONCURRENCY = 16  # calls in flight per model and endpoint
MAX_ATTEMPTS = 6
TIMEOUT = 120.0  # seconds, one attempt
BATCH_POLL = 5.0  # seconds before the first look at a batch job
