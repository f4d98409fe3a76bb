"""`personagym models check`: one tiny request per model, and the fix when it does not answer."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from personagym.errors import ConfigError
from personagym.llm.gateway import Gateway, RetryPolicy
from personagym.llm.spec import ENV_BASE_URLS, ENV_KEYS, ProviderSettings
from personagym.llm.types import CallFailed, Cause, Request, Sampling

PING = Request.of(("user", "Reply with the single word OK."), sampling=Sampling(max_tokens=16), role="check")
# A check must be quick and must reach the model: two attempts, no cache.
CHECK_POLICY = RetryPolicy(max_attempts=2, max_total_seconds=60, timeout=60, backoff_base=0.5)


@dataclass(frozen=True)
class CheckResult:
    spec: str
    ok: bool
    message: str
    bad_input: bool = False  # the fix is on the user's side (spec, key, URL, install)


def _fix(provider: str, cause: Cause) -> str:
    url_var, key_var = ENV_BASE_URLS.get(provider, ""), ENV_KEYS.get(provider, "")
    return {
        Cause.CONNECTION: f"start the server, or fix the base URL (--{provider}-base-url, config, or {url_var})",
        Cause.AUTH: f"the key was refused: check {key_var} or the config's api_key",
        Cause.NOT_FOUND: "the server does not know this model: check the model name after the colon",
        Cause.BAD_REQUEST: "the server rejected the request: check that it speaks this provider's API",
    }.get(cause, "the server is up but failing: try again later")


async def check_one(gateway: Gateway, spec: str) -> CheckResult:
    try:
        model = gateway.model(spec)
    except ConfigError as exc:
        return CheckResult(spec, False, str(exc), bad_input=True)
    started = time.monotonic()
    try:
        completion = await gateway.complete(model.name, PING)
    except CallFailed as exc:
        f = exc.failure
        if f.cause is Cause.TRUNCATED:  # it talked past the tiny budget: it answers, which is the question
            return CheckResult(model.name, True, f"answered in {time.monotonic() - started:.2f} s (at length)")
        provider = model.name.split(":")[0]
        user_side = f.cause in (Cause.CONNECTION, Cause.AUTH, Cause.NOT_FOUND, Cause.BAD_REQUEST)
        return CheckResult(model.name, False, f"{f.cause.value}: {f.detail}: {_fix(provider, f.cause)}", user_side)
    said = " ".join(completion.text.split())[:40]
    return CheckResult(model.name, True, f"answered in {time.monotonic() - started:.2f} s: {said!r}")


async def check_models(specs: list[str], settings: dict[str, ProviderSettings]) -> list[CheckResult]:
    async with Gateway(settings=settings, retry=CHECK_POLICY) as gateway:
        return list(await asyncio.gather(*(check_one(gateway, s) for s in specs)))
