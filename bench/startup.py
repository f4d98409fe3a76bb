"""Start-up time of the command: `personagym --help` (goal under 0.5 s), and which heavy modules it
loads (none should be: the SDKs, numpy and llama.cpp are imported by the commands that use them).

    python bench/startup.py [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

HEAVY = ("openai", "anthropic", "numpy", "llama_cpp", "pydantic", "aiohttp", "httpx2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    times = []
    for _ in range(args.runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "personagym", "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    probe = (
        "import sys; from personagym.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print('LOADED=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    print(f"personagym --help: median {statistics.median(times):.3f} s, max {max(times):.3f} s over {args.runs} runs")
    heavy = loaded.rsplit("LOADED=", 1)[1].strip()
    print(f"heavy modules loaded by --help: {heavy or 'none'}")


if __name__ == "__main__":
    main()
