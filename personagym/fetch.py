"""Fetching upstream's files at the pinned commit: several at once, each verified against its
packaged sha256 before it is written (atomically), network errors, 429 and 5xx retried within bounds.
Files already present and valid are kept, so an interrupted download resumes. Used by
`personagym benchmark download` for the benchmark's questions and upstream's method files."""

from __future__ import annotations

import errno
import hashlib
import threading
from pathlib import Path
from typing import Callable

from personagym.errors import UserError
from personagym.files import write_atomic

UPSTREAM_COMMIT = "536f705e610289c38d84e083fcea6ea5093d3a25"
UPSTREAM_RAW = f"https://raw.githubusercontent.com/vsamuel2003/PersonaGym/{UPSTREAM_COMMIT}"

# Downloads: 8 files at once; network errors, 429 and 5xx are retried RETRIES times after the
# first attempt, waiting BACKOFF[i] seconds before retry i.
CONCURRENCY = 8
RETRIES = 3
BACKOFF = (0.5, 1.5, 4.0)
TIMEOUT = 30.0
MAX_FILE_BYTES = 1 << 20  # a questions file is ~10 KB; anything past 1 MiB is not one


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download_files(
    root: Path,
    files: list[tuple[str, str, str]],
    progress: Callable[[int, int], None] | None,
    local: tuple[str, Callable[[], bytes], str] | None = None,
) -> Path:
    """Fetch each (path under root, URL, sha256) not already valid; `local` is a file made here instead."""
    try:
        for folder in sorted({(root / rel).parent for rel, _, _ in files}):
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"cannot create benchmark directory {flat(root)} ({flat(exc.strerror or exc)}): "
            "pass a writable folder with --to or set PERSONAGYM_CACHE"
        ) from None

    total = len(files) + (local is not None)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    if local is not None:
        rel, make, digest = local
        if not _is_valid(root / rel, digest):
            _write_atomic(root, rel, make())
        tick()

    todo = []
    for rel, url, digest in files:
        if _is_valid(root / rel, digest):
            tick()
        else:
            todo.append((rel, url, digest))
    if not todo:
        return root

    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait  # a download's, like urllib (_fetch)

    stop = threading.Event()

    def fetch(rel: str, url: str, digest: str) -> None:
        if stop.is_set():
            return
        data = _fetch(url, rel, stop)
        if data is None:  # stopped because another file failed
            return
        if sha256(data) != digest:
            raise UserError(
                f"the download of {rel} from {url} failed its sha256 check (the server sent different content): "
                "run `personagym benchmark download` again later, or check the mirror given with --from"
            )
        _write_atomic(root, rel, data)

    with ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="personagym-download") as pool:
        pending = {pool.submit(fetch, *item) for item in todo}
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in finished:
                    future.result()  # raises the first failure
                    tick()
        except BaseException:
            stop.set()
            for future in pending:
                future.cancel()
            raise
    return root


def _is_valid(path: Path, expected: str) -> bool:
    try:
        return path.is_file() and sha256(path.read_bytes()) == expected
    except OSError:
        return False


def _write_atomic(root: Path, rel: str, data: bytes) -> None:
    """Write `data` to `root/rel`, whole or not at all, with an error that says which fix applies."""
    target = root / rel
    try:
        write_atomic(target, data)
    except OSError as exc:
        if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
            raise UserError(
                f"cannot write into benchmark directory {flat(root)} ({flat(exc.strerror or exc)}): "
                "pass a writable folder with --to or set PERSONAGYM_CACHE"
            ) from None
        raise UserError(
            f"cannot write benchmark file {flat(target)} ({flat(exc.strerror or exc)}): "
            "free some disk space or pass a writable folder with --to"
        ) from None


def _fetch(url: str, rel: str, stop: threading.Event) -> bytes | None:
    """GET `url`, retrying network errors, 429 and 5xx; a 4xx (e.g. 404) is a UserError at once."""
    # Here, not at the top: every benchmark run imports this module (for sha256), and urllib.request
    # with http.client is ~8 ms of CPU at its start that only a download uses.
    import http.client
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "personagym", "Accept-Encoding": "identity"})
    last_error = ""
    for attempt in range(RETRIES + 1):
        if attempt:
            if stop.wait(BACKOFF[min(attempt - 1, len(BACKOFF) - 1)]):
                return None
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                data = response.read(MAX_FILE_BYTES + 1)
            if len(data) > MAX_FILE_BYTES:
                raise UserError(
                    f"the download of {rel} from {url} is larger than {MAX_FILE_BYTES} bytes, so it is not a "
                    "benchmark file: check the mirror given with --from"
                )
            return data
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 429 or exc.code >= 500:
                last_error = f"HTTP {exc.code}"
                continue
            if exc.code == 404:
                raise UserError(
                    f"the server has no {rel} (HTTP 404 for {url}): check the mirror given with --from; the default is {UPSTREAM_RAW}"
                ) from None
            raise UserError(f"the download of {rel} was refused (HTTP {exc.code} for {url}): check the mirror given with --from") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:  # connection refused, reset, timeout, DNS...
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            last_error = flat(reason) or type(exc).__name__
            continue
    raise UserError(
        f"could not download {rel} from {url} after {RETRIES + 1} attempts ({last_error}): check your network "
        "connection and run `personagym benchmark download` again (finished files are kept)"
    )


def flat(value: object) -> str:
    """A value on one line, for an error message."""
    return " ".join(str(value).splitlines())
