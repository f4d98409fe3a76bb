"""The gateway in batch mode: calls gathered into provider batch jobs, persisted, resumed, half price."""

from __future__ import annotations

import asyncio

import pytest

from personagym.llm import Gateway, Request
from personagym.llm.batch.runner import Batcher, BatchSettings, JobStore
from personagym.llm.cache import Cache
from personagym.llm.spec import ProviderSettings
from personagym.llm.usage import PriceTable, Usage
from personagym.store import connect
from tests.conftest import FAST_RETRY
from tests.test_pipeline import scripted  # noqa: F401,F811 - the fixture

FAST = BatchSettings(quiet=0.05, poll_first=0.02, poll_max=0.05)
PRICES = PriceTable({"openai:m": {"input": 2.0, "output": 8.0}, "anthropic:m": {"input": 3.0, "output": 15.0}})


def ask(i: int) -> Request:
    return Request.of(("user", f"question {i}"))


def make(server, db_path, *, events: list | None = None, online: bool = False) -> Gateway:
    conn = connect(db_path)
    settings = {
        "openai": ProviderSettings(base_url=server.base_url, api_key="sk-test"),
        "anthropic": ProviderSettings(base_url=server.base_url.removesuffix("/v1"), api_key="sk-test"),
    }
    batch = None if online else Batcher(FAST, JobStore(conn), on_event=(events.append if events is not None else None))
    return Gateway(cache=Cache(conn), retry=FAST_RETRY, settings=settings, batch=batch, usage=Usage(PRICES))


def chat_requests(server) -> int:
    return sum(n for path, n in server.stats.by_path.items() if path.endswith(("/chat/completions", "/messages")))


@pytest.mark.parametrize("spec", ["openai:m", "anthropic:m"])
async def test_calls_gathered_into_one_job_answer_like_online_calls_at_half_the_price(server, tmp_path, spec):
    server.responder = lambda api, body: f"answer to {str(body['messages'][-1]['content'])}"
    async with make(server, tmp_path / "batch.db") as gw:
        batched = await asyncio.gather(*(gw.complete(spec, ask(i)) for i in range(12)))
        batch_cost = gw.usage.total().cost
    assert server.stats.batch_jobs == 1 and server.stats.batch_items == 12
    assert chat_requests(server) == 0
    async with make(server, tmp_path / "online.db", online=True) as gw:
        online = await asyncio.gather(*(gw.complete(spec, ask(i)) for i in range(12)))
        online_cost = gw.usage.total().cost
    assert [c.text for c in batched] == [c.text for c in online] == [f"answer to question {i}" for i in range(12)]
    assert [c.prompt_tokens for c in batched] == [c.prompt_tokens for c in online]
    assert batch_cost == pytest.approx(online_cost / 2) and online_cost > 0


async def test_identical_calls_share_one_item_and_answers_are_cached(server, db_path):
    async with make(server, db_path) as gw:
        first = await asyncio.gather(*(gw.complete("openai:m", ask(1)) for _ in range(3)))
        again = await gw.complete("openai:m", ask(1))
    assert server.stats.batch_items == 1
    assert len({c.text for c in first}) == 1 and again.cached


async def test_a_failed_item_is_retried_in_the_next_job(server, db_path):
    server.batches.inject_item_fault("error", count=1, status=500)
    async with make(server, db_path) as gw:
        done = await asyncio.gather(*(gw.complete("openai:m", ask(i)) for i in range(4)))
    assert len(done) == 4
    assert server.stats.batch_jobs == 2 and server.stats.batch_items == 5
    assert sorted(c.attempts for c in done) == [1, 1, 1, 2]


async def test_a_restarted_run_polls_its_open_jobs_and_submits_nothing_again(server, db_path):
    server.batch_delay = 0.6
    events: list[str] = []
    async with make(server, db_path, events=events) as gw:
        calls = [asyncio.ensure_future(gw.complete("openai:m", ask(i))) for i in range(5)]
        while not any("submitted" in e for e in events):
            await asyncio.sleep(0.01)
        for call in calls:  # the process "dies" while the job runs
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
    assert server.stats.batch_jobs == 1
    assert JobStore(connect(db_path)).open_jobs("openai:m")

    events.clear()
    async with make(server, db_path, events=events) as gw:
        done = await asyncio.gather(*(gw.complete("openai:m", ask(i)) for i in range(5)))
    assert len({c.text for c in done}) == 5 and not any(c.cached for c in done)
    assert server.stats.batch_jobs == 1 and server.stats.batch_items == 5  # nothing submitted twice
    assert any("resumed" in e for e in events)
    assert JobStore(connect(db_path)).open_jobs("openai:m") == []  # every answer handed out: closed


