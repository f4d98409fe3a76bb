from __future__ import annotations

import pytest

from personagym.llm import Gateway, RetryPolicy
from personagym.llm.cache import Cache
from personagym.llm.spec import ProviderSettings
from personagym.store import connect
from personagym.testing import FakeServer

# Fast retries so fault tests take milliseconds, not the production backoff's seconds.
FAST_RETRY = RetryPolicy(max_attempts=3, max_total_seconds=20, timeout=5, backoff_base=0.01, backoff_max=0.05)


@pytest.fixture
def server():
    with FakeServer() as srv:
        yield srv


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "personagym.db"


@pytest.fixture
def make_gateway(server, db_path):
    """Build gateways pointed at the fake server. Use them as `async with make_gateway() as gw:`."""

    def make(*, cache: bool = False, retry: RetryPolicy = FAST_RETRY, key: str = "sk-test", **kwargs) -> Gateway:
        settings = {
            "openai": ProviderSettings(base_url=server.base_url, api_key=key),
            "anthropic": ProviderSettings(base_url=server.base_url.removesuffix("/v1"), api_key=key),
        }
        return Gateway(cache=Cache(connect(db_path)) if cache else None, retry=retry, settings=settings, **kwargs)

    return make


@pytest.fixture
def shared_benchmark():
    from pathlib import Path

    candidates = [
        Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "personagym-v1",
        Path("/work/shared/benchmarks/personagym-v1"),
    ]
    for path in candidates:
        if path.is_dir():
            return path
    pytest.skip("no shared copy of benchmark-v1 on this machine")
