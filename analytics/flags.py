"""The two flags of a feature row, derived from stored data only, so live runs and backfill
agree on them.

- ``late``: at least one tick of the window (a row with a time and a price) was received
  after ``window_end + lateness``, i.e. after the window was sealed. Derived from the
  ticks' ``received_at``, not from the seal's late list, so it survives restarts, replays
  and backfills. A NULL ``received_at`` (imported ticks) never makes a window late.
  Computed with the features, in the same segment reduction
  (``compute_features(..., lateness=...)``).
- ``gap``: a connection gap of the recorder for that ticker overlapped the window, per the
  session log (``lake.sessions``): the window was not fully covered by sessions
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
from lake.schema import TIME_TYPE
from lake.sessions import Session, gaps

__all__ = ["SessionCoverage"]


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
