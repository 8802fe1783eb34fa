"""Minute files this process wrote lately, kept in memory under the identity they were
written with, so the same process can use them again without reading them.

The lake writer remembers every minute file it writes: the table, and the file's
(inode, mtime, size) taken from the temporary just before it was renamed into place. A
reader of this process that finds the file with exactly that identity gets the table
back instead of reading the file: the per-minute job running inside ``ticklake record``
gets the minutes the recorder just flushed, and the writer merges new ticks into the
file it wrote a cycle ago without reading it back.

Invariants: a table is only ever served for the identity of the file it was written as;
any later change of the file (another process replaced it, compaction removed it, a
restore copied it back) changes that identity (a new inode at least), so a stale table is
never served. Each table is held as one serialized Arrow record batch (one buffer, read
back zero-copy): the tables themselves, dozens of small buffers each, would cost several
times their size in RSS (README, Benchmarks: peak RSS). Memory is bounded by
``max_bytes``, oldest dropped first. A process that reads what another process wrote
(``ticklake analyze`` beside a recorder) simply finds nothing here and reads the files.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.ipc

from lake.remote import RemoteDay

__all__ = ["RECENT", "FileKey", "RecentFiles", "file_key", "key_of"]

FileKey = tuple[int, int, int]

MAX_BYTES: Final = 24 << 20  # sized to hold the last two minutes of 500 tickers at ~1 tick/s


def key_of(stat: os.stat_result) -> FileKey:
    """A file's identity: (inode, mtime in ns, size); an atomic replace changes it."""
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def file_key(path: Path | str | RemoteDay) -> FileKey | None:
    """The identity of the file at ``path``, None if it does not exist (an object of the
    object store: its ``RemoteDay.identity``)."""
    if isinstance(path, RemoteDay):
        return path.identity
    try:
        return key_of(os.stat(path))
    except FileNotFoundError:
        return None


class RecentFiles:
    """Tables of recently written files by path, each with the file's identity."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[FileKey, pa.Buffer, pa.Schema]] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def remember(self, path: Path | str, key: FileKey, table: pa.Table) -> None:
        """``table`` is the content of the file ``path`` written with identity ``key``."""
        if not self.max_bytes:  # switched off (a process whose readers live elsewhere)
            return
        name = os.fspath(path)
        batches = table.combine_chunks().to_batches()  # none when empty: not held
        data = batches[0].serialize() if len(batches) == 1 else None
        with self._lock:
            self._drop(name)
            if data is None or data.size > self.max_bytes:
                return
            self._entries[name] = (key, data, table.schema)
            self._bytes += data.size
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))

    def get(self, path: Path | str, key: FileKey | None) -> pa.Table | None:
        """The table written as ``path`` if the file still has identity ``key``."""
        name = os.fspath(path)
        with self._lock:
            entry = self._entries.get(name)
            if entry is None or key is None or entry[0] != key:
                self.misses += 1
                return None
            self.hits += 1
        batch = pa.ipc.read_record_batch(entry[1], entry[2])
        return pa.Table.from_batches([batch])

    def forget(self, path: Path | str) -> None:
        with self._lock:
            self._drop(os.fspath(path))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, name: str) -> None:
        entry = self._entries.pop(name, None)
        if entry is not None:
            self._bytes -= entry[1].size


RECENT: Final = RecentFiles()
