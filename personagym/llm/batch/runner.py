"""Batch mode: the gateway's calls gathered into provider batch jobs, at half the price.

The pipeline runs exactly as online; only the last step of a call changes. Calls to one model are
gathered until none has arrived for `quiet` seconds (the pipeline's stages come in waves, because
each waits for the one before, so each stage becomes one job per model), submitted as one job,
whose id is written to the database at once, and polled until it ends. Every item is keyed by the
call's cache key, so a run restarted while jobs are running finds them in the database, polls them
again and hands their answers to the same calls, asked again: nothing is submitted twice. A job
stays open in the database until every answer has been handed to a call, so answers fetched just
before a crash are fetched again, not paid again.

Retries, validation, caching and accounting stay in the gateway: a failed item raises the same
ProviderError an online call would, and the retry policy decides (a retried item joins the next job).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Callable

from personagym.llm.batch.base import BatchClient
from personagym.llm.types import Cause, ProviderError, Reply, Request

log = logging.getLogger("personagym.llm.batch")
MAX_POLL_TROUBLES = 20  # failed polls in a row (a quarter of an hour or so) before a job's calls fail


@dataclass(frozen=True)
class BatchSettings:
    quiet: float = 2.0  # seconds without a new call before the gathered calls are submitted
    max_gather: float = 60.0  # ...or this long after the first, whichever comes first
    poll_first: float = 5.0  # first look at a job; then 1.5 times longer each time...
    poll_max: float = 60.0  # ...up to this


class JobStore:
    """Open batch jobs, in the table `batch_jobs` of the personagym database."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def add(self, model: str, job_id: str, custom_ids: list[str]) -> None:
        now = time.time()
        self.conn.execute(
            "INSERT INTO batch_jobs (model, job_id, custom_ids, state, created_at, updated_at) "
            "VALUES (?, ?, ?, 'running', ?, ?)",
            (model, job_id, json.dumps(custom_ids), now, now),
        )

    def open_jobs(self, model: str) -> list[tuple[str, list[str]]]:
        rows = self.conn.execute(
            "SELECT job_id, custom_ids FROM batch_jobs WHERE model = ? AND closed = 0 ORDER BY id", (model,)
        )
        return [(job_id, json.loads(ids)) for job_id, ids in rows]

    def set_state(self, job_id: str, state: str, closed: bool = False) -> None:
        self.conn.execute(
            "UPDATE batch_jobs SET state = ?, closed = ?, updated_at = ? WHERE job_id = ?",
            (state, int(closed), time.time(), job_id),
        )


@dataclass(eq=False)
class _Lane:
    """One model's batch traffic."""

    model: str
    client: BatchClient
    pending: dict[str, tuple[Request, list[asyncio.Future]]] = field(default_factory=dict)
    waiting: dict[str, list[asyncio.Future]] = field(default_factory=dict)  # items of submitted jobs
    ready: dict[str, Reply | ProviderError] = field(default_factory=dict)  # answers nobody has asked for yet
    unhanded: dict[str, set[str]] = field(default_factory=dict)  # job id -> items not yet handed to a call
    job_of: dict[str, str] = field(default_factory=dict)  # custom id -> job id
    timer: asyncio.TimerHandle | None = None
    opened: float = 0.0  # when the oldest pending call arrived (loop time)
    resumed: bool = False


