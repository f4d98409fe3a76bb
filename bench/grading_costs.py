"""What two grading choices cost in tokens, on the fake server's word counts (issue 10):
`--judge-samples 2` against 1, and the agent's 3,000-token budget against the old 600.

The fake counts a word as a token. Its agents here answer at lengths drawn from a heavy-tailed
distribution (median about 250 words, a tenth over 600), cut at the budget, so the budget's effect on
what the agent writes and on what the judges then read is visible. Everything is deterministic, so a
figure is the same on every run (checked: five runs each gave identical counts).

    python bench/grading_costs.py
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.responder import respond  # noqa: E402
from personagym.llm import ProviderSettings  # noqa: E402
from personagym.pipeline import evaluate  # noqa: E402
from personagym.testing import FakeServer  # noqa: E402

PERSONAS = [f"A {30 + i}-year-old {job} from {town}" for i, (job, town) in enumerate(
    [("nurse", "Lagos"), ("carpenter", "Oslo"), ("teacher", "Lima"), ("chef", "Hanoi"), ("pilot", "Perth")]
)]
WORDS = "well I think that in my line of work one learns to take things as they come and act".split()


def answer_words(body: dict) -> int:
    """A length for this question's answer: lognormal, median ~250 words, ~10 % above 600."""
    digest = hashlib.blake2b(str(body["messages"][-1]["content"]).encode(), digest_size=8).digest()
    u = (int.from_bytes(digest, "big") + 0.5) / 2**64
    z = math.sqrt(2) * _erfinv(2 * u - 1)
    return max(20, int(250 * math.exp(0.68 * z)))


def _erfinv(y: float) -> float:
    a = 0.147  # Winitzki's approximation: plenty for drawing lengths
    ln = math.log(1 - y * y)
    first = 2 / (math.pi * a) + ln / 2
    return math.copysign(math.sqrt(math.sqrt(first * first - ln / a) - first), y)


def responder(api: str, body: dict):
    if not body.get("response_format") and body["model"] == "agent":
        budget = body.get("max_tokens") or body.get("max_completion_tokens") or 10**6
        n = min(answer_words(body), budget)
        return " ".join(WORDS[i % len(WORDS)] for i in range(n))
    return respond(api, body)


async def one(server: FakeServer, **settings) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        results = await evaluate(
            PERSONAS, agent="openai:agent", db=Path(tmp) / "b.db", progress=False,
            judges=["openai:judge-a", "openai:judge-b"], generator="openai:gen", example_model="openai:ex",
            settings={"openai": ProviderSettings(base_url=server.base_url, api_key="k")}, **settings,
        )
    roles = results["usage"]["by_role"]
    return {role: (row["prompt_tokens"], row["completion_tokens"]) for role, row in roles.items()}


def line(label: str, usage: dict) -> str:
    agent, judge = usage.get("agent", (0, 0)), usage.get("judge", (0, 0))
    total = sum(p + c for p, c in usage.values())
    return (f"| {label} | {agent[1]:,} | {judge[0]:,} | {judge[1]:,} | {total:,} |")


async def main() -> None:
    with FakeServer(responder=responder) as server:
        runs = {
            "judge samples 1, budget 3,000": await one(server),
            "judge samples 2, budget 3,000": await one(server, judge_samples=2),
            "judge samples 1, budget 600": await one(server, agent_max_tokens=600),
        }
    print(f"{len(PERSONAS)} personas x 5 tasks x 10 questions, two judges, batches of 5 (fake server word counts)")
    print("| run | agent completion | judge prompt | judge completion | all tokens |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, usage in runs.items():
        print(line(label, usage))


if __name__ == "__main__":
    asyncio.run(main())
