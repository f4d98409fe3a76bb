"""Every default of a run, in one place: the library's config, the CLI's help and the docs read them
from here. Plain values only, so the CLI can show them without importing the library."""

# Models per role (paper: GPT-4o writes environments, questions and score examples; two judges).
JUDGES = ("openai:gpt-4o", "anthropic:claude-sonnet-4-5")
GENERATOR = "openai:gpt-4o"
EXAMPLE_MODEL = "openai:gpt-4o"

# Sampling (paper: the agent at temperature 0.9 and top_p 0.9; everything else at 0).
AGENT_TEMPERATURE = 0.9
AGENT_TOP_P = 0.9
AGENT_MAX_TOKENS = 600
GENERATOR_MAX_TOKENS = 2500
EXAMPLE_MAX_TOKENS = 2500
JUDGE_MAX_TOKENS = 3000

# Counts (the paper's).
QUESTIONS_PER_TASK = 10
ENVIRONMENTS = 5
JUDGE_BATCH = 5

# Grading.
RUBRICS = "own"  # this project's rubrics ("upstream": upstream's files, downloaded and verified)
JUDGE_SAMPLES = 1  # draws per judge and item, averaged
JUDGE_ORDER = "shuffled"  # items in a judge batch: a seeded permutation ("fixed": upstream's order)

# How hard to push and how long to wait.
CONCURRENCY = 16  # calls in flight per model and endpoint
MAX_ATTEMPTS = 6
TIMEOUT = 120.0  # seconds, one attempt
BATCH_POLL = 5.0  # seconds before the first look at a batch job
