"""The journal: a durable, checksummed, segmented, append-only log of raw frames (contract 1).

Every frame is appended with its receive time and the next sequence number before anything
else happens to it; the lake is rebuilt by replaying what it has not applied yet. The byte
format (header, records with a ``zlib.crc32``, footer, ``.seg.zst``) is in ``segment.py``.

Invariants:
- seqs start at 1 and rise by exactly 1 across segments and restarts; a segment is named
  after its first seq. Only one process writes a journal (``journal.lock``, an ``flock``).
- Each writer process starts a new segment (created on its first append), so nothing is ever
  appended after a cut tail. A segment is rotated before a record would push it past
  ``segment_bytes`` (a bigger single record or batch gets a segment of its own); a rotated
  or closed segment gets a footer and is fsynced, whatever the policy.
- On ``open`` the newest segment is scanned (``journal_recovery``): a torn tail (nothing
  valid after it, no footer) is truncated and fsynced, logged and listed in ``repairs``;
  damage followed by valid records (or by the footer: a closed segment has no torn tail) is
  moved to ``<data>/quarantine/`` and listed in ``quarantined``, and every valid record is
  kept; an emptied segment is deleted.
- A seq is never reused: ``next_seq`` is above every seq the journal holds or a footer
  names, and at least ``min_next_seq`` (the caller's floor: the seal's and the lake's seqs,
  ``journal_recovery.lake_seq_floor``); a floor above the journal is logged
  (``event=journal_behind_seal``) and leaves a gap of missing seqs.
- Reading never modifies a byte (``open_reader`` takes no lock and writes nothing). Older
  segments are checked when read: damaged bytes are skipped and every valid record after
  them is still yielded; the skipped ranges are logged in one line per read and listed in
  ``skipped`` (``journal_read``). ``strict=True`` raises JournalCorruptError at the first
  damage instead, naming segment and offset, after every valid record before it.
- ``prune`` deletes oldest segments only, never one holding a seq above the caller's
  applied seq, never the open segment and never the newest closed one (it carries the seq
  counter across a restart whose new segment was still empty).

What a crash can lose (``written_seq`` = handed to the OS, ``durable_seq`` = fsynced):
- ``ALWAYS``: each append is written and fsynced before it returns. SIGKILL and power loss
  lose nothing that append returned for.
- ``GROUP`` (default): appends fill an in-process buffer, written out at 1 MiB, on
  ``flush()``/``sync()`` and at rotation; the owner calls ``sync()`` (flush + fsync) every
  ``group_commit_ms`` (``run_group_commit`` does so from a worker thread). SIGKILL loses the
  frames appended since the last flush (at most one interval); power loss loses the frames
  after ``durable_seq`` (at most one interval plus the fsync time).
- ``OS``: each append is written to the OS before it returns; fsync only at rotation and
  close (``sync()`` only flushes). SIGKILL loses nothing returned; power loss loses frames
  written since the last rotation (in practice the kernel's writeback delay, ~30 s).

A write error (ENOSPC, EACCES, ...) raises JournalWriteError and rejects the frame(s) of that
call; bytes of a partial write are truncated away, so appending resumes once space returns.
A failed fsync stops the journal (Linux may have dropped the pages): reopen it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from lake.atomic import fsync_directory
from lake.datadir import DataLockedError, WriterLock
from lake.logfmt import logfmt
from recorder.durations import Durations
from recorder.journal_read import ReadOptions, RecordRange, read_batches
from recorder.journal_recovery import QUARANTINE_DIR, recover_journal
from recorder.segment import (
    CRC,
    FOOTER,
    RECORD_HEAD,
    DamagedRange,
    JournalCorruptError,
    JournalError,
    JournalRecord,
    JournalRepair,
    SegmentRef,
    compress_segment,
    encode_footer,
    encode_header,
    list_segments,
    prune_candidates,
    read_summary,
    segment_name,
)

if TYPE_CHECKING:
    from lake.clock import Clock

__all__ = [
    "DamagedRange",
    "FsyncPolicy",
    "Journal",
    "JournalConfig",
    "JournalCorruptError",
    "JournalError",
    "JournalLockedError",
    "JournalRecord",
    "JournalRepair",
    "JournalWriteError",
    "prune_segments",
]

log = logging.getLogger(__name__)
FLUSH_BYTES = 1 << 20
_pack_head, _pack_crc, _crc32 = RECORD_HEAD.pack, CRC.pack, zlib.crc32


class JournalWriteError(JournalError):
    """The journal could not write or fsync a segment; the message names path and reason."""

    @classmethod
    def from_os(cls, path: Path, exc: OSError) -> JournalWriteError:
        reason = exc.strerror or str(exc)
        return cls(f"cannot write journal {path}: {reason} (errno {exc.errno})")


class JournalLockedError(JournalError, DataLockedError):
    """Another process has the journal open for writing."""


class FsyncPolicy(StrEnum):
    ALWAYS = "always"
    GROUP = "group"
    OS = "os"


@dataclass(frozen=True, slots=True)
class JournalConfig:
    fsync: FsyncPolicy = FsyncPolicy.GROUP
    segment_bytes: int = 64 << 20
    group_commit_ms: int = 200

    def __post_init__(self) -> None:
        if self.segment_bytes < 4096 or self.group_commit_ms <= 0:
            raise ValueError("journal segment_bytes must be >= 4096 and group_commit_ms > 0")


class SegmentFile(Protocol):
    """The write layer under the journal (a raw ``FileIO`` unless a test injects another)."""

    def write(self, data: bytes | bytearray, /) -> int | None: ...
    def truncate(self, size: int, /) -> int: ...
    def seek(self, offset: int, whence: int = 0, /) -> int: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...


def prune_segments(
    directory: Path, older_than_us: int, keep_after_seq: int, open_first_seq: int | None = None
) -> list[Path]:
    """``Journal.prune`` for a caller holding the writer's lock without opening the journal
    (``ticklake maintain``): the same rule, :func:`recorder.segment.prune_candidates`, with
    ``open_first_seq`` the open segment's first seq (None: no writer has one open)."""
    removed: list[Path] = []
    for ref in prune_candidates(list_segments(directory), open_first_seq):
        summary = read_summary(ref)
        if summary is None or summary.max_received_us >= older_than_us:
            break
        if summary.last_seq > keep_after_seq:
            break
        ref.path.unlink()
        removed.append(ref.path)
        log.info("event=journal_segment_pruned segment=%s last_seq=%d", ref.path, summary.last_seq)
    if removed:
        fsync_directory(directory)
    return removed


