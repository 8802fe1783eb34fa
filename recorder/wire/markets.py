"""Which market a symbol trades in, whether it is open, and when its day volume resets.

Pure functions of a symbol and an epoch time (seconds, UTC); no I/O. The simulator uses them
to decide what to stream, the recorder's watchdog to know that a closed market is quiet, and
analytics to find the session resets of the cumulative ``day_volume``.

The asset class is guessed from the symbol's shape (Yahoo's conventions), in this order:

- ``^GSPC``: a leading ``^`` is an INDEX;
- ``EURUSD=X``: a ``=X`` suffix is a CURRENCY pair; ``ES=F``: a ``=F`` suffix is a FUTURE;
- ``BTC-USD``: ``BASE-QUOTE`` is a CRYPTOCURRENCY when BASE is a well-known coin (any 3-4
  letter QUOTE), or when QUOTE is USD, USDT or EUR and BASE looks like a coin ticker
  (2-10 upper-case letters or digits); share classes such as ``BRK-B`` stay equities;
- a short list of well-known US ETFs (SPY, QQQ, ...) is ETF; everything else is EQUITY.

A wrong guess only changes what the simulator generates and how patient the watchdog is.

Trading hours are New York wall-clock rules (``America/New_York`` via zoneinfo, so both DST
switches are handled); exchange holidays and early closes are ignored, so a holiday looks
like a normal, silent trading day. Every equity (and ETF) follows US hours, including
foreign listings such as ``VOD.L``.

Invariants:
- ``market_hours`` returns a ``PricingData.MarketHours`` value, or None exactly when
  ``is_open`` is False; crypto is always REGULAR_MARKET.
- ``session_id`` is the session's date in days since 1970-01-01 and changes exactly when
  the cumulative ``day_volume`` resets (equities and indices: 04:00 NY; FX: 17:00 NY;
  futures: 18:00 NY; crypto: 00:00 UTC, although Yahoo's crypto figure is a rolling 24 h
  volume that never resets).
"""

from __future__ import annotations

import functools
import math
import re
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

from lake.pricing_pb2 import PricingData
from lake.utc import DAY_S

__all__ = ["AssetClass", "asset_class", "is_open", "market_hours", "session_id"]

NEW_YORK: Final = ZoneInfo("America/New_York")
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_PRE, _REGULAR = PricingData.PRE_MARKET, PricingData.REGULAR_MARKET
_POST, _OVERNIGHT = PricingData.POST_MARKET, PricingData.OVERNIGHT_MARKET
_SUN, _FRI, _SAT = 6, 4, 5  # datetime.weekday()


class AssetClass(StrEnum):
    """Values equal the names of the matching ``PricingData.QuoteType``."""

    EQUITY = "EQUITY"
    ETF = "ETF"
    INDEX = "INDEX"
    CURRENCY = "CURRENCY"
    FUTURE = "FUTURE"
    CRYPTOCURRENCY = "CRYPTOCURRENCY"


# fmt: off
KNOWN_CRYPTO_BASES: Final = frozenset({
    "BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "BNB", "USDT", "USDC", "LTC", "DOT", "AVAX",
    "LINK", "TRX", "SHIB", "BCH", "XLM", "TON", "UNI", "ATOM", "ETC", "XMR", "NEAR", "APT",
    "ARB", "OP", "PEPE", "SUI",
})
CRYPTO_QUOTES: Final = frozenset({"USD", "USDT", "EUR"})
KNOWN_ETFS: Final = frozenset({
    "SPY", "QQQ", "IWM", "DIA", "VOO", "VTI", "IVV", "VEA", "VWO", "EFA", "EEM", "AGG", "BND",
    "TLT", "IEF", "SHY", "HYG", "LQD", "GLD", "SLV", "USO", "UNG", "XLF", "XLK", "XLE", "XLV",
    "XLI", "XLY", "XLP", "XLU", "XLB", "XLRE", "XLC", "SMH", "SOXX", "ARKK", "KRE", "XBI", "GDX",
    "TQQQ", "SQQQ", "UVXY", "VXX", "VNQ", "IBIT", "FBTC", "SCHD", "JEPI",
})
# fmt: on
_PAIR: Final = re.compile(r"(?P<base>[A-Z0-9]{2,10})-(?P<quote>[A-Z]{3,4})")


