"""What ``ticklake plot`` draws: one ticker's bars (:meth:`ticklake.api.Lake.bars`) as
columns of NumPy arrays, shared by the PNG and the HTML renderers.

Invariants: one candle per row of the bars table, in ``bar_start`` order, none dropped or
invented (a bar without a price is refused: the features job never writes one); a NULL
``volume`` or ``vwap`` (FX, a minute without traded volume) is NaN; ``gap`` is True only
where the recorder knew it was disconnected (NULL, as for imported data, is False).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["PRICES", "Candles", "candles"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Flags = npt.NDArray[np.bool_]

PRICES: Final = ("open", "high", "low", "close")


@dataclass(frozen=True)
class Candles:
    """Bars of one ticker, ``width_ms`` wide, by start; every array has ``len(self)`` items."""

    ticker: str
    width: str
    width_ms: int
    start_ms: I64
    open: F64
    high: F64
    low: F64
    close: F64
    volume: F64
    vwap: F64
    late: Flags
    gap: Flags

    def __len__(self) -> int:
        return int(self.start_ms.size)

    @property
    def rising(self) -> Flags:
        """Closed at or above the open (drawn hollow green; falling ones red)."""
        rising: Flags = self.close >= self.open
        return rising


def candles(bars: pa.Table, ticker: str, width: str, width_ms: int) -> Candles:
    """The rows of ``bars`` (the ``bars`` macro's columns) whose ``ticker`` is ``ticker``.
    ValueError when a bar has no open, high, low or close."""
    rows = bars.filter(pc.equal(bars["ticker"], ticker)) if bars.num_rows else bars
    if rows.num_rows and any(rows[name].null_count for name in PRICES):
        raise ValueError(f"{ticker}: a bar without a price")
    start = rows["bar_start"] if rows.num_rows else pa.chunked_array([], pa.timestamp("ms"))
    start_ms = pc.cast(start, pa.timestamp("ms", tz="UTC")).cast(pa.int64())
    order = np.argsort(_ints(start_ms), kind="stable")
    return Candles(
        ticker=ticker,
        width=width,
        width_ms=width_ms,
        start_ms=_ints(start_ms)[order],
        open=_floats(rows, "open")[order],
        high=_floats(rows, "high")[order],
        low=_floats(rows, "low")[order],
        close=_floats(rows, "close")[order],
        volume=_floats(rows, "volume")[order],
        vwap=_floats(rows, "vwap")[order],
        late=_flags(rows, "late")[order],
        gap=_flags(rows, "gap")[order],
    )


def _ints(column: pa.ChunkedArray) -> I64:
    return np.asarray(column.to_numpy(), dtype=np.int64)


def _floats(rows: pa.Table, name: str) -> F64:
    if not rows.num_rows:
        return np.zeros(0, dtype=np.float64)
    column = pc.cast(rows[name], pa.float64())
    return np.asarray(pc.fill_null(column, np.nan).to_numpy(), dtype=np.float64)


def _flags(rows: pa.Table, name: str) -> Flags:
    if not rows.num_rows:
        return np.zeros(0, dtype=np.bool_)
    return np.asarray(pc.fill_null(rows[name], False).to_numpy(), dtype=np.bool_)