def _create_file(path: Path) -> SegmentFile:
    return open(path, "xb", buffering=0)  # the journal closes it


class Journal:
    """A journal directory opened for appending (``open``) or for reading only (``open_reader``)."""

    def __init__(self, directory: Path, config: JournalConfig, writable: bool) -> None:
        self.directory, self.config, self.writable = directory, config, writable
        self.repairs: tuple[JournalRepair, ...] = ()  # torn tails cut on open
        self.quarantined: tuple[DamagedRange, ...] = ()  # damage moved to quarantine on open
        self.skipped: list[DamagedRange] = []  # damage the reads of this object skipped
        self.fsync_seconds = Durations()  # every fsync of a segment, for the metrics
        self._open_file: Callable[[Path], SegmentFile] = _create_file
        self._writer_lock: WriterLock | None = None
        self._file: SegmentFile | None = None
        self._active_first: int | None = None  # first seq of the open segment
        self._seg_path = directory
        self._seg_count = self._seg_min = self._seg_max = self._file_size = 0
        self._buf = bytearray()
        self._buf_limit = 0  # append's fast path may grow the buffer up to this
        self._next_seq = self._written_seq = self._durable_seq = 1
        self._stopped: str | None = None

    @classmethod
    def open(
        cls,
        directory: Path | str,
        config: JournalConfig | None = None,
        *,
        min_next_seq: int = 1,
        quarantine: Path | None = None,
        open_file: Callable[[Path], SegmentFile] | None = None,
    ) -> Journal:
        """Lock the journal, recover its newest segment (``repairs``, ``quarantined``) and get
        ready to append at a seq at least ``min_next_seq``. Damaged bytes go to
        ``quarantine`` (default: ``quarantine/`` beside the journal's folder, which is
        ``<data>/quarantine/`` for ``<data>/journal``)."""
        journal = cls(Path(directory), config or JournalConfig(), writable=True)
        journal._open_file = open_file or _create_file
        try:
            journal.directory.mkdir(parents=True, exist_ok=True)
            journal._lock()
            journal._recover(min_next_seq, quarantine or journal.directory.parent / QUARANTINE_DIR)
        except OSError as exc:
            journal._unlock()
            raise JournalWriteError.from_os(journal.directory, exc) from exc
        except BaseException:
            journal._unlock()
            raise
        return journal

    @classmethod
    def open_reader(cls, directory: Path | str) -> Journal:
        """Read-only view; safe beside a running writer; never modifies, creates or locks a
        file, whatever damage it reads past."""
        return cls(Path(directory), JournalConfig(), writable=False)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def written_seq(self) -> int:
        """Highest seq handed to the OS (survives SIGKILL)."""
        return self._written_seq

    @property
    def durable_seq(self) -> int:
        """Highest seq known fsynced (survives power loss)."""
        return self._durable_seq

    # -- appending -----------------------------------------------------------------------

    def append(self, frame: str, received_at_us: int) -> int:
        """Journal one frame; returns its seq. The hot path: no syscall under GROUP."""
        payload = frame.encode()
        seq = self._next_seq
        head = _pack_head(len(payload), seq, received_at_us)
        record = head + payload + _pack_crc(_crc32(payload, _crc32(head)))
        if len(self._buf) + len(record) > self._buf_limit:
            return self._commit(record, 1, received_at_us).start
        self._buf += record
        self._next_seq = seq + 1
        self._seg_count += 1
        if received_at_us < self._seg_min:
            self._seg_min = received_at_us
        if received_at_us > self._seg_max:
            self._seg_max = received_at_us
        return seq

    def append_many(self, frames: Sequence[str], received_at_us: int) -> range:
        """Journal frames received together, as one write; returns their seqs."""
        parts: list[bytes] = []
        seq = self._next_seq
        for frame in frames:
            payload = frame.encode()
            head = _pack_head(len(payload), seq, received_at_us)
            parts += (head, payload, _pack_crc(_crc32(payload, _crc32(head))))
            seq += 1
        if not parts:
            return range(seq, seq)
        return self._commit(b"".join(parts), len(frames), received_at_us)

    def _commit(self, records: bytes, count: int, received_at_us: int) -> range:
        self._require_writable()
        end = self._file_size + len(self._buf) + len(records) + FOOTER.size
        if self._file is not None and self._seg_count and end > self.config.segment_bytes:
            self._close_segment()
        if self._file is None:
            self._start_segment()
        elif self._buf and len(self._buf) + len(records) > FLUSH_BYTES:
            self._write_buffer()
        mark = len(self._buf)
        self._buf += records
        if self.config.fsync is not FsyncPolicy.GROUP:
            try:
                self._write_buffer()
            except JournalWriteError:
                del self._buf[mark:]
                raise
        first = self._next_seq
        self._next_seq += count
        self._seg_count += count
        self._seg_min = min(self._seg_min, received_at_us)
        self._seg_max = max(self._seg_max, received_at_us)
        if self.config.fsync is not FsyncPolicy.GROUP:
            self._written_seq = self._next_seq - 1
        if self.config.fsync is FsyncPolicy.ALWAYS:
            self._fsync()
        self._set_buf_limit()
        return range(first, self._next_seq)

    def flush(self) -> None:
        """Hand buffered frames to the OS (no fsync): afterwards a SIGKILL loses none of them."""
        self._require_writable()
        self._write_buffer()
        self._written_seq = self._next_seq - 1

    def sync(self) -> None:
        """Flush, then fsync unless the policy is OS; advances ``durable_seq``."""
        self.flush()
        if self.config.fsync is not FsyncPolicy.OS and self._durable_seq < self._written_seq:
            self._fsync()

    async def sync_in_thread(self) -> None:
        """``sync()`` with the fsync in a worker thread, so the event loop keeps appending."""
        self.flush()
        if self.config.fsync is FsyncPolicy.OS or self._durable_seq >= self._written_seq:
            return
        if self._file is None:  # rotation or close already fsynced everything written
            self._durable_seq = self._written_seq
            return
        target, fd = self._written_seq, os.dup(self._file.fileno())  # rotation may close ours
        try:
            with self.fsync_seconds.timed():
                await asyncio.to_thread(os.fsync, fd)
        except OSError as exc:
            self._stop(f"fsync failed: {exc}")
            raise JournalWriteError.from_os(self._seg_path, exc) from exc
        finally:
            os.close(fd)
        self._durable_seq = max(self._durable_seq, target)

    async def run_group_commit(self, clock: Clock) -> None:
        """Until cancelled or closed: ``sync_in_thread()`` every ``group_commit_ms``."""
        failures, since = 0, 0.0  # a lasting fault (a full disk) is logged once, then healed
        while self._writer_lock is not None:
            await clock.sleep(self.config.group_commit_ms / 1000)
            if self._writer_lock is None:
                return
            try:
                await self.sync_in_thread()
            except JournalWriteError as exc:
                if not failures:
                    since = clock.now()
                    log.error("event=journal_group_commit_failed error=%s", logfmt(exc))
                failures += 1
                continue
            if failures:
                log.warning(
                    "event=journal_group_commit_recovered failures=%d outage_s=%.1f",
                    failures,
                    clock.now() - since,
                )
                failures = 0

    def close(self) -> None:
        """Flush, footer, fsync and close the open segment; release the lock. Idempotent."""
        try:
            if self._writer_lock is not None and self._stopped is None:
                self._close_segment()
        finally:
            if self._file is not None:
                self._file.close()
                self._file = None
            self._unlock()
            self._buf_limit = 0

    # -- reading -------------------------------------------------------------------------

    def iter_records(
        self,
        start_seq: int = 1,
        end_seq: int | None = None,
        *,
        batch_size: int = 10_000,
        strict: bool = False,
    ) -> Iterator[list[JournalRecord]]:
        """Records with ``start_seq <= seq < end_seq`` in seq order, in batches; damage on
        the way is skipped and added to ``skipped`` (``strict``: raised)."""
        stop = end_seq if end_seq is not None else 1 << 64
        refs, tail = self._readable_segments()
        wanted = [
            index
            for index, ref in enumerate(refs)
            if ref.first_seq < stop
            and (index + 1 == len(refs) or refs[index + 1].first_seq > start_seq)
        ]
        selected = RecordRange(start_seq, stop)
        options = ReadOptions(batch_size, strict, open_tail=tail)
        return read_batches(refs, wanted, selected, options, self.skipped)

    def iter_records_between(
        self, start_us: int, end_us: int, *, batch_size: int = 10_000, strict: bool = False
    ) -> Iterator[list[JournalRecord]]:
        """Records received in ``[start_us, end_us)`` in seq order; skips segments by footer."""
        refs, tail = self._readable_segments()
        wanted = []
        for index, ref in enumerate(refs):
            summary = read_summary(ref)
            if summary is None or (
                summary.max_received_us >= start_us and summary.min_received_us < end_us
            ):
                wanted.append(index)
        selected = RecordRange(window=(start_us, end_us))
        options = ReadOptions(batch_size, strict, open_tail=tail)
        return read_batches(refs, wanted, selected, options, self.skipped)

    def _readable_segments(self) -> tuple[list[SegmentRef], bool]:
        """The segments, and whether the newest may be growing in another process."""
        if self._writer_lock is not None and self._stopped is None:
            self.flush()  # the writer reads its own appends
        return list_segments(self.directory), not self.writable

    # -- retention -----------------------------------------------------------------------

    def prune(self, older_than_us: int, keep_after_seq: int) -> list[Path]:
        """Delete the oldest closed segments whose records all precede ``older_than_us`` and
        whose seqs are all ``<= keep_after_seq``; stops at the first that does not qualify."""
        self._require_writable()
        return prune_segments(self.directory, older_than_us, keep_after_seq, self._active_first)

    def compress_closed(self) -> list[Path]:
        """Compress every closed ``.seg`` to ``.seg.zst``; returns the new files. Thread-safe
        beside appends (run it with ``asyncio.to_thread``), not beside ``prune``."""
        self._require_writable()
        made = []
        for ref in list_segments(self.directory):
            if ref.compressed or ref.first_seq == self._active_first:
                continue
            try:
                made.append(compress_segment(ref))
            except JournalCorruptError as exc:
                log.error("event=journal_compress_skipped error=%r", str(exc))
            except OSError as exc:
                raise JournalWriteError.from_os(ref.path, exc) from exc
        return made

    # -- internals -----------------------------------------------------------------------

    def _require_writable(self) -> None:
        if not self.writable:
            raise JournalError(f"journal {self.directory} was opened read-only")
        if self._writer_lock is None:
            raise JournalError(f"journal {self.directory} is closed")
        if self._stopped is not None:
            raise JournalWriteError(
                f"journal {self.directory} stopped after an error ({self._stopped}); reopen it"
            )

    def _stop(self, reason: str) -> None:
        self._stopped, self._buf_limit = reason, 0
        log.error("event=journal_stopped dir=%s reason=%r", self.directory, reason)

    def _set_buf_limit(self) -> None:
        fast = self._file is not None and self.config.fsync is FsyncPolicy.GROUP
        room = self.config.segment_bytes - FOOTER.size - self._file_size
        self._buf_limit = min(FLUSH_BYTES, room) if fast and self._stopped is None else 0

    def _write_buffer(self) -> None:
        """Write the whole buffer; on error cut any partial write and keep the buffer."""
        buf, file = self._buf, self._file
        if not buf or file is None:
            return
        done = 0
        try:
            while done < len(buf):
                written = file.write(buf if done == 0 else buf[done:])
                if not written:
                    raise OSError(errno.EIO, "write made no progress")
                done += written
        except OSError as exc:
            try:
                file.truncate(self._file_size)
                file.seek(self._file_size)
            except OSError as cut:
                self._stop(f"could not cut a partial write: {cut}")
            self._set_buf_limit()
            raise JournalWriteError.from_os(self._seg_path, exc) from exc
        self._file_size += done
        buf.clear()

    def _fsync(self) -> None:
        if self._file is None:
            return
        try:
            with self.fsync_seconds.timed():
                os.fsync(self._file.fileno())
        except OSError as exc:
            self._stop(f"fsync failed: {exc}")
            raise JournalWriteError.from_os(self._seg_path, exc) from exc
        self._durable_seq = self._written_seq

    def _start_segment(self) -> None:
        path = self.directory / segment_name(self._next_seq)
        self._active_first = self._next_seq  # before the file exists: compress_closed skips it
        try:
            self._file = self._open_file(path)
        except OSError as exc:
            self._active_first = None
            raise JournalWriteError.from_os(path, exc) from exc
        self._seg_path = path
        self._seg_count = self._file_size = 0
        self._seg_min, self._seg_max = 1 << 63, -(1 << 63)
        self._buf += encode_header(self._next_seq)
        try:
            fsync_directory(self.directory)
        except OSError as exc:
            raise JournalWriteError.from_os(self.directory, exc) from exc

    def _close_segment(self) -> None:
        """Footer, fsync and close the open segment (delete it if it holds no record)."""
        file = self._file
        if file is None:
            return
        if self._seg_count == 0:
            file.close()
            self._seg_path.unlink(missing_ok=True)
            self._buf.clear()
        else:
            self._write_buffer()
            self._buf += encode_footer(self._next_seq - 1, self._seg_min, self._seg_max)
            try:
                self._write_buffer()
            except JournalWriteError:
                self._buf.clear()
                raise
            self._written_seq = self._next_seq - 1
            self._fsync()
            file.close()
        self._file = self._active_first = None
        self._set_buf_limit()

    def _lock(self) -> None:
        try:
            self._writer_lock = WriterLock.acquire(self.directory)
        except DataLockedError as exc:
            raise JournalLockedError(str(exc)) from None

    def _unlock(self) -> None:
        if self._writer_lock is not None:
            self._writer_lock.release()
            self._writer_lock = None

    def _recover(self, min_next_seq: int, quarantine: Path) -> None:
        """Recover the newest segment (``journal_recovery``); set next_seq above the floor."""
        found = recover_journal(self.directory, quarantine)
        self.repairs, self.quarantined = tuple(found.repairs), tuple(found.damage)
        next_seq = max(found.next_seq, min_next_seq)
        if next_seq > found.next_seq:
            log.warning(
                "event=journal_behind_seal dir=%s journal_next_seq=%d next_seq=%d seqs_missing=%d",
                self.directory,
                found.next_seq,
                next_seq,
                next_seq - found.next_seq,
            )
        self._next_seq = next_seq
        self._written_seq = self._durable_seq = next_seq - 1
        log.info(
            "event=journal_open dir=%s next_seq=%d repairs=%d quarantined=%d",
            self.directory,
            next_seq,
            len(self.repairs),
            len(self.quarantined),
        )
