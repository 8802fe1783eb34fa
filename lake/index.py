"""Which minutes of the lake hold ticks, and in which tier: exact-path probes for short
ranges of the minute tier, listings for long ones and for compacted days (contract 2: jobs
build exact paths, never glob the lake).

A (ticker, UTC date) is served by its history day file whenever that file exists, else by
its minute files (``lake.minutes.read_minutes`` follows the same rule), so a day being
compacted is never read twice or missed: compaction writes the day file before it retires
the minute files, and only after a grace period.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
from pathlib import Path
from typing import Final

from lake.datadir import HISTORY_DIR, TICKS_DIR
from lake.history import day_minutes
from lake.layout import PART_NAME, decode_ticker, encode_ticker, history_file, lake_days, ticker_dir
from lake.minutes import list_minutes, list_tickers
from lake.offload import MARKER, day_source, readable
from lake.recent import FileKey, file_key
from lake.remote import RemoteDay, RemoteLake
from lake.symbols import SymbolError
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

    def __init__(self, root: Path, remote: RemoteLake | None = None) -> None:
        """``remote``: an object store whose days count too, each found by one listing of
        its ticker's prefix per index (without it: only the days offloaded from ``root``,
        which its history folders name, ``lake.offload``)."""
        self.root = Path(root)
        self.remote = remote
        self._tickers: list[str] | None = None
        self._dates: dict[tuple[str, int], list[int]] = {}
        self._day_files: dict[tuple[str, int], Path | RemoteDay | None] = {}
        self._remote_days: dict[str, dict[int, RemoteDay]] = {}

    def tickers(self) -> list[str]:
        if self._tickers is None:
            found = set(list_tickers(self.root))
            if self.remote is not None:
                found.update(self.days())
            self._tickers = sorted(found)
        return self._tickers

    def days(self) -> dict[str, set[int]]:
        """Per ticker, the UTC day numbers (epoch ms // ``DAY_MS``) with a folder in either
        tier or an object in ``remote``: one listing per ticker and tier (one of the whole
        object store), no file opened."""
        found: dict[str, set[int]] = {}
        for tier in (TICKS_DIR, HISTORY_DIR):
            for ticker, date, _ in lake_days(self.root, tier):
                found.setdefault(ticker, set()).add(day_start_ms(date) // DAY_MS)
        if self.remote is not None:
            for value, date, _ in self.remote.days():
                with contextlib.suppress(SymbolError):
                    ticker = decode_ticker(value)
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

    def day_file(self, ticker: str, day: int) -> Path | RemoteDay | None:
        """The day file of (ticker, UTC day number), if the day is compacted: local, or its
        object in the object store (``lake.offload.day_source``)."""
        key = (ticker, day)
        if key not in self._day_files:
            path = _history_path(self.root, ticker, day)
            source: Path | RemoteDay | None = None
            if os.path.isfile(path):
                source = path
            elif os.path.isfile(path.parent / MARKER):  # offloaded from here
                source = day_source(self.root, ticker, _date(day))
            elif self.remote is not None:
                source = self._remote_day(ticker, day)
            self._day_files[key] = source
        return self._day_files[key]

    def source(self, ticker: str, minute: int) -> Path | RemoteDay:
        """The file that holds (or would hold) a minute's ticks: its day's history file when
        the day is compacted, else its minute file."""
        return self.day_file(ticker, minute // DAY_MS) or minute_path(self.root, ticker, minute)

    def _listing(self, ticker: str, day: int) -> list[int]:
        key = (ticker, day)
        if key not in self._dates:
            source = self.day_file(ticker, day)
            if source is None:
                self._dates[key] = list_minutes(self.root, ticker, _date(day))
            else:
                self._dates[key] = day_minutes(readable(source))
        return self._dates[key]

    def _remote_day(self, ticker: str, day: int) -> RemoteDay | None:
        assert self.remote is not None
        if ticker not in self._remote_days:
            listed = self.remote.days(encode_ticker(ticker))
            self._remote_days[ticker] = {
                day_start_ms(date) // DAY_MS: found for _, date, found in listed
            }
        return self._remote_days[ticker].get(day)


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
