"""Writing a file so that a reader sees the old content or the new, never half of it.

The new content goes into a temporary file in the target's own folder (a rename is atomic only
within one filesystem), is flushed to disk, and is renamed over the target. On any failure, Ctrl-C
included, the temporary file is removed and the target is left as it was.
"""

from __future__ import annotations

import os
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from personagym.errors import UserError

# What SQLite may create beside a database file while it is open.
_SIDECARS = ("-wal", "-shm", "-journal")


def write_atomic(target: str | Path, data: bytes | str) -> None:
    """Replace `target` with `data` (text is written as strict UTF-8, with no newline translation).

    A target that is a device or a pipe (/dev/stdout, a FIFO) is written into, not replaced: there is
    no old content to keep, and renaming over it would replace the device itself.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    target = Path(target)
    if _kind(target) == "special":
        try:
            with open(target, "wb") as fh:
                fh.write(payload)
        except OSError as exc:
            raise _write_error(target, exc) from exc
        return
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
    try:
        tmp = _new_file(target)
    except OSError as exc:  # a read-only or full disk, a folder we may not write
        raise _write_error(target, exc) from exc
    try:
        try:
            yield tmp
            _fsync(tmp)
            os.replace(tmp, target)
        except BaseException as exc:
            _remove(tmp)
            if isinstance(exc, OSError):
                raise _write_error(target, exc) from exc
            raise
        _fsync_folder(target.parent)
    finally:
        # After the rename nothing can open the old name again, so its journals are only litter.
        for suffix in _SIDECARS:
            _remove(Path(f"{tmp}{suffix}"))


def _kind(path: Path) -> str:
    """"absent", "folder", "file" or "special" (a device, pipe or socket)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return "absent"  # or unreadable: the write itself will say why
    if stat.S_ISDIR(mode):
        return "folder"
    return "file" if stat.S_ISREG(mode) else "special"


def _write_error(target: Path, exc: OSError) -> OSError:
    """The same error, naming the target rather than our temporary file (the CLI turns a full or
    read-only disk into one line with the fix)."""
    if exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), str(target))


def _new_file(target: Path) -> Path:
    """An empty file of a fresh name beside `target`.

    Created with mode 0o666 for the kernel to apply the umask (and any default ACL of the folder),
    as for any new file: mkstemp's private 0o600 would need a chmod, and reading the umask means
    setting it, which races with other threads creating files.
    """
    folder = target.parent
    kind = _kind(target)
    if kind == "folder":
        raise UserError(f"{target} is a folder, not a file: pass the path of a file to write")
    if kind == "special":
        raise UserError(f"{target} is a device or pipe, not a file: pass the path of a file to write")
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
