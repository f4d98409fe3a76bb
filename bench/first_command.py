"""The README's first command, as a newcomer runs it: wall time and the PersonaScore it prints.

    python bench/first_command.py [--runs 5] [--questions-per-task N]

Each run copies the working tree (no .venv, no database) into a fresh folder and runs the README's
first command there verbatim with bash: a new venv, `pip install -e '.[local]'` (llama.cpp from pip's
wheel cache, which the first install fills), then the run on the embedded model. `--questions-per-task`
replaces the README's N, to try others. Prints each run's wall time, the time of the install and of
the run itself, the exit code and the PersonaScore line, then the range.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(".venv", "*.db", "*.db-*", "test-output", "__pycache__", ".pytest_cache", "*.egg-info",
                              ".git")


def first_command() -> str:
    block = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)[0]
    return block.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--questions-per-task", type=int)
    args = parser.parse_args()
    command = first_command()
    if args.questions_per_task:
        command = re.sub(r"--questions-per-task \d+", f"--questions-per-task {args.questions_per_task}", command)
    install, run = command.rsplit("&& personagym", 1)
    print(command, flush=True)
    walls, scores = [], []
    for i in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="first-command-") as folder:
            tree = Path(folder) / "personagym"
            shutil.copytree(ROOT, tree, ignore=SKIP)
            env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
            env["PATH"] = ":".join(p for p in env["PATH"].split(":") if ".venv" not in p)
            load = os.getloadavg()[0]
            started = time.perf_counter()
            installed = subprocess.run(["bash", "-c", install], cwd=tree, env=env, capture_output=True, text=True)
            middle = time.perf_counter()
            done = subprocess.run(["bash", "-c", ". .venv/bin/activate && personagym" + run], cwd=tree, env=env,
                                  capture_output=True, text=True)
            ended = time.perf_counter()
        if installed.returncode:
            raise SystemExit(f"install failed: {installed.stderr[-2000:]}")
        line = next((x for x in done.stdout.splitlines() if x.startswith("PersonaScore")), "no PersonaScore line")
        score = line.split()[1] if line.startswith("PersonaScore") else "-"
        walls.append(ended - started)
        scores.append(score)
        print(f"run {i}: {ended - started:5.0f} s (install {middle - started:3.0f} s, run {ended - middle:4.0f} s), "
              f"exit {done.returncode}, load average {load:.1f} at start: {line}", flush=True)
        if done.returncode not in (0, 1):
            print(done.stderr[-2000:])
    numeric = sum(s not in ("-", "") for s in scores)
    print(f"\nwall {min(walls):.0f}-{max(walls):.0f} s; PersonaScore {', '.join(scores)}: numeric in {numeric} of "
          f"{len(scores)}")


if __name__ == "__main__":
    main()
