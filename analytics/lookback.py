"""The volume lookback: the last ``day_volume`` reading before a window, within its session.

The volume of a window starts from the last reading before it in the same session
(``analytics.volume``). ``previous_reading`` finds it by walking back over a ticker's
minutes, newest first, one at a time (from its minute file, or from the row group of its
day's history file once the day is compacted), and stops at

- a minute already loaded that holds a reading (the chain continues inside those ticks),
- the session's start (``recorder.wire.markets.session_id``: 04:00 New York for equities, ETFs
  and indices, 17:00 for FX, 18:00 for futures), since earlier readings never count,
- 24 h back for crypto, whose rolling figure has no session: after a silence of a day the
  first window's volume starts at its first reading (an undercount, never invented).

It probes the few preceding minutes' exact paths first (the live case: the previous minute
exists) and lists a date's minutes only when those are missing. ``ReadingCache`` keeps the
last reading of minutes read recently, keyed by the identity of the file holding them, so
the per-minute job reads no file twice.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lake.index import FileKey, LakeIndex, file_key
from lake.minutes import read_minutes
from lake.utc import DAY_MS, HOUR_MS, MINUTE_MS
from recorder.wire.markets import AssetClass, asset_class, session_id

__all__ = [
    "LoadedMinutes",
    "ReadingCache",
    "last_reading",
    "lookahead_limit_ms",
    "lookback_floor_ms",
    "previous_reading",
]

PROBE_MINUTES: Final = 3  # neighbouring minutes probed by exact path before listing a date
CRYPTO_LOOKBACK_MS: Final = DAY_MS  # crypto's rolling day_volume covers 24 h


class ReadingCache:
    """The last ``day_volume`` reading (a one-row table, or None) of minute files read
    recently, keyed by the file's identity, so the per-minute job finds its lookback
    (usually the minute it loaded one run earlier) without reading the file again.
    A replaced file has a new key and is read again. Thread-safe for distinct tickers."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, int], tuple[FileKey, pa.Table | None]] = {}

    def get(self, ticker: str, minute: int, key: FileKey) -> tuple[bool, pa.Table | None]:
        """(found, row) for the file with identity ``key``."""
        entry = self._entries.get((ticker, minute))
        if entry is None or entry[0] != key:
            return False, None
        return True, entry[1]

    def put(self, ticker: str, minute: int, key: FileKey, row: pa.Table | None) -> None:
        self._entries[(ticker, minute)] = (key, row)

    def prune(self, before_ms: int) -> None:
        """Forget minutes that start before ``before_ms``."""
        self._entries = {k: v for k, v in self._entries.items() if k[1] >= before_ms}

    @property
    def size(self) -> int:  # not __len__: an empty cache must not be falsy
        return len(self._entries)


def lookback_floor_ms(ticker: str, start_ms: int) -> int:
    """The earliest minute whose readings can count for a window starting at ``start_ms``:
    the start of its session (a whole hour), or 24 h back for crypto."""
    kind = asset_class(ticker)
    if kind is AssetClass.CRYPTOCURRENCY:
        return start_ms - CRYPTO_LOOKBACK_MS
    return _session_start_ms(kind, start_ms // HOUR_MS)


@functools.lru_cache(maxsize=65536)
def _session_start_ms(kind: AssetClass, hour: int) -> int:
    """Start of the session holding ``hour`` (hours since the epoch): sessions change on
    whole hours only (``analytics.volume``)."""
    session = session_id(kind, hour * HOUR_MS // 1000)
    floor = hour * HOUR_MS
    for _ in range(48):
        if session_id(kind, (floor - HOUR_MS) / 1000) != session:
            break
        floor -= HOUR_MS
    return floor


def lookahead_limit_ms(ticker: str, start_ms: int) -> int:
    """The end of the session of a window starting at ``start_ms`` (24 h on for crypto):
    readings from then on never count against that window's readings."""
    if asset_class(ticker) is AssetClass.CRYPTOCURRENCY:
        return start_ms + CRYPTO_LOOKBACK_MS
    session = session_id(ticker, start_ms / 1000)
    limit = start_ms - start_ms % HOUR_MS + HOUR_MS
    for _ in range(48):
        if session_id(ticker, limit / 1000) != session:
            break
        limit += HOUR_MS
    return limit


@dataclass(frozen=True)
class LoadedMinutes:
    """Which minutes of a ticker are loaded already (``minutes``), and which of those hold
    a reading (``with_readings``): a lookback walk stops there."""

    minutes: set[int]
    with_readings: set[int]


def previous_reading(
    index: LakeIndex,
    ticker: str,
    start: int,
    loaded: LoadedMinutes,
    columns: list[str],
    cache: ReadingCache | None,
) -> tuple[pa.Table | None, int]:
    """The last reading before ``start`` not already among the loaded ticks, if any."""
    floor, minutes = lookback_floor_ms(ticker, start), loaded.minutes
    if all(m in minutes for m in range(start - MINUTE_MS, floor - 1, -MINUTE_MS)):
        return None, 0  # back to the floor all loaded (a backfilled day): nothing to list
    probed = max(floor, start - PROBE_MINUTES * MINUTE_MS)
    if index.day_file(ticker, (start - MINUTE_MS) // DAY_MS) is not None:
        probed = start  # a compacted day: its listing is exact, and a probe reads a row group
    candidates = list(range(start - MINUTE_MS, probed - 1, -MINUTE_MS))
    files = 0
    for batch in (candidates, None):
        if batch is None:  # the probes missed: list the dates back to the floor
            batch = index.minutes(ticker, floor, probed)[::-1]
        for minute in batch:
            if minute in minutes:
                if minute in loaded.with_readings:
                    return None, files  # the chain continues inside the loaded ticks
                continue
            row, read = last_reading(index, ticker, minute, columns, cache)
            files += read
            if row is not None:
                return row, files
    return None, files


def last_reading(
    index: LakeIndex, ticker: str, minute: int, columns: list[str], cache: ReadingCache | None
) -> tuple[pa.Table | None, int]:
    """(the last reading of one minute or None, files read: 0 or 1), from its minute file
    or its day's history file; the cache is keyed by the identity of that file."""
    key = file_key(index.source(ticker, minute)) if cache is not None else None
    if cache is not None:
        if key is None:
            return None, 0
        found, row = cache.get(ticker, minute, key)
        if found:
            return row, 0
    table = read_minutes(index.root, ticker, [minute], columns, index.remote)
    if table.num_rows == 0:
        return None, 0
    valid = np.flatnonzero(pc.is_valid(table["day_volume"]).to_numpy())
    row = table.slice(int(valid[-1]), 1) if len(valid) else None  # files are (time, seq) sorted
    if cache is not None and key is not None:
        cache.put(ticker, minute, key, row)
    return row, 1
