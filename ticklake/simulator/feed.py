"""What the simulator says about each symbol: seeded price walks serialized like Yahoo's.

Invariants:
- a symbol's n-th message has the same price for the same ``(seed, symbol)``, whatever the
  clock says or who subscribed when (the symbol's own generator, drawn in fixed blocks);
- prices are float32 values of decimals rounded to ``price_hint`` decimals; ``time`` is the
  clock's whole second in epoch ms, shared by every message of one :meth:`Feed.advance`;
- a field equal to its zero value is never set (proto3 rules, as Yahoo serializes), so
  PRE_MARKET, an unchanged ``change`` or a zero volume are absent from the wire;
- ``day_volume`` rises within a session and restarts when ``recorder.wire.markets.session_id``
  changes; crypto instead carries a rolling 24 h figure in ``day_volume``, ``last_size``
  and ``vol_24hr`` alike; FX and indices carry no volume;
- fields 35-45 where they fit (their values are plausible, not Yahoo's): equities name the
  indices they belong to; equities and ETFs carry the change since a price a year ago
  (``fifty_two_week_change`` and its percent, moving with the price); ETFs their year- and
  quarter-to-date returns; coins their CoinMarketCap rank. Well-known coins trade near
  their own price with their own circulating supply (BTC ~19.9 M coins). These values come
  from a second generator, so the price walks draw exactly what they drew before;
- a closed market (``recorder.wire.markets.market_hours`` is None) generates nothing;
- :meth:`SymbolFeed.next_columns` (burst mode) continues the same walk as
  :meth:`SymbolFeed.next_tick`, many messages at once, and sets the same fields to the same
  values (``tests/ticklake/test_simulator.py`` compares the serialized bytes).
"""

from __future__ import annotations

import hashlib
import math
from base64 import b64encode
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from lake.pricing_pb2 import PricingData
from recorder.wire.markets import AssetClass, asset_class, market_hours, session_id

__all__ = ["Feed", "SymbolFeed", "Tick"]

BLOCK: Final = 512  # messages drawn at once per symbol
REGULAR: Final = PricingData.REGULAR_MARKET
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
_NO_FLOATS: Final[F64] = np.zeros(0, dtype=np.float64)
_NO_INTS: Final[I64] = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Tick:
    """One generated message: ``payload`` is the serialized ``PricingData``, ``b64`` its base64."""

    symbol: str
    time_ms: int
    payload: bytes
    b64: str


@dataclass(frozen=True, slots=True)
class Profile:
    """How a class of asset moves: start range, decimals, relative step, trade sizes."""

    low: float
    high: float
    price_hint: int
    sigma: float  # standard deviation of the relative move per message
    sizes: tuple[int, int] | None  # last trade size range; None: no session volume


PROFILES: Final = {
    AssetClass.EQUITY: Profile(20.0, 500.0, 2, 3e-4, (1, 500)),
    AssetClass.ETF: Profile(20.0, 500.0, 2, 2e-4, (1, 1000)),
    AssetClass.INDEX: Profile(4000.0, 6000.0, 2, 1e-4, None),
    AssetClass.CURRENCY: Profile(0.8, 1.4, 4, 5e-5, None),
    AssetClass.FUTURE: Profile(4000.0, 6000.0, 2, 1e-4, (1, 20)),
    AssetClass.CRYPTOCURRENCY: Profile(0.05, 50.0, 4, 5e-4, None),  # other coins: see COINS
}
INDEX_EXCHANGES: Final = {"^GSPC": "SNP", "^DJI": "DJI", "^IXIC": "NIM", "^VIX": "WCB"}
FUTURE_EXCHANGES: Final = {"YM": "CBT", "ZB": "CBT", "ZN": "CBT", "CL": "NYM", "GC": "CMX"}


@dataclass(frozen=True, slots=True)
class Coin:
    """A well-known coin: its name, CoinMarketCap rank, circulating supply and price."""

    name: str
    rank: int
    supply: float
    profile: Profile


# fmt: off
COINS: Final = {  # late 2025, rounded
    "BTC": Coin("Bitcoin", 1, 19.9e6, Profile(60_000.0, 110_000.0, 2, 3e-4, None)),
    "ETH": Coin("Ethereum", 2, 120.7e6, Profile(1_800.0, 4_500.0, 2, 4e-4, None)),
    "USDT": Coin("Tether USDt", 3, 1.8e11, Profile(0.9995, 1.0005, 4, 1e-5, None)),
    "XRP": Coin("XRP", 4, 6.0e10, Profile(0.5, 3.0, 4, 5e-4, None)),
    "BNB": Coin("BNB", 5, 1.39e8, Profile(500.0, 900.0, 2, 4e-4, None)),
    "SOL": Coin("Solana", 6, 5.4e8, Profile(100.0, 250.0, 2, 5e-4, None)),
    "DOGE": Coin("Dogecoin", 8, 1.5e11, Profile(0.08, 0.4, 5, 6e-4, None)),
}
# fmt: on
INDEX_MEMBERSHIP: Final = {"NMS": ("^GSPC", "^IXIC", "^NDX"), "NYQ": ("^GSPC", "^NYA", "^DJI")}


