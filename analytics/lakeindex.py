"""Which lake minute files exist: exact-path probes for short ranges, date listings for
long ones (contract 2: jobs build exact paths, never glob the lake).

When the history tier compacts sealed days into one file per (ticker, date), this module
and ``lookback.last_reading`` are where minute-file existence must learn about it.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from pathlib import Path
from typing import Final

from recorder.lake import list_minutes, list_tickers
from recorder.layout import MINUTE_MS, minute_file

__all__ = ["FileKey", "LakeIndex", "file_key", "minute_path"]

LIST_ABOVE_MINUTES: Final = 120  # longer ranges (within a date) are listed, shorter probed
_DAY_MS: Final = 24 * 3600 * 1000

FileKey = tuple[int, int, int]


class LakeIndex:
    """Which minute files exist, for one run: exact-path probes for short ranges, one
    listing per (ticker, date) for long ones, cached for the index's life.

    Build a new index per run: a cached listing does not see files written later (a file
    written into an already sealed window is marked late by the recorder and handled by
    the next run).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._tickers: list[str] | None = None
        self._dates: dict[tuple[str, int], list[int]] = {}

    def tickers(self) -> list[str]:
        if self._tickers is None:
            self._tickers = list_tickers(self.root)
        return self._tickers

    def minutes(self, ticker: str, start_ms: int, end_ms: int) -> list[int]:
        """Sorted starts of the minutes in ``[start_ms, end_ms)`` that have a file."""
        found: list[int] = []
        lo = start_ms - start_ms % MINUTE_MS
        while lo < end_ms:
            day = lo // _DAY_MS
            hi = min(end_ms, (day + 1) * _DAY_MS)
            if (ticker, day) in self._dates or (hi - lo) // MINUTE_MS > LIST_ABOVE_MINUTES:
                listed = self._listing(ticker, day)
                found.extend(m for m in listed if lo <= m < hi)
            else:
                found.extend(
                    m
                    for m in range(lo, hi, MINUTE_MS)
                    if os.path.isfile(minute_path(self.root, ticker, m))
                )
            lo = hi
        return found

    def _listing(self, ticker: str, day: int) -> list[int]:
        key = (ticker, day)
        if key not in self._dates:
            date = dt.datetime.fromtimestamp(day * 86400, tz=dt.UTC).date()
            self._dates[key] = list_minutes(self.root, ticker, date)
        return self._dates[key]


@functools.lru_cache(maxsize=65536)
def minute_path(root: Path, ticker: str, minute: int) -> Path:
    """``recorder.layout.minute_file``, memoized (it validates the symbol each call)."""
    return minute_file(root, ticker, minute)


def file_key(path: Path) -> FileKey | None:
    """(inode, mtime, size) of a file, None if missing: an atomic replace changes it."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size
