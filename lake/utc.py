"""UTC time as ticklake counts it: the units, a minute's floor, a day's bounds, one format.

Times are epoch milliseconds (``int``) unless a name says ``_s`` (seconds, ``float``) or
``_us`` (microseconds). Every day and minute is a UTC one.
"""

from __future__ import annotations

import datetime as dt
from typing import Final, Literal

__all__ = [
    "DAY_MS",
    "DAY_S",
    "HOUR_MS",
    "MINUTE_MS",
    "day_start_ms",
    "floor_minute_ms",
    "iso_utc",
    "utc_date",
]

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000
DAY_S: Final = 86_400.0

Precision = Literal["minutes", "seconds", "milliseconds"]


def floor_minute_ms(epoch_ms: int) -> int:
    """The start of the UTC minute holding ``epoch_ms``."""
    return epoch_ms - epoch_ms % MINUTE_MS


def utc_date(epoch_ms: int) -> dt.date:
    """The UTC date holding the instant ``epoch_ms``."""
    return dt.datetime.fromtimestamp(epoch_ms // 1000, tz=dt.UTC).date()


def day_start_ms(date: dt.date) -> int:
    """Epoch ms of ``date``'s 00:00 UTC; the day is ``[start, start + DAY_MS)``."""
    return (date - dt.date(1970, 1, 1)).days * DAY_MS


def iso_utc(epoch_ms: int, precision: Precision = "milliseconds") -> str:
    """ISO 8601 in UTC with a ``Z``: ``2024-04-16T14:15:45.000Z``, ``...T14:15:45Z`` or
    ``...T14:15Z``; shorter precisions truncate, never round."""
    moment = dt.datetime.fromtimestamp(epoch_ms // 1000, tz=dt.UTC)
    if precision == "minutes":
        return moment.strftime("%Y-%m-%dT%H:%MZ")
    if precision == "seconds":
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"
