"""Journal records into the lake: the one path both live recording and replay take.

Because live recording and ``ticklake replay`` both call :meth:`Ingest.apply` on journal
records, replaying the journal produces exactly what live recording produced (contract 1).

Invariants:
- a record's frame is decoded, then its tick is merged into its (ticker, minute) file with
  the record's ``seq`` and receive time; merging dedupes, so applying a record twice is a
  no-op;
- a bad frame and a tick whose symbol cannot be a folder name are quarantined with their
  reason and counted, never raised; each is quarantined once, in seq order: only after the
  batch's lake writes succeeded (a batch that failed is retried whole) and only when its seq
  is above ``applied_seq`` (a re-applied batch or a replay into the same lake adds nothing);
- any change to an already sealed window's file (a late tick, a replay with a fixed
  decoder) marks that window late, so its features are recomputed.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from lake.minutes import write_minutes
from lake.quarantine import Quarantine
from lake.schema import LAKE_SCHEMA, RECEIVED_TYPE
from lake.seal import SealState
from recorder.journal import JournalRecord
from recorder.wire.decode import decode_batch

log = logging.getLogger(__name__)
CHUNK_FRAMES = 20_000


@dataclass
class IngestStats:
    frames: int = 0
    ticks_added: int = 0
    duplicates: int = 0
    bad_frames: int = 0
    bad_symbols: int = 0
    late_ticks: int = 0
    files_written: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def add(self, other: IngestStats) -> None:
        for name in ("frames", "ticks_added", "duplicates", "bad_frames", "bad_symbols"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.late_ticks += other.late_ticks
        self.files_written += other.files_written
        self.skipped.update(other.skipped)


class Ingest:
    """Applies journal records to the lake under ``root`` and records lateness in ``seal``."""

    def __init__(self, root: Path, seal: SealState, quarantine: Quarantine) -> None:
        self.root = root
        self.seal = seal
        self.quarantine = quarantine

    def apply_records(self, records: Sequence[JournalRecord], now_ms: int) -> IngestStats:
        """Apply records as read back from the journal."""
        count = len(records)
        return self.apply(
            [r.frame for r in records],
            np.fromiter((r.seq for r in records), dtype=np.int64, count=count),
            np.fromiter((r.received_at_us for r in records), dtype=np.int64, count=count),
            now_ms,
        )

    def apply(
        self,
        frames: Sequence[str | bytes],
        seqs: npt.NDArray[np.int64],
        received_us: npt.NDArray[np.int64],
        now_ms: int,
    ) -> IngestStats:
        """Apply frames with their journal ``seqs`` (ascending) and receive times (µs).

        Large inputs go through in chunks of ``CHUNK_FRAMES`` so decoding memory stays bounded.
        """
        if len(frames) > CHUNK_FRAMES:
            stats = IngestStats()
            for i in range(0, len(frames), CHUNK_FRAMES):
                part = slice(i, i + CHUNK_FRAMES)
                stats.add(self.apply(frames[part], seqs[part], received_us[part], now_ms))
            return stats
        stats = IngestStats(frames=len(frames))
        if not frames:
            return stats
        applied_before = self.seal.applied_seq
        batch = decode_batch(frames)
        stats.skipped = batch.skipped
        stats.bad_frames = len(batch.errors)
        rows = batch.frame_index
        table = batch.ticks.append_column(
            "received_at", pa.array(received_us[rows], type=pa.int64()).cast(RECEIVED_TYPE)
        ).append_column("seq", pa.array(seqs[rows], type=pa.int64()))
        written = write_minutes(self.root, table.cast(LAKE_SCHEMA))  # may raise: retried whole
        refused = [(error.index, error.reason) for error in batch.errors]
        for row in written.rejected.select(["id", "seq"]).to_pylist():
            reason = f"symbol {row['id']!r} cannot be stored (see ticklake symbol rules)"
            refused.append((int(np.searchsorted(seqs, row["seq"])), reason))
        for i, reason in sorted(refused):
            if seqs[i] > applied_before:  # frames up to applied_seq were quarantined already
                self.quarantine.add(int(seqs[i]), int(received_us[i]), reason, frames[i])
        stats.bad_symbols = written.rejected_rows
        for write in written.writes:
            added = write.rows_after - write.rows_before
            stats.ticks_added += added
            stats.duplicates += write.rows_in - added
            stats.files_written += int(write.written)
            if not write.written:
                continue
            ticker, minute_ms = write.ticker, write.minute_start_ms
            if self.seal.is_sealed(minute_ms):
                self.seal.mark_late(ticker, minute_ms, now_ms)
                stats.late_ticks += added
                log.info("event=late_ticks ticker=%s window=%d ticks=%d", ticker, minute_ms, added)
        self.seal.applied_seq = max(self.seal.applied_seq, int(seqs[-1]))
        return stats
