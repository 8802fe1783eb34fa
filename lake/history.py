"""The history tier: one time-sorted Parquet file per (ticker, UTC date), and its lock.

Paths come from ``layout.py``; ``compact.py`` moves sealed days here; ``lake.py`` reads both
tiers and sends late ticks of a compacted day here.

Invariants of every day file (``history/ticker=…/date=…/part.parquet``):
- it holds exactly ``LAKE_SCHEMA``, rows of one ticker whose ``time`` lies in the UTC date,
  sorted by (``time``, ``seq``), obeying the dedupe rules of ``dedupe.py``: it is what the
  day's minute files would hold merged;
- row groups are cut at every second whole UTC hour (``ROW_GROUP_MINUTES``; at most
  ``MAX_ROW_GROUP_ROWS`` rows), with min/max statistics on ``time`` and ``seq``: a reader of
  an hour opens one or two row groups (an equity day of 08:00-24:00 has 8);
- strings and floats are dictionary-encoded, integers and timestamps delta-encoded, LZ4:
  it decodes faster than zstd, whose cost is per page. Each row group repeats every column
  chunk's metadata in the footer, so two-hour groups read faster and take fewer bytes per
  tick than one-hour ones, while an hour's query still skips the rest of the day, which
  whole-day groups would not allow (README, History tier). Files written before (zstd,
  1 h) stay readable as they are;
- it is only ever replaced whole and atomically (temporary, fsync, rename, folder fsync).

The tier lock (``history/.lock``, an ``flock``) orders the two kinds of writers: minute
writers hold it shared while they choose a tier for a day's rows and write them; compaction
holds it exclusively while it swaps a day into this tier. So no minute file is ever written
for a day once its day file exists, and none changes while a day is being swapped in.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lake.atomic import make_dirs_durable, replace_file
from lake.datadir import HISTORY_DIR, HISTORY_LOCK
from lake.dedupe import merge_ticks
from lake.schema import LAKE_SCHEMA, empty_lake_table, stored_columns, upgrade
from lake.spill import merge_by_time
from lake.utc import DAY_MS, MINUTE_MS, day_start_ms

__all__ = [
    "COMPRESSION",
    "MAX_ROW_GROUP_ROWS",
    "ROW_GROUP_MINUTES",
    "DayMerge",
    "DayStream",
    "day_minutes",
    "ensure_placeholder",
    "merge_into_day",
    "merge_streams_into_day",
    "read_day",
    "read_day_minutes",
    "tier_lock",
    "write_day",
]

ROW_GROUP_MINUTES: Final = 120
COMPRESSION: Final = "lz4"
MAX_ROW_GROUP_ROWS: Final = 1 << 17
STATISTICS: Final = ["time", "seq"]
_DICTIONARY: Final = [
    f.name for f in LAKE_SCHEMA if pa.types.is_string(f.type) or pa.types.is_floating(f.type)
]
_DELTA: Final = {
    f.name: "DELTA_BINARY_PACKED"
    for f in LAKE_SCHEMA
    if pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type)
}
_TIME: Final = LAKE_SCHEMA.get_field_index("time")
_SEQ: Final = LAKE_SCHEMA.get_field_index("seq")
_GROUP_MS: Final = ROW_GROUP_MINUTES * MINUTE_MS
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@contextlib.contextmanager
def tier_lock(root: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold the tier lock of the lake at ``root`` (see the module docstring).

    Each call opens its own descriptor, so threads of one process exclude each other too.
    """
    path = Path(root, HISTORY_DIR, HISTORY_LOCK)
    if not path.parent.is_dir():
        make_dirs_durable(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def ensure_placeholder(path: Path) -> None:
    """Create a tier's zero-row placeholder file (``layout.*_placeholder``) if missing."""
    if not path.is_file():
        replace_file(path, lambda tmp: pq.write_table(empty_lake_table(), tmp))


def write_day(table: pa.Table, path: Path) -> None:
    """Write a day's rows (LAKE_SCHEMA; sorted here by (time, seq) unless they already are)
    to ``path``, not atomically: callers write a temporary and rename it."""
    times = np.asarray(table["time"].cast(pa.int64()).to_numpy(), dtype=np.int64)
    seqs = np.asarray(table["seq"].to_numpy(), dtype=np.int64)
    steps, ties = np.diff(times), np.diff(seqs)
    if np.any((steps < 0) | ((steps == 0) & (ties < 0))):
        table = table.sort_by([("time", "ascending"), ("seq", "ascending")])
        times = np.asarray(table["time"].cast(pa.int64()).to_numpy(), dtype=np.int64)
    cuts = np.flatnonzero(np.diff(times // _GROUP_MS)) + 1
    bounds = np.r_[0, cuts, len(times)]
    with _day_file_writer(path) as writer:
        if table.num_rows == 0:
            writer.write_table(table)
        for start, end in itertools.pairwise(bounds):
            writer.write_table(table.slice(start, end - start), row_group_size=MAX_ROW_GROUP_ROWS)


def _day_file_writer(path: Path) -> pq.ParquetWriter:
    """A writer of a day file's encodings and statistics (the module's invariants)."""
    return pq.ParquetWriter(
        path,
        LAKE_SCHEMA,
        compression=COMPRESSION,
        use_dictionary=_DICTIONARY,
        column_encoding=_DELTA,
        write_statistics=STATISTICS,
    )


class _DayWriter:
    """Writes (time, seq)-sorted rows given in pieces as ``write_day`` writes them whole:
    row groups cut at every ``ROW_GROUP_MINUTES`` and at ``MAX_ROW_GROUP_ROWS`` rows, the
    same groups whatever the pieces; it holds at most one row group's rows."""

    def __init__(self, path: Path) -> None:
        self.writer = _day_file_writer(path)
        self.held: list[pa.Table] = []
        self.rows = self.written = 0
        self.group: int | None = None

    def add(self, table: pa.Table) -> None:
        times = np.asarray(table["time"].cast(pa.int64()).to_numpy(), dtype=np.int64)
        groups = times // _GROUP_MS
        bounds = np.r_[0, np.flatnonzero(np.diff(groups)) + 1, len(times)].tolist()
        for start, end in itertools.pairwise(bounds):
            if self.group != int(groups[start]):
                self._flush(everything=True)
                self.group = int(groups[start])
            self.held.append(table.slice(start, end - start))
            self.rows += end - start
            self._flush(everything=False)

    def close(self) -> None:
        self._flush(everything=True)
        if not self.written:
            self.writer.write_table(empty_lake_table())
        self.writer.close()

    def _flush(self, *, everything: bool) -> None:
        """Write full row groups (and, with ``everything``, the rest) of the held rows."""
        if not self.rows or (not everything and self.rows < MAX_ROW_GROUP_ROWS):
            return
        rows = pa.concat_tables(self.held).combine_chunks()
        cut = self.rows if everything else self.rows - self.rows % MAX_ROW_GROUP_ROWS
        for start in range(0, cut, MAX_ROW_GROUP_ROWS):
            group = rows.slice(start, min(MAX_ROW_GROUP_ROWS, cut - start))
            self.writer.write_table(group, row_group_size=MAX_ROW_GROUP_ROWS)
        self.held, self.rows = [rows.slice(cut)] if cut < self.rows else [], self.rows - cut
        self.written += cut


def write_day_atomically(table: pa.Table, path: Path) -> int:
    """Replace ``path`` with a day file of ``table``; returns its size in bytes."""
    return replace_file(path, lambda tmp: write_day(table, tmp))


@dataclass(frozen=True)
class DayMerge:
    """Per requested minute: rows before, rows passed in, rows after, rows added (new or
    replacing a copy with a higher seq); and the day file's size if it was rewritten."""

    before: list[int]
    incoming: list[int]
    after: list[int]
    added: list[int]
    bytes_written: int


def merge_into_day(
    path: Path, minutes: list[int], rows: pa.Table, write: Callable[[pa.Table], int]
) -> DayMerge:
    """Merge LAKE_SCHEMA ``rows`` of ``minutes`` into a day file under the dedupe rules,
    creating it if missing (an import of a past day); ``write(table)`` replaces the file
    atomically and returns its size.

    The merge is first tried against the row groups that can hold a duplicate of ``rows``
    (their minutes, overlapping seqs): a replay of ticks already there reads a row group or
    two and writes nothing. Only a real addition reads and rewrites the whole day. Raises
    ValueError for a file that does not hold LAKE_SCHEMA.
    """
    incoming = _per_minute(rows, minutes)
    if not path.is_file():
        merged, _ = merge_ticks(empty_lake_table(), rows)
        after = _per_minute(merged, minutes)
        return DayMerge([0] * len(minutes), incoming, after, after, write(merged))
    ranges = sorted({(m, m + MINUTE_MS) for m in minutes})
    seq_range = (int(pc.min(rows["seq"]).as_py()), int(pc.max(rows["seq"]).as_py()))
    nearby = read_day(path, None, ranges, seq_range)
    _, kept_new = merge_ticks(nearby, rows)
    before = _per_minute(nearby, minutes)
    if not kept_new:
        return DayMerge(before, incoming, before, [0] * len(minutes), 0)
    existing = read_day(path)
    if not existing.schema.equals(LAKE_SCHEMA):
        raise ValueError(f"{path} does not hold LAKE_SCHEMA")
    merged, _ = merge_ticks(existing, rows)
    new = pc.invert(pc.is_in(merged["seq"], value_set=existing["seq"]))
    added = _per_minute(merged.filter(new), minutes)
    return DayMerge(before, incoming, _per_minute(merged, minutes), added, write(merged))


@dataclass(frozen=True)
class DayStream:
    """What ``merge_streams_into_day`` did: rows of the day file before and after, rows
    passed in and kept; the file's new size, 0 when it was left as it was."""

    rows_before: int
    rows_in: int
    rows_after: int
    kept_new: int
    bytes_written: int


class _Unchanged(Exception):
    """Nothing new: the temporary is dropped and the day file left as it was."""


def merge_streams_into_day(
    path: Path,
    incoming: Sequence[Iterator[pa.Table]],
    seq_range: tuple[int, int],
    batch_rows: int = 32_768,
) -> DayStream:
    """``merge_into_day`` for new rows of any size: merge ``incoming`` into the day file
    ``path`` (created if missing) under the dedupe rules, holding batches in memory, never
    the day, and replace it atomically (temporary, fsync, rename) unless nothing was kept.

    ``incoming``: streams of LAKE_SCHEMA rows, each sorted by (time, seq), with distinct
    seqs inside ``seq_range`` (inclusive; an import's). The file's rows with a seq in that
    range are held (8 bytes each; none but an interrupted run of the same import has them):
    an incoming row with such a seq is dropped, as ``merge_ticks`` keeps the existing row
    of a seq. Everything else is decided a time step at a time (``spill.merge_by_time``):
    ``merge_ticks`` over the step's existing and incoming rows, which is exact because rows
    of equal content share their ``time``. The result equals ``merge_into_day``'s row for
    row, in the same row groups. Raises ValueError for a file that does not hold
    LAKE_SCHEMA or is not sorted by time.
    """
    existing = _seqs_in(path, seq_range)
    counts = {"before": 0, "in": 0, "after": 0, "kept": 0}

    def write(tmp: Path) -> None:
        day = _DayWriter(tmp)
        try:
            streams = [_day_batches(path, batch_rows), *incoming]
            for old, *parts in merge_by_time(streams):
                new = pa.concat_tables(parts)
                counts["in"] += new.num_rows
                if len(existing) and new.num_rows:
                    seqs = np.asarray(new["seq"].to_numpy(), dtype=np.int64)
                    at = np.minimum(np.searchsorted(existing, seqs), len(existing) - 1)
                    new = new.filter(pa.array(existing[at] != seqs))
                merged, kept = merge_ticks(old, new)
                counts["before"] += old.num_rows
                counts["after"] += merged.num_rows
                counts["kept"] += kept
                day.add(merged)
        except BaseException:
            day.writer.close()
            raise
        day.close()
        if not counts["kept"]:
            raise _Unchanged

    try:
        size = replace_file(path, write)
    except _Unchanged:
        size = 0
    c = counts
    return DayStream(c["before"], c["in"], c["after"], c["kept"], size)


def _day_batches(path: Path, batch_rows: int) -> Iterator[pa.Table]:
    """The day file's rows (today's columns) ``batch_rows`` at a time; none if missing."""
    if not path.is_file():
        return
    with pq.ParquetFile(path, pre_buffer=False) as file:
        stored = file.schema_arrow.names
        names = LAKE_SCHEMA.names
        read = names if set(names) <= set(stored) else stored_columns(names, stored)
        for batch in file.iter_batches(batch_size=batch_rows, columns=read, use_threads=False):
            table = upgrade(pa.Table.from_batches([batch]))
            if not table.schema.equals(LAKE_SCHEMA):
                raise ValueError(f"{path} does not hold LAKE_SCHEMA")
            yield table


def _seqs_in(path: Path, seq_range: tuple[int, int]) -> npt.NDArray[np.int64]:
    """The day file's seqs inside ``seq_range`` (inclusive), sorted; reads only the ``seq``
    column of row groups whose statistics overlap the range."""
    if not path.is_file():
        return np.zeros(0, dtype=np.int64)
    lo, hi = seq_range
    found = [np.zeros(0, dtype=np.int64)]
    with pq.ParquetFile(path, pre_buffer=False) as file:
        column = file.schema_arrow.get_field_index("seq")
        for group in range(file.num_row_groups):
            stats = file.metadata.row_group(group).column(column).statistics
            if stats is not None and stats.has_min_max and (stats.max < lo or stats.min > hi):
                continue
            seqs = file.read_row_group(group, ["seq"])["seq"].to_numpy()
            seqs = np.asarray(seqs, dtype=np.int64)
            found.append(seqs[(seqs >= lo) & (seqs <= hi)])
    return np.sort(np.concatenate(found))


def _per_minute(table: pa.Table, minutes: list[int]) -> list[int]:
    """How many rows of ``table`` fall in each of ``minutes``."""
    times = np.asarray(table["time"].cast(pa.int64()).to_numpy(), dtype=np.int64)
    starts, counts = np.unique(times - times % MINUTE_MS, return_counts=True)
    found = dict(zip(starts.tolist(), counts.tolist(), strict=True))
    return [int(found.get(m, 0)) for m in minutes]


def read_day(
    path: Path | pa.NativeFile,
    columns: list[str] | None = None,
    ranges: Iterable[tuple[int, int]] | None = None,
    seq_range: tuple[int, int] | None = None,
    *,
    dictionary: Sequence[str] = (),
) -> pa.Table:
    """Rows of a day file, optionally only those with ``time`` in one of ``ranges``
    (``[lo, hi)`` epoch ms, sorted or not) or ``seq`` in ``seq_range`` (inclusive).

    Only row groups whose statistics overlap a range are read, and only ``columns``
    (LAKE_SCHEMA's by default). Columns named in ``dictionary`` come dictionary-encoded
    (such strings, ``market_hours`` say, read faster than plain ones). A file written
    before fields 35-45 had names reads as today's columns (``lake.schema.upgrade``).
    Raises FileNotFoundError for a missing file.
    """
    wanted = LAKE_SCHEMA.names if columns is None else list(columns)
    file = pq.ParquetFile(path, pre_buffer=False, read_dictionary=list(dictionary) or None)
    stored = file.schema_arrow.names
    names = wanted if set(wanted) <= set(stored) else stored_columns(wanted, stored)
    if names is not wanted:
        return upgrade(_read_day(file, names, ranges, seq_range), wanted)
    return _read_day(file, names, ranges, seq_range)


def _read_day(
    file: pq.ParquetFile,
    names: list[str],
    ranges: Iterable[tuple[int, int]] | None,
    seq_range: tuple[int, int] | None,
) -> pa.Table:
    if ranges is None and seq_range is None:
        return file.read(columns=names, use_threads=False).select(names)
    wanted = sorted(ranges or ())
    groups = [g for g in range(file.num_row_groups) if _overlaps(file, g, wanted, seq_range)]
    read = names if "time" in names or not wanted else [*names, "time"]
    if "seq" not in read and seq_range is not None:
        read = [*read, "seq"]
    table = file.read_row_groups(groups, read, use_threads=False) if groups else _empty(read)
    keep = pa.array(np.zeros(table.num_rows, dtype=np.bool_))
    if wanted:
        times = np.asarray(table["time"].cast(pa.int64()).to_numpy(), dtype=np.int64)
        los = np.array([lo for lo, _ in wanted], dtype=np.int64)
        his = np.array([hi for _, hi in wanted], dtype=np.int64)
        k = np.searchsorted(los, times, side="right") - 1  # the last range starting <= time
        inside = (k >= 0) & (times < np.maximum.accumulate(his)[np.maximum(k, 0)])
        keep = pa.array(inside)
    if seq_range is not None:
        lo, hi = seq_range
        in_seq = pc.and_(pc.greater_equal(table["seq"], lo), pc.less_equal(table["seq"], hi))
        keep = pc.or_(keep, pc.fill_null(in_seq, False))
    return table.filter(keep).select(names)


def read_day_minutes(
    path: Path | pa.NativeFile,
    minute_starts_ms: Iterable[int],
    columns: list[str],
    *,
    dictionary: Sequence[str] = (),
) -> pa.Table:
    """Rows of the given UTC minutes of a day file, in (time, seq) order."""
    starts = sorted(set(minute_starts_ms))
    if not starts:
        return _empty(columns)
    ranges = _merge_ranges(starts)
    return read_day(path, columns, ranges, dictionary=dictionary)


def day_minutes(path: Path | pa.NativeFile) -> list[int]:
    """Start (epoch ms) of every minute that has a row in the day file."""
    times = pq.ParquetFile(path).read(columns=["time"])["time"].cast(pa.int64()).to_numpy()
    return [int(m) * MINUTE_MS for m in np.unique(np.asarray(times) // MINUTE_MS)]


def day_range(date: dt.date) -> tuple[int, int]:
    """``[start, end)`` epoch ms of a UTC date."""
    start = day_start_ms(date)
    return start, start + DAY_MS


def _merge_ranges(starts: list[int]) -> list[tuple[int, int]]:
    """Sorted minute starts as few ``[lo, hi)`` ranges as possible."""
    ranges: list[tuple[int, int]] = []
    for start in starts:
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], start + MINUTE_MS)
        else:
            ranges.append((start, start + MINUTE_MS))
    return ranges


def _overlaps(
    file: pq.ParquetFile,
    group: int,
    ranges: list[tuple[int, int]],
    seq_range: tuple[int, int] | None,
) -> bool:
    meta = file.metadata.row_group(group)
    if meta.num_rows == 0:
        return False
    time_stats, seq_stats = meta.column(_TIME).statistics, meta.column(_SEQ).statistics
    if time_stats is None or not time_stats.has_min_max:
        return True  # not written by write_day: read it
    lo, hi = _epoch_ms(time_stats.min), _epoch_ms(time_stats.max)
    if any(r_lo <= hi and lo < r_hi for r_lo, r_hi in ranges):
        return True
    if seq_range is None or seq_stats is None or not seq_stats.has_min_max:
        return seq_range is not None
    return bool(seq_stats.min <= seq_range[1] and seq_range[0] <= seq_stats.max)


def _epoch_ms(value: object) -> int:
    """A ``time`` statistic (an aware datetime, or raw int64 ms) as epoch ms, exactly."""
    if isinstance(value, dt.datetime):
        return (value - _EPOCH) // dt.timedelta(milliseconds=1)
    assert isinstance(value, int)
    return value


def _empty(columns: list[str]) -> pa.Table:
    return pa.schema([LAKE_SCHEMA.field(c) for c in columns]).empty_table()
