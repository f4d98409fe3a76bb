"""The whole of benchmark-v1 against the fake server: wall time against the ideal, 429s, peak
memory, store size, and what a first and a second agent cost per persona.

    python bench/full_benchmark.py                       # 200 personas, 500 ms, 64 in flight
    python bench/full_benchmark.py --personas 20 --latency 0.1

The fake server runs in its own process, answers after `--latency` seconds and refuses (429) any
call beyond `--server-limit` in flight. personagym is told nothing of that limit: it runs with
`--concurrency` (per model) well above it and must learn the limit from the refusals. The ideal
wall time is (calls served x latency / server limit): the server kept full from start to end.
Figures are recorded in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
BENCHMARK = ROOT.parent / "shared" / "benchmarks" / "personagym-v1"
JUDGES = "openai:judge-a,openai:judge-b"


class Server:
    def __init__(self, latency: float, limit: int):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "personagym.testing.fake_server", "--latency", str(latency),
             "--max-in-flight", str(limit), "--responder", "bench.responder:respond"],
            stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.url = self.proc.stdout.readline().strip().removeprefix("listening on ")

    def stop(self) -> dict:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=30)
        return json.loads(out.strip().splitlines()[-1])


def child_env(url: str) -> dict[str, str]:
    """The environment of a benchmarked CLI: this one's, with the fake server's URL and a key for both
    providers, and Python's bytecode cache on. (This machine sets PYTHONDONTWRITEBYTECODE, so every
    run compiled the package's sources again: 0.1-0.4 s of start-up a user's machine never pays.)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env | {"OPENAI_BASE_URL": url, "OPENAI_API_KEY": "sk-bench", "ANTHROPIC_BASE_URL": url.removesuffix("/v1"),
                  "ANTHROPIC_API_KEY": "sk-ant-bench", "PYTHONPATH": str(ROOT)}


def personagym(url: str, db: Path, *args: str) -> dict:
    """Run the CLI in a child process; its wall time and its own peak RSS (wait4 reports it)."""
    env = child_env(url)
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "personagym", *args, "--db", str(db), "--quiet"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    out, err = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"personagym {' '.join(args)} failed:\n{err}")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "stdout": out}


def bench_args(agent: str, personas: int, concurrency: int, *extra: str) -> list[str]:
    return ["benchmark", "--benchmark-dir", str(BENCHMARK), "--limit", str(personas), "--agent", agent,
            "--judges", JUDGES, "--example-model", "openai:examples", "--concurrency", str(concurrency),
            "--run", agent.split(":")[1], *extra]


def by_batch_size(flag: str, personas: int, bill: Callable[[Path, str], dict]) -> dict[int, dict]:
    """Run the first agent on `personas` benchmark personas with `flag` 5 and then 1 (runs batch-5 and
    batch-1 in one database, against a fake server answering at once) and return bill(db, run) of each."""
    bills = {}
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "batching.db"
        server = Server(latency=0.0, limit=64)
        try:
            for size in (5, 1):
                run_args = bench_args("openai:agent-1", personas, 64, flag, str(size))
                run_args[run_args.index("--run") + 1] = f"batch-{size}"
                personagym(server.url, db, *run_args)
                bills[size] = bill(db, f"batch-{size}")
        finally:
            server.stop()
    return bills


def calls_by_role(db: Path, run: str) -> dict[str, dict[str, int]]:
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT c.role, SUM(1 - c.cached), SUM(c.cached), SUM(c.attempts), SUM(c.prompt_tokens), "
        "SUM(c.completion_tokens), SUM(1 - c.ok) FROM calls c JOIN runs r ON r.id = c.run_id WHERE r.name = ? "
        "GROUP BY c.role",
        (run,),
    ).fetchall()
    return {r[0]: {"calls": r[1], "cached": r[2], "attempts": r[3], "prompt_tokens": r[4],
                   "completion_tokens": r[5], "failed": r[6]} for r in rows}


def per_persona(roles: dict, personas: int) -> dict[str, float]:
    return {role: round(v["calls"] / personas, 1) for role, v in sorted(roles.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--personas", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--server-limit", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=256, help="per model; above the server's limit on purpose")
    parser.add_argument("--second-agent", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    if not BENCHMARK.is_dir():
        raise SystemExit(f"no benchmark data at {BENCHMARK}")

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        server = Server(args.latency, args.server_limit)
        first = personagym(server.url, db, *bench_args("openai:agent-1", args.personas, args.concurrency))
        served_first = server.stop()
        roles_first = calls_by_role(db, "agent-1")
        report = {
            "personas": args.personas,
            "latency": args.latency,
            "server_limit": args.server_limit,
            "concurrency_per_model": args.concurrency,
            "first_agent": {
                "seconds": round(first["seconds"], 1),
                "requests_served": served_first["requests"] - served_first["rejected"],
                "refused_429": served_first["rejected"],
                "max_in_flight_seen": served_first["max_in_flight_seen"],
                "peak_rss_mb": round(first["peak_rss_mb"], 1),
                "calls_per_persona": per_persona(roles_first, args.personas),
                "tokens": {r: v["prompt_tokens"] + v["completion_tokens"] for r, v in roles_first.items()},
            },
        }
        ideal = report["first_agent"]["requests_served"] * args.latency / args.server_limit
        report["first_agent"]["ideal_seconds"] = round(ideal, 1)
        report["first_agent"]["ratio_to_ideal"] = round(first["seconds"] / ideal, 3)
        questions = sqlite3.connect(db).execute("SELECT COUNT(*) FROM questions").fetchone()[0]
        report["store"] = {"questions": questions, "bytes": db.stat().st_size,
                           "mb_per_10k_questions": round(db.stat().st_size / 1e6 * 10_000 / questions, 1)}

        if args.second_agent:
            server = Server(args.latency, args.server_limit)
            second = personagym(server.url, db, *bench_args("openai:agent-2", args.personas, args.concurrency))
            served_second = server.stop()
            roles_second = calls_by_role(db, "agent-2")
            report["second_agent"] = {
                "seconds": round(second["seconds"], 1),
                "requests_served": served_second["requests"] - served_second["rejected"],
                "refused_429": served_second["rejected"],
                "calls_per_persona": per_persona(roles_second, args.personas),
            }
            report["store"]["bytes_after_two_agents"] = db.stat().st_size
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
