"""lake.utc: the units, a minute's floor, a day's bounds and the one UTC format, at the edges
(midnight, the epoch, before it)."""

from __future__ import annotations

import datetime as dt

import pytest

from lake.utc import (
    DAY_MS,
    DAY_S,
    HOUR_MS,
    MINUTE_MS,
    day_start_ms,
    floor_minute_ms,
    iso_utc,
    utc_date,
)

# 2024-04-16T14:15:45.999Z
LATE_IN_A_SECOND = int(dt.datetime(2024, 4, 16, 14, 15, 45, tzinfo=dt.UTC).timestamp()) * 1000 + 999


def test_the_units_agree() -> None:
    assert (MINUTE_MS, HOUR_MS, DAY_MS) == (60_000, 60 * MINUTE_MS, 24 * HOUR_MS)
    assert DAY_S * 1000 == DAY_MS and isinstance(DAY_S, float)


@pytest.mark.parametrize(
    ("epoch_ms", "precision", "text"),
    [
        (LATE_IN_A_SECOND, "milliseconds", "2024-04-16T14:15:45.999Z"),
        (LATE_IN_A_SECOND, "seconds", "2024-04-16T14:15:45Z"),  # truncated, not rounded up
        (LATE_IN_A_SECOND, "minutes", "2024-04-16T14:15Z"),
        (LATE_IN_A_SECOND - 45_999, "milliseconds", "2024-04-16T14:15:00.000Z"),
        (0, "milliseconds", "1970-01-01T00:00:00.000Z"),
        (-1, "milliseconds", "1969-12-31T23:59:59.999Z"),  # before the epoch: still a floor
        (-1, "seconds", "1969-12-31T23:59:59Z"),
        (-1, "minutes", "1969-12-31T23:59Z"),
        (DAY_MS - 1, "minutes", "1970-01-01T23:59Z"),
    ],
)
def test_iso_utc_truncates_at_every_precision(epoch_ms: int, precision: str, text: str) -> None:
    assert iso_utc(epoch_ms, precision) == text  # type: ignore[arg-type]


def test_iso_utc_defaults_to_milliseconds() -> None:
    assert iso_utc(LATE_IN_A_SECOND) == "2024-04-16T14:15:45.999Z"


@pytest.mark.parametrize(
    ("epoch_ms", "floor"),
    [
        (0, 0),
        (59_999, 0),
        (60_000, 60_000),
        (LATE_IN_A_SECOND, LATE_IN_A_SECOND - 45_999),
        (-1, -60_000),  # before the epoch the floor is still earlier, never toward zero
        (-60_000, -60_000),
        (-60_001, -120_000),
    ],
)
def test_floor_minute_ms(epoch_ms: int, floor: int) -> None:
    assert floor_minute_ms(epoch_ms) == floor
    assert floor_minute_ms(floor) == floor


@pytest.mark.parametrize(
    "date",
    [
        dt.date(1970, 1, 1),
        dt.date(1969, 12, 31),
        dt.date(1900, 3, 1),
        dt.date(2024, 2, 29),
        dt.date(2024, 3, 10),  # a DST switch in New York: no effect on UTC days
        dt.date(2099, 12, 31),
    ],
)
def test_a_day_round_trips_around_its_midnights(date: dt.date) -> None:
    start = day_start_ms(date)
    assert start % DAY_MS == 0
    assert start == int(dt.datetime.combine(date, dt.time(), dt.UTC).timestamp()) * 1000
    assert utc_date(start) == date
    assert utc_date(start + DAY_MS - 1) == date  # the day's last millisecond
    assert utc_date(start - 1) == date - dt.timedelta(days=1)
    assert utc_date(start + DAY_MS) == date + dt.timedelta(days=1)
    assert day_start_ms(date + dt.timedelta(days=1)) - start == DAY_MS


def test_the_epoch_and_before() -> None:
    assert day_start_ms(dt.date(1970, 1, 1)) == 0
    assert day_start_ms(dt.date(1969, 12, 31)) == -DAY_MS
    assert utc_date(0) == dt.date(1970, 1, 1)
    assert utc_date(-1) == dt.date(1969, 12, 31)
    assert utc_date(-DAY_MS) == dt.date(1969, 12, 31)
    assert utc_date(-DAY_MS - 1) == dt.date(1969, 12, 30)
