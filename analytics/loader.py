"""Ticks of many (ticker, minute) windows at once, read from exact lake paths.

``load_windows`` serves the per-minute job and backfill alike: give it any number of
tickers, each with any set of minutes, and it returns the ticks of those minutes plus the
volume lookback that ``analytics.features`` needs, ready for ``compute_features``: for
every *run* of consecutive requested minutes of a ticker that holds a reading, one extra
row, the last ``day_volume`` reading before the run (``analytics.lookback``), whose
window is not requested. A run without any reading (FX, say) needs no lookback.

Invariants: only exact paths are read (never a glob of the lake); the requested windows
come back as a table even where no file exists (those yield no feature row); ``ticks``
has the ``LOAD_COLUMNS`` of ``LAKE_SCHEMA``, sorted by (ticker, time, seq) within each
ticker, its lookback rows first.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from analytics.lakeindex import FileKey, LakeIndex, file_key, minute_path
from analytics.lookback import (
    PROBE_MINUTES,
    ReadingCache,
    last_reading,
    lookahead_limit_ms,
    previous_reading,
)
from recorder.lake import LakeReadError
from recorder.layout import MINUTE_MS
from recorder.schema import LAKE_SCHEMA, TIME_TYPE

__all__ = ["LOAD_COLUMNS", "Loaded", "load_windows", "next_windows", "read_files"]

LOAD_COLUMNS: Final = ("id", "time", "seq", "price", "day_volume", "market_hours", "received_at")


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
            row, _ = last_reading(index.root, ticker, minute, list(columns), cache)
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
    """
    index = index or LakeIndex(root)
    names = list(columns)
    missing = {"id", "time", "seq", "price", "day_volume"} - set(names)
    if missing:
        raise ValueError(f"load_windows needs column(s) {', '.join(sorted(missing))}")
    requested = {t: sorted(set(m)) for t, m in windows.items()}
    requested = {t: m for t, m in requested.items() if m}
    for ticker, minutes in requested.items():
        bad = [m for m in minutes if m % MINUTE_MS]
        if bad:
            raise ValueError(f"window start {bad[0]} of {ticker!r} is not minute-aligned")

    keys = {t: [file_key(minute_path(index.root, t, m)) for m in ms] for t, ms in requested.items()}
    paths = [
        minute_path(index.root, t, m)
        for t, ms in requested.items()
        for m, key in zip(ms, keys[t], strict=True)
        if key is not None
    ]
    ticks = read_files(paths, names)
    names_array = pa.array(sorted(requested), pa.string())
    code = np.asarray(
        pc.fill_null(pc.index_in(ticks["id"], value_set=names_array), -1).to_numpy(), np.int64
    )
    if len(code) and (code[0] < 0 or np.any(np.diff(code) < 0)):  # not the lake's invariants
        keep = np.flatnonzero(code >= 0)
        keep = keep[np.argsort(code[keep], kind="stable")]
        ticks, code = ticks.take(pa.array(keep)), code[keep]
    bounds = np.searchsorted(code, np.arange(len(names_array) + 1))
    time_ms = np.asarray(ticks["time"].cast(pa.int64()).to_numpy(), dtype=np.int64)
    has_reading = np.asarray(pc.is_valid(ticks["day_volume"]).to_numpy(), dtype=np.bool_)

    def one(i: int) -> tuple[pa.Table, int, int]:
        ticker, lo, hi = names_array[i].as_py(), int(bounds[i]), int(bounds[i + 1])
        part = _TickerTicks(ticks.slice(lo, hi - lo), time_ms[lo:hi], has_reading[lo:hi])
        return _finish_ticker(index, ticker, requested[ticker], part, keys[ticker], names, cache)

    if threads > 1 and len(requested) > 1:  # lookbacks may read files
        with ThreadPoolExecutor(max_workers=threads) as pool:
            parts = list(pool.map(one, range(len(names_array))))
    else:
        parts = [one(i) for i in range(len(names_array))]
    schema = pa.schema([LAKE_SCHEMA.field(c) for c in names])
    ticks = (
        pa.concat_tables([p[0] for p in parts]).combine_chunks() if parts else schema.empty_table()
    )
    tickers = [t for t, minutes in requested.items() for _ in minutes]
    starts = [m for minutes in requested.values() for m in minutes]
    table = pa.table(
        {"ticker": pa.array(tickers, pa.string()), "window_start": pa.array(starts, TIME_TYPE)}
    )
    return Loaded(ticks, table, sum(p[1] for p in parts), sum(p[2] for p in parts))


