"""``ticklake record``: feed -> journal -> lake, for weeks, crash after crash.

The receive path does one thing per batch of frames: append them to the journal (contract 1)
and keep them in a bounded in-memory backlog. Everything else happens in *cycles*, every
``flush_interval``, at every seal deadline (minute end + lateness), at once while a
burst's backlog holds ``FLUSH_FRAMES``, and back to back from a cycle that carried
``BURST_FRAMES`` until one carries fewer than ``CALM_FRAMES`` (a burst's tail does not
wait an interval): the journal is made durable up to the backlog's last
seq, then the lake writer (``recorder.lake_writer``, in a process of its own:
``recorder.lake_process``) decodes the frames and appends them to the lake as one delta
(``lake.deltas``), and when minutes seal, a *fold* writes each sealed (ticker, minute) file
once from the deltas, syncs them once, publishes a fold marker for readers and the seal
watermark for analytics. The recorder's work grows with the ticks it stores, not with
tickers x flushes, and decoding never competes with the receive loop for the interpreter.

Invariants:
- nothing reaches the lake before it is fsynced in the journal, and a new seq is above
  every seq the journal, the seal and the lake have seen, so none is ever reused;
- a frame the journal rejects (a full disk) is dropped, counted and logged once per outage,
  and recording goes on: the journal resumes by itself once space returns;
- the receive path never waits on Parquet: a slow disk grows the backlog; past
  ``max_backlog`` frames or ``max_backlog_mb`` of frame text (counting the frames the cycle
  in flight holds) the backlog is dropped from memory and the next cycle reads those frames
  back from the journal (logged as ``event=backlog_overflow``); memory stays bounded;
- a failed cycle (a full disk, a lost lake writer) is logged once per outage; the next
  cycles back off (the flush interval, doubling up to ``MAX_BACKOFF_S``) and read the frames
  back from the journal; the first that succeeds logs the recovery;
- at start, every journaled frame after the seal's ``applied_seq`` (every row up to it is
  in the lake's files) is replayed straight into the minute files, so a crash loses nothing
  the journal kept; deltas are not synced, the journal is their durable copy;
- the watermark is published only after every frame received before the cycle began is in
  the lake's files, synced;
- stopping never drains a backlog: the journal is synced, the cycle in flight stops at its
  next piece (at most ``STOP_WAIT_S``, then its process is killed), a small backlog is
  flushed as a delta, and whatever else is left is replayed by the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Final

from lake.clock import Clock, SystemClock
from lake.datadir import JOURNAL_DIR, SESSIONS_FILE
from lake.errors import LakeError, LakeStopped, first_line
from lake.logfmt import logfmt
from lake.minutes import clean_temporaries
from lake.seal import load_seal, watermark_at
from lake.sessions import SessionLog
from lake.utc import DAY_S, HOUR_MS, MINUTE_MS
from recorder.durations import Durations
from recorder.feed import Feed, FeedConfig
from recorder.ingest import IngestStats
from recorder.journal import FsyncPolicy, Journal, JournalConfig, JournalError, JournalWriteError
from recorder.journal_recovery import lake_seq_floor
from recorder.lake_process import LakeProcess
from recorder.lake_writer import FLUSH_FRAMES, Report, Work, WriterConfig
from recorder.state import RecorderStateFile

log = logging.getLogger(__name__)
# A cycle carrying BURST_FRAMES starts a burst: cycles run back to back until one carries
# fewer than CALM_FRAMES. A steady feed below 10 k msg/s (at the default interval) never
# starts one, so its deltas stay one per interval.
BURST_FRAMES: Final = FLUSH_FRAMES // 2
CALM_FRAMES: Final = BURST_FRAMES // 10
MAX_BACKOFF_S: Final = 60.0  # the longest wait between two cycles while they fail
STOP_WAIT_S: Final = 2.5  # at stop, the lake writer gets this long to finish its cycle


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
    frames: list[str] = field(default_factory=list)
    seqs: list[range] = field(default_factory=list)  # one range per batch
    received: list[int] = field(default_factory=list)  # per batch
    sizes: list[int] = field(default_factory=list)  # characters of frame text, per batch
    size: int = 0  # characters of frame text held: sum(sizes)

    def __len__(self) -> int:
        return len(self.frames)

    def add(self, texts: list[str], seqs: range, received_at_us: int) -> None:
        chars = sum(map(len, texts))
        self.frames.extend(texts)
        self.seqs.append(seqs)
        self.received.append(received_at_us)
        self.sizes.append(chars)
        self.size += chars

    def split(self, frames: int) -> tuple[_Backlog, _Backlog]:
        """The first whole batches holding ``frames`` frames or a little more, and the rest."""
        taken = batches = 0
        while taken < frames and batches < len(self.seqs):
            taken += len(self.seqs[batches])
            batches += 1
        head_size = sum(self.sizes[:batches])
        head = _Backlog(
            self.frames[:taken],
            self.seqs[:batches],
            self.received[:batches],
            self.sizes[:batches],
            head_size,
        )
        rest = _Backlog(
            self.frames[taken:],
            self.seqs[batches:],
            self.received[batches:],
            self.sizes[batches:],
            self.size - head_size,
        )
        return head, rest


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
            min_next_seq=lake_seq_floor(data),  # no seq the lake has seen is given again
        )
        for repair in self.journal.repairs:
            log.warning(
                "event=journal_repaired segment=%s offset=%d bytes_cut=%d reason=%s",
                logfmt(repair.segment),
                repair.offset,
                repair.bytes_cut,
                logfmt(repair.reason),
            )
        removed = clean_temporaries(data)
        if removed:
            log.info("event=temporaries_removed count=%d", removed)
        self.seal = load_seal(data)  # a mirror: the lake writer owns the seal
        self.lake = LakeProcess(
            WriterConfig(data, int(config.recompute_horizon * 1000), config.stop_flush_frames)
        )
        (data / SESSIONS_FILE).parent.mkdir(parents=True, exist_ok=True)
        self.sessions = SessionLog(data / SESSIONS_FILE)
        self.feed = Feed(config.feed, config.tickers, self._on_frames, self.clock, self.sessions)
        self.stats = IngestStats()
        self.frames_dropped = 0  # frames the journal rejected (disk full) since it last wrote
        self.lake_write_seconds = Durations()  # each cycle's work in the lake writer, for metrics
        self._dropping_since = 0.0  # receive time of the first of them, epoch s
        self.flushed_seq = 0  # every seq up to this is in a delta or a file
        self._backlog = _Backlog()
        self._bursting = False  # cycles run back to back (see _take_backlog)
        self._in_flight = 0  # characters of frame text the cycle in flight holds
        self._catching_up = True  # start by replaying what the lake has not applied yet
        self._failures = 0  # cycles failed in a row
        self._sealing_ms = 0  # the newest watermark a cycle asked the lake writer for
        self._outage_since = 0.0
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()

    # -- read-only views for monitoring (``ticklake.metrics`` reads them from its thread) ----
    @property
    def backlog_frames(self) -> int:
        """Frames received and journaled, waiting in memory for a cycle."""
        return len(self._backlog)

    @property
    def backlog_bytes(self) -> int:
        """Characters of frame text held in memory, the cycle in flight's included (what
        ``max_backlog_mb`` bounds)."""
        return self._backlog.size + self._in_flight

    @property
    def cycle_failures(self) -> int:
        """Cycles failed in a row; 0 once one succeeds."""
        return self._failures

    @cached_property
    def state_file(self) -> RecorderStateFile:
        """``state/recorder.json`` (``recorder.state``); its start is the first cycle's."""
        return RecorderStateFile(self.config.data, self.clock.now())

    # -- the receive path: journal first, then the in-memory backlog ------------------------
    def _on_frames(self, frames: list[str | bytes], received_at_us: int, connection: int) -> None:
        texts = [f if isinstance(f, str) else f.decode("utf-8", "replace") for f in frames]
        try:
            seqs = self.journal.append_many(texts, received_at_us)
        except JournalWriteError as exc:
            if not isinstance(exc.__cause__, OSError):
                raise  # the journal stopped (a failed fsync): only a restart reopens it
            if not self.frames_dropped:
                log.error("event=journal_write_failed action=drop_frames reason=%s", logfmt(exc))
                self._dropping_since = received_at_us / 1e6
            self.frames_dropped += len(texts)  # rejected by the journal: it resumes by itself
            return
        if self.frames_dropped and self.journal.written_seq >= seqs.start - 1:
            # The disk took writes again (a batch that fits the group buffer proves nothing).
            # The frames lost meanwhile are a coverage gap: the sessions are cut around it.
            cut = self.feed.split_sessions(
                self._dropping_since, received_at_us / 1e6, "journal_full: frames dropped"
            )
            log.warning(
                "event=journal_write_resumed frames_dropped=%d gap_s=%.1f sessions_cut=%d",
                self.frames_dropped,
                received_at_us / 1e6 - self._dropping_since,
                cut,
            )
            self.frames_dropped = 0
        if self._catching_up:
            return
        backlog = self._backlog
        backlog.add(texts, seqs, received_at_us)
        if len(backlog) >= FLUSH_FRAMES:
            self._wake.set()  # a burst: flush now, not at the next interval
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
        if self._failures:  # a lasting fault: back off, flush interval doubling up to a minute
            wait = self.config.flush_interval * float(1 << min(self._failures, 16))
            return last_cycle + min(MAX_BACKOFF_S, wait)
        sealing = max(self.seal.watermark_ms, self._sealing_ms)  # a fold may be running
        seal_due = (sealing + MINUTE_MS) / 1000 + self.config.lateness
        return min(last_cycle + self.config.flush_interval, max(seal_due, last_cycle))

    async def cycle(self) -> IngestStats:
        """Make the journal durable, then have the lake writer append what arrived as a
        delta and fold the minutes that seal."""
        now = self.clock.now()
        self.state_file.save(self.feed.connections, now)  # for `ticklake status`
        backlog = self._take_backlog()
        self._in_flight = backlog.size
        catch_up_to = self.journal.next_seq - 1 if self._catching_up else 0
        self._catching_up = False
        try:
            await self.journal.sync_in_thread()
            self.lake.start()  # a new one after a loss: it replays from the journal
            work = Work(
                now_ms=int(now * 1000),
                seal_target_ms=watermark_at(now, self.config.lateness),
                frames=backlog.frames,
                seqs=backlog.seqs,
                received_us=backlog.received,
                catch_up_to=catch_up_to,
            )
            del backlog
            with self.lake_write_seconds.timed():
                report = await asyncio.to_thread(self.lake.submit, work)
        finally:
            self._in_flight = 0
        stats = self._take(report)
        self._sealing_ms = max(self._sealing_ms, work.seal_target_ms)
        log.debug(
            "event=cycle frames=%d flushed_seq=%d journaled_seq=%d backlog=%d seconds=%.3f",
            len(work.frames),
            self.flushed_seq,
            self.journal.next_seq - 1,
            len(self._backlog),
            self.clock.now() - now,
        )
        return stats

    def _take_backlog(self) -> _Backlog:
        """The backlog's first ``FLUSH_FRAMES`` frames or so (whole batches), for one cycle;
        a burst's rest waits for the next cycle, which starts at once (memory in flight
        stays small).

        In a burst (a cycle carried ``BURST_FRAMES``), cycles run back to back until one
        carries fewer than ``CALM_FRAMES``: what arrived during a cycle, a burst's tail
        above all, does not wait an interval."""
        backlog = self._backlog
        if len(backlog) <= FLUSH_FRAMES:
            head, self._backlog = backlog, _Backlog()
        else:
            head, self._backlog = backlog.split(FLUSH_FRAMES)
        if len(head) >= BURST_FRAMES:
            self._bursting = True
        elif len(head) < CALM_FRAMES:
            self._bursting = False
        if self._bursting or len(self._backlog):
            self._wake.set()
        return head

    def _take(self, report: Report) -> IngestStats:
        """Mirror what a cycle's report says; raise its failure."""
        self.stats.add(report.stats)
        self.seal.watermark_ms = max(self.seal.watermark_ms, report.watermark_ms)
        self.seal.applied_seq = max(self.seal.applied_seq, report.applied_seq)
        self.flushed_seq = max(self.flushed_seq, report.flushed_seq)
        if report.stopped:
            raise LakeStopped("shutting down")
        if report.failure:
            raise LakeError(report.failure)
        return report.stats

    async def _flush_at_stop(self) -> None:
        """Have the lake writer flush what is left if that is quick; whatever else is left,
        the next start replays from the journal."""
        journaled = self.journal.next_seq - 1
        if journaled <= self.flushed_seq or self.lake.pid is None:
            return
        frames = [] if self._catching_up else self._backlog.frames
        work = Work(
            now_ms=int(self.clock.now() * 1000),
            seal_target_ms=0,
            frames=frames,
            seqs=self._backlog.seqs if frames else [],
            received_us=self._backlog.received if frames else [],
            catch_up_to=journaled,
            final=True,
        )
        with contextlib.suppress(LakeError):
            self._take(await asyncio.to_thread(self.lake.submit, work))

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
                log.info("event=cycle_stopped reason=shutting_down")
                break
            except (LakeError, JournalError, OSError) as exc:
                # A full disk, an unwritable folder, a lost lake writer: the journal keeps the
                # frames, which the next cycle reads back from it.
                self._backlog = _Backlog()
                self._catching_up = True
                self._failed(first_line(exc))
            else:
                self._recovered()

    def _failed(self, reason: str) -> None:
        """Count a failed cycle; log the first of an outage only (the next cycles wait)."""
        self._failures += 1
        if self._failures == 1:
            self._outage_since = self.clock.now()
            log.error(
                "event=cycle_failed reason=%s action=retry_with_backoff max_wait_s=%g",
                logfmt(reason),
                MAX_BACKOFF_S,
            )
        else:
            log.debug("event=cycle_failed failures=%d reason=%s", self._failures, logfmt(reason))

    def _recovered(self) -> None:
        if self._failures:
            log.warning(
                "event=cycle_recovered failures=%d outage_s=%.1f",
                self._failures,
                self.clock.now() - self._outage_since,
            )
        self._failures = 0

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
                log.error("event=housekeeping_failed reason=%s", logfmt(exc))
            await self.clock.sleep(HOUR_MS / 1000)

    def stop(self) -> None:
        """Ask :meth:`run` to finish: close sockets, apply the backlog, fsync, return."""
        self._stop.set()
        self._wake.set()
        self.lake.halt()  # a long step in progress stops; the next start replays its part
        self.feed.stop()

    def start_lake_writer(self) -> None:
        """Fork the lake writer now, from the main thread; the first cycle does otherwise.
        Early, the child shares a lean process: one forked later carries (and, touching it,
        copies) whatever this process has loaded since, such as DuckDB for the job."""
        self.lake.start()

    async def run(self) -> None:
        log.info(
            "event=start data=%s tickers=%d url=%s next_seq=%d applied_seq=%d",
            logfmt(self.config.data),
            len(self.config.tickers),
            logfmt(self.config.feed.url),
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
            # A cycle in progress finishes (halted): its backlog is already taken. One that
            # takes too long loses its lake writer; the journal has all it had.
            if not (await asyncio.wait([cycles], timeout=STOP_WAIT_S))[0]:
                log.warning("event=stop_cut_cycle after_s=%g", STOP_WAIT_S)
                await asyncio.to_thread(self.lake.close, 0.0)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._close()

    async def _close(self) -> None:
        try:
            await self.journal.sync_in_thread()
            await self._flush_at_stop()
        finally:
            await asyncio.to_thread(self.lake.close, STOP_WAIT_S)
            self.journal.close()
            self.sessions.close()
            log.info(
                "event=stopped frames=%d ticks=%d late=%d bad=%d applied_seq=%d",
                self.feed.frames_received,
                self.stats.ticks_added,
                self.stats.late_ticks,
                self.stats.bad_frames + self.stats.bad_symbols,
                self.seal.applied_seq,
            )
