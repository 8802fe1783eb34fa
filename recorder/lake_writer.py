"""The recorder's lake side: each cycle's frames into deltas, sealed minutes into files.

:class:`LakeWriter` owns everything the recorder writes to the lake: the seal, the
quarantine, the deltas not yet folded and the fold marker. The receive process hands it
one :class:`Work` per cycle (the frames that arrived, already durable in the journal) and
gets a :class:`Report` back; ``recorder.lake_process`` runs it in a process of its own, so
a burst's decoding never competes with the receive loop for the interpreter.

A cycle, in order:
1. at the first cycle (``start``), every journaled frame after the seal's ``applied_seq``
   is replayed straight into the minute files, then a marker publishes that;
2. after a backlog the receive process dropped (``catch_up_to``), the frames after the last
   flushed one are read back from the journal and appended as deltas;
3. the cycle's frames are appended as deltas, ``FLUSH_FRAMES`` at a time;
4. when the seal is due, a fold starts in a thread of its own, beside the next cycles'
   flushes: it writes each sealed (ticker, minute) file once from the deltas flushed when
   it began, a range of tickers at a time (``FOLD_ROWS``: its memory is a range's rows, not
   the minute's), syncs them, publishes the fold marker, then saves the seal. One fold runs
   at a time; its failure is the next cycle's.

Invariants:
- ``applied_seq`` in the seal: every journaled tick up to it is in the minute files;
- ``flushed_seq``: every journaled tick up to it is in a delta or a file;
- a halt (shutting down) stops the long steps between pieces with ``LakeStopped``; what
  they did not reach stays in the journal for the next start; a final cycle flushes a
  backlog of at most ``stop_flush_frames`` and never folds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from lake import failpoints
from lake.compact import DEFAULT_GRACE_S
from lake.datadir import JOURNAL_DIR
from lake.deltas import (
    Delta,
    Fold,
    ensure_deltas_dir,
    latest_fold,
    list_deltas,
    prune,
    publish_fold,
    ticker_ranges,
)
from lake.errors import LakeError, LakeStopped
from lake.quarantine import Quarantine
from lake.seal import load_seal, save_seal
from recorder.ingest import FoldResult, Ingest, IngestStats, record_columns
from recorder.journal import Journal

__all__ = ["FLUSH_FRAMES", "LakeWriter", "Report", "Work"]

log = logging.getLogger(__name__)
FLUSH_FRAMES: Final = 100_000  # frames appended as one delta at most (a burst: several)
FOLD_ROWS: Final = 30_000  # delta rows a fold holds at once, about (a range of tickers)


@dataclass(frozen=True)
class Work:
    """One cycle's input: the frames that arrived since the last one (durable in the
    journal), and when the cycle runs."""

    now_ms: int
    seal_target_ms: int  # minutes before this may seal (now minus lateness, floored)
    frames: list[str] = field(default_factory=list)
    seqs: list[range] = field(default_factory=list)  # the frames' seqs, one range per batch
    received_us: list[int] = field(default_factory=list)  # per range
    catch_up_to: int = 0  # nonzero: read the journal back up to this seq first
    final: bool = False  # stopping: flush a small backlog, nothing else


@dataclass
class Report:
    """What a cycle did; ``failure`` is one line when it failed (the frames stay in the
    journal), ``stopped`` when a halt cut it short."""

    stats: IngestStats
    watermark_ms: int
    applied_seq: int
    flushed_seq: int
    failure: str = ""
    stopped: bool = False
    logs: list[tuple[str, int, str]] = field(default_factory=list)  # (logger, level, message)


@dataclass(frozen=True)
class WriterConfig:
    data: Path
    recompute_horizon_ms: int
    stop_flush_frames: int


class LakeWriter:
    """The lake side of one recorder over ``config.data``; one :meth:`cycle` at a time."""

    def __init__(self, config: WriterConfig) -> None:
        self.config = config
        data = config.data
        self.seal = load_seal(data)
        self.quarantine = Quarantine(data)
        self.ingest = Ingest(data, self.seal, self.quarantine)
        self.fold = latest_fold(data) or Fold(0, 0, 0, 0)
        self.deltas: list[Delta] = []  # deltas of this writer not yet folded completely
        self.flushed_seq = 0
        self.started = False
        self._late_pending = False  # a delta holds ticks of minutes already sealed
        self._state = threading.Lock()  # deltas, fold, seal: between flushes and a fold
        self._folds = ThreadPoolExecutor(1, thread_name_prefix="fold")
        self._folding: Future[IngestStats] | None = None  # the fold in progress

    def cycle(self, work: Work) -> IngestStats:
        stats = IngestStats()
        if work.final:
            with contextlib.suppress(LakeStopped):  # halted: the next start redoes its part
                stats.add(self._fold_done(wait=True))
            if self.started:
                stats.add(self._flush_at_stop(work))
            return stats
        stats.add(self._fold_done())
        if not self.started:
            stats.add(self._start(work.catch_up_to, work.now_ms))
        elif work.catch_up_to:
            stats.add(self._reflush(work.catch_up_to))
        stats.add(self._flush_work(work))
        due = work.seal_target_ms > self.fold.watermark_ms or self._late_pending
        if due and self._folding is None:
            self._folding = self._folds.submit(self._fold, work.seal_target_ms, work.now_ms)
        self.quarantine.flush()
        return stats

    def close(self) -> None:
        with contextlib.suppress(LakeError, OSError):
            self._fold_done(wait=True)
        self._folds.shutdown()
        self.quarantine.close()

    def _fold_done(self, *, wait: bool = False) -> IngestStats:
        """The stats of the fold in progress once it is over (raising its failure)."""
        folding = self._folding
        if folding is None or not (wait or folding.done()):
            return IngestStats()
        self._folding = None
        return folding.result()

    # -- the steps -----------------------------------------------------------------------------
    def _start(self, until_seq: int, now_ms: int) -> IngestStats:
        """Replay what the lake's files lack straight into them, then publish a marker that
        says so (readers see the deltas from then on)."""
        stats = self._fold_leftovers(now_ms)
        start = self.seal.applied_seq + 1
        if start <= until_seq:
            log.info("event=replay from_seq=%d to_seq=%d", start, until_seq)
            with Journal.open_reader(self.config.data / JOURNAL_DIR) as reader:
                stats.add(self.ingest.apply_all(reader.iter_records(start, until_seq + 1), now_ms))
            failpoints.reach("replay_files_written")
        # Minutes before now may have files a start wrote, sealed or not: a tick repeated
        # after the start (a reconnect's snapshot) is deduped against them.
        self.ingest.files_before_ms = now_ms
        self.flushed_seq = max(self.seal.applied_seq, until_seq, self.fold.base_seq)
        base = self.flushed_seq
        watermark = max(self.fold.watermark_ms, self.seal.watermark_ms)
        self._publish(Fold(self.fold.generation + 1, base, base, watermark, now_ms))
        self.seal.applied_seq = base
        save_seal(self.config.data, self.seal)
        self.started = True
        return stats

    def _fold_leftovers(self, now_ms: int) -> IngestStats:
        """Move the rows of a previous run's deltas into the minute files and publish that.

        The journal normally holds them too (the replay after ``applied_seq`` would write
        them again), but a journal that lost its end (power loss under ``--fsync os``, a
        restored backup) does not: the deltas are then their only copy."""
        leftovers = [d for d in list_deltas(self.config.data) if d.last_seq > self.fold.base_seq]
        if not leftovers:
            return IngestStats()
        top = max(d.last_seq for d in leftovers)
        old = self.fold
        watermark = max(old.watermark_ms, self.seal.watermark_ms)
        everything = Fold(old.generation + 1, top, top, watermark, now_ms)
        result = self._fold_ranges(leftovers, old, everything, now_ms)
        self._publish(Fold(everything.generation, top, top, watermark, now_ms))
        log.info("event=leftover_deltas_folded deltas=%d to_seq=%d", len(leftovers), top)
        return result.stats

    def _reflush(self, until_seq: int, *, stoppable: bool = True) -> IngestStats:
        """Read the frames after the last flushed one back from the journal, as deltas."""
        stats = IngestStats()
        if self.flushed_seq >= until_seq:
            return stats
        log.info("event=reflush from_seq=%d to_seq=%d", self.flushed_seq + 1, until_seq)
        with Journal.open_reader(self.config.data / JOURNAL_DIR) as reader:
            for records in reader.iter_records(self.flushed_seq + 1, until_seq + 1):
                if stoppable:
                    self._check_halt()
                stats.add(self._flush(*record_columns(records)))
        return stats

    def _flush_work(self, work: Work, *, stoppable: bool = True) -> IngestStats:
        stats = IngestStats()
        if not work.frames:
            return stats
        seqs = np.concatenate([np.arange(r.start, r.stop, dtype=np.int64) for r in work.seqs])
        counts = [len(r) for r in work.seqs]
        received = np.repeat(np.asarray(work.received_us, dtype=np.int64), counts)
        keep = seqs > self.flushed_seq  # already flushed by a reflush in this cycle
        frames: Sequence[str] = work.frames
        if not keep.all():
            frames = [f for f, k in zip(frames, keep, strict=True) if k]
            seqs, received = seqs[keep], received[keep]
        for i in range(0, len(seqs), FLUSH_FRAMES):
            if i and stoppable:
                self._check_halt()
            part = slice(i, i + FLUSH_FRAMES)
            stats.add(self._flush(frames[part], seqs[part], received[part]))
        return stats

    def _flush(
        self,
        frames: Sequence[str | bytes],
        seqs: npt.NDArray[np.int64],
        received: npt.NDArray[np.int64],
    ) -> IngestStats:
        if not len(seqs):
            return IngestStats()
        with self._state:
            delta, stats = self.ingest.flush(frames, seqs, received, self.deltas)
            if delta is not None:
                failpoints.reach("delta_written")
                self.deltas.append(delta)
                self._late_pending |= delta.min_time_ms < self.fold.watermark_ms
            self.flushed_seq = max(self.flushed_seq, int(seqs[-1]))
        return stats

    def _fold(self, target_ms: int, now_ms: int) -> IngestStats:
        """Seal the minutes before ``target_ms``: their files, one sync, the marker, the seal.

        Runs beside the cycles (flushes go on meanwhile): it folds the deltas flushed when
        it began, and takes the lock only to begin and to publish."""
        with self._state:
            old, deltas, flushed = self.fold, list(self.deltas), self.flushed_seq
            self._late_pending = False
        watermark = max(target_ms, old.watermark_ms)
        wanted = Fold(old.generation + 1, old.base_seq, flushed, watermark, now_ms)
        result = self._fold_ranges(deltas, old, wanted, now_ms)
        if result.stats.files_written:
            failpoints.reach("fold_files_written")
        with self._state:
            self._publish(result.fold)
            failpoints.reach("fold_published")
            folded = {d.path for d in deltas}
            newer = [d for d in self.deltas if d.path not in folded]
            self.deltas = result.remaining + newer
            # Flushed meanwhile, ticks of the minutes just sealed wait for the next fold.
            self._late_pending |= any(d.min_time_ms < watermark for d in newer)
            self.ingest.forget(self.deltas)
            moved = self.seal.advance(watermark)
            self.seal.applied_seq = max(self.seal.applied_seq, result.fold.base_seq)
            self.seal.trim(now_ms, self.config.recompute_horizon_ms)
            save_seal(self.config.data, self.seal)
        if moved:
            log.info(
                "event=seal watermark_ms=%d applied_seq=%d",
                self.seal.watermark_ms,
                self.seal.applied_seq,
            )
        prune(self.config.data, now_ms, DEFAULT_GRACE_S)
        return result.stats

    def _fold_ranges(
        self, deltas: Sequence[Delta], old: Fold, new: Fold, now_ms: int
    ) -> FoldResult:
        """``Ingest.fold`` a range of tickers at a time, as one fold: the marker it returns
        designates only what every range wrote (the lowest base of them)."""
        stats, remaining, base = IngestStats(), set(), new.seq
        for tickers in ticker_ranges(deltas, FOLD_ROWS):
            self._check_halt()
            part = self.ingest.fold([d.only(tickers) for d in deltas], old, new, now_ms)
            stats.add(part.stats)
            remaining |= {d.path for d in part.remaining}
            base = min(base, part.fold.base_seq)
        fold = Fold(new.generation, base, new.seq, new.watermark_ms, new.published_ms)
        return FoldResult(fold, stats, [d for d in deltas if d.path in remaining])

    def _flush_at_stop(self, work: Work) -> IngestStats:
        """Flush what is left as a delta if that is quick; otherwise leave it to the next
        start, which replays it from the journal."""
        left = work.catch_up_to - self.flushed_seq
        if left <= 0:
            return IngestStats()
        if left > self.config.stop_flush_frames:
            log.info("event=stop_left_backlog frames=%d", left)
            return IngestStats()
        if work.frames and work.seqs[0].start <= self.flushed_seq + 1:
            stats = self._flush_work(work, stoppable=False)
        else:  # a dropped backlog or a halted cycle's rest: those frames are in the journal
            stats = self._reflush(work.catch_up_to, stoppable=False)
        self.quarantine.flush()
        return stats

    def _publish(self, fold: Fold) -> None:
        ensure_deltas_dir(self.config.data)
        publish_fold(self.config.data, fold)
        self.fold = fold

    def _check_halt(self) -> None:
        if self.ingest.halt.is_set():
            raise LakeStopped("shutting down")
