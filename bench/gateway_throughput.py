"""Gateway throughput against the fake server, which runs in its own process (the other core).

    python bench/gateway_throughput.py [--calls 4000]

Prints three figures, recorded in bench/RESULTS.md:
  1. uncached calls/s at zero latency (goal >= 500)
  2. cache hits/s (goal >= 5,000)
  3. at 100 ms latency with 64 in flight, achieved / ideal throughput, ideal = 64 / 0.1 s (goal >= 0.9)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from personagym.llm import Gateway, Limits, ProviderSettings, Request
from personagym.llm.cache import Cache
from personagym.store import connect


@contextlib.contextmanager
def fake_server(latency: float):
    proc = subprocess.Popen(
        [sys.executable, "-m", "personagym.testing.fake_server", "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        yield line.removeprefix("listening on ")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def requests(n: int) -> list[Request]:
    return [Request.of(("system", "You are a persona."), ("user", f"Question number {i}?")) for i in range(n)]


async def timed(gateway: Gateway, batch: list[Request]) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(gateway.complete("openai:bench", r) for r in batch))
    return time.perf_counter() - started


async def run(calls: int) -> None:
    limits = Limits(concurrency=64)
    with fake_server(0.0) as url:
        settings = {"openai": ProviderSettings(base_url=url, api_key="bench")}
        async with Gateway(settings=settings, limits=limits) as gw:
            await timed(gw, requests(200))  # warm up connections
            seconds = await timed(gw, requests(calls))
        print(f"uncached, 0 ms latency, 64 in flight: {calls / seconds:,.0f} calls/s ({calls} calls in {seconds:.2f} s)")

        with tempfile.TemporaryDirectory() as tmp:
            cache = Cache(connect(Path(tmp) / "bench.db"))
            async with Gateway(settings=settings, limits=limits, cache=cache) as gw:
                batch = requests(calls)
                fill = await timed(gw, batch)
                seconds = await timed(gw, batch)
            print(f"cache fill (miss + write): {calls / fill:,.0f} calls/s")
            print(f"cache hits: {calls / seconds:,.0f} hits/s ({calls} hits in {seconds:.2f} s)")

    with fake_server(0.1) as url:
        settings = {"openai": ProviderSettings(base_url=url, api_key="bench")}
        async with Gateway(settings=settings, limits=limits) as gw:
            await timed(gw, requests(128))
            seconds = await timed(gw, requests(calls))
        achieved, ideal = calls / seconds, 64 / 0.1
        print(
            f"100 ms latency, 64 in flight: {achieved:,.0f} calls/s of ideal {ideal:,.0f} "
            f"= {achieved / ideal:.3f} of ideal"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=4000)
    asyncio.run(run(parser.parse_args().calls))
