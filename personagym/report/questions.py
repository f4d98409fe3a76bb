"""Every question of every run as compact JSON for the page's script, which shows a page at a time.

A benchmark run has 10,000 questions: as HTML they would make a page no phone can open, as data the
browser parses them in well under a second. Texts that runs share (personas, questions, score
examples: a second agent on the same personas reuses all three) are stored once in a string table.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, Callable

SCORE_KEYS = ["1", "2", "3", "4", "5"]


class _Strings:
    """A table of distinct strings; items refer to them by position."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._index: dict[str, int] = {}

    def ref(self, text: str | None) -> int | None:
        if text is None:
            return None
        if text not in self._index:
            self._index[text] = len(self.items)
            self.items.append(text)
        return self._index[text]


def question_data(
    results_list: list[dict[str, Any]], labels: list[str], disagreement: Callable[[dict[str, Any]], int | None]
) -> dict[str, Any]:
    """The layout the script reads (report.js):

    `items[]`: `r` run, `p` persona, `t` task (indices into `runs`, `personas`, `tasks`), `i` the
    question's 1-based index in its task, `q` question and `e` score examples "1".."5" (indices into
    `texts`, null when missing), `a` the answer (null if the agent failed), `v` verdicts as
    [judge index, score, reasoning], `s` the ensemble score, `d` judge disagreement (max - min),
    `f` failures of this question as [stage, model, cause, detail].
    """
    texts, personas = _Strings(), _Strings()
    tasks: list[str] = []
    judges: list[str] = []
    items = []
    for r, results in enumerate(results_list):
        failed: dict[tuple, list[list[Any]]] = defaultdict(list)
        for f in results["failures"]["items"]:
            key = (f["persona"], f["task"], f["question_index"])
            failed[key].append([f["stage"], f["model"], f["cause"], f["detail"]])
        for q in results["questions"]:
            if q["task"] not in tasks:
                tasks.append(q["task"])
            verdicts = []
            for v in q["verdicts"]:
                if v["judge"] not in judges:
                    judges.append(v["judge"])
                verdicts.append([judges.index(v["judge"]), v["score"], v["reasoning"]])
            items.append(
                {
                    "r": r,
                    "p": personas.ref(q["persona"]),
                    "t": tasks.index(q["task"]),
                    "i": q["index"],
                    "q": texts.ref(q["question"]),
                    "a": q["answer"],
                    "e": [texts.ref(q["examples"].get(k)) for k in SCORE_KEYS] if q["examples"] else [],
                    "v": verdicts,
                    "s": q["score"],
                    "d": disagreement(q),
                    "f": failed.get((q["persona"], q["task"], q["index"]), []),
                }
            )
    return {
        "runs": labels,
        "tasks": tasks,
        "judges": judges,
        "personas": personas.items,
        "texts": texts.items,
        "items": items,
    }


# Inside <script type="application/json"> the only danger is text the HTML parser reads as markup
# ("</script>", "<!--"); JSON allows any character escaped as \uXXXX, so these never appear raw.
# U+2028/U+2029 are escaped too, for any tool that still reads the data as JavaScript.
_UNSAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def embed_json(value: Any) -> str:
    """JSON that is safe to place between <script type="application/json"> and </script>."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.translate(_UNSAFE)
