"""benchmark-v1: verified loading of a copy, and the downloader against a loopback server."""

from __future__ import annotations

import collections
import filecmp
import json
import shutil
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from personagym import benchmark as bm
from personagym import fetch
from personagym.benchmark import (
    TASKS,
    UPSTREAM_COMMIT,
    UPSTREAM_RAW,
    Benchmark,
    default_benchmark_dir,
    download_benchmark,
    load_benchmark,
)
from personagym.errors import UserError
from tests.conftest import run_cli

PACKAGE = Path(bm.__file__).parent

EXPECTED_TASKS = ("Expected Action", "Action Justification", "Linguistic Habits", "Persona Consistency",
                  "Toxicity Control")


def error_of(func, *args, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        func(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    return message


@pytest.fixture(scope="module")
def shared(shared_benchmark) -> Benchmark:
    return load_benchmark(shared_benchmark)


@pytest.fixture(scope="module")
def shared_personas(shared_benchmark) -> list[str]:
    return json.loads((shared_benchmark / "personas.json").read_text(encoding="utf-8"))


# -- packaged data -----------------------------------------------------------------------------------


def test_packaged_data_are_the_shared_manifest_and_order(shared_benchmark):
    assert (PACKAGE / "benchmark_v1.sha256").read_bytes() == (shared_benchmark / "MANIFEST.sha256").read_bytes()
    assert (PACKAGE / "benchmark_v1_personas.json").read_bytes() == (shared_benchmark / "personas.json").read_bytes()
    assert UPSTREAM_RAW.endswith(UPSTREAM_COMMIT)


# -- loading -----------------------------------------------------------------------------------------


def test_load_shared_copy(shared, shared_personas, shared_benchmark):
    assert shared.name == "benchmark-v1"
    assert TASKS == EXPECTED_TASKS
    assert len(shared.personas) == 200
    assert list(shared.personas) == shared_personas
    assert list(shared.questions) == shared_personas
    assert shared.question_count == 10_000
    assert shared.tasks == EXPECTED_TASKS
    for persona in shared.personas:
        per_task = shared.questions[persona]
        assert tuple(per_task) == EXPECTED_TASKS
        assert all(len(qs) == 10 and all(isinstance(q, str) and q for q in qs) for qs in per_task.values())
    # "Toxicity" upstream is "Toxicity Control" here, with the same questions in the same order.
    first = shared.personas[0]
    raw = json.loads((shared_benchmark / "questions" / f"{first}.json").read_text(encoding="utf-8"))
    assert shared.questions[first]["Toxicity Control"] == tuple(raw["Toxicity"])


def test_limit(shared):
    three = shared.limit(3)
    assert three.personas == shared.personas[:3]
    assert list(three.questions) == list(shared.personas[:3])
    assert three.question_count == 150
    assert shared.limit(None) is shared
    assert shared.limit(1000).personas == shared.personas
    assert "--limit" in error_of(shared.limit, 0)


def test_only_tasks(shared):
    sub = shared.only_tasks(["Toxicity", "linguistic habits"])
    assert sub.tasks == ("Linguistic Habits", "Toxicity Control")
    assert sub.personas == shared.personas
    assert sub.question_count == 200 * 2 * 10
    assert shared.only_tasks(["Toxicity Control"]).limit(2).question_count == 20
    message = error_of(shared.only_tasks, ["Bravery"])
    assert "Bravery" in message and "Expected Action" in message
    assert "no tasks" in error_of(shared.only_tasks, [])


def test_missing_directory(tmp_path):
    message = error_of(load_benchmark, tmp_path / "nowhere")
    assert "nowhere" in message and "personagym benchmark download" in message and "--benchmark-dir" in message


@pytest.fixture
def copy(tmp_path, shared_benchmark) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(shared_benchmark, dest)
    return dest


def test_tampered_questions_file(copy, shared):
    victim = copy / "questions" / f"{shared.personas[7]}.json"
    victim.write_text(victim.read_text(encoding="utf-8").replace("?", "!", 1), encoding="utf-8")
    message = error_of(load_benchmark, copy)
    assert victim.name in message and "corrupt or modified" in message and "download" in message


def test_a_limited_load_reads_and_checks_only_the_personas_it_keeps(copy, shared):
    assert load_benchmark(copy, limit=3) == shared.limit(3)
    victim = copy / "questions" / f"{shared.personas[7]}.json"
    victim.write_text(victim.read_text(encoding="utf-8").replace("?", "!", 1), encoding="utf-8")
    assert load_benchmark(copy, limit=7) == shared.limit(7)  # the 8th is not read
    assert victim.name in error_of(load_benchmark, copy, 8)
    assert "--limit" in error_of(load_benchmark, copy, 0)
    (copy / "personas.json").write_text('["A hacker"]', encoding="utf-8")
    assert "personas.json" in error_of(load_benchmark, copy, 1)  # the list itself is always checked


def test_tampered_personas_json(copy):
    (copy / "personas.json").write_text('["A hacker"]', encoding="utf-8")
    message = error_of(load_benchmark, copy)
    assert "personas.json" in message and "corrupt or modified" in message


def test_tampered_optional_file_is_checked_but_absent_is_fine(copy, shared):
    for name in ("environments.json", "reference_scores.json", "LICENSE", "MANIFEST.sha256", "SOURCE.md"):
        (copy / name).unlink()
    assert load_benchmark(copy) == shared
    (copy / "environments.json").write_text("[]", encoding="utf-8")
    assert "environments.json" in error_of(load_benchmark, copy)


def test_missing_personas_json(copy):
    (copy / "personas.json").unlink()
    message = error_of(load_benchmark, copy)
    assert "personas.json" in message and "missing" in message


def test_persona_without_questions_file(copy, shared):
    (copy / "questions" / f"{shared.personas[42]}.json").unlink()
    message = error_of(load_benchmark, copy)
    assert "persona 43 of 200 has no questions file" in message and shared.personas[42] in message


def test_default_benchmark_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("PERSONAGYM_CACHE", str(tmp_path / "pg"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_benchmark_dir() == tmp_path / "pg" / "benchmark-v1"
    monkeypatch.delenv("PERSONAGYM_CACHE")
    assert default_benchmark_dir() == tmp_path / "xdg" / "personagym" / "benchmark-v1"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_benchmark_dir() == tmp_path / "home" / ".cache" / "personagym" / "benchmark-v1"


# -- downloading -------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    request_queue_size = 64  # the default 5 drops connections from 8 concurrent clients (1 s SYN retries)


class Upstream:
    """Serves the shared copy as upstream's raw layout: /questions/benchmark-v1/<quoted persona>.json."""

    def __init__(self, source: Path) -> None:
        self.requests: collections.Counter[str] = collections.Counter()
        self.corrupt: set[str] = set()  # personas whose file is served altered
        self.missing: set[str] = set()  # personas answered with 404
        self.fail_first: dict[str, int] = {}  # persona -> how many 500s before the real file
        self.lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # headers and body go out in separate writes: avoid 40 ms ACK stalls

            def log_message(self, *args):  # keep the test output quiet
                pass

            def do_GET(self):
                prefix = "/questions/benchmark-v1/"
                method_file = source / "upstream-method" / urllib.parse.unquote(self.path.lstrip("/"))
                if not self.path.startswith(prefix) and ".." not in self.path and method_file.is_file():
                    return self.answer(200, method_file.read_bytes())  # upstream's rubric and prompt files
                if not self.path.startswith(prefix) or not self.path.endswith(".json"):
                    return self.answer(404, b"not found")
                persona = urllib.parse.unquote(self.path[len(prefix):-len(".json")])
                with upstream.lock:
                    upstream.requests[persona] += 1
                    failures = upstream.fail_first.get(persona, 0)
                    if failures:
                        upstream.fail_first[persona] = failures - 1
                if failures:
                    return self.answer(500, b"try again")
                path = source / "questions" / f"{persona}.json"
                if persona in upstream.missing or "/" in persona or not path.is_file():
                    return self.answer(404, b"not found")
                body = path.read_bytes()
                if persona in upstream.corrupt:
                    body = body.replace(b"?", b"!", 1)
                self.answer(200, body)

            def answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def total(self) -> int:
        return sum(self.requests.values())


@pytest.fixture
def upstream(monkeypatch, shared_benchmark):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(fetch, "BACKOFF", (0.01, 0.01, 0.01))
    server = Upstream(shared_benchmark)
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def leftovers(dest: Path) -> list[Path]:
    return [p for p in dest.rglob("*") if p.name.startswith(".download-") or p.suffix == ".part"]


def test_download_matches_the_shared_copy(upstream, tmp_path, shared, shared_benchmark):
    calls = []
    dest = download_benchmark(tmp_path / "bench", base_url=upstream.base_url + "/", progress=lambda *a: calls.append(a))
    assert dest == tmp_path / "bench"
    assert upstream.total == 200 and set(upstream.requests) == set(shared.personas)
    assert calls[-1] == (201, 201) and len(calls) == 201
    assert [done for done, _ in calls] == list(range(1, 202))
    assert load_benchmark(dest) == shared
    assert (dest / "personas.json").read_bytes() == (shared_benchmark / "personas.json").read_bytes()
    names = sorted(p.name for p in (dest / "questions").iterdir())
    assert names == sorted(p.name for p in (shared_benchmark / "questions").iterdir())
    _, mismatch, errors = filecmp.cmpfiles(shared_benchmark / "questions", dest / "questions", names, shallow=False)
    assert not mismatch and not errors
    assert not leftovers(dest)


def test_download_defaults_to_the_cache(upstream, tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONAGYM_CACHE", str(tmp_path / "cache"))
    dest = download_benchmark(base_url=upstream.base_url)
    assert dest == tmp_path / "cache" / "benchmark-v1"
    assert load_benchmark(dest).question_count == 10_000


def test_corrupt_download_fails_naming_the_file_and_writes_nothing_for_it(
    upstream, tmp_path, shared, shared_benchmark
):
    victim = shared.personas[5]
    upstream.corrupt.add(victim)
    dest = tmp_path / "bench"
    message = error_of(download_benchmark, dest, base_url=upstream.base_url)
    assert f"questions/{victim}.json" in message and "sha256" in message
    assert not (dest / "questions" / f"{victim}.json").exists()
    assert not leftovers(dest)
    for path in (dest / "questions").iterdir():  # whatever did get written is complete and valid
        assert path.read_bytes() == (shared_benchmark / "questions" / path.name).read_bytes()


def test_404_fails_naming_the_file(upstream, tmp_path, shared):
    victim = shared.personas[0]
    upstream.missing.add(victim)
    message = error_of(download_benchmark, tmp_path / "bench", base_url=upstream.base_url)
    assert f"questions/{victim}.json" in message and "404" in message and "--from" in message
    assert upstream.requests[victim] == 1  # a 404 is not retried


def test_server_errors_are_retried(upstream, tmp_path, shared):
    upstream.fail_first[shared.personas[3]] = 2
    dest = download_benchmark(tmp_path / "bench", base_url=upstream.base_url)
    assert upstream.requests[shared.personas[3]] == 3
    assert load_benchmark(dest) == shared


def test_retries_are_bounded(upstream, tmp_path, shared):
    upstream.fail_first[shared.personas[3]] = 100
    message = error_of(download_benchmark, tmp_path / "bench", base_url=upstream.base_url)
    assert f"questions/{shared.personas[3]}.json" in message and "4 attempts" in message and "HTTP 500" in message
    assert upstream.requests[shared.personas[3]] == fetch.RETRIES + 1


def test_unreachable_server(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "BACKOFF", (0.0,))
    monkeypatch.setattr(fetch, "CONCURRENCY", 2)
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as probe:
        port = probe.server_address[1]  # closed right after: nothing listens there
    message = error_of(download_benchmark, tmp_path / "bench", base_url=f"http://127.0.0.1:{port}")
    assert "could not download" in message and "network" in message


def test_bad_base_url(tmp_path):
    assert "http" in error_of(download_benchmark, tmp_path / "bench", base_url="ftp://example.com")


def test_resume_skips_valid_files(upstream, tmp_path, shared):
    dest = tmp_path / "bench"
    interrupted = shared.personas[100]
    upstream.missing.add(interrupted)
    with pytest.raises(UserError):
        download_benchmark(dest, base_url=upstream.base_url)
    kept = {p.name for p in (dest / "questions").iterdir()}
    assert f"{interrupted}.json" not in kept and (dest / "personas.json").is_file()

    upstream.missing.clear()
    upstream.requests.clear()
    download_benchmark(dest, base_url=upstream.base_url)
    assert upstream.total == 200 - len(kept)
    assert all(f"{p}.json" not in kept for p in upstream.requests)
    assert load_benchmark(dest) == shared

    # A complete copy needs no request; a damaged or deleted file is fetched again, alone.
    upstream.requests.clear()
    calls = []
    download_benchmark(dest, base_url=upstream.base_url, progress=lambda *a: calls.append(a))
    assert upstream.total == 0 and calls[-1] == (201, 201)
    (dest / "questions" / f"{shared.personas[1]}.json").write_text("{}", encoding="utf-8")
    (dest / "questions" / f"{shared.personas[2]}.json").unlink()
    (dest / "personas.json").write_text("[]", encoding="utf-8")
    download_benchmark(dest, base_url=upstream.base_url)
    assert set(upstream.requests) == {shared.personas[1], shared.personas[2]} and upstream.total == 2
    assert load_benchmark(dest) == shared


def test_the_cli_downloads_then_runs_from_the_user_cache(upstream, tmp_path):
    cache = {"PERSONAGYM_CACHE": str(tmp_path / "cache")}
    result = run_cli("benchmark", "download", "--from", upstream.base_url, env=cache, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "cache" / "benchmark-v1") in result.stdout
    plan = run_cli(
        "benchmark", "--agent", "openai:a", "--judges", "openai:j", "--example-model", "openai:e", "--limit", "3",
        "--dry-run", env={**cache, "OPENAI_API_KEY": "k"}, cwd=tmp_path,
    )
    assert plan.returncode == 0, plan.stderr
    assert "3 persona(s) x 5 task(s) x 10 question(s)" in plan.stdout
