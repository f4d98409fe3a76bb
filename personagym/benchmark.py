"""PersonaGym's fixed benchmark (benchmark-v1): 200 personas x 5 tasks x 10 questions.

The data come from the upstream repository (github.com/vsamuel2003/PersonaGym, MIT licence) at a
pinned commit. A benchmark directory is laid out as::

    personas.json                 the 200 personas, upstream order
    questions/<persona>.json      {task name: [10 questions]} for each persona (file name = persona text)
    environments.json             optional: upstream's 150 environment names
    reference_scores.json         optional: upstream's published scores
    LICENSE, MANIFEST.sha256      optional
    upstream-method/              upstream's rubric and grading-prompt files (`--rubrics upstream`)

The package carries the sha256 of every file (`benchmark_v1.sha256`, `upstream_method.sha256`) and the
persona order (`benchmark_v1_personas.json`), so nothing read from disk or the network is trusted
before it is checked. `download_benchmark` fetches the questions into the user's cache
(`default_benchmark_dir`), `download_method` upstream's method files beside them; `load_benchmark`
verifies and reads a directory (`personagym.method.upstream.load_method` a method folder).
"""

from __future__ import annotations

import json
import os
import urllib.parse
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

from personagym import fetch
from personagym.errors import UserError
from personagym.fetch import UPSTREAM_COMMIT, UPSTREAM_RAW  # noqa: F401 - part of this module's API
from personagym.fetch import flat as _flat

__all__ = [
    "TASKS",
    "TASK_ALIASES",
    "BENCHMARK_NAME",
    "UPSTREAM_COMMIT",
    "UPSTREAM_RAW",
    "Benchmark",
    "load_benchmark",
    "default_benchmark_dir",
    "default_method_dir",
    "download_benchmark",
    "download_method",
    "packaged_sums",
]

BENCHMARK_NAME = "benchmark-v1"
TASKS = ("Expected Action", "Action Justification", "Linguistic Habits", "Persona Consistency", "Toxicity Control")
TASK_ALIASES = {"Toxicity": "Toxicity Control"}
QUESTIONS_PER_TASK = 10

OPTIONAL_FILES = ("environments.json", "reference_scores.json")
_SUMS_RESOURCE = "benchmark_v1.sha256"
_ORDER_RESOURCE = "benchmark_v1_personas.json"
_DOWNLOAD_HINT = "run `personagym benchmark download` or pass --benchmark-dir"



@dataclass(frozen=True)
class Benchmark:
    """A verified benchmark: personas in upstream order and their questions per task."""

    name: str
    personas: tuple[str, ...]
    questions: dict[str, dict[str, tuple[str, ...]]]

    @property
    def tasks(self) -> tuple[str, ...]:
        """The task names present, in canonical order."""
        present = {task for per_task in self.questions.values() for task in per_task}
        return tuple(task for task in TASKS if task in present)

    @property
    def question_count(self) -> int:
        return sum(len(qs) for persona in self.personas for qs in self.questions[persona].values())

    def limit(self, n: int | None) -> Benchmark:
        """The first `n` personas (all of them if `n` is None or at least their number)."""
        if n is None:
            return self
        personas = self.personas[: _checked_limit(n)]
        return replace(self, personas=personas, questions={p: self.questions[p] for p in personas})

    def only_tasks(self, names: Iterable[str]) -> Benchmark:
        """Keep only the named tasks (aliases such as "Toxicity" and any letter case accepted)."""
        if isinstance(names, str):
            names = [names]
        by_key = {task.lower(): task for task in TASKS}
        by_key.update({alias.lower(): task for alias, task in TASK_ALIASES.items()})
        wanted = set()
        for name in names:
            task = by_key.get(" ".join(str(name).split()).lower())
            if task is None:
                raise UserError(f"unknown task {name!r}: choose from {', '.join(TASKS)}")
            wanted.add(task)
        if not wanted:
            raise UserError(f"no tasks selected: name at least one of {', '.join(TASKS)}")
        questions = {
            persona: {task: qs for task, qs in per_task.items() if task in wanted}
            for persona, per_task in self.questions.items()
        }
        return replace(self, questions=questions)