class Batcher:
    def __init__(
        self,
        settings: BatchSettings | None = None,
        jobs: JobStore | None = None,
        on_event: Callable[[str], None] | None = None,
    ):
        self.settings = settings or BatchSettings()
        self.jobs = jobs
        self.on_event = on_event or (lambda message: log.info("%s", message))
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task] = set()

    def add_model(self, model: str, client: BatchClient) -> None:
        if model not in self._lanes:
            self._lanes[model] = _Lane(model, client)

    def serves(self, model: str) -> bool:
        return model in self._lanes

    async def generate(self, model: str, custom_id: str, request: Request) -> Reply:
        """The reply to one call, by way of a batch job. Raises ProviderError as an online call would."""
        lane = self._lanes[model]
        if not lane.resumed:
            lane.resumed = True
            self._resume(lane)
        if custom_id in lane.ready:
            return self._hand(lane, custom_id, lane.ready.pop(custom_id))
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        if custom_id in lane.waiting:
            lane.waiting[custom_id].append(future)
        elif custom_id in lane.pending:
            lane.pending[custom_id][1].append(future)
        else:
            loop = asyncio.get_running_loop()
            if not lane.pending:
                lane.opened = loop.time()
            lane.pending[custom_id] = (request, [future])
            if lane.timer is not None:
                lane.timer.cancel()
            if len(lane.pending) >= lane.client.max_items:
                self._flush(lane)
            else:
                # Wait for a quiet moment, but not for ever: a steady trickle still goes out.
                at = min(loop.time() + self.settings.quiet, lane.opened + self.settings.max_gather)
                lane.timer = loop.call_at(at, self._flush, lane)
        outcome = await future
        return self._hand(lane, custom_id, outcome)

    def _hand(self, lane: _Lane, custom_id: str, outcome: Reply | ProviderError) -> Reply:
        job = lane.job_of.pop(custom_id, None)
        if job is not None:
            left = lane.unhanded.get(job)
            if left is not None:
                left.discard(custom_id)
                if not left:
                    del lane.unhanded[job]
                    if self.jobs is not None:
                        self.jobs.set_state(job, "collected", closed=True)
        if isinstance(outcome, ProviderError):
            raise outcome
        return outcome

    # -- submitting -----------------------------------------------------------------------------
    def _flush(self, lane: _Lane) -> None:
        lane.timer = None
        if lane.pending:
            items, lane.pending = lane.pending, {}
            self._spawn(self._submit(lane, items))

    async def _submit(self, lane: _Lane, items: dict[str, tuple[Request, list[asyncio.Future]]]) -> None:
        ids = list(items)
        try:
            job_id = await lane.client.submit([(cid, items[cid][0]) for cid in ids])
        except ValueError as exc:  # too big for one job: halve it
            if len(ids) > 1:
                half = len(ids) // 2
                await asyncio.gather(
                    self._submit(lane, {c: items[c] for c in ids[:half]}),
                    self._submit(lane, {c: items[c] for c in ids[half:]}),
                )
                return
            error: ProviderError = ProviderError(Cause.BAD_REQUEST, f"the batch API refused the request: {exc}")
            self._settle(items[ids[0]][1], error)
            return
        except ProviderError as exc:
            for cid in ids:
                self._settle(items[cid][1], exc)
            return
        except BaseException as exc:  # cancelled, or a bug: the calls must not wait for ever
            for cid in ids:
                self._settle(items[cid][1], ProviderError(Cause.CONNECTION, f"batch submission stopped: {exc!r}"))
            raise
        if self.jobs is not None:
            self.jobs.add(lane.model, job_id, ids)  # at once: a crash from here on resumes this job
        for cid in ids:
            lane.waiting[cid] = items[cid][1]
        self.on_event(f"batch {job_id}: {len(ids)} calls to {lane.model} submitted")
        await self._poll(lane, job_id, ids)

    # -- polling and collecting -------------------------------------------------------------------
    def _resume(self, lane: _Lane) -> None:
        if self.jobs is None:
            return
        for job_id, ids in self.jobs.open_jobs(lane.model):
            for cid in ids:
                lane.waiting.setdefault(cid, [])
            self.on_event(f"batch {job_id}: resumed, {len(ids)} calls to {lane.model}")
            self._spawn(self._poll(lane, job_id, ids))

    async def _poll(self, lane: _Lane, job_id: str, ids: list[str]) -> None:
        delay = self.settings.poll_first
        shown = -1
        troubles = 0  # polls in a row that failed
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, self.settings.poll_max)
            try:
                status = await lane.client.status(job_id)
                troubles = 0
                if status.state == "running":
                    if status.done != shown:
                        shown = status.done
                        self.on_event(f"batch {job_id}: {status.done}/{status.total} done")
                    continue
                results = await lane.client.results(job_id)
            except ProviderError as exc:
                troubles += 1
                if exc.cause.retriable and troubles < MAX_POLL_TROUBLES:
                    log.debug("batch %s: polling failed (%s); trying again", job_id, exc)
                    continue
                # The job is gone, or the provider has failed us for a long while: every item fails
                # with this cause, and the gateway's retry policy decides (a retry goes into a new job).
                results, status = {}, None
                missing = exc if exc.cause is Cause.AUTH else ProviderError(
                    Cause.SERVER_ERROR, f"batch {job_id} could not be read ({exc.detail}); its calls are sent again"
                )
            else:
                missing = ProviderError(Cause.SERVER_ERROR, f"missing from the output of batch {job_id}")
            break
        state = status.state if status is not None else "lost"
        failed = sum(isinstance(results.get(cid), ProviderError) or cid not in results for cid in ids)
        self.on_event(f"batch {job_id}: {state}, {len(ids) - failed} answered, {failed} failed")
        if self.jobs is not None and status is not None:
            self.jobs.set_state(job_id, state)
        lane.unhanded[job_id] = set(ids)
        for cid in ids:
            lane.job_of[cid] = job_id
            outcome = results.get(cid, missing)
            futures = lane.waiting.pop(cid, [])
            live = [f for f in futures if not f.done()]
            if live:
                self._settle(live, outcome)
            else:
                lane.ready[cid] = outcome  # its call has not been asked again yet (a resumed run)

    @staticmethod
    def _settle(futures: list[asyncio.Future], outcome: Reply | ProviderError) -> None:
        for future in futures:
            if not future.done():
                future.set_result(outcome)  # an error is raised by _hand, in each caller's own task

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Stop polling. Jobs stay open at the provider and in the database, for the next run."""
        for lane in self._lanes.values():
            if lane.timer is not None:
                lane.timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for lane in self._lanes.values():
            await lane.client.aclose()
