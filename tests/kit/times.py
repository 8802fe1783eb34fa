"""The test epochs, each defined once (epoch ms unless the name says ``_S`` or ``_US``).

Units come from :mod:`lake.utc` (``MINUTE_MS``, ``HOUR_MS``, ``DAY_MS``, ``DAY_S``).
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from lake.utc import DAY_MS
from recorder.wire.markets import NEW_YORK

DAY1: Final = dt.date(2024, 1, 2)
"""A Tuesday in EST (UTC-5): the lake tests' first day."""

DAY2: Final = DAY1 + dt.timedelta(days=1)
DAY3: Final = DAY1 + dt.timedelta(days=2)

OPEN_MS: Final = int(dt.datetime(2024, 1, 2, 14, 30, tzinfo=dt.UTC).timestamp()) * 1000
"""09:30 New York on ``DAY1``: a regular session opens."""

LATER: Final = (OPEN_MS + 10 * DAY_MS) / 1000
"""Epoch s ten days after ``OPEN_MS``: long after every lake test day has ended."""

T0: Final = int(dt.datetime(2024, 4, 16, 14, 0, tzinfo=dt.UTC).timestamp()) * 1000
"""2024-04-16 14:00 UTC (10:00 New York, EDT), the analytics tests' start: inside one equity
session until 08:00 UTC the next day, so equity volumes chain across every minute of a test."""

WEDNESDAY_15_UTC: Final = dt.datetime(2025, 6, 11, 15, 0, tzinfo=dt.UTC).timestamp()
"""11:00 in New York on a Wednesday (epoch s, a minute boundary): equities, indices, FX,
futures and crypto all stream."""

WEDNESDAY_15_MS: Final = int(WEDNESDAY_15_UTC * 1000)

IMPORT_OPEN_MS: Final = int(dt.datetime(2026, 11, 25, 14, 30, tzinfo=dt.UTC).timestamp()) * 1000
"""2026-11-25 14:30 UTC (09:30 New York): the imported files' ticks."""

SUNDAY_03_NY_S: Final = dt.datetime(2024, 1, 7, 3, 0, tzinfo=NEW_YORK).timestamp()
"""Sunday 03:00 New York (epoch s): US equities, FX and futures closed, crypto open."""

JOURNAL_T0_US: Final = 1_700_000_000_000_000
"""2023-11-14 22:13:20 UTC (ManualClock's default start) in µs: the journal tests' receive
times."""