# -- packaged data ---------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def packaged_sums() -> dict[str, str]:
    """The packaged sha256 of every benchmark file, by path relative to the benchmark directory."""
    text = Path(__file__).with_name(_SUMS_RESOURCE).read_text(encoding="utf-8")
    sums = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        digest, rel = line.split("  ", 1)
        sums[rel.removeprefix("./")] = digest.lower()
    return sums


@lru_cache(maxsize=1)
def _persona_order() -> tuple[str, ...]:
    """The personas in upstream order: the questions file names in the sums, ordered by the packaged list."""
    names = {
        rel.removeprefix("questions/").removesuffix(".json")
        for rel in packaged_sums()
        if rel.startswith("questions/") and rel.endswith(".json")
    }
    order = json.loads(Path(__file__).with_name(_ORDER_RESOURCE).read_text(encoding="utf-8"))
    if set(order) != names or len(order) != len(names):  # a packaging bug, never the user's fault
        raise RuntimeError(f"{_ORDER_RESOURCE} and {_SUMS_RESOURCE} disagree about the benchmark personas")
    return tuple(order)


def _personas_json_bytes() -> bytes:
    """personas.json exactly as upstream's copy is written (verified against its packaged sum)."""
    data = json.dumps(list(_persona_order()), indent=1, ensure_ascii=False).encode("utf-8")
    if fetch.sha256(data) != packaged_sums()["personas.json"]:
        raise RuntimeError("the packaged persona list does not match the packaged sum of personas.json")
    return data




def _questions_rel(persona: str) -> str:
    return f"questions/{persona}.json"


# -- loading ---------------------------------------------------------------------------------------


def load_benchmark(directory: str | Path, limit: int | None = None) -> Benchmark:
    """Verify the data files of the benchmark in `directory` against the packaged sums, then read it:
    the first `limit` personas (all by default; as Benchmark.limit). Only their questions are read
    and checked: the other personas' files are checked by the runs that read them (reading and
    hashing all 200 cost a run of 20 about 30 ms of CPU before its first call)."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise UserError(f"benchmark directory {_flat(root)} {what}: {_DOWNLOAD_HINT}")

    personas_data = json.loads(_read_verified(root, "personas.json"))
    personas = tuple(personas_data)
    for rel in OPTIONAL_FILES:
        if (root / rel).exists():
            _read_verified(root, rel)

    questions: dict[str, dict[str, tuple[str, ...]]] = {}
    chosen = personas if limit is None else personas[: _checked_limit(limit)]
    for number, persona in enumerate(chosen, start=1):
        rel = _questions_rel(persona)
        if not (root / rel).is_file():
            raise UserError(
                f"persona {number} of {len(personas)} has no questions file: {_flat(root / rel)} is missing; "
                f"the copy is incomplete, {_DOWNLOAD_HINT}"
            )
        raw = json.loads(_read_verified(root, rel))
        questions[persona] = _normalise_tasks(raw, root / rel)
    return Benchmark(name=BENCHMARK_NAME, personas=chosen, questions=questions)


def _checked_limit(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"the persona limit must be a whole number of at least 1, not {n!r}: pass e.g. --limit 5")
    return n


def _read_verified(root: Path, rel: str) -> bytes:
    """The bytes of `root/rel`, after checking them against the packaged sum."""
    path = root / rel
    expected = packaged_sums().get(rel)
    if expected is None:  # only reachable with a personas.json that passed its own check: a packaging bug
        raise RuntimeError(f"no packaged sha256 for {rel}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"benchmark file {_flat(path)} is missing: the copy is incomplete, {_DOWNLOAD_HINT}") from None
    except OSError as exc:
        raise UserError(f"cannot read benchmark file {_flat(path)} ({_flat(exc)}): check its permissions") from None
    if fetch.sha256(data) != expected:
        raise UserError(
            f"benchmark file {_flat(path)} is corrupt or modified (sha256 mismatch): delete it and run "
            "`personagym benchmark download` to fetch a fresh copy"
        )
    return data


def _normalise_tasks(raw: object, path: Path) -> dict[str, tuple[str, ...]]:
    """Map upstream's task names to ours, in canonical order (the data are checksummed: this only guards bugs)."""
    if not isinstance(raw, dict):
        raise RuntimeError(f"{path} does not hold an object of tasks")
    by_task = {TASK_ALIASES.get(task, task): tuple(qs) for task, qs in raw.items()}
    if set(by_task) != set(TASKS) or any(len(qs) != QUESTIONS_PER_TASK for qs in by_task.values()):
        raise RuntimeError(f"{path} does not hold {QUESTIONS_PER_TASK} questions for each of {', '.join(TASKS)}")
    return {task: by_task[task] for task in TASKS}


