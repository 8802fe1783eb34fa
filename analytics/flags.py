"""The two flags of a feature row, derived from stored data only, so live runs and backfill
agree on them.

- ``late``: at least one tick of the window (a row with a time and a price) was received
  after ``window_end + lateness``, i.e. after the window was sealed. Derived from the
  ticks' ``received_at``, not from the seal's late list, so it survives restarts, replays
  and backfills. A NULL ``received_at`` (imported ticks) never makes a window late.
- ``gap``: a connection gap of the recorder for that ticker overlapped the window, per the
  session log (``recorder.sessions``): the window was not fully covered by sessions
  carrying the ticker. NULL (unknown) for windows that end before the first session that
  carried the ticker: those ticks came from elsewhere (import, a lake copied in).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from analytics.codes import ticker_codes
from recorder.schema import TIME_TYPE
from recorder.sessions import Session, gaps

__all__ = ["SessionCoverage", "late_flags"]

MINUTE_MS = 60_000
_NEVER = np.iinfo(np.int64).min  # a NULL received_at is never late


def late_flags(features: pa.Table, ticks: pa.Table, lateness_s: float) -> pa.Array:
    """Per row of ``features`` (``ticker``, ``window_start``, ``window_end``): whether a tick
    of the window in ``ticks`` (``id``, ``time``, ``price``, ``received_at``) arrived after
    end + lateness. Vectorized: one sort of the ticks by (ticker, minute)."""
    n = features.num_rows
    if n == 0:
        return pa.array([], pa.bool_())
    ids = ticks["id"]
    if isinstance(ids, pa.ChunkedArray) and ids.num_chunks == 1:
        ids = ids.chunk(0)
    if pa.types.is_dictionary(ids.type) and isinstance(ids, pa.Array):  # the loader's ticks
        names = ids.dictionary.cast(pa.string())
    else:
        names = pa.array(pc.unique(features["ticker"]).to_pylist(), pa.string())
    tick_code = ticker_codes(ids, names)
    for name in ("time", "price"):  # a tick needs both
        if ticks[name].null_count:
            tick_code[~np.asarray(ticks[name].is_valid().to_numpy(), np.bool_)] = -1
    keep = np.flatnonzero(tick_code >= 0)
    late = np.zeros(n, np.bool_)
    if len(keep) == 0:
        return pa.array(late)
    all_kept = len(keep) == ticks.num_rows
    tick_minute = _int64(ticks["time"]) // MINUTE_MS
    received = _int64(pc.fill_null(ticks["received_at"].cast(pa.int64()), _NEVER))
    if not all_kept:
        tick_code, tick_minute, received = tick_code[keep], tick_minute[keep], received[keep]
    row_code = ticker_codes(features["ticker"], names)
    row_minute = _int64(features["window_start"]) // MINUTE_MS
    low = min(int(row_minute.min()), int(tick_minute.min()))
    span = max(int(row_minute.max()), int(tick_minute.max())) - low + 1
    tick_key = tick_code * span + (tick_minute - low)
    if np.any(tick_key[1:] < tick_key[:-1]):  # the loader's order (ticker, time) is sorted
        order = np.argsort(tick_key, kind="stable")
        tick_key, received = tick_key[order], received[order]
    firsts = np.flatnonzero(np.r_[True, tick_key[1:] != tick_key[:-1]])
    keys, latest = tick_key[firsts], np.maximum.reduceat(received, firsts)
    row_key = row_code * span + (row_minute - low)
    pos = np.minimum(np.searchsorted(keys, row_key), len(keys) - 1)
    found = keys[pos] == row_key
    limit = _int64(features["window_end"]) * 1000 + round(lateness_s * 1_000_000)
    late[found] = latest[pos[found]] > limit[found]
    return pa.array(late)


def _int64(column: pa.ChunkedArray | pa.Array) -> NDArray[np.int64]:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_timestamp(column.type):
        column = column.cast(TIME_TYPE).cast(pa.int64())  # epoch ms
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)


@dataclass(frozen=True)
class _Coverage:
    first_start: float
    gap_starts: NDArray[np.float64]
    gap_ends: NDArray[np.float64]


class SessionCoverage:
    """Gap intervals per ticker from the session log, computed once, queried per window."""

    def __init__(self, sessions: Sequence[Session]) -> None:
        by_symbol: dict[str, list[Session]] = {}
        for session in sessions:
            for symbol in session.symbols:
                by_symbol.setdefault(symbol, []).append(session)
        self._coverage: dict[str, _Coverage] = {}
        for symbol, carrying in by_symbol.items():
            first = min(s.start for s in carrying)
            holes = gaps(carrying, symbol, first, math.inf)
            self._coverage[symbol] = _Coverage(
                first,
                np.array([a for a, _ in holes], dtype=np.float64),
                np.array([b for _, b in holes], dtype=np.float64),
            )

    def gap_flags(self, features: pa.Table) -> pa.Array:
        """Per row (``ticker``, ``window_start``, ``window_end``): True if a gap overlapped
        the window, False if sessions covered it, NULL before the ticker's first session."""
        n = features.num_rows
        flags = np.zeros(n, np.bool_)
        known = np.zeros(n, np.bool_)
        if n == 0:
            return pa.array([], pa.bool_())
        start_s = features["window_start"].cast(TIME_TYPE).cast(pa.int64()).to_numpy() / 1000
        end_s = features["window_end"].cast(TIME_TYPE).cast(pa.int64()).to_numpy() / 1000
        symbols = pc.unique(features["ticker"]).to_pylist()
        inverse = ticker_codes(features["ticker"], pa.array(symbols, pa.string()))
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(symbols) + 1))
        for i, symbol in enumerate(symbols):
            coverage = self._coverage.get(str(symbol))
            if coverage is None:
                continue
            rows = order[bounds[i] : bounds[i + 1]]
            lo, hi = start_s[rows], end_s[rows]
            k = np.searchsorted(coverage.gap_starts, hi, side="left") - 1
            ends = coverage.gap_ends[np.maximum(k, 0)] if len(coverage.gap_ends) else hi
            flags[rows] = (k >= 0) & (ends > lo)
            known[rows] = hi > coverage.first_start
        return pa.array(flags, mask=~known)