def _coin(symbol: str, cls: AssetClass) -> Coin | None:
    return COINS.get(symbol.partition("-")[0]) if cls is AssetClass.CRYPTOCURRENCY else None


def _profile(symbol: str, cls: AssetClass) -> Profile:
    coin = _coin(symbol, cls)
    return coin.profile if coin else PROFILES[cls]


def _static_fields(
    symbol: str, cls: AssetClass, rng: np.random.Generator, extra: np.random.Generator
) -> dict[str, object]:
    """Fields that never change for a symbol, as Yahoo sends them for its asset class
    (fields 35-45 drawn from ``extra``, the rest from ``rng``)."""
    static: dict[str, object] = {
        "id": symbol,
        "quote_type": PricingData.QuoteType.Value(cls.value),
        "price_hint": _profile(symbol, cls).price_hint,
    }
    if cls is AssetClass.EQUITY:
        static["exchange"] = exchange = ("NMS", "NYQ")[int(rng.integers(2))]
        members = INDEX_MEMBERSHIP[exchange]
        static["indices"] = list(members[: int(extra.integers(1, len(members) + 1))])
    elif cls is AssetClass.ETF:
        static["exchange"] = "NMS" if symbol == "QQQ" else "PCX"
        ytd = round(float(extra.uniform(-15.0, 30.0)), 2)
        static |= {"ytd_return": ytd, "qtd_return": round(ytd * float(extra.uniform(0, 0.5)), 2)}
    elif cls is AssetClass.INDEX:
        static["exchange"] = INDEX_EXCHANGES.get(symbol, "SNP")
    elif cls is AssetClass.CURRENCY:
        pair = symbol.removesuffix("=X")
        static |= {"currency": pair[3:] if len(pair) == 6 else pair, "exchange": "CCY"}
    elif cls is AssetClass.FUTURE:
        root = symbol.removesuffix("=F")
        static |= {"currency": "USD", "exchange": FUTURE_EXCHANGES.get(root, "CME")}
        static["open_interest"] = int(rng.integers(100_000, 3_000_000))
    else:
        base, _, quote = symbol.partition("-")
        coin = _coin(symbol, cls)
        supply = float(rng.uniform(1e7, 1e9))
        static |= {"currency": quote, "exchange": "CCC", "from_currency": base}
        static |= {"short_name": f"{coin.name if coin else base} {quote}"}
        static |= {
            "last_market": "CoinMarketCap",
            "circulating_supply": coin.supply if coin else supply,
            "cmc_rank": coin.rank if coin else int(extra.integers(20, 2_000)),
        }
    return static


def _generator(seed: int, symbol: str) -> np.random.Generator:
    """The symbol's own random stream: a stable digest of ``(seed, symbol)`` seeds it."""
    key = f"{seed}:{symbol}".encode("utf-8", "surrogatepass")
    return np.random.default_rng(int.from_bytes(hashlib.blake2b(key).digest()[:16], "big"))


