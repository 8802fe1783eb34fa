"""The times the Python API takes: every form means one UTC instant, naive means UTC, and
anything else is refused with a message naming the argument."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ticklake.times import time_range, utc_instant

INSTANT = dt.datetime(2024, 4, 15, 13, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "value",
    [
        INSTANT,
        dt.datetime(2024, 4, 15, 13, 30),  # noqa: DTZ001 (naive: UTC)
        dt.datetime(2024, 4, 15, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=-4))),
        "2024-04-15T13:30Z",
        "2024-04-15T13:30:00+00:00",
        "2024-04-15 09:30-04:00",
        " 2024-04-15T13:30 ",
    ],
)
def test_every_form_is_the_same_utc_instant(value: Any) -> None:
    moment = utc_instant(value)
    assert moment == INSTANT and moment.tzinfo is dt.UTC


def test_a_date_is_its_utc_midnight() -> None:
    midnight = dt.datetime(2024, 4, 15, tzinfo=dt.UTC)
    assert utc_instant(dt.date(2024, 4, 15)) == midnight == utc_instant("2024-04-15")


def test_pandas_timestamps_are_datetimes() -> None:
    pd = pytest.importorskip("pandas")
    assert utc_instant(pd.Timestamp("2024-04-15 09:30", tz="America/New_York")) == INSTANT
    assert utc_instant(pd.Timestamp("2024-04-15 13:30")) == INSTANT  # naive: UTC
    with pytest.raises(ValueError, match="start is NaT"):
        utc_instant(pd.NaT, "start")


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("yesterday", ValueError, "end: 'yesterday' is not an ISO-8601"),
        (1713187800, TypeError, "end must be a datetime.*not builtins.int"),
        (None, TypeError, "not builtins.NoneType"),
    ],
)
def test_other_values_are_refused(value: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        utc_instant(value, "end")


def test_a_range_is_half_open_and_may_be_open_ended() -> None:
    assert time_range(None, None) == (None, None)
    assert time_range("2024-04-15", None) == (dt.datetime(2024, 4, 15, tzinfo=dt.UTC), None)
    with pytest.raises(ValueError, match="is not after start"):
        time_range("2024-04-15", "2024-04-15")
    with pytest.raises(ValueError, match="is not after start"):
        time_range("2024-04-15T01:00+01:00", "2024-04-15T00:00Z")  # the same instant
