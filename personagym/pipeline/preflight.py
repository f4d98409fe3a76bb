"""Before a run writes anything: can every model of it answer at all?

One tiny request per distinct model. A model its server does not know (404: a typo, or retired, as
claude-sonnet-4-5 was on 2026-11-30), a key the provider refuses (401/403) or a base URL nothing
answers at stop the run here, in seconds, with one line naming the role, the model, the cause and
the fix, and no database written; otherwise every one of its thousands of calls would be recorded as
the same failure. The same causes met mid-run stop the run at once too (`stop_if_hopeless`).
Anything else (a slow or busy server, a reply cut short) is not a reason to refuse a run.
"""

from __future__ import annotations

import asyncio
import dataclasses

from personagym.errors import UserError
from personagym.llm import CallFailed, CallFailure, Cause, Gateway, Request, Sampling
from personagym.llm.gateway import BoundModel
from personagym.pipeline.roles import AGENT, EXAMPLES, GENERATOR, INTERLOCUTOR, JUDGE, Role

_PING = Request.of(("user", "Reply with the single word OK."), sampling=Sampling(max_tokens=16), role="preflight")
# Causes no retry and no rerun can fix: the run stops instead of failing call after call.
HOPELESS = (Cause.NOT_FOUND, Cause.AUTH, Cause.CONNECTION)
_FLAGS = {
    AGENT: "--agent", GENERATOR: "--generator", EXAMPLES: "--example-model", JUDGE: "--judges",
    INTERLOCUTOR: "--interlocutor",
}
_passed: set[str] = set()  # models that answered in this process: checked once however many runs


class RunStopped(UserError):
    """A model of the run cannot work: the run stops (resumable once the cause is fixed)."""


def explain(role: Role, failure: CallFailure) -> str:
    """One line: which role and model, what the server said, what to do."""
    flag = _FLAGS.get(role.kind, "--models")
    where = role.kind if role.kind != JUDGE else "judge"
    said = {
        Cause.NOT_FOUND: "the provider does not know this model (404; it may be retired)",
        Cause.AUTH: "the provider refused the key (401/403)",
        Cause.CONNECTION: "no server answers at its base URL",
    }.get(failure.cause, failure.cause.value)
    fix = {
        Cause.NOT_FOUND: f"choose another with {flag}",
        Cause.AUTH: f"check the key for {role.spec.provider} (the {role.spec.provider.upper()}_API_KEY variable or the "
        "config's api_key)",
        Cause.CONNECTION: f"start the server or fix its base URL (--{role.spec.provider}-base-url"
        + (" or --agent-base-url)" if role.kind == AGENT else ")"),
    }.get(failure.cause, "try again later")
    return f"{where} {role.model}: {said}: {fix} ({' '.join(failure.detail.split())[:200]})"


async def preflight(gateway: Gateway, models: dict[Role, BoundModel]) -> None:
    """Raise RunStopped for the first model (in role order) that cannot work. Every distinct model is
    asked once, all at the same time: one after another, four models on a 500 ms server cost 2 s
    before the run's first call."""
    first: dict[str, tuple[Role, BoundModel]] = {}
    for role, model in models.items():
        key = repr(sorted(model.identity.items()))
        if key not in _passed:
            first.setdefault(key, (role, model))
    if not first:
        return
    saved, batch = gateway.retry, gateway.batch
    gateway.batch = None  # one tiny online request, even for a run whose calls go in batch jobs
    # Every endpoint of a pool gets a chance before its URL counts as unreachable.
    pool = max(len(model.gate.endpoints) for _, model in first.values())
    gateway.retry = dataclasses.replace(saved, max_attempts=1 + pool, max_total_seconds=60, backoff_base=0.2)
    try:
        failures = await asyncio.gather(*(_ping(gateway, model) for _, model in first.values()))
    finally:
        gateway.retry, gateway.batch = saved, batch
    for (key, (role, _)), failure in zip(first.items(), failures):
        if failure is not None and failure.cause in HOPELESS:
            raise RunStopped(explain(role, failure))
        _passed.add(key)


async def _ping(gateway: Gateway, model: BoundModel) -> CallFailure | None:
    try:
        await gateway.complete(model, _PING)
    except CallFailed as exc:
        return exc.failure
    return None
