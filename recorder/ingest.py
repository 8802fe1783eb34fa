"""Journal records into the lake: the paths both live recording and replay take.

Three ways in, one decoder (so replaying the journal produces exactly what live recording
produced, contract 1):
- :meth:`Ingest.flush`: live recording appends what arrived since the last flush as one
  delta (``lake.deltas``): work proportional to the ticks, whatever the number of tickers;
- :meth:`Ingest.fold`: when minutes seal, their rows move from the deltas into one file per
  (ticker, minute), written once, synced once, then a fold marker tells readers so;
- :meth:`Ingest.apply`: replay and start-up catch-up write straight into the minute files,
  grouped per (ticker, minute) over the whole range they are given.

Invariants:
- merging dedupes (``lake.dedupe``), so applying a record twice is a no-op; a late tick
  already stored (a re-sent snapshot) is dropped before it reaches a delta;
- a bad frame and a tick whose symbol cannot be a folder name are quarantined with their
  reason and counted, never raised; each is quarantined once (``Quarantine`` skips seqs it
  already holds), and only after the writes of its batch succeeded (a failed batch is
  retried whole);
- any change to an already sealed window's file (a late tick, a replay with a fixed
  decoder) marks that window late, so its features are recomputed.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from lake.atomic import deferred_sync, sync_filesystem
from lake.dedupe import content_keys, merge_ticks
from lake.deltas import Delta, Fold, designated_to_files, read_delta, write_delta
from lake.errors import LakeReadError, LakeStopped
from lake.logfmt import logfmt
from lake.minutes import MinutesWrite, read_minutes, write_minutes
from lake.quarantine import Quarantine
from lake.schema import LAKE_SCHEMA, RECEIVED_TYPE, empty_lake_table
from lake.seal import SealState
from lake.symbols import valid_symbol_mask
from lake.utc import MINUTE_MS
from recorder.journal import JournalRecord
from recorder.wire.decode import decode_batch

__all__ = [
    "CHUNK_FRAMES",
    "Decoded",
    "FoldResult",
    "Ingest",
    "IngestStats",
    "Refusal",
    "record_columns",
]

log = logging.getLogger(__name__)
Keys = tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]
CHUNK_FRAMES: Final = 20_000  # frames decoded at once
WRITE_THREADS: Final = 4  # minute files written at once (Parquet encoding releases the GIL)
GROUP_ROWS: Final = 1_000_000  # rows ``apply_all`` gathers before it writes minute files


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


class Refusal(NamedTuple):
    seq: int
    received_us: int
    reason: str
    frame: str | bytes


@dataclass
class Decoded:
    """Frames decoded into lake rows with storable symbols, and what was refused."""

    rows: pa.Table
    refused: list[Refusal]
    stats: IngestStats


@dataclass(frozen=True)
class FoldResult:
    fold: Fold
    stats: IngestStats
    remaining: list[Delta]  # deltas that still hold rows the fold did not designate


class Ingest:
    """Applies journal records to the lake under ``root`` and records lateness in ``seal``."""

    def __init__(self, root: Path, seal: SealState, quarantine: Quarantine) -> None:
        self.root = root
        self.seal = seal
        self.quarantine = quarantine
        self._keys: dict[Path, Keys] = {}  # content keys of the deltas this process wrote
        self.halt = threading.Event()  # set: long writes stop early (shutting down)
        # Minutes before this may have files though not sealed: the start-up replay wrote
        # them (a reconnect's snapshot repeats a tick that is there).
        self.files_before_ms = 0

    # -- decoding ---------------------------------------------------------------------------
    def decode(
        self,
        frames: Sequence[str | bytes],
        seqs: npt.NDArray[np.int64],
        received_us: npt.NDArray[np.int64],
    ) -> Decoded:
        """Decode frames with their journal ``seqs`` (ascending) and receive times (µs)."""
        stats = IngestStats(frames=len(frames))
        batch = decode_batch(frames)
        stats.skipped, stats.bad_frames = batch.skipped, len(batch.errors)
        index = batch.frame_index
        table = batch.ticks.append_column(
            "received_at", pa.array(received_us[index], type=pa.int64()).cast(RECEIVED_TYPE)
        ).append_column("seq", pa.array(seqs[index], type=pa.int64()))
        table = table.cast(LAKE_SCHEMA)
        storable = pc.and_(valid_symbol_mask(table["id"]), pc.is_valid(table["time"]))
        refused_rows = np.flatnonzero(~storable.to_numpy(zero_copy_only=False))
        refused = [(int(e.index), e.reason) for e in batch.errors]
        for row in refused_rows.tolist():
            symbol = table["id"][row].as_py()
            reason = f"symbol {symbol!r} cannot be stored (see ticklake symbol rules)"
            refused.append((int(index[row]), reason))
        stats.bad_symbols = len(refused_rows)
        if len(refused_rows):
            log.warning("event=lake_rows_rejected rows=%d", len(refused_rows))
            table = table.filter(storable)
        entries = [
            Refusal(int(seqs[i]), int(received_us[i]), reason, frames[i])
            for i, reason in sorted(refused)
        ]
        return Decoded(table, entries, stats)

    def _quarantine(self, decoded: Decoded) -> None:
        for refusal in decoded.refused:
            self.quarantine.add(refusal.seq, refusal.received_us, refusal.reason, refusal.frame)

    # -- live: one delta per flush ------------------------------------------------------------
    def flush(
        self,
        frames: Sequence[str | bytes],
        seqs: npt.NDArray[np.int64],
        received_us: npt.NDArray[np.int64],
        pending: Sequence[Delta] = (),
    ) -> tuple[Delta | None, IngestStats]:
        """Decode frames and append their new ticks to the lake as one delta (None if none).

        A tick the lake already holds (a re-sent snapshot, a frame sent twice) is dropped
        here: against the files of minutes already sealed (exactly, under the lake's dedupe
        rules) and against ``pending``, the deltas not yet folded, and the batch itself (by
        the 128-bit content keys of ``lake.dedupe.content_keys``). Readers never see a tick
        twice, and ``ticks_added`` counts each tick once."""
        decoded = self.decode(frames, seqs, received_us)
        stored = self._sealed_like(decoded.rows)
        rows = _new_rows(stored, decoded.rows) if stored.num_rows else decoded.rows
        keys = content_keys(rows)
        fresh = _first_of_each(keys) & ~self._known(keys, _times(rows), pending)
        if not fresh.all():
            rows = rows.filter(pa.array(fresh))
            keys = (keys[0][fresh], keys[1][fresh])
        decoded.stats.ticks_added = rows.num_rows
        decoded.stats.duplicates = decoded.rows.num_rows - rows.num_rows
        delta = write_delta(self.root, rows)  # may raise: the batch is retried whole
        if delta is not None:
            self._keys[delta.path] = _sorted_keys(keys)
        self._quarantine(decoded)
        return delta, decoded.stats

    def forget(self, kept: Sequence[Delta]) -> None:
        """Drop the content keys of every delta not in ``kept`` (folded away)."""
        paths = {d.path for d in kept}
        self._keys = {p: k for p, k in self._keys.items() if p in paths}

    def _known(
        self, keys: Keys, times: npt.NDArray[np.int64], pending: Sequence[Delta]
    ) -> npt.NDArray[np.bool_]:
        """Per row, whether a pending delta holds a tick with the same content. Only rows
        inside a delta's time range can be in it (the time is part of the content), so a
        burst's many deltas cost a comparison each, not a search each."""
        known = np.zeros(len(keys[0]), dtype=np.bool_)
        for delta in pending:
            if delta.path not in self._keys:  # written by another process: read it once
                self._keys[delta.path] = _sorted_keys(content_keys(read_delta(delta)))
            first, second = self._keys[delta.path]
            if not len(first):
                continue
            low = delta.min_time_ms if delta.min_time_ms else np.iinfo(np.int64).min
            rows = np.flatnonzero((times >= low) & (times <= delta.max_time_ms))
            if not rows.size:
                continue
            wanted = keys[0][rows]
            at = np.minimum(np.searchsorted(first, wanted), len(first) - 1)
            known[rows] |= (first[at] == wanted) & (second[at] == keys[1][rows])
        return known

    def _sealed_like(self, rows: pa.Table) -> pa.Table:
        """The stored rows of the minutes with files that ``rows`` touch: sealed minutes (late
        ticks: rare), and every minute before ``files_before_ms`` (what the start wrote)."""
        cut = max(self.seal.watermark_ms, self.files_before_ms)
        times = _times(rows)
        late = np.flatnonzero(times < cut)
        parts = [empty_lake_table()]
        if not len(late):
            return parts[0]
        # grouped by ticker with one sort (the first cycle after a start can hold every
        # ticker: a filter per ticker would cost rows x tickers)
        ids = rows["id"].take(pa.array(late)).to_numpy(zero_copy_only=False)
        order = np.argsort(ids, kind="stable")
        ids, minute_of = ids[order], (times[late] // MINUTE_MS * MINUTE_MS)[order]
        bounds = [0, *(np.flatnonzero(ids[1:] != ids[:-1]) + 1).tolist(), len(ids)]
        for lo, hi in itertools.pairwise(bounds):
            ticker, minutes = str(ids[lo]), np.unique(minute_of[lo:hi]).tolist()
            try:
                stored = read_minutes(self.root, ticker, minutes)
            except LakeReadError as exc:  # the fold sets the file aside when it gets there
                log.warning("event=late_dedupe_skipped reason=%s", logfmt(exc))
                continue
            if stored.num_rows:  # a start's first cycle asks for every ticker, most have none
                parts.append(stored)
        return pa.concat_tables(parts)

    # -- live: the fold at each seal ----------------------------------------------------------
    def fold(self, deltas: Sequence[Delta], old: Fold, new: Fold, now_ms: int) -> FoldResult:
        """Write the rows ``new`` designates to files and ``old`` did not, once per (ticker,
        minute), sync them once, publish nothing (the caller publishes ``new``)."""
        parts, remaining, lowest = [], [], new.seq + 1
        for delta in deltas:
            rows = read_delta(delta)
            seqs, times = _seqs(rows), _times(rows)
            now_in = designated_to_files(new, seqs, times)
            moving = now_in & ~designated_to_files(old, seqs, times)
            if moving.any():
                parts.append(rows.filter(pa.array(moving)))
            if not now_in.all():
                remaining.append(delta)
                lowest = min(lowest, int(seqs[~now_in].min()))
        stats = self._write_files(parts, now_ms, unique=True)
        stats.ticks_added = stats.duplicates = 0  # counted when they were flushed
        base = max(old.base_seq, min(lowest, new.seq + 1) - 1)
        fold = Fold(new.generation, base, new.seq, new.watermark_ms, new.published_ms)
        return FoldResult(fold, stats, remaining)

    # -- replay and catch-up: straight into minute files --------------------------------------
    def apply(
        self,
        frames: Sequence[str | bytes],
        seqs: npt.NDArray[np.int64],
        received_us: npt.NDArray[np.int64],
        now_ms: int,
    ) -> IngestStats:
        """Apply frames with their journal ``seqs`` (ascending) and receive times (µs)
        straight to the minute files, in chunks of ``CHUNK_FRAMES``."""
        stats, pending = IngestStats(), []
        for i in range(0, len(frames), CHUNK_FRAMES):
            part = slice(i, i + CHUNK_FRAMES)
            pending.append(self.decode(frames[part], seqs[part], received_us[part]))
            stats.add(pending[-1].stats)
        self._write_pending(pending, now_ms, int(seqs[-1]) if len(seqs) else 0, stats)
        return stats

    def apply_records(self, records: Sequence[JournalRecord], now_ms: int) -> IngestStats:
        """Apply records as read back from the journal."""
        return self.apply_all([records], now_ms)

    def apply_all(self, batches: Iterable[Sequence[JournalRecord]], now_ms: int) -> IngestStats:
        """Apply every record of ``batches``, gathering up to ``GROUP_ROWS`` rows before
        writing, so each (ticker, minute) file of a long range is written about once."""
        stats, pending, rows, last = IngestStats(), [], 0, 0
        for records in batches:
            if self.halt.is_set():
                raise LakeStopped("shutting down")
            for i in range(0, len(records), CHUNK_FRAMES):
                pending.append(self.decode(*record_columns(records[i : i + CHUNK_FRAMES])))
                stats.add(pending[-1].stats)
                rows += pending[-1].rows.num_rows
            last = records[-1].seq if records else last
            if rows >= GROUP_ROWS:
                self._write_pending(pending, now_ms, last, stats)
                pending, rows = [], 0
        self._write_pending(pending, now_ms, last, stats)
        return stats

    def _write_pending(
        self, pending: list[Decoded], now_ms: int, last_seq: int, stats: IngestStats
    ) -> None:
        """Write decoded batches into their minute files, then quarantine what they refused
        (only once the writes succeeded) and note ``last_seq`` as applied."""
        rows = [d.rows for d in pending]
        for decoded in pending:  # the rows live on in ``rows`` only, consumed by the write
            decoded.rows = empty_lake_table()
        stats.add(self._write_files(rows, now_ms))
        for decoded in pending:
            self._quarantine(decoded)
        self.seal.applied_seq = max(self.seal.applied_seq, last_seq)

    def _write_files(
        self, parts: list[pa.Table], now_ms: int, *, unique: bool = False
    ) -> IngestStats:
        """Write rows into their minute files, each once, then make them all durable with one
        filesystem sync; count what changed and mark the sealed windows that changed late.
        Consumes ``parts`` (emptied: ``write_minutes`` holds the only copy of the rows)."""
        stats = IngestStats()
        kept = [p for p in parts if p.num_rows]
        parts.clear()
        if not kept:
            return stats
        with deferred_sync():
            written = write_minutes(
                self.root,
                _concat_consumed(kept),
                unique=unique,
                threads=WRITE_THREADS,
                stop=self.halt.is_set,
            )
        sync_filesystem(self.root)
        self._count(written, now_ms, stats)
        return stats

    def _count(self, written: MinutesWrite, now_ms: int, stats: IngestStats) -> None:
        for write in written.writes:
            added = write.rows_after - write.rows_before
            stats.ticks_added += added
            stats.duplicates += write.rows_in - added
            stats.files_written += int(write.written)
            if not write.written or not self.seal.is_sealed(write.minute_start_ms):
                continue
            ticker, minute_ms = write.ticker, write.minute_start_ms
            self.seal.mark_late(ticker, minute_ms, now_ms)
            stats.late_ticks += added
            log.info(
                "event=late_ticks ticker=%s window=%d ticks=%d", logfmt(ticker), minute_ms, added
            )


def _concat_consumed(parts: list[pa.Table]) -> pa.Table:
    table = pa.concat_tables(parts)
    parts.clear()
    return table


def _first_of_each(keys: Keys) -> npt.NDArray[np.bool_]:
    """Per row, whether no earlier row of the batch has the same content keys."""
    order = np.lexsort((keys[1], keys[0]))  # stable: equal rows keep their order
    first, second = keys[0][order], keys[1][order]
    again = (first[1:] == first[:-1]) & (second[1:] == second[:-1])
    out = np.ones(len(first), dtype=np.bool_)
    out[order[1:][again]] = False
    return out


def _sorted_keys(keys: Keys) -> Keys:
    order = np.argsort(keys[0], kind="stable")
    return keys[0][order], keys[1][order]


def _new_rows(stored: pa.Table, incoming: pa.Table) -> pa.Table:
    """The rows of ``incoming`` that the dedupe rules keep beside ``stored``."""
    merged, _ = merge_ticks(stored, incoming)
    kept = pc.is_in(incoming["seq"], value_set=merged["seq"])
    fresh = pc.invert(pc.is_in(incoming["seq"], value_set=stored["seq"]))
    return incoming.filter(pc.and_(kept, fresh))


def record_columns(
    records: Sequence[JournalRecord],
) -> tuple[list[str | bytes], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Frames, seqs and receive times (µs) of journal records, as ``Ingest`` takes them."""
    count = len(records)
    return (
        [r.frame for r in records],
        np.fromiter((r.seq for r in records), dtype=np.int64, count=count),
        np.fromiter((r.received_at_us for r in records), dtype=np.int64, count=count),
    )


def _times(rows: pa.Table) -> npt.NDArray[np.int64]:
    return np.asarray(rows["time"].cast(pa.int64()).to_numpy(), dtype=np.int64)


def _seqs(rows: pa.Table) -> npt.NDArray[np.int64]:
    return np.asarray(rows["seq"].to_numpy(), dtype=np.int64)
