"""`personagym models check`: what a run needs of each model, tried with two tiny requests (a plain
reply and a structured one), and the fix when it does not answer."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated

from msgspec import Meta, Struct

from personagym import secrets
from personagym.errors import ConfigError
from personagym.llm.gateway import BoundModel, Gateway, RetryPolicy
from personagym.llm.spec import ENV_BASE_URLS, ENV_KEYS, ProviderSettings
from personagym.llm.types import CallFailed, Cause, Request, Sampling

PING = Request.of(("user", "Reply with the single word OK."), sampling=Sampling(max_tokens=16), role="check")


class Pong(Struct):
    word: Annotated[str, Meta(max_length=20)]


STRUCTURED_PING = Request.of(
    ("user", 'Reply with the JSON object {"word": "OK"}.'), sampling=Sampling(max_tokens=64), schema=Pong, role="check"
)
# A check must be quick and must reach the model: two attempts, no cache.
CHECK_POLICY = RetryPolicy(max_attempts=2, max_total_seconds=60, timeout=60, backoff_base=0.5)


@dataclass(frozen=True)
class CheckResult:
    spec: str
    ok: bool
    message: str
    bad_input: bool = False  # the fix is on the user's side (spec, key, URL, install)

    def __post_init__(self) -> None:
        # Printed as it is: a server's words (failure details) or a config error may quote a key.
        object.__setattr__(self, "message", secrets.redact(self.message))


def _fix(provider: str, cause: Cause) -> str:
    url_var, key_var = ENV_BASE_URLS.get(provider, ""), ENV_KEYS.get(provider, "")
    return {
        Cause.CONNECTION: f"start the server, or fix the base URL (--{provider}-base-url, config, or {url_var})",
        Cause.AUTH: f"the key was refused: check {key_var} or the config's api_key",
        Cause.NOT_FOUND: "the server does not know this model: check the model name after the colon",
        Cause.BAD_REQUEST: "the server rejected the request: check that it speaks this provider's API",
    }.get(cause, "the server is up but failing: try again later")


def _shape(model: BoundModel) -> str:
    """How this model's server was asked for structured output, in the words of the docs."""
    negotiator = getattr(model.provider, "negotiator", None)
    if negotiator is not None:
        return f"as {negotiator.shape}"
    return {"anthropic": "as a JSON schema (output_config.format)", "local": "by a grammar"}.get(model.spec.provider, "")


async def check_one(gateway: Gateway, spec: str) -> CheckResult:
    try:
        model = gateway.model(spec)
    except ConfigError as exc:
        return CheckResult(spec, False, str(exc), bad_input=True)
    provider = model.spec.provider
    said = []
    for request in (PING, STRUCTURED_PING):
        started = time.monotonic()
        kind = "a plain reply" if request.schema is None else "a structured reply"
        try:
            completion = await gateway.complete(model, request)
        except CallFailed as exc:
            f = exc.failure
            if f.cause is Cause.TRUNCATED and request.schema is None:
                # It talked past the check's tiny budget: it answers, which is what was asked.
                said.append(f"{kind} in {time.monotonic() - started:.2f} s (longer than the check needs)")
                continue
            user_side = f.cause in (Cause.CONNECTION, Cause.AUTH, Cause.NOT_FOUND, Cause.BAD_REQUEST)
            fix = _fix(provider, f.cause) if request.schema is None or f.cause is not Cause.INVALID_OUTPUT else (
                "the model answers but not in the JSON asked: a run needs a model that can (try a larger one)"
            )
            done = f"{'; '.join(said)}; but " if said else ""
            return CheckResult(model.name, False, f"{done}{kind} failed: {f.cause.value}: {f.detail}: {fix}", user_side)
        seconds = time.monotonic() - started
        if request.schema is None:
            said.append(f"{kind} in {seconds:.2f} s: {' '.join(completion.text.split())[:40]!r}")
        else:
            said.append(f"{kind} {_shape(model)} in {seconds:.2f} s".replace("  ", " "))
    return CheckResult(model.name, True, "; ".join(said))


async def check_models(specs: list[str], settings: dict[str, ProviderSettings]) -> list[CheckResult]:
    async with Gateway(settings=settings, retry=CHECK_POLICY) as gateway:
        return list(await asyncio.gather(*(check_one(gateway, s) for s in specs)))
