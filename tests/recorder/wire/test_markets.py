"""Market clock: asset classes from symbols, trading hours across weekends and DST, and the
instants at which the cumulative day volume resets."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from lake.pricing_pb2 import PricingData
from recorder.wire.markets import (
    NEW_YORK,
    AssetClass,
    asset_class,
    is_open,
    market_hours,
    session_id,
)

PRE, REG = PricingData.PRE_MARKET, PricingData.REGULAR_MARKET
POST, NIGHT = PricingData.POST_MARKET, PricingData.OVERNIGHT_MARKET


def ny(day: str, hhmm: str) -> float:
    """Epoch seconds of a New York wall-clock time, e.g. ny("2024-01-08", "10:00")."""
    d, (h, m) = date.fromisoformat(day), map(int, hhmm.split(":"))
    return datetime(d.year, d.month, d.day, h, m, tzinfo=NEW_YORK).timestamp()


def utc(day: str, hhmm: str) -> float:
    d, (h, m) = date.fromisoformat(day), map(int, hhmm.split(":"))
    return datetime(d.year, d.month, d.day, h, m, tzinfo=UTC).timestamp()


def days(day: str) -> int:
    return (date.fromisoformat(day) - date(1970, 1, 1)).days


# 2024-01-05 Fri, 06 Sat, 07 Sun, 08 Mon, 09 Tue, 10 Wed.
FRI, SAT, SUN, MON, TUE, WED = (f"2024-01-{d:02d}" for d in range(5, 11))


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        ("^GSPC", AssetClass.INDEX),
        ("EURUSD=X", AssetClass.CURRENCY),
        ("JPY=X", AssetClass.CURRENCY),
        ("ES=F", AssetClass.FUTURE),
        ("BTC-USD", AssetClass.CRYPTOCURRENCY),
        ("ETH-USD", AssetClass.CRYPTOCURRENCY),
        ("ETH-BTC", AssetClass.CRYPTOCURRENCY),  # known base, any quote
        ("SHIB-USDT", AssetClass.CRYPTOCURRENCY),
        ("NEWCOIN-EUR", AssetClass.CRYPTOCURRENCY),  # coin-looking base, crypto quote
        ("SPY", AssetClass.ETF),
        ("QQQ", AssetClass.ETF),
        ("spy", AssetClass.EQUITY),  # symbols are case-sensitive
        ("BRK-B", AssetClass.EQUITY),
        ("BF-B", AssetClass.EQUITY),
        ("AAPL", AssetClass.EQUITY),
        ("VOD.L", AssetClass.EQUITY),
        ("../x", AssetClass.EQUITY),
        ("", AssetClass.EQUITY),
    ],
)
def test_asset_class_from_symbol_shape(symbol: str, expected: AssetClass) -> None:
    assert asset_class(symbol) is expected


@pytest.mark.parametrize(
    ("symbol", "when", "expected"),
    [
        # US equities and ETFs: pre, regular, post, overnight; closed Fri 20:00 - Sun 20:00.
        ("AAPL", ny(MON, "10:00"), REG),
        ("AAPL", ny(MON, "05:00"), PRE),
        ("AAPL", ny(MON, "09:29"), PRE),
        ("AAPL", ny(MON, "09:30"), REG),
        ("AAPL", ny(MON, "15:59"), REG),
        ("AAPL", ny(MON, "16:00"), POST),
        ("AAPL", ny(MON, "19:59"), POST),
        ("AAPL", ny(MON, "20:00"), NIGHT),
        ("AAPL", ny(TUE, "03:59"), NIGHT),
        ("AAPL", ny(TUE, "04:00"), PRE),
        ("AAPL", ny(MON, "00:30"), NIGHT),
        ("AAPL", ny(SUN, "03:00"), None),
        ("AAPL", ny(SUN, "19:59"), None),
        ("AAPL", ny(SUN, "20:00"), NIGHT),
        ("AAPL", ny(SAT, "01:00"), None),
        ("AAPL", ny(SAT, "12:00"), None),
        ("AAPL", ny(FRI, "19:59"), POST),
        ("AAPL", ny(FRI, "20:00"), None),
        ("SPY", ny(WED, "12:00"), REG),
        ("BRK-B", ny(SAT, "12:00"), None),
        # Indices: regular hours only.
        ("^GSPC", ny(MON, "10:00"), REG),
        ("^GSPC", ny(MON, "09:29"), None),
        ("^GSPC", ny(MON, "16:00"), None),
        ("^GSPC", ny(SAT, "10:00"), None),
        # FX: Sunday 17:00 to Friday 17:00 New York, around the clock on weekdays.
        ("EURUSD=X", ny(FRI, "16:59"), REG),
        ("EURUSD=X", ny(FRI, "17:01"), None),
        ("EURUSD=X", ny(SAT, "12:00"), None),
        ("EURUSD=X", ny(SUN, "16:59"), None),
        ("EURUSD=X", ny(SUN, "17:00"), REG),
        ("EURUSD=X", ny(WED, "17:30"), REG),
        ("EURUSD=X", ny(WED, "03:00"), REG),
        # Futures: Sunday 18:00 to Friday 17:00 with a daily 17:00-18:00 break.
        ("ES=F", ny(WED, "16:59"), REG),
        ("ES=F", ny(WED, "17:00"), None),
        ("ES=F", ny(WED, "17:59"), None),
        ("ES=F", ny(WED, "18:00"), REG),
        ("ES=F", ny(SUN, "17:30"), None),
        ("ES=F", ny(SUN, "18:00"), REG),
        ("ES=F", ny(FRI, "17:00"), None),
        ("ES=F", ny(FRI, "18:30"), None),
        # Crypto never closes.
        ("BTC-USD", ny(SAT, "03:00"), REG),
        ("BTC-USD", ny(SUN, "03:00"), REG),
        ("ETH-USD", ny(FRI, "20:00"), REG),
        # DST starts 2024-03-10 (EST -> EDT): 13:30 UTC is 08:30 before, 09:30 after.
        ("AAPL", utc("2024-03-08", "13:30"), PRE),
        ("AAPL", utc("2024-03-11", "13:30"), REG),
        ("AAPL", utc("2024-03-11", "00:00"), NIGHT),  # Sunday 20:00 EDT
        ("EURUSD=X", utc("2024-03-10", "20:59"), None),
        ("EURUSD=X", utc("2024-03-10", "21:00"), REG),  # Sunday 17:00 EDT
        # DST ends 2024-11-03 (EDT -> EST): 13:30 UTC is 09:30 before, 08:30 after.
        ("AAPL", utc("2024-11-01", "13:30"), REG),
        ("AAPL", utc("2024-11-04", "13:30"), PRE),
        ("AAPL", utc("2024-11-04", "14:30"), REG),
        ("ES=F", utc("2024-11-03", "22:59"), None),
        ("ES=F", utc("2024-11-03", "23:00"), REG),  # Sunday 18:00 EST
    ],
)
def test_market_hours(symbol: str, when: float, expected: int | None) -> None:
    assert market_hours(symbol, when) == expected
    assert is_open(symbol, when) is (expected is not None)


def test_an_asset_class_member_is_a_class_and_a_plain_string_is_a_symbol() -> None:
    saturday = ny(SAT, "12:00")
    assert market_hours(AssetClass.CRYPTOCURRENCY, saturday) == REG
    assert market_hours("CRYPTOCURRENCY", saturday) is None  # an equity called CRYPTOCURRENCY
    assert market_hours(AssetClass.INDEX, ny(MON, "10:00")) == REG


@pytest.mark.parametrize(
    ("symbol", "before", "at", "session_day"),
    [
        ("AAPL", ny(MON, "03:59"), ny(MON, "04:00"), MON),
        ("AAPL", ny(TUE, "03:59"), ny(TUE, "04:00"), TUE),
        ("SPY", ny(TUE, "03:59"), ny(TUE, "04:00"), TUE),
        ("^GSPC", ny(TUE, "03:59"), ny(TUE, "04:00"), TUE),
        ("EURUSD=X", ny(WED, "16:59"), ny(WED, "17:00"), "2024-01-11"),
        ("EURUSD=X", ny(SUN, "16:59"), ny(SUN, "17:00"), MON),
        ("ES=F", ny(WED, "17:59"), ny(WED, "18:00"), "2024-01-11"),
        ("BTC-USD", utc(MON, "00:00") - 60, utc(MON, "00:00"), MON),
        ("AAPL", utc("2024-03-11", "07:59"), utc("2024-03-11", "08:00"), "2024-03-11"),  # EDT
        ("AAPL", utc("2024-11-04", "08:59"), utc("2024-11-04", "09:00"), "2024-11-04"),  # EST
    ],
)
def test_session_id_changes_at_the_reset(
    symbol: str, before: float, at: float, session_day: str
) -> None:
    assert session_id(symbol, at) == days(session_day)
    assert session_id(symbol, before) == days(session_day) - 1
    assert session_id(symbol, at + 23 * 3600) == days(session_day)  # the session lasts a day


@pytest.mark.parametrize(
    ("symbol", "reset"),
    [("AAPL", "04:00"), ("^GSPC", "04:00"), ("EURUSD=X", "17:00"), ("ES=F", "18:00")],
)
@pytest.mark.parametrize("start", ["2024-03-06", "2024-10-30"])  # weeks around DST switches
def test_session_id_changes_only_at_the_reset_time(symbol: str, reset: str, start: str) -> None:
    t0 = ny(start, "00:00")
    changes = []
    previous = session_id(symbol, t0)
    for t in range(int(t0), int(t0) + 8 * 86400, 60):
        current = session_id(symbol, t)
        if current != previous:
            assert current == previous + 1
            changes.append(datetime.fromtimestamp(t, NEW_YORK).strftime("%H:%M"))
        previous = current
    assert changes == [reset] * 8


def test_crypto_session_is_the_utc_date() -> None:
    t = utc("2024-01-06", "23:59")
    assert session_id("BTC-USD", t) == days("2024-01-06")
    assert session_id("BTC-USD", t + 60) == days("2024-01-07")
    assert session_id("BTC-USD", ny(SAT, "23:59")) == days("2024-01-07")  # 04:59 UTC Sunday
