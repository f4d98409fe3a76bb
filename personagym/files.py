"""Writing a file so that a reader sees the old content or the new, never half of it.

The new content goes into a temporary file in the target's own folder (a rename is atomic only
within one filesystem), is flushed to disk, and is renamed over the target. On any failure, Ctrl-C
included, the temporary file is removed and the target is left as it was.
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from personagym.errors import UserError

# What SQLite may create beside a database file while it is open.
_SIDECARS = ("-wal", "-shm", "-journal")


def write_atomic(target: str | Path, data: bytes | str) -> None:
    """Replace `target` with `data` (text is written as strict UTF-8, with no newline translation)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(payload)


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target` to build the new file in (e.g. a SQLite database);
    when the block ends without error it is flushed and renamed over `target`.

    Whatever wrote into the path must have closed it by then. On failure the path is removed with
    any SQLite journal beside it.
    """
    target = Path(target)
    tmp = _new_file(target)
    try:
        try:
            yield tmp
            _fsync(tmp)
            os.replace(tmp, target)
        except BaseException:
            _remove(tmp)
            raise
        _fsync_folder(target.parent)
    finally:
        # After the rename nothing can open the old name again, so its journals are only litter.
        for suffix in _SIDECARS:
            _remove(Path(f"{tmp}{suffix}"))


def _new_file(target: Path) -> Path:
    """An empty file of a fresh name beside `target`.

    Created with mode 0o666 for the kernel to apply the umask (and any default ACL of the folder),
    as for any new file: mkstemp's private 0o600 would need a chmod, and reading the umask means
    setting it, which races with other threads creating files.
    """
    folder = target.parent
    if target.is_dir():
        raise UserError(f"{target} is a folder, not a file: pass the path of a file to write")
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise UserError(f"cannot write {target}: the folder {folder} {problem}; create it or choose another path")
    stem = target.name[:40]  # even in 4-byte characters, well within the usual 255-byte name limit
    for _attempt in range(100):
        tmp = folder / f".{stem}.{secrets.token_hex(6)}.part"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"no free temporary name beside {target} after 100 tries")


def _remove(path: Path) -> None:
    """Remove a temporary file if it is there; a failure to tidy up must not hide the error that
    made us tidy up."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable. Best effort: some platforms and filesystems refuse to
    open or sync a folder, and the rename has happened by then either way."""
    try:
        _fsync(folder)
    except OSError:
        pass
