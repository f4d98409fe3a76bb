"""Calls and tokens per dialogue (--dialogues), measured on the fake server with replies of realistic length.

    python bench/dialogue_costs.py            # turns 4 and 8, 8 dialogues of one persona, two judges

The fake server counts words, not tokens (about 1.3 tokens a word in English). Replies: the
interlocutor writes about 30 words, the agent about 70 (bench.responder's answer), a judge about 30
of reasoning. Prompt sizes are this project's own prompts, so they are what a real run sends.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.responder import _ANSWER, respond  # noqa: E402
from personagym.llm import ProviderSettings  # noqa: E402
from personagym.pipeline import evaluate  # noqa: E402
from personagym.testing import FakeServer  # noqa: E402
from personagym.testing.replies import prompt_words  # noqa: E402

MESSAGE = ("I have been wondering about this since this morning, and you seem like the right person to ask: "
           "what would you do in my place, honestly?")
DIALOGUES, JUDGES = 8, ("openai:judge-a", "openai:judge-b")


def measured(turns: int) -> dict[str, dict[str, float]]:
    seen: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # kind -> calls, prompt words, reply words

    def responder(api: str, body: dict):
        fmt = body.get("response_format") or {}
        props = ((fmt.get("json_schema") or {}).get("schema") or {}).get("properties") or {}
        said = str(body["messages"][-1].get("content", ""))
        if "message" in props:  # each conversation its own, so none is a cache hit of another
            tactic = re.search(r"Tactic: (\w+)", said).group(1)
            turn = re.search(r"This is message (\d+)", said).group(1)
            kind, reply = "interlocutor", json.dumps({"message": f"({tactic}, {turn}) {MESSAGE}"})
        elif "break_level" in props:
            reasoning = "The reply keeps the persona's voice, refers to its own past and resists the pressure."
            kind, reply = "judge", json.dumps({"reasoning": reasoning, "score": 4, "break_level": "none"})
        elif not props and said.endswith(MESSAGE):  # the agent, in a conversation
            kind, reply = "agent", _ANSWER * 2
        else:
            return respond(api, body)
        row = seen[kind]
        row[0] += 1
        row[1] += prompt_words(body)
        row[2] += len(reply.split())
        return reply

    with FakeServer(responder=responder) as server, tempfile.TemporaryDirectory() as folder:
        asyncio.run(evaluate(
            ["A 72-year-old doctor from Tokyo who loves hiking"], agent="openai:agent", db=Path(folder) / "b.db",
            judges=list(JUDGES), generator="openai:gen", example_model="openai:ex", tasks="expected_action",
            questions_per_task=1, dialogues=DIALOGUES, turns=turns, progress=False,
            settings={"openai": ProviderSettings(base_url=server.base_url, api_key="k")},
        ))
    return {kind: {"calls": c / DIALOGUES, "prompt": p / DIALOGUES, "reply": r / DIALOGUES}
            for kind, (c, p, r) in sorted(seen.items())}


def main() -> None:
    print("| turns | role | calls / dialogue | prompt words / dialogue | reply words / dialogue |")
    print("| --- | --- | --- | --- | --- |")
    for turns in (4, 8):
        for kind, row in measured(turns).items():
            print(f"| {turns} | {kind} | {row['calls']:g} | {row['prompt']:,.0f} | {row['reply']:,.0f} |")


if __name__ == "__main__":
    main()
