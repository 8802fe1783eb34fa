"""``ticklake record``: feed -> journal -> lake, for weeks, crash after crash.

The receive path does one thing per batch of frames: append them to the journal (contract 1)
and keep them in a bounded in-memory backlog. Everything else happens in *cycles*, every
``flush_interval`` and at every seal deadline (minute end + lateness): the journal is made
durable up to the backlog's last seq, the backlog is applied to the lake in a worker thread,
and the seal watermark is advanced and published.

Invariants:
- nothing reaches the lake before it is fsynced in the journal, so a seq seen in the lake is
  never reused after a crash;
- a frame the journal rejects (a full disk) is dropped, counted and logged once per outage,
  and recording goes on: the journal resumes by itself once space returns;
- the receive path never waits on Parquet: a slow disk grows the backlog; past
  ``max_backlog`` frames the backlog is dropped from memory and the next cycle reads those
  frames back from the journal (logged as ``event=backlog_overflow``); memory stays bounded;
- at start, every journaled frame after the seal's ``applied_seq`` is replayed into the lake
  (the same catch-up path), so a crash loses nothing the journal kept;
- the watermark is published only after every frame received before the cycle began is in
  the lake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lake.clock import Clock, SystemClock
from lake.datadir import JOURNAL_DIR, SESSIONS_FILE
from lake.errors import LakeError
from lake.minutes import clean_temporaries
from lake.quarantine import Quarantine
from lake.seal import load_seal, save_seal, watermark_at
from lake.sessions import SessionLog
from lake.utc import MINUTE_MS
from recorder.feed import Feed, FeedConfig
from recorder.ingest import Ingest, IngestStats
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
    recompute_horizon: float = 24 * 3600.0
    journal_retention_days: float = 30.0
    compress_journal: bool = True
    max_backlog: int = 500_000
    feed: FeedConfig = field(default_factory=FeedConfig)


@dataclass
class _Backlog:
    frames: list[str | bytes] = field(default_factory=list)
    seqs: list[range] = field(default_factory=list)
    received: list[int] = field(default_factory=list)

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
        self._backlog = _Backlog()
        self._catching_up = True  # start by replaying what the lake has not applied yet
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
        if len(backlog) > self.config.max_backlog:
            log.warning(
                "event=backlog_overflow frames=%d action=read_back_from_journal", len(backlog)
            )
            self._backlog = _Backlog()
            self._catching_up = True

    # -- cycles ------------------------------------------------------------------------------
    def _next_deadline(self, last_cycle: float) -> float:
        seal_due = (self.seal.watermark_ms + MINUTE_MS) / 1000 + self.config.lateness
        return min(last_cycle + self.config.flush_interval, max(seal_due, last_cycle))

    async def cycle(self) -> IngestStats:
        """Make the journal durable, apply what arrived to the lake, advance the seal."""
        now = self.clock.now()
        now_ms = int(now * 1000)
        backlog, self._backlog = self._backlog, _Backlog()
        catch_up_to = self.journal.next_seq - 1 if self._catching_up else 0
        self._catching_up = False
        await self.journal.sync_in_thread()
        if catch_up_to:
            stats = await asyncio.to_thread(self._catch_up, catch_up_to, now_ms)
        else:
            stats = IngestStats()
        stats.add(await asyncio.to_thread(self._apply_backlog, backlog, now_ms))
        self.stats.add(stats)
        self.quarantine.flush()
        moved = self.seal.advance(watermark_at(now, self.config.lateness))
        self.seal.trim(now_ms, int(self.config.recompute_horizon * 1000))
        await asyncio.to_thread(save_seal, self.config.data, self.seal)
        if moved:
            log.info("event=seal watermark_ms=%d applied_seq=%d", *self._seal_fields())
        return stats

    def _seal_fields(self) -> tuple[int, int]:
        return self.seal.watermark_ms, self.seal.applied_seq

    def _catch_up(self, until_seq: int, now_ms: int) -> IngestStats:
        stats = IngestStats()
        start = self.seal.applied_seq + 1
        if start > until_seq:
            return stats
        log.info("event=replay from_seq=%d to_seq=%d", start, until_seq)
        # A reader of its own: the writer's buffer belongs to the event loop's thread.
        with Journal.open_reader(self.config.data / JOURNAL_DIR) as reader:
            for records in reader.iter_records(start, until_seq + 1):
                stats.add(self.ingest.apply_records(records, now_ms))
        return stats

    def _apply_backlog(self, backlog: _Backlog, now_ms: int) -> IngestStats:
        if not backlog.frames:
            return IngestStats()
        seqs = np.concatenate([np.arange(r.start, r.stop, dtype=np.int64) for r in backlog.seqs])
        counts = [len(r) for r in backlog.seqs]
        received = np.repeat(np.asarray(backlog.received, dtype=np.int64), counts)
        stats = IngestStats()
        if seqs[0] > self.seal.applied_seq + 1:  # never leave a hole below applied_seq
            stats.add(self._catch_up(int(seqs[0]) - 1, now_ms))
        keep = seqs > self.seal.applied_seq  # already applied by a catch-up in this cycle
        if not keep.all():
            frames = [f for f, k in zip(backlog.frames, keep, strict=True) if k]
            stats.add(self.ingest.apply(frames, seqs[keep], received[keep], now_ms))
        else:
            stats.add(self.ingest.apply(backlog.frames, seqs, received, now_ms))
        return stats

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
            except (LakeError, JournalError, OSError) as exc:
                # A full disk or an unwritable folder: the journal keeps what it has; the
                # frames come back from it at the next cycle.
                log.error("event=cycle_failed reason=%s", str(exc).splitlines()[0])
                self._backlog = _Backlog()
                self._catching_up = True

    async def _housekeeping(self) -> None:
        while not self._stop.is_set():
            retention_us = int(self.config.journal_retention_days * 86400e6)
            oldest = int(self.clock.now() * 1e6) - retention_us
            try:
                removed = self.journal.prune(oldest, keep_after_seq=self.seal.applied_seq)
                if removed:
                    log.info("event=journal_pruned segments=%d", len(removed))
                if self.config.compress_journal:
                    await asyncio.to_thread(self.journal.compress_closed)
            except (JournalError, OSError) as exc:
                log.error("event=housekeeping_failed reason=%s", exc)
            await self.clock.sleep(3600.0)

    def stop(self) -> None:
        """Ask :meth:`run` to finish: close sockets, apply the backlog, fsync, return."""
        self._stop.set()
        self._wake.set()
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
        await self.cycle()  # replay whatever the lake has not applied yet
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
            await self.cycle()
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