def read_files(paths: Sequence[Path], columns: Sequence[str]) -> pa.Table:
    """The rows of exactly these lake files (they must exist), sorted by (id, time, seq).

    One DuckDB scan over the explicit list: several times faster than opening small Parquet
    files one by one from Python (500 minute files: ~0.12 s instead of ~0.45 s).
    """
    schema = pa.schema([LAKE_SCHEMA.field(c) for c in columns])
    if not paths:
        return schema.empty_table()
    con = duckdb.connect()
    try:
        selected = ", ".join(f'"{c}"' for c in columns)
        query = (
            f"SELECT {selected} FROM read_parquet($files, hive_partitioning = false) "
            "ORDER BY id, time, seq"
        )
        table = con.sql(query, params={"files": [os.fspath(p) for p in paths]}).to_arrow_table()
    except duckdb.Error as exc:
        reason = str(exc).splitlines()[0]
        raise LakeReadError(f"cannot read lake files: {reason}; move a damaged file aside") from exc
    finally:
        con.close()
    return table.cast(schema)


@dataclass(frozen=True)
class _TickerTicks:
    """One ticker's rows of the requested minutes, sorted by (time, seq), with two of their
    columns as NumPy arrays (converted once for all tickers)."""

    table: pa.Table
    time_ms: NDArray[np.int64]
    has_reading: NDArray[np.bool_]


def _finish_ticker(
    index: LakeIndex,
    ticker: str,
    minutes: list[int],
    part: _TickerTicks,
    keys: list[FileKey | None],
    columns: list[str],
    cache: ReadingCache | None,
) -> tuple[pa.Table, int, int]:
    """(the ticker's ticks + lookback rows, lookback rows, lookback files read)."""
    ticks, time_ms = part.table, part.time_ms
    readings = np.flatnonzero(part.has_reading)
    reading_minute = time_ms[readings] - time_ms[readings] % MINUTE_MS
    reading_minutes = np.unique(reading_minute)
    if cache is not None:
        last = np.searchsorted(reading_minute, np.asarray(minutes), side="right") - 1
        for minute, key, k in zip(minutes, keys, last, strict=True):
            if key is None:
                continue
            found = k >= 0 and reading_minute[k] == minute
            cache.put(ticker, minute, key, ticks.slice(int(readings[k]), 1) if found else None)
    with_readings = set(reading_minutes.tolist())
    loaded = set(minutes)
    extra: list[pa.Table] = []
    files = 0
    starts = np.asarray(minutes, dtype=np.int64)
    cut = np.flatnonzero(np.diff(starts) != MINUTE_MS) + 1
    run_starts = starts[np.concatenate(([0], cut))]
    run_ends = starts[np.concatenate((cut - 1, [len(starts) - 1]))]
    first_reading = np.searchsorted(reading_minutes, run_starts)
    for start, end, k in zip(run_starts, run_ends, first_reading, strict=True):
        if k == len(reading_minutes) or reading_minutes[k] > end:
            continue  # no reading in the run: its volume needs no lookback
        row, read = previous_reading(
            index, ticker, int(start), loaded, with_readings, columns, cache
        )
        files += read
        if row is not None:
            extra.append(row)
    if extra:
        ticks = pa.concat_tables([*extra, ticks])
    return ticks, len(extra), files
