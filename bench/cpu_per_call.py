"""Client CPU per call through the whole pipeline: what personagym itself costs, the models aside.

    python bench/cpu_per_call.py [--runs 5] [--personas 20] [--profile out.prof]
    python bench/cpu_per_call.py -- --example-batch 1   # more personagym flags after --

Each run is `personagym benchmark` on the first 20 benchmark-v1 personas (a child process, a new
database, so nothing comes from the cache) against the fake server in a process of its own that answers
at once and refuses nothing. The figure is the child's CPU time (user + system, from wait4) divided by
the calls the server answered, start-up included, as the issue measured it (2.2 ms a call then), and
what a further call costs: the slope between this run and one of a single persona (84 calls), which
also gives the start-up alone (imports, database, preflight). With --profile the last run writes a cProfile of the CLI to that file.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from full_benchmark import Server, bench_args, child_env  # noqa: E402


def run_cli(url: str, db: Path, personas: int, profile: str | None, extra: list[str]) -> tuple[float, float]:
    """(CPU seconds of the child, wall seconds)."""
    env = child_env(url)
    head = [sys.executable, "-m", "cProfile", "-o", profile, "-m", "personagym"] if profile else [sys.executable, "-m", "personagym"]
    started = time.monotonic()
    proc = subprocess.Popen([*head, *bench_args("openai:agent-1", personas, 64, *extra), "--db", str(db), "--quiet"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"personagym failed:\n{proc.stderr.read()}")
    return usage.ru_utime + usage.ru_stime, wall


def one(personas: int, extra: list[str], profile: str | None = None) -> tuple[float, int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(0.0, 100_000)
        try:
            cpu, wall = run_cli(server.url, Path(tmp) / "bench.db", personas, profile, extra)
        finally:
            served = server.stop()
    return cpu, served["requests"] - served["rejected"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--personas", type=int, default=20)
    parser.add_argument("--profile", help="write a cProfile of the last run here")
    argv = sys.argv[1:]  # personagym's own flags after `--` (argparse would take them for ours)
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    extra = argv[cut + 1:]
    per_call, marginal, startup = [], [], []
    for run in range(1, args.runs + 1):
        cpu1, calls1, _ = one(1, extra)
        cpu, calls, wall = one(args.personas, extra, args.profile if run == args.runs else None)
        per_call.append(cpu / calls * 1000)
        slope = (cpu - cpu1) / (calls - calls1)  # seconds of CPU each further call costs
        marginal.append(slope * 1000)
        startup.append(cpu1 - slope * calls1)
        print(f"run {run}: {calls} calls, {cpu:.2f} s CPU in {wall:.1f} s wall = {per_call[-1]:.2f} ms a call, "
              f"{marginal[-1]:.2f} ms a further call; start-up about {startup[-1]:.2f} s CPU; load average {os.getloadavg()[0]:.1f}", flush=True)
    print(f"\nms of CPU a call, start-up included: {min(per_call):.2f}-{max(per_call):.2f} "
          f"(median {statistics.median(per_call):.2f}); a further call: {min(marginal):.2f}-{max(marginal):.2f} "
          f"(median {statistics.median(marginal):.2f}); start-up {min(startup):.2f}-{max(startup):.2f} s of CPU")


if __name__ == "__main__":
    main()
