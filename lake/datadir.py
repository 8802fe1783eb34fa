"""Every path under the data directory (``--data``), named once, and its writer's lock.

::

    data/
      journal/                 raw frames, checksummed segments (recorder.journal)
        journal.lock           the writer's lock: a recorder, replay or import holds it
      ticks/                   the minute tier: ticker=/date=/minute=/part.parquet (lake.layout)
        .deleting/             minute folders a compaction retired, until readers let go
      deltas/                  the open edge: one file per flush, fold markers (lake.deltas)
      history/                 the day tier: ticker=/date=/part.parquet (lake.history)
                               .offloaded.json in a date folder: the day is in the object
                               store (lake.offload)
        .lock                  compaction's lock
      state/seal.json          seal watermark, applied journal seq, late windows (lake.seal)
      state/sessions.jsonl     connection sessions (lake.sessions)
      state/imports.json       imports begun and finished (lake.importer)
      state/analytics.json     the features job's progress (analytics.plan)
      state/analytics.lock     the features job's lock (analytics.job)
      state/maintenance.json   what the last maintenance run did (lake.maintenance)
      state/maintenance.lock   held while a maintenance run works (lake.maintenance)
      state/recorder.json      the running recorder: PID, start, last frame per connection
                               (recorder.state; stale once the writer's lock is free)
      state/lake_url.json      the object store this directory offloads days to (lake.remote)
      quarantine.jsonl         bad frames and refused symbols (lake.quarantine)
      quarantine/              damaged journal bytes (recorder.journal_recovery) and damaged
                               lake files moved aside by ``verify --repair``
      ticklake.duckdb          the features database (analytics.database)

Invariants:
- the names below are relative to the data directory and never change without a migration:
  existing data directories must keep working;
- one process at a time holds the writer's lock (an ``flock`` on ``journal/journal.lock``,
  holding the holder's PID); closing the descriptor (or dying) releases it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import Final

JOURNAL_DIR: Final = "journal"
JOURNAL_LOCK: Final = "journal.lock"
TICKS_DIR: Final = "ticks"
HISTORY_DIR: Final = "history"
DELTAS_DIR: Final = "deltas"
TRASH_DIR: Final = ".deleting"
HISTORY_LOCK: Final = ".lock"
STATE_DIR: Final = "state"
SEAL_FILE: Final = Path(STATE_DIR, "seal.json")
SESSIONS_FILE: Final = Path(STATE_DIR, "sessions.jsonl")
IMPORTS_FILE: Final = Path(STATE_DIR, "imports.json")
ANALYTICS_STATE_FILE: Final = Path(STATE_DIR, "analytics.json")
ANALYTICS_LOCK_FILE: Final = Path(STATE_DIR, "analytics.lock")
MAINTENANCE_FILE: Final = Path(STATE_DIR, "maintenance.json")
MAINTENANCE_LOCK: Final = Path(STATE_DIR, "maintenance.lock")
RECORDER_STATE_FILE: Final = Path(STATE_DIR, "recorder.json")
LAKE_URL_FILE: Final = Path(STATE_DIR, "lake_url.json")
QUARANTINE_DIR: Final = "quarantine"
QUARANTINE_FILE: Final = "quarantine.jsonl"
DATABASE_FILE: Final = "ticklake.duckdb"


def journal_dir(data: Path | str) -> Path:
    return Path(data, JOURNAL_DIR)


def seal_file(data: Path | str) -> Path:
    return Path(data, SEAL_FILE)


def sessions_file(data: Path | str) -> Path:
    return Path(data, SESSIONS_FILE)


def database_file(data: Path | str) -> Path:
    return Path(data, DATABASE_FILE)


def writer_lock_holder(data: Path | str) -> int | None:
    """The PID holding the writer's lock of ``data``; None when nobody holds it.

    Probes with a shared ``flock`` taken and dropped at once, so it never waits and creates
    nothing. A writer starting in that very microsecond is refused as if another one ran
    (DataLockedError). A held lock whose file does not name a PID yet answers 0.
    """
    try:
        fd = os.open(journal_dir(data) / JOURNAL_LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class DataLockedError(Exception):
    """Another process holds the data directory's writer lock; the message names its PID."""


class WriterLock:
    """The exclusive lock of one data directory's writer (recorder, replay or import).

    ``with WriterLock.acquire(journal_dir(data)):`` ... Raises :class:`DataLockedError` at
    once when another process holds it; never waits.
    """

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, folder: Path) -> WriterLock:
        """Lock ``folder/journal.lock`` (``folder`` must exist) and write our PID into it."""
        fd = os.open(folder / JOURNAL_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DataLockedError(
                f"journal {folder} is open for writing by process {holder}; stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock (closing the descriptor drops the flock). Idempotent."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
