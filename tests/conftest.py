from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from personagym.llm import Gateway, RetryPolicy
from personagym.llm.cache import Cache
from personagym.llm.spec import ProviderSettings
from personagym.store import connect
from personagym.testing import FakeServer

# CI clones the repository with the shared data beside it, never at a fixed absolute path.
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

# Fast retries so fault tests take milliseconds, not the production backoff's seconds.
FAST_RETRY = RetryPolicy(max_attempts=3, max_total_seconds=20, timeout=5, backoff_base=0.01, backoff_max=0.05)

# A developer's keys, endpoints, config file or proxy must not decide what a test sees: every server a
# test talks to is on loopback, and a test that needs a variable passes it.
_DROPPED_PREFIXES = ("OPENAI_", "ANTHROPIC_", "PERSONAGYM_")
_PROXIES = {"http_proxy", "https_proxy", "all_proxy"}


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_PREFIXES) and k.lower() not in _PROXIES}
    clean.update(env or {})
    return clean


def cli_argv(*args: str) -> list[str]:
    # sys.executable, not a `personagym` on PATH: the tests must run this checkout's code in this venv.
    return [sys.executable, "-m", "personagym", *args]


def sigint_at_default() -> None:
    """`preexec_fn` for a CLI a test interrupts: Ctrl-C at a terminal reaches a process whose SIGINT is
    at its default. A test run started in the background without job control (`bash .ci/run &`) hands
    its children SIGINT ignored, and Python then installs no KeyboardInterrupt handler at all."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd=None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """`personagym ARGS` as a user runs it from a shell: its own process, exit code and output."""
    return subprocess.run(cli_argv(*args), capture_output=True, text=True, env=cli_env(env), cwd=cwd, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> str:
    """Bad input ends with exit 2 and one line that names the problem (and the fix), never a traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _shared_dir(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.is_dir():
        pytest.skip(f"needs the shared data at {path} (a checkout with ../shared beside it)")
    return path


@pytest.fixture(scope="session")
def shared_benchmark() -> Path:
    """benchmark-v1 as upstream published it: personas, questions, manifest."""
    return _shared_dir("benchmarks", "personagym-v1")


@pytest.fixture(scope="session")
def shared_upstream_method() -> Path:
    """Upstream PersonaGym's own rubric and prompt files, to compare ours against."""
    return _shared_dir("benchmarks", "personagym-v1", "upstream-method")


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
