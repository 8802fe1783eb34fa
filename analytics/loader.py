"""Ticks of many (ticker, minute) windows at once, read from exact lake paths of both tiers.

``load_windows`` serves the per-minute job and backfill alike: give it any number of
tickers, each with any set of minutes, and it returns the ticks of those minutes plus the
volume lookback that ``analytics.features`` needs, ready for ``compute_features``: for
every *run* of consecutive requested minutes of a ticker that holds a reading, one extra
row, the last ``day_volume`` reading before the run (``analytics.lookback``), whose
window is not requested. A run without any reading (FX, say) needs no lookback.

Invariants: only exact paths are read (never a glob of the lake); a (ticker, date) is
read from its history day file when it exists (only the row groups of the requested
minutes), else from its minute files (``lake.index``); the requested windows
come back as a table even where no file exists (those yield no feature row); ``ticks``
has the ``LOAD_COLUMNS`` of ``LAKE_SCHEMA``, sorted by (ticker, time, seq) within each
ticker, its lookback rows first; its ``id`` is dictionary-encoded over the requested
tickers and ``market_hours`` dictionary-encoded too (``load_schema``): a day file's
strings read faster that way, and tickers compare as integers.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from analytics.codes import ticker_codes
from analytics.lookback import (
    PROBE_MINUTES,
    LoadedMinutes,
    ReadingCache,
    last_reading,
    lookahead_limit_ms,
    lookback_floor_ms,
    previous_reading,
)
from lake.errors import LakeReadError
from lake.history import read_day, read_day_minutes
from lake.index import FileKey, LakeIndex, file_key, minute_path
from lake.offload import readable
from lake.recent import RECENT
from lake.remote import RemoteDay
from lake.schema import LAKE_SCHEMA, TIME_TYPE
from lake.utc import DAY_MS, MINUTE_MS

__all__ = [
    "LOAD_COLUMNS",
    "Loaded",
    "load_schema",
    "load_windows",
    "next_windows",
    "read_files",
    "read_sources",
]

LOAD_COLUMNS: Final = ("id", "time", "seq", "price", "day_volume", "market_hours", "received_at")
Minutes = Sequence[int] | NDArray[np.int64]  # minute starts, epoch ms
_NONE: Final = np.zeros(0, np.int64)


@dataclass(frozen=True)
class Loaded:
    """What ``compute_features(ticks, windows)`` needs, and what it took to read it."""

    ticks: pa.Table
    windows: pa.Table
    lookback_rows: int
    lookback_files: int


def next_windows(
    index: LakeIndex,
    ticker: str,
    start_ms: int,
    limit_ms: int,
    cache: ReadingCache | None = None,
    columns: Sequence[str] = LOAD_COLUMNS,
) -> list[int]:
    """The windows whose volume a change to window ``start_ms`` can alter: the ticker's
    following minutes with a file, up to and including the first holding a reading (its
    first increment is measured from the changed window's last reading), before
    ``limit_ms`` and within the session.

    A late tick carrying ``day_volume`` moves volume between its window and the next one;
    recomputing only its own window would count that volume twice.
    """
    stop = min(limit_ms, lookahead_limit_ms(ticker, start_ms))
    found: list[int] = []
    lo = start_ms + MINUTE_MS
    for hi in (min(stop, lo + PROBE_MINUTES * MINUTE_MS), stop):
        for minute in index.minutes(ticker, lo, hi):
            found.append(minute)
            row, _ = last_reading(index, ticker, minute, list(columns), cache)
            if row is not None:
                return found
        lo = max(lo, hi)
    return found


def load_windows(
    root: Path,
    windows: Mapping[str, Iterable[int]],
    *,
    index: LakeIndex | None = None,
    columns: Sequence[str] = LOAD_COLUMNS,
    threads: int = 4,
    cache: ReadingCache | None = None,
) -> Loaded:
    """Ticks of every requested (ticker, minute start) plus their volume lookback rows.

    ``columns`` must include ``id``, ``time``, ``seq``, ``price`` and ``day_volume``. Tickers
    are read in up to ``threads`` threads. Missing files are skipped. With ``cache``, the
    last reading of every file read is remembered and lookbacks are served from it.

    Stages: find each requested minute's file (``_locate``); read them all at once and
    group the rows by ticker (``_grouped``); remember their last readings in ``cache``;
    walk back from each run of minutes for its lookback row (``_Lookbacks``); put each
    ticker's lookback rows before its ticks (``_with_lookbacks``).
    """
    index = index or LakeIndex(root)
    names = _checked_columns(columns)
    requested = _requested(windows)
    tickers = sorted(requested)  # codes index this order
    names_array = pa.array(tickers, pa.string())
    located = _locate(index, requested, tickers)
    read = read_sources(located.paths, located.days, names, located.recent, names_array)
    ticks = _grouped(read, names_array)
    if cache is not None:
        for i, ticker in enumerate(tickers):
            keys = located.keys[ticker]
            _remember_readings(cache, ticker, requested[ticker], keys, ticks.ticker(i))
    which, starts = _requested_windows(requested, tickers)
    walks = _walk_starts(tickers, which, starts, ticks.code, ticks.time_ms, ticks.has_reading)
    lookbacks = _Lookbacks(index, tickers, requested, ticks, names, cache)
    extra, lookback_files = lookbacks.find(walks, threads)
    windows_table = pa.table(  # tickers encoded as the ticks' ids are: matched by code, not by name
        {
            "ticker": pa.DictionaryArray.from_arrays(which, names_array),
            "window_start": pa.array(starts.astype(np.int64), TIME_TYPE),
        }
    )
    with_lookbacks = _with_lookbacks(ticks, extra, names_array, names)
    return Loaded(with_lookbacks, windows_table, sum(map(len, extra.values())), lookback_files)


def _checked_columns(columns: Sequence[str]) -> list[str]:
    """``columns`` as a list; ValueError if one that ``load_windows`` needs is missing."""
    names = list(columns)
    missing = {"id", "time", "seq", "price", "day_volume"} - set(names)
    if missing:
        raise ValueError(f"load_windows needs column(s) {', '.join(sorted(missing))}")
    return names


@dataclass
class _Located:
    """Where the requested minutes' ticks are: per ticker, the file key of each requested
    minute (None: no file); the minute files to read, the minute files' tables this
    process holds (``lake.recent``), and the (ticker, day file, minutes) to read."""

    keys: dict[str, list[FileKey | None]] = field(default_factory=dict)
    paths: list[Path] = field(default_factory=list)
    recent: list[pa.Table] = field(default_factory=list)
    days: list[tuple[str, Path | RemoteDay, Minutes]] = field(default_factory=list)

    def add_minute_files(self, index: LakeIndex, ticker: str, minutes: NDArray[np.int64]) -> None:
        """``minutes`` of a day without a day file: their minute files, if any."""
        keys = self.keys[ticker]
        for minute in minutes.tolist():
            path = minute_path(index.root, ticker, minute)
            key = file_key(path)
            keys.append(key)
            if key is None:
                continue
            known = RECENT.get(path, key)  # this process wrote it: no need to read it
            if known is not None:
                self.recent.append(known)
            else:
                self.paths.append(path)


def _locate(
    index: LakeIndex, requested: Mapping[str, NDArray[np.int64]], tickers: list[str]
) -> _Located:
    """The files holding the ``requested`` minutes of ``tickers``, in that order: a day's
    file where it exists (only the requested minutes are read), else its minute files."""
    located = _Located()
    for ticker in tickers:  # in code order: the parts come out grouped
        ms = requested[ticker]
        keys = located.keys[ticker] = []
        day_of = ms // DAY_MS
        cuts = [0, *(np.flatnonzero(day_of[1:] != day_of[:-1]) + 1).tolist(), len(ms)]
        for lo, hi in itertools.pairwise(cuts):
            day, day_minutes = int(day_of[lo]), ms[lo:hi]
            day_file = index.day_file(ticker, day)
            if day_file is None:
                located.add_minute_files(index, ticker, day_minutes)
                continue
            key = file_key(day_file)
            keys.extend([key] * len(day_minutes))
            if key is not None:
                located.days.append((ticker, day_file, day_minutes))
    return located


@dataclass(frozen=True)
class _Grouped:
    """The loaded ticks grouped by ticker code (an index into the requested tickers; ticker
    i's rows are ``[bounds[i], bounds[i + 1])``), sorted by (time, seq) within each, with
    two of their columns as NumPy arrays (converted once for all tickers)."""

    table: pa.Table
    code: NDArray[np.int64]
    bounds: NDArray[np.intp]
    time_ms: NDArray[np.int64]
    has_reading: NDArray[np.bool_]

    def rows(self, i: int) -> tuple[int, int]:
        """Where ticker ``i``'s rows are: [lo, hi)."""
        return int(self.bounds[i]), int(self.bounds[i + 1])

    def ticker(self, i: int) -> _TickerTicks:
        lo, hi = self.rows(i)
        return _TickerTicks(
            self.table.slice(lo, hi - lo), self.time_ms[lo:hi], self.has_reading[lo:hi]
        )


def _grouped(ticks: pa.Table, tickers: pa.Array) -> _Grouped:
    """``ticks`` (from ``read_sources``) grouped by their ticker's code in ``tickers``;
    rows of other tickers dropped."""
    code = ticker_codes(ticks["id"], tickers)
    if len(code) and (code[0] < 0 or np.any(np.diff(code) < 0)):  # not the lake's invariants
        keep = np.flatnonzero(code >= 0)
        keep = keep[np.argsort(code[keep], kind="stable")]
        ticks, code = ticks.take(pa.array(keep)), code[keep]
    bounds = np.searchsorted(code, np.arange(len(tickers) + 1))
    time_ms = np.asarray(ticks["time"].cast(pa.int64()).to_numpy(), dtype=np.int64)
    has_reading = np.asarray(pc.is_valid(ticks["day_volume"]).to_numpy(), dtype=np.bool_)
    return _Grouped(ticks, code, bounds, time_ms, has_reading)


def _requested_windows(
    requested: Mapping[str, NDArray[np.int64]], tickers: list[str]
) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
    """Every requested window: ``which[k]`` indexes ``tickers``, ``starts[k]`` its minute."""
    which = np.repeat(np.arange(len(tickers), dtype=np.int32), [len(requested[t]) for t in tickers])
    starts = np.concatenate([requested[t] for t in tickers] or [_NONE])
    return which, starts


@dataclass(frozen=True)
class _Lookbacks:
    """The volume lookback rows of the walks ``_walk_starts`` found, ticker by ticker
    (``lookback.previous_reading``), given the ticks loaded so far."""

    index: LakeIndex
    tickers: list[str]
    requested: Mapping[str, NDArray[np.int64]]
    ticks: _Grouped
    columns: list[str]
    cache: ReadingCache | None

    def find(
        self, walks: dict[int, list[int]], threads: int
    ) -> tuple[dict[int, list[pa.Table]], int]:
        """(per ticker index, its lookback rows, where it has any; files read)."""
        if threads > 1 and len(walks) > 1:  # lookbacks may read files
            with ThreadPoolExecutor(max_workers=threads) as pool:
                found = list(pool.map(self._of_ticker, walks.items()))
        else:
            found = [self._of_ticker(item) for item in walks.items()]
        extra = {i: rows for i, rows, _ in found if rows}
        return extra, sum(files for _, _, files in found)

    def _of_ticker(self, item: tuple[int, list[int]]) -> tuple[int, list[pa.Table], int]:
        i, starts = item
        lo, hi = self.ticks.rows(i)
        readings = self.ticks.time_ms[lo:hi][self.ticks.has_reading[lo:hi]]
        ticker = self.tickers[i]
        loaded = LoadedMinutes(
            set(self.requested[ticker].tolist()), set((readings - readings % MINUTE_MS).tolist())
        )
        rows, files = [], 0
        for start in starts:
            row, read = previous_reading(
                self.index, ticker, start, loaded, self.columns, self.cache
            )
            files += read
            if row is not None:
                rows.append(row)
        return i, rows, files


def _with_lookbacks(
    ticks: _Grouped, extra: dict[int, list[pa.Table]], tickers: pa.Array, columns: list[str]
) -> pa.Table:
    """Each ticker's lookback rows (``extra``), then its ticks, as one table typed by
    ``load_schema``, its ``id`` dictionary-encoded over ``tickers``."""
    if not extra:  # no lookback row added: the tickers' slices are ``ticks`` itself, in order
        return _with_codes(ticks.table, ticks.code, tickers, columns)
    rest = load_schema([c for c in columns if c != "id"])  # ids set by _with_ids
    parts = [
        pa.concat_tables(
            _as(t.select(rest.names), rest)
            for t in [*extra.get(i, []), ticks.table.slice(lo, hi - lo)]
        )
        for i, (lo, hi) in enumerate(itertools.pairwise(ticks.bounds.tolist()))
    ]
    return _with_ids(parts, tickers, columns)


def _requested(windows: Mapping[str, Iterable[int]]) -> dict[str, NDArray[np.int64]]:
    """Per ticker with any, its distinct requested minutes, sorted; ValueError for a start
    that is not minute-aligned."""
    requested = {}
    for ticker, minutes in windows.items():
        ms = np.asarray(minutes if isinstance(minutes, Sequence | np.ndarray) else list(minutes))
        ms = ms.astype(np.int64, copy=False).ravel()
        if len(ms) > 1 and not np.all(ms[1:] > ms[:-1]):
            ms = np.unique(ms)
        if len(ms) == 0:
            continue
        bad = np.flatnonzero(ms % MINUTE_MS)
        if len(bad):
            raise ValueError(f"window start {ms[bad[0]]} of {ticker!r} is not minute-aligned")
        requested[ticker] = ms
    return requested


_DICTIONARY_COLUMNS: Final = ("id", "market_hours")


def load_schema(columns: Sequence[str]) -> pa.Schema:
    """The types of loaded ``columns``: LAKE_SCHEMA's, strings of ``_DICTIONARY_COLUMNS``
    dictionary-encoded."""
    return _load_schema(tuple(columns))


@functools.lru_cache(maxsize=64)
def _load_schema(columns: tuple[str, ...]) -> pa.Schema:
    fields = [LAKE_SCHEMA.field(c) for c in columns]
    return pa.schema(
        f.with_type(pa.dictionary(pa.int32(), f.type)) if f.name in _DICTIONARY_COLUMNS else f
        for f in fields
    )


def read_sources(
    paths: Sequence[Path],
    days: Sequence[tuple[str, Path | RemoteDay, Minutes]],
    columns: Sequence[str],
    recent: Sequence[pa.Table] = (),
    tickers: pa.Array | None = None,
) -> pa.Table:
    """The rows of exactly these minute files, of these (ticker, day file, minutes) and of
    ``recent`` (minute files' tables held in memory, ``lake.recent``), grouped by
    ``id`` in the order given and sorted by (time, seq) within each.

    Day files are read with PyArrow, only the row groups holding the minutes (the whole
    file for a whole day), and without their ``id`` column: a day file holds one ticker;
    their ``id`` comes dictionary-encoded over ``tickers`` (which must name them all), else
    over their names in order. Minute files are read in one DuckDB scan.
    """
    schema = load_schema(columns)
    parts = [] if not days else [_read_days(days, columns, tickers)]
    if paths or not (parts or recent):
        parts.append(read_files(paths, columns))
    if recent:  # LAKE_SCHEMA tables: one chunk cast once (one dictionary for the tickers)
        held = pa.concat_tables(t.select(list(columns)) for t in recent).combine_chunks()
        parts.append(held.cast(schema))
    # combine_chunks unifies the parts' dictionaries
    table = _combined(pa.concat_tables(parts)) if len(parts) > 1 else parts[0]
    if len(parts) > 1 and (paths or recent):  # minute files and another source
        table = _sorted(table)
    return table


def _with_codes(
    ticks: pa.Table, code: NDArray[np.int64], names: pa.Array, columns: list[str]
) -> pa.Table:
    """``ticks`` (grouped by ``code``, an index into ``names``) typed as ``_with_ids``
    makes it, without copying its other columns again."""
    ids = pa.DictionaryArray.from_arrays(pa.array(code.astype(np.int32)), names)
    table = _combined(_as(ticks.select(columns), load_schema(columns)))
    return table.set_column(columns.index("id"), "id", ids)


def _combined(table: pa.Table) -> pa.Table:
    """``table.combine_chunks()``, column by column: the same table, built faster.
    Dictionaries are unified."""
    if all(column.num_chunks <= 1 for column in table.columns):
        return table
    columns = [column.combine_chunks() for column in table.columns]
    return pa.Table.from_arrays(columns, schema=table.schema)


def _as(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` cast to ``schema``; skipped when it has that schema (a no-op cast still
    costs time per column)."""
    return table if table.schema.equals(schema) else table.cast(schema)


def _sorted(table: pa.Table) -> pa.Table:
    """``table`` sorted by (id, time, seq); ``id`` is one dictionary (PyArrow does not sort
    dictionaries), so rows are grouped by its codes, not alphabetically."""
    ids = table["id"].combine_chunks()
    keys = [np.asarray(table[c].cast(pa.int64()).to_numpy(), np.int64) for c in ("seq", "time")]
    return table.take(pa.array(np.lexsort((*keys, ids.indices.to_numpy()))))


def _read_days(
    days: Sequence[tuple[str, Path | RemoteDay, Minutes]],
    columns: Sequence[str],
    tickers: pa.Array | None,
) -> pa.Table:
    """The rows of these (ticker, day file, minutes), in order, as one table: ``id``
    dictionary-encoded over ``tickers`` (or the days' tickers in order), built once."""
    read = [c for c in columns if c != "id"]
    parts = [_read_day(path, minutes, read) for _, path, minutes in days]
    table = _combined(pa.concat_tables(parts)) if len(parts) > 1 else parts[0]
    if "id" in columns:  # dictionary-encoded: compared as integers from here on
        if tickers is None:
            tickers = pa.array(list(dict.fromkeys(t for t, _, _ in days)), pa.string())
        code_of = {name: code for code, name in enumerate(tickers.to_pylist())}
        codes = np.array([code_of[ticker] for ticker, _, _ in days], np.int32)
        ids = np.repeat(codes, [part.num_rows for part in parts])
        table = table.append_column("id", pa.DictionaryArray.from_arrays(ids, tickers))
    return _as(table.select(list(columns)), load_schema(columns))


def _read_day(path: Path | RemoteDay, minutes: Minutes, columns: list[str]) -> pa.Table:
    try:
        if len(minutes) == DAY_MS // MINUTE_MS:
            return read_day(readable(path), columns, dictionary=["market_hours"])
        starts = np.asarray(minutes, np.int64).tolist()
        return read_day_minutes(readable(path), starts, columns, dictionary=["market_hours"])
    except (OSError, pa.ArrowException) as exc:
        reason = str(exc).splitlines()[0]
        raise LakeReadError(f"cannot read {path}: {reason}; move a damaged file aside") from exc


def _with_ids(parts: list[pa.Table], names: pa.Array, columns: list[str]) -> pa.Table:
    """The tickers' tables (in ``names`` order, one per ticker) as one table whose ``id``
    is dictionary-encoded over ``names``, so later lookups cost one pass over integers."""
    schema = load_schema(columns)
    if not parts:
        return schema.empty_table()
    counts = np.array([p.num_rows for p in parts], np.int64)
    rest = [c for c in columns if c != "id"]
    types = schema.remove(schema.get_field_index("id"))
    table = _combined(pa.concat_tables(_as(p.select(rest), types) for p in parts))
    codes = np.repeat(np.arange(len(parts), dtype=np.int32), counts)
    ids = pa.DictionaryArray.from_arrays(codes, names)
    return table.append_column("id", ids).select(columns)


def read_files(paths: Sequence[Path], columns: Sequence[str]) -> pa.Table:
    """The rows of exactly these lake files (they must exist), sorted by (id, time, seq),
    typed by ``load_schema``.

    One DuckDB scan over the explicit list, on a connection kept per thread: several times
    faster than opening small Parquet files one by one from Python, also with a pool of
    threads (README, Benchmarks: per-minute job).
    """
    schema = load_schema(columns)
    if not paths:
        return schema.empty_table()
    selected = ", ".join(f'"{c}"' for c in columns)
    query = (
        f"SELECT {selected} FROM read_parquet($files, hive_partitioning = false) "
        "ORDER BY id, time, seq"
    )
    try:
        relation = _reader().sql(query, params={"files": [os.fspath(p) for p in paths]})
        table = relation.to_arrow_table()
    except duckdb.Error as exc:
        reason = str(exc).splitlines()[0]
        raise LakeReadError(f"cannot read lake files: {reason}; move a damaged file aside") from exc
    return table.cast(schema)


_readers = threading.local()


def _reader() -> duckdb.DuckDBPyConnection:
    """This thread's in-memory DuckDB connection for reading Parquet (kept: opening one
    costs more than a small read; it holds no file open between reads)."""
    con: duckdb.DuckDBPyConnection | None = getattr(_readers, "con", None)
    if con is None:
        con = _readers.con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")  # it would print on stdout
    return con


@dataclass(frozen=True)
class _TickerTicks:
    """One ticker's rows of the requested minutes, sorted by (time, seq), with two of their
    columns as NumPy arrays (converted once for all tickers)."""

    table: pa.Table
    time_ms: NDArray[np.int64]
    has_reading: NDArray[np.bool_]


def _walk_starts(
    tickers: list[str],
    which: NDArray[np.int32],
    minutes: NDArray[np.int64],
    code: NDArray[np.int64],
    time_ms: NDArray[np.int64],
    has_reading: NDArray[np.bool_],
) -> dict[int, list[int]]:
    """Per ticker (index into ``tickers``), where the volume lookback of each of its runs
    of consecutive requested minutes starts walking back: the run's first minute holding a
    tick, for runs that hold a reading and do not reach back to the lookback floor (a run
    without a reading needs no lookback; a backfilled day from its floor has it loaded).
    Vectorized over every run of every ticker: ``which``/``minutes`` are the requested
    windows (ticker index, start), grouped by ticker and sorted; ``code``/``time_ms`` the
    loaded ticks, grouped by ticker code and time-sorted within each."""
    if len(time_ms) == 0:
        return {}
    new_run = np.ones(len(minutes), np.bool_)
    new_run[1:] = (which[1:] != which[:-1]) | (np.diff(minutes) != MINUTE_MS)
    firsts = np.flatnonzero(new_run)
    run_ticker, run_start = which[firsts].astype(np.int64), minutes[firsts]
    run_end = minutes[np.append(firsts[1:] - 1, len(minutes) - 1)] + MINUTE_MS
    low = min(int(time_ms.min()), int(run_start.min()))
    span = max(int(time_ms.max()), int(run_end.max())) - low + 1
    tick_key = code * span + (time_ms - low)  # sorted: ticks are grouped, then time-sorted
    lo = np.searchsorted(tick_key, run_ticker * span + (run_start - low))
    hi = np.searchsorted(tick_key, run_ticker * span + (run_end - low))
    readings_before = np.concatenate(([0], np.cumsum(has_reading)))
    walks: dict[int, list[int]] = {}
    for r in np.flatnonzero(readings_before[hi] > readings_before[lo]).tolist():
        i, start, tick = int(run_ticker[r]), int(run_start[r]), int(time_ms[lo[r]])
        # Walk back from the run's first minute holding a tick, as a request of only the
        # minutes with ticks would: the lookback floor (session, crypto's 24 h) follows it.
        walk_from = max(start, tick - tick % MINUTE_MS)
        if lookback_floor_ms(tickers[i], walk_from) < start:
            walks.setdefault(i, []).append(walk_from)
    return walks


def _remember_readings(
    cache: ReadingCache,
    ticker: str,
    minutes: NDArray[np.int64],
    keys: list[FileKey | None],
    part: _TickerTicks,
) -> None:
    """Put the last reading of every requested minute with a file (or None) in ``cache``."""
    readings = np.flatnonzero(part.has_reading)
    reading_minute = part.time_ms[readings] - part.time_ms[readings] % MINUTE_MS
    last = np.searchsorted(reading_minute, minutes, side="right") - 1
    for minute, key, k in zip(minutes.tolist(), keys, last.tolist(), strict=True):
        if key is None:
            continue
        found = k >= 0 and reading_minute[k] == minute
        cache.put(ticker, minute, key, part.table.slice(int(readings[k]), 1) if found else None)
