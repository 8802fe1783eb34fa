"""Replace a file atomically and durably: temporary name, fsync, rename, fsync the folder.

Invariants:
- a reader of ``path`` sees the old content or the new content, never a mix, a truncated
  file or no file (``os.replace`` is atomic on POSIX filesystems);
- when ``replace_file`` returns, the new content and the rename are on disk (file fsynced,
  then its folder); folders it had to create are fsynced into their parents too;
- on failure the temporary file is removed and ``path`` is untouched;
- temporaries are named ``.<name>.<pid>.tmp`` in the target's folder: hidden, never matched
  by ``*.parquet``, and recognisable by ``is_temporary`` / ``temporary_pid`` for cleanup;
- inside ``deferred_sync()`` the same writes skip their fsyncs (still atomic for readers);
  the caller makes them durable at once with ``sync_filesystem`` before relying on them
  (the lake's files are derived from the journal, so a batch of them needs one sync, not
  one per file).
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

__all__ = [
    "TMP_SUFFIX",
    "atomic_write_bytes",
    "dead_temporaries",
    "deferred_sync",
    "file_size",
    "fsync_directory",
    "list_names",
    "make_dirs_durable",
    "pid_running",
    "replace_file",
    "replace_file_stat",
    "sync_filesystem",
    "temporary_path",
    "temporary_pid",
]

TMP_SUFFIX: Final = ".tmp"
_DEFERRED: contextvars.ContextVar[bool] = contextvars.ContextVar("deferred_sync", default=False)


@contextlib.contextmanager
def deferred_sync() -> Iterator[None]:
    """Within the block (this thread or task), file replacements skip their fsyncs."""
    token = _DEFERRED.set(True)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


def sync_filesystem(path: Path) -> None:
    """Make every write on ``path``'s filesystem durable: one ``syncfs`` (Linux), else a
    full ``sync``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _SYNCFS is None or _SYNCFS(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        function: Callable[[int], int] = ctypes.CDLL(name, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    return function


_SYNCFS: Final = _load_syncfs()


def temporary_path(path: Path) -> Path:
    """The temporary name this thread of this process uses while writing ``path``
    (``.<name>.t<thread>.<pid>.tmp``): threads writing the same file at once (the first
    writes to a new lake all create its placeholders) each rename their own complete file."""
    return path.with_name(f".{path.name}.t{threading.get_native_id()}.{os.getpid()}{TMP_SUFFIX}")


def temporary_pid(name: str) -> int | None:
    """The writer's pid encoded in a temporary's file name, or None if not one of ours."""
    if not (name.startswith(".") and name.endswith(TMP_SUFFIX)):
        return None
    pid = name.removesuffix(TMP_SUFFIX).rpartition(".")[2]
    return int(pid) if pid.isdigit() else None


def pid_running(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_temporaries(root: Path) -> Iterator[Path]:
    """Every temporary under ``root`` whose writer is no longer running. Never one of this
    process (a thread of it may be about to rename it) nor of another live process: safe
    beside running writers."""
    for folder, _dirs, files in os.walk(root):
        for name in files:
            pid = temporary_pid(name)
            if pid is not None and pid != os.getpid() and not pid_running(pid):
                yield Path(folder, name)


def list_names(folder: Path) -> list[str]:
    """The names in ``folder``; none if it is missing or not a folder."""
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []


def file_size(path: Path) -> int:
    """The size of ``path`` in bytes; 0 if it is missing."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def fsync_directory(directory: Path) -> None:
    """Make creations, renames and deletions in ``directory`` durable."""
    if _DEFERRED.get():
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs_durable(directory: Path) -> None:
    """``mkdir -p`` that fsyncs the parent of every folder it creates."""
    missing: list[Path] = []
    current = directory
    while not current.is_dir():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent writer made it first
            folder.mkdir()
        fsync_directory(folder.parent)


def replace_file(path: Path, write: Callable[[Path], None]) -> int:
    """Have ``write(tmp)`` create the new content at a temporary path, then swap it in.

    Returns the new file's size in bytes. Any OSError (ENOSPC, EACCES, EIO, ...) propagates
    after the temporary has been removed; ``path`` then still holds its old content.
    """
    return replace_file_stat(path, write).st_size


def replace_file_stat(path: Path, write: Callable[[Path], None]) -> os.stat_result:
    """``replace_file``, returning the new file's stat taken just before the rename (the
    identity it has at ``path`` until something replaces it)."""
    make_dirs_durable(path.parent)
    tmp = temporary_path(path)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            if not _DEFERRED.get():
                os.fsync(fd)
            stat = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_directory(path.parent)
    return stat


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably (for small state files)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    replace_file(Path(path), write)