@functools.lru_cache(maxsize=8192)
def asset_class(symbol: str) -> AssetClass:
    """The asset class guessed from the symbol's shape (see the module docstring)."""
    if symbol.startswith("^"):
        return AssetClass.INDEX
    if symbol.endswith("=X"):
        return AssetClass.CURRENCY
    if symbol.endswith("=F"):
        return AssetClass.FUTURE
    pair = _PAIR.fullmatch(symbol)
    if pair and (pair["base"] in KNOWN_CRYPTO_BASES or pair["quote"] in CRYPTO_QUOTES):
        return AssetClass.CRYPTOCURRENCY
    if symbol in KNOWN_ETFS:
        return AssetClass.ETF
    return AssetClass.EQUITY


def _class_of(symbol_or_class: str | AssetClass) -> AssetClass:
    if isinstance(symbol_or_class, AssetClass):
        return symbol_or_class
    return asset_class(symbol_or_class)


def _new_york(t: float) -> datetime:
    return datetime.fromtimestamp(t, NEW_YORK)


def _us_equity_hours(weekday: int, minute: int) -> int | None:
    """PRE 04:00-09:30, REGULAR 09:30-16:00, POST 16:00-20:00, OVERNIGHT 20:00-04:00,
    from Sunday 20:00 to Friday 20:00."""
    if weekday == _SAT or (weekday == _SUN and minute < 20 * 60):
        return None
    if minute >= 20 * 60:
        return None if weekday == _FRI else _OVERNIGHT
    if minute < 4 * 60:
        return _OVERNIGHT
    if minute < 9 * 60 + 30:
        return _PRE
    return _REGULAR if minute < 16 * 60 else _POST


def _weekly_open(weekday: int, minute: int, opens: int, closes: int) -> bool:
    """Open from Sunday ``opens`` to Friday ``closes`` (minutes after midnight), closed each
    weekday between ``closes`` and ``opens`` (an empty span when they are equal)."""
    if weekday == _SAT:
        return False
    if weekday == _SUN:
        return minute >= opens
    if weekday == _FRI and minute >= closes:
        return False
    return not closes <= minute < opens


def market_hours(symbol_or_class: str | AssetClass, t: float) -> int | None:
    """The ``PricingData.MarketHours`` value at epoch seconds ``t``, or None when closed.

    A plain string is always read as a symbol; pass an ``AssetClass`` member for a class.
    """
    cls = _class_of(symbol_or_class)
    if cls is AssetClass.CRYPTOCURRENCY:
        return _REGULAR
    local = _new_york(t)
    weekday, minute = local.weekday(), local.hour * 60 + local.minute
    if cls is AssetClass.CURRENCY:
        return _REGULAR if _weekly_open(weekday, minute, 17 * 60, 17 * 60) else None
    if cls is AssetClass.FUTURE:
        return _REGULAR if _weekly_open(weekday, minute, 18 * 60, 17 * 60) else None
    if cls is AssetClass.INDEX:
        regular = weekday < _SAT and 9 * 60 + 30 <= minute < 16 * 60
        return _REGULAR if regular else None
    return _us_equity_hours(weekday, minute)


def is_open(symbol: str | AssetClass, t: float) -> bool:
    """Whether the symbol's market streams at epoch seconds ``t``."""
    return market_hours(symbol, t) is not None


_SESSION_SHIFT: Final = {
    AssetClass.EQUITY: timedelta(hours=-4),  # the day starts with pre-market at 04:00
    AssetClass.ETF: timedelta(hours=-4),
    AssetClass.INDEX: timedelta(hours=-4),
    AssetClass.CURRENCY: timedelta(hours=7),  # 17:00 starts the next day's session
    AssetClass.FUTURE: timedelta(hours=6),  # 18:00 starts the next day's session
}


def session_id(symbol_or_class: str | AssetClass, t: float) -> int:
    """The session's date as days since 1970-01-01; changes exactly when ``day_volume`` resets.

    The shift is applied to New York wall-clock time, so it holds across DST switches.
    """
    cls = _class_of(symbol_or_class)
    if cls is AssetClass.CRYPTOCURRENCY:
        return math.floor(t / DAY_S)
    local = _new_york(t) + _SESSION_SHIFT[cls]  # wall-clock arithmetic on an aware datetime
    return local.date().toordinal() - _EPOCH_ORDINAL