class SymbolFeed:
    """The walk of one symbol and its session state (volume, high, low, previous close).

    Random draws come in blocks of ``BLOCK`` messages from the symbol's own generator, so
    the n-th message's draws never depend on when it is generated. ``change`` and
    ``full_day_change`` are both measured from the previous session's last regular-hours
    price (its last price when it had no regular hours); the simulator does not model
    Yahoo's separate after-hours change.
    """

    def __init__(self, symbol: str, seed: int) -> None:
        self.symbol = symbol
        self.asset = asset_class(symbol)
        self.profile = profile = _profile(symbol, self.asset)
        self.credit = 1.0  # messages due; a new symbol streams on the next advance
        self.latest: Tick | None = None
        rng = self._rng = _generator(seed, symbol)
        self._hint, self._scale = profile.price_hint, float(10**profile.price_hint)
        self._level = float(rng.uniform(profile.low, profile.high))
        self._rolling = float(rng.uniform(2e9, 4e10))  # crypto's 24 h volume
        extra = _generator(seed, f"{symbol}\0fields 35-45")
        static = _static_fields(symbol, self.asset, rng, extra)
        static = {name: v for name, v in static.items() if v}
        self._template = PricingData(**static)  # type: ignore[arg-type]
        self._supply = float(static.get("circulating_supply", 0.0))  # type: ignore[arg-type]
        self._equity = self.asset in (AssetClass.EQUITY, AssetClass.ETF)
        self._prices: list[float] = []
        self._sizes: list[int] = []
        self._rolls: list[int] = []
        self._block: tuple[F64, I64, I64] = (_NO_FLOATS, _NO_INTS, _NO_INTS)  # same, as arrays
        self._cursor = BLOCK
        self._session: int | None = None
        self._last = self._previous_close = max(round(self._level * self._scale), 1) / self._scale
        self._regular_close: float | None = None
        self._volume, self._high, self._low = 0, self._last, self._last
        year_ago = self._last / float(extra.uniform(0.7, 1.5))  # 52-week change: -30%..+50%
        self._year_ago = max(round(year_ago * self._scale), 1) / self._scale

    @property
    def template(self) -> PricingData:
        """The fields that never change for this symbol (id, exchange, ...); do not mutate."""
        return self._template

    def _draw_block(self) -> None:
        rng, profile, scale = self._rng, self.profile, self._scale
        levels = self._level * np.cumprod(np.exp(rng.normal(0.0, profile.sigma, BLOCK)))
        self._level = float(levels[-1])
        prices = np.maximum(np.round(levels * scale), 1.0) / scale
        sizes = rolls = _NO_INTS
        if profile.sizes:
            sizes = rng.integers(*profile.sizes, BLOCK, endpoint=True)
        if self.asset is AssetClass.CRYPTOCURRENCY:
            walk = self._rolling * np.cumprod(np.exp(rng.normal(0.0, 2e-3, BLOCK)))
            self._rolling = float(walk[-1])
            rolls = walk.astype(np.int64)
        self._block = (prices, sizes, rolls)
        self._prices, self._sizes, self._rolls = prices.tolist(), sizes.tolist(), rolls.tolist()
        self._cursor = 0

    def _take(self, n: int) -> tuple[F64, I64, I64]:
        """The next ``n`` messages' draws (price, trade size, rolling volume) as arrays."""
        parts: list[tuple[F64, I64, I64]] = []
        while n > 0:
            if self._cursor == BLOCK:
                self._draw_block()
            i, j = self._cursor, min(BLOCK, self._cursor + n)
            prices, sizes, rolls = self._block  # sizes and rolls may be empty: slices stay so
            parts.append((prices[i:j], sizes[i:j], rolls[i:j]))
            self._cursor, n = j, n - (j - i)
        return (
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
        )

    def next_tick(self, time_ms: int, hours: int, session: int) -> Tick:
        """The next message, stamped ``time_ms``, in an open market's ``hours`` and ``session``."""
        if self._cursor == BLOCK:
            self._draw_block()
        i = self._cursor
        self._cursor = i + 1
        price = self._prices[i]
        size = self._sizes[i] if self._sizes else 0
        self._enter_session(session, price)
        self._trade(price, size, hours)
        change = round(price - self._previous_close, self._hint)
        message = self._message(price, time_ms, hours, change)
        self._set_volumes(message, price, size, self._rolls[i] if self._rolls else 0)
        payload = message.SerializeToString()
        self.latest = Tick(self.symbol, time_ms, payload, b64encode(payload).decode())
        return self.latest

    def _enter_session(self, session: int, first_price: float) -> None:
        """On a new session: the previous close moves on, the day's volume and range restart."""
        if session == self._session:
            return
        if self._session is not None:
            self._previous_close = self._regular_close or self._last
        self._session, self._regular_close = session, None
        self._volume, self._high, self._low = 0, first_price, first_price

    def _trade(self, price: float, size: int, hours: int) -> None:
        """The day's last price, volume, high and low (and regular close) after one message."""
        self._last, self._volume = price, self._volume + size
        if price > self._high:
            self._high = price
        elif price < self._low:
            self._low = price
        if hours == REGULAR:
            self._regular_close = price

    def _message(self, price: float, time_ms: int, hours: int, change: float) -> PricingData:
        """The template with the price and change fields set; proto3 rules: a field equal
        to its zero value is never set."""
        message = PricingData()
        message.CopyFrom(self._template)
        message.price, message.time = price, time_ms
        message.day_high, message.day_low = self._high, self._low
        if hours:
            message.market_hours = hours  # type: ignore[assignment]
        if change:
            message.change = change
            message.change_percent = change / self._previous_close * 100.0
            if self._equity:
                message.full_day_change = change
                message.full_day_change_percent = message.change_percent
        week_change = price - self._year_ago
        if self._equity and week_change:
            message.fifty_two_week_change = week_change
            message.fifty_two_week_change_percent = week_change / self._year_ago * 100.0
        return message

    def _set_volumes(self, message: PricingData, price: float, size: int, rolling: int) -> None:
        """The asset class's volume fields on ``message`` (``rolling``: crypto's 24 h)."""
        if self._equity:
            message.day_volume, message.last_size = self._volume, size
        elif self.asset is AssetClass.FUTURE:
            message.day_volume = self._volume
        elif self.asset is AssetClass.CRYPTOCURRENCY:
            message.day_volume = message.last_size = rolling
            message.vol_24hr = message.vol_all_currencies = rolling
            message.market_cap = price * self._supply

    def next_columns(self, n: int, hours: int, session: int) -> dict[str, npt.NDArray[Any]]:
        """The next ``n`` messages' changing fields, by field name, in an open market: what
        ``n`` calls of :meth:`next_tick` would set, computed with NumPy. A zero means unset
        (proto3), exactly where :meth:`next_tick` leaves the field unset. The fields that do
        not change within a call (:attr:`template`, ``time``, ``market_hours``) are the
        caller's to add; :attr:`latest` is the caller's to update (``burst`` does both).
        """
        prices, sizes, rolls = self._take(n)
        self._enter_session(session, float(prices[0]))
        high = np.maximum(np.maximum.accumulate(prices), self._high)
        low = np.minimum(np.minimum.accumulate(prices), self._low)
        self._last, self._high, self._low = float(prices[-1]), float(high[-1]), float(low[-1])
        if hours == REGULAR:
            self._regular_close = self._last
        change = np.round(prices - self._previous_close, self._hint)
        percent = np.where(change != 0, change / self._previous_close * 100.0, 0.0)
        columns = {"price": prices, "day_high": high, "day_low": low}
        columns |= {"change": change, "change_percent": percent}
        if self._equity or self.asset is AssetClass.FUTURE:
            volume = self._volume + np.cumsum(sizes)
            self._volume = int(volume[-1])
            columns["day_volume"] = volume
        if self._equity:
            columns |= {"last_size": sizes, "full_day_change": change}
            columns["full_day_change_percent"] = percent
            week_change = prices - self._year_ago
            columns["fifty_two_week_change"] = week_change
            columns["fifty_two_week_change_percent"] = week_change / self._year_ago * 100.0
        elif self.asset is AssetClass.CRYPTOCURRENCY:
            columns |= {name: rolls for name in ("day_volume", "last_size", "vol_24hr")}
            columns |= {"vol_all_currencies": rolls, "market_cap": prices * self._supply}
        return columns


