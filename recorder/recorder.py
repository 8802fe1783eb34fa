"""``ticklake record``: feed -> journal -> lake, for weeks, crash after crash.

The receive path does one thing per batch of frames: append them to the journal (contract 1)
and keep them in a bounded in-memory backlog. Everything else happens in *cycles*, every
``flush_interval`` and at every seal deadline (minute end + lateness): the journal is made
durable up to the backlog's last seq, the backlog is decoded and appended to the lake as one
delta in a worker thread (``lake.deltas``), and when minutes seal, a *fold* writes each
sealed (ticker, minute) file once from the deltas, syncs them once, publishes a fold marker
for readers and the seal watermark for analytics. The recorder's work grows with the ticks
it stores, not with tickers x flushes.

Invariants:
- nothing reaches the lake before it is fsynced in the journal, so a seq seen in the lake is
  never reused after a crash;
- a frame the journal rejects (a full disk) is dropped, counted and logged once per outage,
  and recording goes on: the journal resumes by itself once space returns;
- the receive path never waits on Parquet: a slow disk grows the backlog; past
  ``max_backlog`` frames or ``max_backlog_mb`` of frame text (counting the backlog the cycle
  in flight holds) the backlog is dropped from memory and the next cycle reads those frames
  back from the journal (logged as ``event=backlog_overflow``); memory stays bounded;
- at start, every journaled frame after the seal's ``applied_seq`` (every row up to it is
  in the lake's files) is replayed straight into the minute files, so a crash loses nothing
  the journal kept; deltas are not synced, the journal is their durable copy;
- the watermark is published only after every frame received before the cycle began is in
  the lake's files, synced;
- stopping never drains a backlog: the journal is synced, a small backlog is flushed as a
  delta, and whatever else is left is replayed by the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lake import failpoints
from lake.clock import Clock, SystemClock
from lake.compact import DEFAULT_GRACE_S
from lake.datadir import JOURNAL_DIR, SESSIONS_FILE
from lake.deltas import Delta, Fold, ensure_deltas_dir, latest_fold, prune, publish_fold
from lake.errors import LakeError, LakeStopped
from lake.minutes import clean_temporaries
from lake.quarantine import Quarantine
from lake.seal import load_seal, save_seal, watermark_at
from lake.sessions import SessionLog
from lake.utc import DAY_S, HOUR_MS, MINUTE_MS
from recorder.feed import Feed, FeedConfig
from recorder.ingest import Ingest, IngestStats, record_columns
from recorder.journal import FsyncPolicy, Journal, JournalConfig, JournalError, JournalWriteError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecorderConfig:
    data: Path
    tickers: tuple[str, ...]
    fsync: FsyncPolicy = FsyncPolicy.GROUP
    group_commit_ms: int = 200
    flush_interval: float = 5.0
    lateness: float = 10.0
    recompute_horizon: float = DAY_S
    journal_retention_days: float = 30.0
    compress_journal: bool = True
    max_backlog: int = 500_000
    max_backlog_mb: float = 256.0
    stop_flush_frames: int = 50_000  # at stop, a backlog up to this is flushed; more waits
    feed: FeedConfig = field(default_factory=FeedConfig)


@dataclass
class _Backlog:
    frames: list[str | bytes] = field(default_factory=list)
    seqs: list[range] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    size: int = 0  # characters of frame text held

    def __len__(self) -> int:
        return len(self.frames)


class Recorder:
    """One recording process over one data directory; :meth:`run` until :meth:`stop`."""

    def __init__(self, config: RecorderConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        data = config.data
        data.mkdir(parents=True, exist_ok=True)
        self.journal = Journal.open(
            data / JOURNAL_DIR,
            JournalConfig(fsync=config.fsync, group_commit_ms=config.group_commit_ms),
        )
        for repair in self.journal.repairs:
            log.warning("event=journal_repaired %s", repair)
        removed = clean_temporaries(data)
        if removed:
            log.info("event=temporaries_removed count=%d", removed)
        self.seal = load_seal(data)
        self.quarantine = Quarantine(data)
        self.ingest = Ingest(data, self.seal, self.quarantine)
        (data / SESSIONS_FILE).parent.mkdir(parents=True, exist_ok=True)
        self.sessions = SessionLog(data / SESSIONS_FILE)
        self.feed = Feed(config.feed, config.tickers, self._on_frames, self.clock, self.sessions)
        self.stats = IngestStats()
        self.frames_dropped = 0  # frames the journal rejected (disk full) since it last wrote
        self.fold = latest_fold(data) or Fold(0, 0, 0, 0)
        self._deltas: list[Delta] = []  # this process's deltas not yet folded completely
        self._flushed_seq = 0  # every seq up to this is in a delta or a file
        self._late_pending = False  # a delta holds ticks of minutes already sealed
        self._backlog = _Backlog()
        self._in_flight = 0  # characters of frame text the cycle in flight holds
        self._catching_up = True  # start by replaying what the lake has not applied yet
        self._started = False
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()

    # -- the receive path: journal first, then the in-memory backlog ------------------------
    def _on_frames(self, frames: list[str | bytes], received_at_us: int, connection: int) -> None:
        texts = [f if isinstance(f, str) else f.decode("utf-8", "replace") for f in frames]
        try:
            seqs = self.journal.append_many(texts, received_at_us)
        except JournalWriteError as exc:
            if not isinstance(exc.__cause__, OSError):
                raise  # the journal stopped (a failed fsync): only a restart reopens it
            if not self.frames_dropped:
                log.error("event=journal_write_failed action=drop_frames reason=%s", exc)
            self.frames_dropped += len(texts)  # rejected by the journal: it resumes by itself
            return
        if self.frames_dropped and self.journal.written_seq >= seqs.start - 1:
            # The disk took writes again (a batch that fits the group buffer proves nothing).
            log.warning("event=journal_write_resumed frames_dropped=%d", self.frames_dropped)
            self.frames_dropped = 0
        if self._catching_up:
            return
        backlog = self._backlog
        backlog.frames.extend(texts)
        backlog.seqs.append(seqs)
        backlog.received.append(received_at_us)
        backlog.size += sum(map(len, texts))
        held = backlog.size + self._in_flight
        if len(backlog) > self.config.max_backlog or held > self.config.max_backlog_mb * 1e6:
            log.warning(
                "event=backlog_overflow frames=%d bytes=%d action=read_back_from_journal",
                len(backlog),
                held,
            )
            self._backlog = _Backlog()
            self._catching_up = True

    # -- cycles ------------------------------------------------------------------------------
    def _next_deadline(self, last_cycle: float) -> float:
        seal_due = (self.seal.watermark_ms + MINUTE_MS) / 1000 + self.config.lateness
        return min(last_cycle + self.config.flush_interval, max(seal_due, last_cycle))

    async def cycle(self) -> IngestStats:
        """Make the journal durable, append what arrived as a delta, fold sealed minutes."""
        now = self.clock.now()
        now_ms = int(now * 1000)
        backlog, self._backlog = self._backlog, _Backlog()
        self._in_flight = backlog.size
        catch_up_to = self.journal.next_seq - 1 if self._catching_up else 0
        self._catching_up = False
        await self.journal.sync_in_thread()
        stats = IngestStats()
        if not self._started:
            stats.add(await asyncio.to_thread(self._start, catch_up_to, now_ms))
        elif catch_up_to:
            stats.add(await asyncio.to_thread(self._reflush, catch_up_to))
        stats.add(await asyncio.to_thread(self._flush_backlog, backlog))
        self._in_flight = 0
        del backlog
        target = watermark_at(now, self.config.lateness)
        if target > self.fold.watermark_ms or self._late_pending:
            stats.add(await asyncio.to_thread(self._fold, target, now_ms))
        self.stats.add(stats)
        self.quarantine.flush()
        return stats

    def _seal_fields(self) -> tuple[int, int]:
        return self.seal.watermark_ms, self.seal.applied_seq

    def _start(self, until_seq: int, now_ms: int) -> IngestStats:
        """Replay what the lake's files lack straight into them, then publish a marker that
        says so (readers see the deltas from then on)."""
        stats = IngestStats()
        start = self.seal.applied_seq + 1
        if start <= until_seq:
            log.info("event=replay from_seq=%d to_seq=%d", start, until_seq)
            # A reader of its own: the writer's buffer belongs to the event loop's thread.
            with Journal.open_reader(self.config.data / JOURNAL_DIR) as reader:
                stats = self.ingest.apply_all(reader.iter_records(start, until_seq + 1), now_ms)
            if stats.files_written:
                failpoints.reach("replay_files_written")
        self._flushed_seq = max(self.seal.applied_seq, until_seq)
        base = self._flushed_seq
        watermark = max(self.fold.watermark_ms, self.seal.watermark_ms)
        self._publish(Fold(self.fold.generation + 1, base, base, watermark, now_ms))
        self.seal.applied_seq = base
        save_seal(self.config.data, self.seal)
        self._started = True
        return stats

    def _reflush(self, until_seq: int) -> IngestStats:
        """After a dropped backlog: read the frames after the last flushed one back from the
        journal and append them as deltas."""
        stats = IngestStats()
        if self._flushed_seq >= until_seq:
            return stats
        log.info("event=reflush from_seq=%d to_seq=%d", self._flushed_seq + 1, until_seq)
        with Journal.open_reader(self.config.data / JOURNAL_DIR) as reader:
            for records in reader.iter_records(self._flushed_seq + 1, until_seq + 1):
                stats.add(self._flush(*record_columns(records)))
        return stats

    def _flush_backlog(self, backlog: _Backlog) -> IngestStats:
        if not backlog.frames:
            return IngestStats()
        seqs = np.concatenate([np.arange(r.start, r.stop, dtype=np.int64) for r in backlog.seqs])
        counts = [len(r) for r in backlog.seqs]
        received = np.repeat(np.asarray(backlog.received, dtype=np.int64), counts)
        keep = seqs > self._flushed_seq  # already flushed by a reflush in this cycle
        if not keep.all():
            frames = [f for f, k in zip(backlog.frames, keep, strict=True) if k]
            return self._flush(frames, seqs[keep], received[keep])
        return self._flush(backlog.frames, seqs, received)

    def _flush(
        self,
        frames: Sequence[str | bytes],
        seqs: npt.NDArray[np.int64],
        received: npt.NDArray[np.int64],
    ) -> IngestStats:
        if not len(seqs):
            return IngestStats()
        delta, stats = self.ingest.flush(frames, seqs, received, self._deltas)
        if delta is not None:
            failpoints.reach("delta_written")
            self._deltas.append(delta)
            self._late_pending |= delta.min_time_ms < self.fold.watermark_ms
        self._flushed_seq = max(self._flushed_seq, int(seqs[-1]))
        return stats

    def _fold(self, target_ms: int, now_ms: int) -> IngestStats:
        """Seal the minutes before ``target_ms``: their files, one sync, the marker, the seal."""
        old = self.fold
        watermark = max(target_ms, old.watermark_ms)
        wanted = Fold(old.generation + 1, old.base_seq, self._flushed_seq, watermark, now_ms)
        result = self.ingest.fold(self._deltas, old, wanted, now_ms)
        if result.stats.files_written:
            failpoints.reach("fold_files_written")
        self._publish(result.fold)
        failpoints.reach("fold_published")
        self._deltas, self._late_pending = result.remaining, False
        self.ingest.forget(self._deltas)
        moved = self.seal.advance(watermark)
        self.seal.applied_seq = max(self.seal.applied_seq, result.fold.base_seq)
        self.seal.trim(now_ms, int(self.config.recompute_horizon * 1000))
        save_seal(self.config.data, self.seal)
        if moved:
            log.info("event=seal watermark_ms=%d applied_seq=%d", *self._seal_fields())
        prune(self.config.data, now_ms, DEFAULT_GRACE_S)
        return result.stats

    def _flush_at_stop(self) -> None:
        """Flush what is left as a delta if that is quick; otherwise leave it to the next
        start, which replays it from the journal."""
        journaled = self.journal.next_seq - 1
        left = journaled - self._flushed_seq
        if not self._started or left <= 0:
            return
        if left > self.config.stop_flush_frames:
            log.info("event=stop_left_backlog frames=%d", left)
        elif self._catching_up:
            self.stats.add(self._reflush(journaled))
        else:
            self.stats.add(self._flush_backlog(self._backlog))

    def _publish(self, fold: Fold) -> None:
        ensure_deltas_dir(self.config.data)
        publish_fold(self.config.data, fold)
        self.fold = fold

    async def _cycles(self) -> None:
        last = self.clock.now()
        while not self._stop.is_set():
            delay = self._next_deadline(last) - self.clock.now()
            sleeper = asyncio.create_task(self.clock.sleep(max(0.0, delay)))
            waker = asyncio.create_task(self._wake.wait())
            await asyncio.wait([sleeper, waker], return_when=asyncio.FIRST_COMPLETED)
            sleeper.cancel()
            waker.cancel()
            self._wake.clear()
            if self._stop.is_set():
                break
            last = self.clock.now()
            try:
                await self.cycle()
            except LakeStopped:
                log.info("event=fold_stopped reason=shutting_down")
                break
            except (LakeError, JournalError, OSError) as exc:
                # A full disk or an unwritable folder: the journal keeps what it has; the
                # frames come back from it at the next cycle.
                log.error("event=cycle_failed reason=%s", str(exc).splitlines()[0])
                self._backlog = _Backlog()
                self._catching_up = True

    async def _housekeeping(self) -> None:
        while not self._stop.is_set():
            retention_us = int(self.config.journal_retention_days * DAY_S * 1e6)
            oldest = int(self.clock.now() * 1e6) - retention_us
            try:
                removed = self.journal.prune(oldest, keep_after_seq=self.seal.applied_seq)
                if removed:
                    log.info("event=journal_pruned segments=%d", len(removed))
                if self.config.compress_journal:
                    await asyncio.to_thread(self.journal.compress_closed)
            except (JournalError, OSError) as exc:
                log.error("event=housekeeping_failed reason=%s", exc)
            await self.clock.sleep(HOUR_MS / 1000)

    def stop(self) -> None:
        """Ask :meth:`run` to finish: close sockets, apply the backlog, fsync, return."""
        self._stop.set()
        self._wake.set()
        self.ingest.halt.set()  # a fold in progress stops; the next start replays its part
        self.feed.stop()

    async def run(self) -> None:
        log.info(
            "event=start data=%s tickers=%d url=%s next_seq=%d applied_seq=%d",
            self.config.data,
            len(self.config.tickers),
            self.config.feed.url,
            self.journal.next_seq,
            self.seal.applied_seq,
        )
        try:
            await self.cycle()  # replay whatever the lake has not applied yet
        except LakeStopped:
            log.info("event=replay_stopped reason=shutting_down")
            await self._close()
            return
        tasks = [
            asyncio.create_task(self.journal.run_group_commit(self.clock)),
            asyncio.create_task(self._cycles()),
            asyncio.create_task(self._housekeeping()),
        ]
        cycles = tasks[1]
        try:
            await self.feed.run()
        finally:
            self._stop.set()
            self._wake.set()
            with contextlib.suppress(Exception):
                await cycles  # a cycle in progress finishes: its backlog is already taken
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._close()

    async def _close(self) -> None:
        try:
            await self.journal.sync_in_thread()
            await asyncio.to_thread(self._flush_at_stop)
        finally:
            self.journal.close()
            self.quarantine.close()
            self.sessions.close()
            log.info(
                "event=stopped frames=%d ticks=%d late=%d bad=%d applied_seq=%d",
                self.feed.frames_received,
                self.stats.ticks_added,
                self.stats.late_ticks,
                self.stats.bad_frames + self.stats.bad_symbols,
                self.seal.applied_seq,
            )
