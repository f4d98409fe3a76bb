"""Throughput against a server's limits: calls in flight, requests per minute, tokens per minute.

    python bench/rate_limits.py inflight [--runs 5]   # 200 ms, 429 beyond 32 in flight, --concurrency 32
    python bench/rate_limits.py rpm [--runs 5]        # a sliding window of requests, OpenAI-style headers
    python bench/rate_limits.py tpm [--runs 5]        # the same for tokens
    python bench/rate_limits.py persecond [--runs 5]  # 6,000 a minute in the headers, enforced as 100 a second
    python bench/rate_limits.py rpm --api anthropic   # judges on /v1/messages: Anthropic-style headers
    python bench/rate_limits.py inflight -- --example-batch 1   # more personagym flags after --

Each run is 20 benchmark-v1 personas (`personagym benchmark`, a child process) against the fake
server, which runs in this process on a thread of its own (the client has the other core). The
per-minute limits are scaled to a `--window` of 10 s so a run lasts a minute or two (persecond keeps
a real minute: its limit is the per-second span); the client is
told nothing of any limit and must learn it from the replies. Figures:

- inflight: achieved / ideal, ideal = calls served x latency / 32 (the server full from start to end);
- rpm, persecond: requests served per second over the wall time, divided by the allowed rpm / window;
- tpm: tokens (the server's word counts, prompt and reply) per second, divided by tpm / window;
- and in every mode the 429s received, as a share of the calls served.

Figures are recorded in bench/RESULTS.md as ranges over the runs, the worst one named.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from full_benchmark import BENCHMARK, bench_args, calls_by_role, child_env  # noqa: E402
from responder import respond  # noqa: E402

from personagym.testing import FakeServer  # noqa: E402

MODES = {  # server knobs and the client's --concurrency
    "inflight": ({"max_in_flight": 32}, 32),
    "rpm": ({"rpm": 300}, 64),  # per window: 30 requests/s at a 10 s window
    "tpm": ({"tpm": 120_000}, 64),  # per window: 12,000 words/s at a 10 s window
    # The server: 6,000 a minute, reported per minute, enforced as 100 a second.
    "persecond": ({"rpm": 6000, "rate_window": 60.0, "rate_span": 1.0}, 64),
}


def client(url: str, db: Path, personas: int, concurrency: int, api: str, extra: list[str]) -> tuple[float, float]:
    """Run the CLI; its wall time and its CPU seconds."""
    env = child_env(url)
    args = bench_args("openai:agent-1", personas, concurrency, *extra)
    if api == "anthropic":  # the judges' calls (a third of the tokens) go to /v1/messages
        args[args.index("--judges") + 1] = "anthropic:judge-a,anthropic:judge-b"
    started, before = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "personagym", *args, "--db", str(db), "--quiet"], env=env,
                          capture_output=True, text=True, cwd=ROOT)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"personagym failed:\n{proc.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def timeline(arrivals: list[float], start: float, step: float = 1.0) -> list[int]:
    counts: list[int] = []
    for t in arrivals:
        i = int((t - start) / step)
        counts.extend([0] * (i + 1 - len(counts)))
        counts[i] += 1
    return counts


def one_run(mode: str, args: argparse.Namespace) -> dict:
    knobs, concurrency = MODES[mode]
    knobs = {**knobs, **({"rpm": args.rpm} if args.rpm and mode == "rpm" else {}),
             **({"tpm": args.tpm} if args.tpm and mode == "tpm" else {})}
    if mode != "inflight":
        knobs.setdefault("rate_window", args.window)
    with tempfile.TemporaryDirectory() as tmp, FakeServer(latency=args.latency, responder=respond, **knobs) as server:
        db = Path(tmp) / "bench.db"
        started = time.monotonic()
        seconds, cpu = client(server.base_url, db, args.personas, args.concurrency or concurrency, args.api, args.extra)
        stats = server.stats
        roles = calls_by_role(db, "agent-1")
    served = stats.requests - stats.rejected
    tokens = sum(v["prompt_tokens"] + v["completion_tokens"] for v in roles.values())
    result = {"seconds": round(seconds, 1), "client_cpu_seconds": round(cpu, 1), "served": served, "refused_429": stats.rejected,
              "refused_share": round(stats.rejected / served, 4), "max_in_flight": stats.max_in_flight_seen,
              "calls_per_persona": round(sum(v["calls"] for v in roles.values()) / args.personas, 1)}
    # Two spans: the CLI's whole wall time (start-up included), and the calling period, from the first
    # request's arrival to the CLI's exit (the limiter's own figure).
    calling = started + seconds - stats.arrivals[0]
    result["calling_seconds"] = round(calling, 1)
    for suffix, span in (("", seconds), ("_calling", calling)):
        if mode == "inflight":
            result["achieved_over_ideal" + suffix] = round(served * args.latency / knobs["max_in_flight"] / span, 3)
        elif mode in ("rpm", "persecond"):
            result["achieved_over_allowed" + suffix] = round(served / span / (knobs["rpm"] / knobs["rate_window"]), 3)
        else:
            result["tokens"] = tokens
            result["achieved_over_allowed" + suffix] = round(tokens / span / (knobs["tpm"] / args.window), 3)
    if args.timeline:
        result["arrivals_per_second"] = timeline(stats.arrivals, started)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--personas", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--window", type=float, default=10.0, help="seconds the server's per-minute limits span")
    parser.add_argument("--rpm", type=float, help="requests per window (default 300)")
    parser.add_argument("--tpm", type=float, help="tokens per window (default 120,000)")
    parser.add_argument("--concurrency", type=int, help="the client's --concurrency (default 32 inflight, 64 else)")
    parser.add_argument("--api", choices=["openai", "anthropic"], default="openai", help="where the judges' calls go")
    parser.add_argument("--timeline", action="store_true", help="also print the server's arrivals per second")
    # More flags for personagym go after `--` (`inflight -- --example-batch 1`); argparse cannot take
    # them as a second positional after the mode, so they are split off first.
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    args.extra = argv[cut + 1:]
    if not BENCHMARK.is_dir():
        raise SystemExit(f"no benchmark data at {BENCHMARK}")
    runs = []
    for i in range(args.runs):
        runs.append(one_run(args.mode, args))
        print(json.dumps({"run": i + 1, **runs[-1]}), flush=True)
    key = "achieved_over_ideal" if args.mode == "inflight" else "achieved_over_allowed"
    summary = {"mode": args.mode, "runs": len(runs)}
    for name in (key, key + "_calling", "refused_share", "seconds", "client_cpu_seconds"):
        values = [r[name] for r in runs]
        summary[name] = [min(values), max(values)]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