async def test_the_embedded_model_has_no_batch_api(server, db_path):
    from personagym.errors import ConfigError

    async with make(server, db_path) as gw:
        with pytest.raises(ConfigError, match="no batch API"):
            gw.model("local")


# -- whole runs through the CLI -----------------------------------------------------------------


def test_a_batch_run_scores_as_an_online_run_does(scripted, tmp_path):  # noqa: F811
    from tests.pipeline_fakes import expected_persona_score, preflights
    from tests.test_pipeline import cli, export, run_args

    result = cli(scripted, tmp_path, *run_args("--run", "b", "--batch", "--batch-poll", "0.05"))
    assert f"PersonaScore {expected_persona_score():.2f}" in result.stdout
    assert chat_requests(scripted) == preflights(scripted) == 5  # online: only the check that each model answers
    # One job per stage and model: environments, questions, answers, examples, each judge.
    assert scripted.stats.batch_jobs == 6, scripted.stats.batch_jobs
    data = export(scripted, tmp_path, "b")
    assert data["scores"]["questions_scored"] == data["scores"]["questions"] == 30
    assert data["failures"]["total"] == 0


def test_a_batch_run_killed_while_its_jobs_run_resumes_without_paying_twice(scripted, tmp_path):  # noqa: F811
    import os
    import signal
    import subprocess
    import sys

    from tests.pipeline_fakes import preflights
    from tests.test_pipeline import cli, run_args

    args = run_args("--run", "b", "--batch", "--batch-poll", "0.05")
    args.remove("--quiet")
    clean = tmp_path / "clean"
    clean.mkdir()
    cli(scripted, clean, *args)
    items = scripted.stats.batch_items
    scripted.reset_stats()

    scripted.batch_delay = 1.0
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    env["OPENAI_BASE_URL"] = scripted.base_url
    proc = subprocess.Popen([sys.executable, "-m", "personagym", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = 0
    # Kill it while its answers and examples jobs run: nothing else can be submitting then (the
    # judges wait for both), so the kill does not fall between a job's creation and its record.
    for line in proc.stderr:
        seen += "submitted" in line
        if seen == 4:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert seen == 4
    result = cli(scripted, tmp_path, *args)
    assert "resumed" in result.stderr
    assert scripted.stats.batch_items == items  # every item submitted exactly once over both processes
    assert chat_requests(scripted) == preflights(scripted) == 10  # online: the checks of both processes


async def test_a_job_the_provider_no_longer_knows_is_sent_again(server, db_path):
    from personagym.llm.cache import cache_key

    async with make(server, db_path) as gw:
        key = cache_key(gw.model("openai:m").identity, ask(1))
    JobStore(connect(db_path)).add("openai:m", "batch_vanished", [key])
    events: list[str] = []
    async with make(server, db_path, events=events) as gw:
        done = await gw.complete("openai:m", ask(1))
    assert done.attempts == 2 and server.stats.batch_jobs == 1
    assert any("resumed" in e for e in events)
    assert JobStore(connect(db_path)).open_jobs("openai:m") == []


async def test_an_agent_at_its_own_endpoint_stays_online_while_the_rest_go_in_batches(server, db_path):
    server.responder = lambda api, body: "fine"
    async with make(server, db_path) as gw:
        own = gw.model("openai:my-bot", base_url=server.base_url)
        online = await gw.complete(own, ask(1))
        batched = await gw.complete("openai:judge", ask(2))
        records = gw.usage.by_model()
    assert online.text == batched.text == "fine"
    assert chat_requests(server) == 1 and server.stats.batch_items == 1
    assert records["openai:my-bot"].calls == records["openai:judge"].calls == 1