class Feed:
    """Every symbol ever subscribed, paced at ``rate`` messages per second per symbol."""

    def __init__(self, seed: int, rate: float) -> None:
        self.seed, self.rate = seed, rate
        self._symbols: dict[str, SymbolFeed] = {}

    def symbol(self, symbol: str) -> SymbolFeed:
        feed = self._symbols.get(symbol)
        if feed is None:
            feed = self._symbols[symbol] = SymbolFeed(symbol, self.seed)
        return feed

    def latest(self, symbol: str) -> Tick | None:
        """The last message generated for ``symbol`` (what a subscribe re-sends), if any."""
        feed = self._symbols.get(symbol)
        return feed.latest if feed else None

    def advance(self, elapsed: float, t: float, symbols: Iterable[str]) -> list[Tick]:
        """The messages due for ``symbols`` after ``elapsed`` real seconds, at clock time ``t``.

        Symbols take turns (round robin), so a burst interleaves them. A closed market keeps
        at most one message due, sent as soon as it opens.
        """
        time_ms = math.floor(t) * 1000
        clock: dict[AssetClass, tuple[int | None, int]] = {}
        due: list[tuple[SymbolFeed, int, int, int]] = []
        for symbol in symbols:
            feed = self.symbol(symbol)
            if feed.asset not in clock:
                clock[feed.asset] = (market_hours(feed.asset, t), session_id(feed.asset, t))
            hours, session = clock[feed.asset]
            feed.credit += self.rate * elapsed
            if hours is None:
                feed.credit = min(feed.credit, 1.0)
                continue
            count = int(feed.credit)
            if count:
                feed.credit -= count
                due.append((feed, count, hours, session))
        ticks: list[Tick] = []
        turn = 0
        while due:
            ticks.extend(feed.next_tick(time_ms, hours, session) for feed, _, hours, session in due)
            turn += 1
            due = [entry for entry in due if entry[1] > turn]
        return ticks