# -- cache location --------------------------------------------------------------------------------


def default_benchmark_dir() -> Path:
    """$PERSONAGYM_CACHE, else $XDG_CACHE_HOME/personagym, else ~/.cache/personagym; plus /benchmark-v1."""
    explicit = os.environ.get("PERSONAGYM_CACHE", "").strip()
    if explicit:
        return Path(explicit).expanduser() / BENCHMARK_NAME
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore relative values
        return Path(xdg) / "personagym" / BENCHMARK_NAME
    return Path.home() / ".cache" / "personagym" / BENCHMARK_NAME


def default_method_dir() -> Path:
    """Where `personagym benchmark download` puts upstream's method files: beside the benchmark's."""
    # Imported here, as in download_method: only --rubrics upstream and the download need that module.
    from personagym.method.upstream import METHOD_DIR

    return default_benchmark_dir() / METHOD_DIR


# -- downloading -----------------------------------------------------------------------------------


def download_benchmark(
    dest: str | Path | None = None,
    *,
    base_url: str = UPSTREAM_RAW,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Fetch benchmark-v1 into `dest` (default: `default_benchmark_dir()`) and return the directory.

    Files already present and valid are kept, so an interrupted download resumes. Each download is
    verified against its packaged sha256 before it is written (via a temporary file and a rename),
    so a failure never leaves a partial or unverified file behind. `progress(done, total)` is called
    in the caller's thread after each file (kept or fetched); personas.json counts as one file.
    """
    root = Path(dest).expanduser() if dest is not None else default_benchmark_dir()
    base_url = _checked(base_url)
    sums = packaged_sums()
    files = [
        (rel, f"{base_url}/questions/{BENCHMARK_NAME}/{urllib.parse.quote(persona)}.json", sums[rel])
        for persona in _persona_order()
        for rel in [_questions_rel(persona)]
    ]
    return fetch.download_files(root, files, progress, ("personas.json", _personas_json_bytes, sums["personas.json"]))


def download_method(
    dest: str | Path | None = None,
    *,
    base_url: str = UPSTREAM_RAW,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Fetch upstream's rubric and grading-prompt files (for `--rubrics upstream`) into `dest`
    (default: `default_method_dir()`) and return the directory; as `download_benchmark`, each file is
    verified against its packaged sum before it is written, and valid files are kept."""
    from personagym.method.upstream import method_sums

    root = Path(dest).expanduser() if dest is not None else default_method_dir()
    base_url = _checked(base_url)
    files = [(rel, f"{base_url}/{urllib.parse.quote(rel)}", digest) for rel, digest in method_sums().items()]
    return fetch.download_files(root, files, progress)


def _checked(base_url: str) -> str:
    base_url = base_url.rstrip("/")
    if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
        raise UserError(f"--from {base_url!r} is not an http(s) URL: pass a mirror like {UPSTREAM_RAW}")
    return base_url


