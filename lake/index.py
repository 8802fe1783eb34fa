"""Which minutes of the lake hold ticks, and in which tier: exact-path probes for short
ranges of the minute tier, listings for long ones and for compacted days (contract 2: jobs
build exact paths, never glob the lake).

A (ticker, UTC date) is served by its history day file whenever that file exists, else by
its minute files (``lake.minutes.read_minutes`` follows the same rule), so a day being
compacted is never read twice or missed: compaction writes the day file before it retires
the minute files, and only after a grace period.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from pathlib import Path
from typing import Final

from lake.datadir import HISTORY_DIR, TICKS_DIR
from lake.layout import PART_NAME, history_file, lake_days, ticker_dir
from lake.minutes import list_minutes, list_tickers
from lake.recent import FileKey, file_key
from lake.utc import DAY_MS, MINUTE_MS, day_start_ms, utc_date

__all__ = ["FileKey", "LakeIndex", "file_key", "minute_path"]

LIST_ABOVE_MINUTES: Final = 120  # longer ranges (within a date) are listed, shorter probed


class LakeIndex:
    """Which minutes have ticks, for one run: exact-path probes for short ranges, one
    listing per (ticker, date) for long ones and for compacted days, cached for the index's
    life, like which days are compacted.

    Build a new index per run: a cached listing does not see files written later (a file
    written into an already sealed window is marked late by the recorder and handled by
    the next run), and a day compacted meanwhile keeps its minute files for a grace period.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._tickers: list[str] | None = None
        self._dates: dict[tuple[str, int], list[int]] = {}
        self._day_files: dict[tuple[str, int], Path | None] = {}

    def tickers(self) -> list[str]:
        if self._tickers is None:
            self._tickers = list_tickers(self.root)
        return self._tickers

    def days(self) -> dict[str, set[int]]:
        """Per ticker, the UTC day numbers (epoch ms // ``DAY_MS``) with a folder in either
        tier: one listing per ticker and tier, no file opened."""
        found: dict[str, set[int]] = {}
        for tier in (TICKS_DIR, HISTORY_DIR):
            for ticker, date, _ in lake_days(self.root, tier):
                found.setdefault(ticker, set()).add(day_start_ms(date) // DAY_MS)
        return found

    def minutes(self, ticker: str, start_ms: int, end_ms: int) -> list[int]:
        """Sorted starts of the minutes in ``[start_ms, end_ms)`` that have ticks."""
        found: list[int] = []
        lo = start_ms - start_ms % MINUTE_MS
        while lo < end_ms:
            day = lo // DAY_MS
            hi = min(end_ms, (day + 1) * DAY_MS)
            listed = (ticker, day) in self._dates or (hi - lo) // MINUTE_MS > LIST_ABOVE_MINUTES
            if listed or self.day_file(ticker, day) is not None:
                found.extend(m for m in self._listing(ticker, day) if lo <= m < hi)
            else:
                found.extend(
                    m
                    for m in range(lo, hi, MINUTE_MS)
                    if os.path.isfile(minute_path(self.root, ticker, m))
                )
            lo = hi
        return found

    def day_file(self, ticker: str, day: int) -> Path | None:
        """The history file of (ticker, UTC day number), if the day is compacted."""
        key = (ticker, day)
        if key not in self._day_files:
            path = _history_path(self.root, ticker, day)
            self._day_files[key] = path if os.path.isfile(path) else None
        return self._day_files[key]

    def source(self, ticker: str, minute: int) -> Path:
        """The file that holds (or would hold) a minute's ticks: its day's history file when
        the day is compacted, else its minute file."""
        return self.day_file(ticker, minute // DAY_MS) or minute_path(self.root, ticker, minute)

    def _listing(self, ticker: str, day: int) -> list[int]:
        key = (ticker, day)
        if key not in self._dates:
            self._dates[key] = list_minutes(self.root, ticker, _date(day))
        return self._dates[key]


@functools.lru_cache(maxsize=4096)
def _date(day: int) -> dt.date:
    return utc_date(day * DAY_MS)


@functools.lru_cache(maxsize=4096)
def _history_path(root: Path, ticker: str, day: int) -> Path:
    return history_file(root, ticker, _date(day))


@functools.lru_cache(maxsize=65536)
def minute_path(root: Path, ticker: str, minute: int) -> Path:
    """``lake.layout.minute_file``, built by string formatting under the ticker's folder
    (validated once per ticker) and memoized: the live job asks for the same minutes run
    after run, backfill for one per requested minute."""
    if minute % MINUTE_MS:
        raise ValueError(f"minute_start_ms={minute} is not a multiple of {MINUTE_MS}")
    day, in_day = divmod(minute, DAY_MS)
    hour, rest = divmod(in_day // MINUTE_MS, 60)
    folder = _ticker_folder(root, ticker)
    return Path(f"{folder}/date={_date(day).isoformat()}/minute={hour:02d}{rest:02d}/{PART_NAME}")


@functools.lru_cache(maxsize=4096)
def _ticker_folder(root: Path, ticker: str) -> str:
    return os.fspath(ticker_dir(root, ticker))
