"""``ticklake replay``: rebuild the lake's ticks from the journal.

Replay applies journal records through :class:`recorder.ingest.Ingest`, the very path live
recording takes, so it produces exactly what live recording produced:

- into the recorder's own lake (the default), replay is idempotent: rows already there stay,
  anything missing (a lake file lost or deleted) comes back;
- ``into`` another directory, replay builds a fresh lake from the journal alone: after a
  decoder fix, build it there, check it, and swap it in while the recorder is stopped.

``start_us``/``end_us`` select frames by receive time. The data directory's writer lock is
taken (or held by the caller: ``verify --repair``), so replay refuses to run beside a
recorder; the journal itself is opened read-only:
not one of its bytes changes, whatever it holds (a torn tail is the recorder's to cut,
damage the recorder's to move to quarantine). Damaged bytes are skipped, every valid record
after them is still applied, and the skipped ranges are returned (``ReplayReport.damage``)
and logged.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from lake.datadir import WriterLock, journal_dir
from lake.deltas import Fold, latest_fold, publish_fold
from lake.minutes import clean_temporaries
from lake.quarantine import Quarantine
from lake.seal import load_seal, save_seal
from recorder.ingest import Ingest, IngestStats
from recorder.journal import DamagedRange, Journal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayReport:
    """What a replay applied, and the journal damage it skipped (empty: none)."""

    stats: IngestStats
    damage: tuple[DamagedRange, ...]


def replay(
    data: Path,
    now_ms: int,
    start_us: int | None = None,
    end_us: int | None = None,
    into: Path | None = None,
    *,
    lock: WriterLock | None = None,
) -> ReplayReport:
    """Apply the journal of ``data`` (all of it, or the frames received in ``[start_us,
    end_us)``) to the lake of ``into`` (default: ``data``), each (ticker, minute) file
    written about once (``Ingest.apply_all``). The source journal is only read. ``lock``:
    the caller already holds ``data``'s writer lock."""
    target = into or data
    held = contextlib.nullcontext(lock) if lock is not None and lock.held else None
    with held or WriterLock.acquire(journal_dir(data)):  # no recorder beside us
        target.mkdir(parents=True, exist_ok=True)
        clean_temporaries(target)
        seal = load_seal(target)
        applied = seal.applied_seq
        quarantine = Quarantine(target)
        ingest = Ingest(target, seal, quarantine)
        with Journal.open_reader(journal_dir(data)) as journal:
            if start_us is None and end_us is None:
                batches = journal.iter_records()
            else:
                batches = journal.iter_records_between(start_us or 0, end_us or (1 << 62))
            stats = ingest.apply_all(batches, now_ms)
            damage = tuple(journal.skipped)
        quarantine.close()
        log.info("event=replay_done applied_seq=%d frames=%d", seal.applied_seq, stats.frames)
        if start_us is not None or end_us is not None:
            seal.applied_seq = applied  # a partial replay must not skip frames after its range
        _designate_files(target, seal.applied_seq, now_ms)
        save_seal(target, seal)
    return ReplayReport(stats, damage)


def _designate_files(target: Path, base_seq: int, now_ms: int) -> None:
    """Tell readers of a lake with deltas that every row up to ``base_seq`` is in files."""
    fold = latest_fold(target)
    if fold is not None and base_seq > fold.base_seq:
        seq = max(fold.seq, base_seq)
        publish_fold(target, Fold(fold.generation + 1, base_seq, seq, fold.watermark_ms, now_ms))
