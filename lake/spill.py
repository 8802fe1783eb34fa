"""Sorted runs spilled to disk, and their merge by time: a day of any size in bounded memory.

An import's rows bound for history day files come in any order and any amount. ``Spill``
buffers them (``buffer_rows`` at most), then writes each (ticker, UTC day)'s buffered rows,
sorted by (``time``, ``seq``), as one *run*: a temporary Parquet file. ``merge_by_time``
reads sorted streams (runs, a day file) a batch at a time and cuts them at common times:
step k holds, per stream, every row with ``time`` in ``[cut_(k-1), cut_k)``. Rows of equal
``time`` always arrive in the same step, and only they can be duplicates (the tick content
includes ``time``; ``dedupe.py``), so a merge that dedupes step by step dedupes the whole.

Invariants:
- a run holds the rows of one key, sorted by (``time``, ``seq``), in LAKE_SCHEMA, values bit
  for bit (no dictionary encoding, which could fold NaN payloads or -0.0);
- memory: ``buffer_rows`` rows (and their sorted copy) while spilling; while merging, about
  ``merge_rows`` rows over all streams, plus the rows of one millisecond when a single
  ``time`` holds more than a batch (they must be compared together);
- a key with more than ``FAN_IN`` runs has groups of them merged into longer runs first, so
  no merge reads more than ``FAN_IN`` runs at once;
- run files are named as temporaries (``lake.atomic.temporary_pid``): ``close`` removes
  them, and maintenance (``dead_temporaries``) removes those of a killed import.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from lake.atomic import TMP_SUFFIX
from lake.schema import LAKE_SCHEMA, empty_lake_table
from lake.utc import DAY_MS

__all__ = ["FAN_IN", "Spill", "SpillKey", "merge_by_time", "read_sorted"]

FAN_IN: Final = 16  # runs merged at once
RUN_GROUP_ROWS: Final = 8_192  # rows per row group of a run: the unit a merge reads
_ORDER: Final = [("time", "ascending"), ("seq", "ascending")]

SpillKey = tuple[str, int]  # (ticker, UTC day number since 1970-01-01)


class Spill:
    """Rows buffered, then spilled as sorted runs per (ticker, day) under ``folder``."""

    def __init__(self, folder: Path, buffer_rows: int, merge_rows: int) -> None:
        self.folder, self.buffer_rows, self.merge_rows = folder, buffer_rows, merge_rows
        self.runs: dict[SpillKey, list[Path]] = {}
        self.rows: dict[SpillKey, int] = {}
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._files = 0

    def add(self, table: pa.Table) -> None:
        """Buffer LAKE_SCHEMA rows; spill the buffer once it holds ``buffer_rows``."""
        if table.num_rows:
            self._buffer.append(table)
            self._buffered += table.num_rows
        if self._buffered >= self.buffer_rows:
            self.flush()

    def flush(self) -> None:
        """Write the buffer as one sorted run per key it holds, and empty it."""
        if not self._buffered:
            return
        table = pa.concat_tables(self._buffer)
        self._buffer, self._buffered = [], 0
        encoded = table["id"].combine_chunks().dictionary_encode()
        codes = np.asarray(encoded.indices.to_numpy(), dtype=np.int64)
        times = _times(table)
        days = np.floor_divide(times, DAY_MS)
        seqs = np.asarray(table["seq"].to_numpy(), dtype=np.int64)
        order = np.lexsort((seqs, times, days, codes))
        codes, days = codes[order], days[order]
        table = table.take(pa.array(order))
        del order, times, seqs
        starts = np.flatnonzero(np.r_[True, (np.diff(codes) != 0) | (np.diff(days) != 0)])
        for start, end in zip(starts.tolist(), [*starts[1:].tolist(), len(codes)], strict=True):
            key = (str(encoded.dictionary[int(codes[start])].as_py()), int(days[start]))
            self.runs.setdefault(key, []).append(self._write(table.slice(start, end - start)))
            self.rows[key] = self.rows.get(key, 0) + end - start

    def streams(self, key: SpillKey) -> list[Iterator[pa.Table]]:
        """The key's runs as at most ``FAN_IN`` sorted streams (longer runs merged first)."""
        runs = self.runs.get(key, [])
        while len(runs) > FAN_IN:
            runs = [self._combine(runs[i : i + FAN_IN]) for i in range(0, len(runs), FAN_IN)]
            self.runs[key] = runs
        batch = max(1_024, self.merge_rows // max(1, len(runs) + 1))
        return [read_sorted(path, batch) for path in runs]

    def close(self) -> None:
        """Remove every run file."""
        for runs in self.runs.values():
            for path in runs:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        self.runs.clear()

    def _combine(self, runs: list[Path]) -> Path:
        """One run holding the rows of ``runs`` (which are then removed), streamed."""
        batch = max(1_024, self.merge_rows // len(runs))
        path = self._next_path()
        with _run_writer(path) as writer:
            for parts in merge_by_time([read_sorted(run, batch) for run in runs]):
                writer.write_table(pa.concat_tables(parts).sort_by(_ORDER), RUN_GROUP_ROWS)
        for run in runs:
            run.unlink()
        return path

    def _write(self, rows: pa.Table) -> Path:
        path = self._next_path()
        with _run_writer(path) as writer:
            writer.write_table(rows, RUN_GROUP_ROWS)
        return path

    def _next_path(self) -> Path:
        self._files += 1
        return self.folder / f".import-run-{self._files}.{os.getpid()}{TMP_SUFFIX}"


def _run_writer(path: Path) -> pq.ParquetWriter:
    path.parent.mkdir(parents=True, exist_ok=True)
    return pq.ParquetWriter(path, LAKE_SCHEMA, compression="lz4", use_dictionary=False)


def read_sorted(path: Path, batch_rows: int) -> Iterator[pa.Table]:
    """A run (or any Parquet file of LAKE_SCHEMA rows) ``batch_rows`` at a time."""
    with pq.ParquetFile(path, pre_buffer=False) as file:
        for batch in file.iter_batches(batch_size=batch_rows, use_threads=False):
            yield pa.Table.from_batches([batch])


def merge_by_time(streams: Sequence[Iterator[pa.Table]]) -> Iterator[list[pa.Table]]:
    """Cut streams sorted by ``time`` at common times: each step yields one table per
    stream (in order, maybe empty) with every row of that stream in the step's time range;
    ranges follow each other without overlap, so equal times always share a step.

    A step's cut is the lowest last-read time over the streams not yet ended: rows below it
    are complete in every stream. A stream whose held rows all have the cut's time reads
    its next batch too (the millisecond may continue there). ValueError if a stream is not
    sorted by ``time``.
    """
    held = [empty_lake_table()] * len(streams)
    times = [np.zeros(0, dtype=np.int64)] * len(streams)
    live = [True] * len(streams)

    def pull(i: int) -> None:
        for table in streams[i]:
            if table.num_rows:
                new = _times(table)
                if np.any(np.diff(new) < 0) or (len(times[i]) and new[0] < times[i][-1]):
                    raise ValueError("a merged stream is not sorted by time")
                held[i] = pa.concat_tables([held[i], table]) if held[i].num_rows else table
                times[i] = np.concatenate([times[i], new])
                return
        live[i] = False

    for i in range(len(streams)):
        pull(i)
    while any(live):
        cut = min(int(times[i][-1]) for i in range(len(streams)) if live[i])
        parts = []
        for i in range(len(streams)):
            k = int(np.searchsorted(times[i], cut, side="left"))
            parts.append(held[i].slice(0, k))
            held[i], times[i] = held[i].slice(k), times[i][k:]
        if any(p.num_rows for p in parts):
            yield parts
        for i in range(len(streams)):
            if live[i] and (not len(times[i]) or times[i][-1] == cut):
                pull(i)
    if any(h.num_rows for h in held):
        yield held


def _times(table: pa.Table) -> npt.NDArray[np.int64]:
    return np.asarray(table["time"].cast(pa.int64()).to_numpy(), dtype=np.int64)
