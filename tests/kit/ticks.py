"""Ticks as the lake stores them (LAKE_SCHEMA tables), built in memory.

:func:`ticks` is the one builder: every other shape here (an equity's session, a
:class:`Feed` of random minutes) computes its columns and hands them to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from lake.schema import LAKE_SCHEMA
from lake.utc import DAY_MS, MINUTE_MS
from tests.kit.times import OPEN_MS

Ints = Sequence[int] | np.ndarray


def ticks(
    ticker: str | None,
    times: Ints,
    seqs: Iterable[int | None] | np.ndarray,
    prices: Sequence[float] | np.ndarray | None = None,
    **columns: Sequence[Any] | np.ndarray,
) -> pa.Table:
    """LAKE_SCHEMA rows of ``ticker`` at ``times`` (epoch ms) with ``seqs``, priced 100.0
    unless ``prices``; ``columns`` fills any other column by name (``received_at`` in epoch
    µs: 5 µs after each tick's time unless given), the rest are NULL."""
    n = len(times)
    time_ms = np.asarray(times, dtype=np.int64)
    data = {f.name: pa.nulls(n, f.type) for f in LAKE_SCHEMA}
    data["id"] = pa.array([ticker] * n, pa.string())
    data["time"] = pa.array(time_ms, pa.int64()).cast(LAKE_SCHEMA.field("time").type)
    data["seq"] = pa.array(seqs, pa.int64())
    data["price"] = pa.array(prices if prices is not None else [100.0] * n, pa.float32())
    columns.setdefault("received_at", time_ms * 1000 + 5)
    for name, values in columns.items():
        data[name] = pa.array(values, LAKE_SCHEMA.field(name).type)
    return pa.table(data, schema=LAKE_SCHEMA)


def equity_ticks(ticker: str, times: Ints, seq0: int) -> pa.Table:
    """Rows shaped like an equity's, seqs from ``seq0``: a price walk from 100 and a
    cumulative day volume (both seeded by ``seq0``), exchange, quote type, regular hours,
    received 50 ms after their time."""
    n = len(times)
    rng = np.random.default_rng(seq0)
    prices = np.round(100.0 + np.cumsum(rng.normal(0, 0.02, n)), 2).astype(np.float32)
    return ticks(
        ticker,
        times,
        np.arange(seq0, seq0 + n, dtype=np.int64),
        prices,
        received_at=np.asarray(times, dtype=np.int64) * 1000 + 50_000,
        exchange=["NMS"] * n,
        quote_type=["EQUITY"] * n,
        market_hours=["REGULAR_MARKET"] * n,
        day_volume=np.cumsum(rng.integers(1, 500, n)),
    )


def session(ticker: str, day: int, minutes: int, per_minute: int, seq0: int) -> pa.Table:
    """``minutes`` minutes from ``OPEN_MS`` + ``day`` days, ``per_minute`` evenly spaced
    equity ticks each, seqs from ``seq0``."""
    step = MINUTE_MS // per_minute
    times = OPEN_MS + day * DAY_MS + np.arange(minutes * per_minute, dtype=np.int64) * step
    return equity_ticks(ticker, times, seq0)


def sessions_of(tickers: Sequence[str], days: int, minutes: int = 20, per: int = 6) -> pa.Table:
    """:func:`session` of every ticker on ``days`` days from ``DAY1``, seqs never shared."""
    parts = []
    for d in range(days):
        for i, ticker in enumerate(tickers):
            seq0 = 1 + (d * len(tickers) + i) * minutes * per
            parts.append(session(ticker, d, minutes, per, seq0))
    return pa.concat_tables(parts)


class Feed:
    """Random ticks with increasing seqs and cumulative day volumes per ticker, reproducible
    by ``seed``; whole-second times, so ties on time are common."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = np.random.default_rng(seed)
        self.seq = 1
        self.volume: dict[str, int] = {}
        self.price: dict[str, float] = {}

    def ticks(
        self,
        ticker: str,
        start_ms: int,
        minutes: int,
        per_minute: int = 8,
        *,
        delay_s: float = 0.5,
        volume: bool = True,
    ) -> pa.Table:
        """``per_minute`` ticks (on average) per minute over ``minutes`` minutes from
        ``start_ms``, received ``delay_s`` after their time; ``day_volume`` NULL unless
        ``volume``."""
        rng = self.rng
        n = max(1, int(rng.poisson(per_minute * minutes)))
        seconds = np.sort(rng.integers(0, minutes * 60, n))
        times = start_ms + seconds * 1000
        price = self.price.get(ticker, 100.0 + rng.random() * 50)
        prices = np.round(price + np.cumsum(rng.normal(0, 0.05, n)), 2).astype(np.float32)
        self.price[ticker] = float(prices[-1])
        columns: dict[str, Sequence[Any] | np.ndarray] = {"market_hours": ["REGULAR_MARKET"] * n}
        if volume:
            base = self.volume.get(ticker, int(rng.integers(1_000, 100_000)))
            cumulative = base + np.cumsum(rng.integers(0, 500, n))
            self.volume[ticker] = int(cumulative[-1])
            columns["day_volume"] = cumulative
        seqs = np.arange(self.seq, self.seq + n)
        self.seq += n
        columns["received_at"] = times * 1000 + int(delay_s * 1e6)
        return ticks(ticker, times, seqs, prices, **columns)
