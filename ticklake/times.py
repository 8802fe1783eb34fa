"""The times the Python API takes, each turned into one aware UTC ``datetime``.

Accepted: a ``datetime`` (a ``pandas.Timestamp`` is one; naive means UTC, as everywhere in
ticklake), a ``date`` (its 00:00 UTC), ISO-8601 text (``2024-04-15``,
``2024-04-15T13:30Z``, ``2024-04-15 09:30-04:00``; without an offset, UTC), or None for an
open end. pandas is never imported here: a Timestamp is handled as the datetime it is.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import TypeAlias

from ticklake.config import utc_time

__all__ = ["Instant", "time_range", "utc_instant"]

Instant: TypeAlias = dt.datetime | dt.date | str
"""A point in time as the API takes it (``pandas.Timestamp`` is a ``datetime``)."""


def utc_instant(value: Instant, name: str = "time") -> dt.datetime:
    """``value`` as an aware UTC datetime; TypeError or ValueError naming ``name``."""
    if isinstance(value, dt.datetime):
        if value != value:  # pandas.NaT is a datetime that equals nothing
            raise ValueError(f"{name} is NaT, not a time")
        if value.tzinfo is None or value.utcoffset() is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if isinstance(value, str):
        try:
            return dt.datetime.fromtimestamp(utc_time(value), tz=dt.UTC)
        except argparse.ArgumentTypeError as exc:
            raise ValueError(f"{name}: {exc}") from None
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    raise TypeError(
        f"{name} must be a datetime, a date, ISO-8601 text or a pandas Timestamp, not {kind}"
    )


def time_range(
    start: Instant | None, end: Instant | None
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """``[start, end)`` in UTC (None: open); ValueError when ``end`` is not after ``start``."""
    lo = None if start is None else utc_instant(start, "start")
    hi = None if end is None else utc_instant(end, "end")
    if lo is not None and hi is not None and hi <= lo:
        raise ValueError(f"end {hi.isoformat()} is not after start {lo.isoformat()}")
    return lo, hi
