"""Traded volume from Yahoo's cumulative ``day_volume``: sessions, resets and increments.

The feed never says how much traded; it repeats the session's running total (``day_volume``)
on each tick. The traded volume of a tick is derived from the previous *reading* (tick
with a non-NULL ``day_volume``) of the same ticker:

    increment = max(v - v_prev, 0)   when the previous reading is in the same session
    increment = 0                    for the first reading of a session (or of the data)

and the volume of a window is the sum of its ticks' increments. Equivalently: the window
is split at every *reset* (a reading lower than the one before it in the same session, as
after a Yahoo correction, or a session boundary) and each piece contributes its last
reading minus its base: the last reading before the window for the first piece (when in
the same session), the piece's own first reading otherwise.

Invariants:
- an increment is never negative, so no volume is ever negative;
- the session of a reading is ``recorder.wire.markets.session_id(ticker, time)``: equities,
  ETFs and indices reset at 04:00 New York, FX at 17:00, futures at 18:00. Crypto never
  resets: its ``day_volume`` is a *rolling* 24 h figure that rises and falls, so clamping
  each step at 0 makes its volume the sum of the rises, an approximation (the rolling
  figure also drops what traded 24 h earlier, so this usually undercounts);
- volume traded in a session before its first reading is unknowable from the stream and
  is never invented: the first reading of a session contributes 0;
- every session boundary falls on a whole UTC hour (New York offsets are whole hours and
  DST switches at 02:00 local, also a whole UTC hour), hence also on a window boundary: a
  session never changes inside a window, and sessions are only looked up where a ticker's
  ticks cross an hour.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from lake.utc import HOUR_MS
from recorder.wire.markets import AssetClass, asset_class, session_id

__all__ = ["ASSET_CLASSES", "Base", "VolumeTicks", "WindowVolume", "class_codes", "window_volume"]

ASSET_CLASSES: Final[tuple[AssetClass, ...]] = tuple(AssetClass)
"""Asset class codes are indexes into this tuple."""
_CRYPTO: Final = ASSET_CLASSES.index(AssetClass.CRYPTOCURRENCY)

I64 = NDArray[np.int64]
Codes = NDArray[np.int32]
Bools = NDArray[np.bool_]


@dataclass(frozen=True)
class Base:
    """Per ticker code, the last reading before that ticker's first tick (if ``present``)."""

    time_ms: I64
    day_volume: I64
    present: Bools


@dataclass(frozen=True)
class VolumeTicks:
    """The ticks' columns the volume rule reads, sorted by (``code``, ``time``, arrival
    order): ticker code, time (epoch ms), and ``day_volume``, which matters only where
    ``has_volume`` (a reading)."""

    code: Codes
    time_ms: I64
    day_volume: I64
    has_volume: Bools


@dataclass(frozen=True)
class WindowVolume:
    """Per window: ``volume`` (defined where ``known``) and the last reading in it; per tick:
    its ``increment``."""

    increment: I64
    volume: I64
    known: Bools
    last_day_volume: I64


def class_codes(tickers: Sequence[str]) -> NDArray[np.int8]:
    """The asset class code (index into ``ASSET_CLASSES``) of each symbol, by its shape."""
    return np.array([ASSET_CLASSES.index(asset_class(t)) for t in tickers], dtype=np.int8)


@functools.lru_cache(maxsize=65536)
def _session_of(code: int, hour: int) -> int:
    if code == _CRYPTO:
        return 0  # one endless session: the rolling figure never resets
    return session_id(ASSET_CLASSES[code], hour * HOUR_MS // 1000)


def session_ids(classes: NDArray[np.int8], time_ms: I64) -> I64:
    """The session of each reading (crypto: always 0), given its class code and time."""
    hours = (time_ms // HOUR_MS).tolist()
    return np.array([_session_of(c, h) for c, h in zip(classes.tolist(), hours, strict=True)])


class _Readings:
    """Where the readings are among the sorted ticks, for lookups at a few positions."""

    def __init__(self, has_volume: Bools) -> None:
        self.has = has_volume
        self.everywhere = bool(has_volume.all())
        edge = np.zeros(0, np.intp)
        if not self.everywhere:
            edge = np.flatnonzero(has_volume[1:] != has_volume[:-1])
        self.ends = edge[has_volume[edge]]  # a reading followed by a tick without one
        self.begins = edge[~has_volume[edge]] + 1  # a reading after a tick without one

    def last_upto(self, q: NDArray[np.intp]) -> NDArray[np.intp]:
        """The last reading at or before each position (-1: none; q may be -1)."""
        if self.everywhere:
            return q
        k = np.searchsorted(self.ends, q) - 1
        before = np.where(k >= 0, self.ends[np.maximum(k, 0)] if len(self.ends) else -1, -1)
        return np.where((q >= 0) & self.has[np.maximum(q, 0)], q, before)

    def first_from(self, q: NDArray[np.intp]) -> NDArray[np.intp]:
        """The first reading at or after each position (len(ticks): none)."""
        n = len(self.has)
        if self.everywhere:
            return q
        k = np.searchsorted(self.begins, q)
        after = np.append(self.begins, n)[k]
        return np.where((q < n) & self.has[np.minimum(q, n - 1)], q, after)


def window_volume(
    ticks: VolumeTicks,
    ticker_class: NDArray[np.int8],
    starts: NDArray[np.intp],
    base: Base | None = None,
) -> WindowVolume:
    """Volume of the windows whose ticks start at ``starts``, per the module's rule.

    ``starts`` are the indexes where a ticker or a minute begins among the sorted ``ticks``
    (the windows tile the ticks). ``ticks.code`` indexes ``ticker_class`` and ``base``'s
    arrays.
    """
    code, time_ms, day_volume = ticks.code, ticks.time_ms, ticks.day_volume
    has_volume = ticks.has_volume
    n = len(time_ms)
    if n == 0:
        empty = np.zeros(0, np.int64)
        return WindowVolume(empty, empty, np.zeros(0, np.bool_), empty)
    readings = _Readings(has_volume)
    inc = np.zeros(n, np.int64)  # first against the previous tick, fixed up below
    np.maximum(np.subtract(day_volume[1:], day_volume[:-1], out=inc[1:]), 0, out=inc[1:])
    if not readings.everywhere:
        np.multiply(inc, has_volume, out=inc)
        after_gap = readings.begins
        inc[after_gap] = _step(day_volume, readings.last_upto(after_gap - 1), after_gap)
    # A new ticker or a new session can only begin where a window begins in another hour
    # than the window before it: unlink the first reading from each such window on.
    seg_code, seg_hour = code[starts], time_ms[starts] // HOUR_MS
    turn = np.ones(len(starts), np.bool_)
    turn[1:] = (seg_code[1:] != seg_code[:-1]) | (seg_hour[1:] != seg_hour[:-1])
    now = readings.first_from(starts[turn])
    now = now[(now > 0) & (now < n)]
    before = readings.last_upto(now - 1)
    classes = ticker_class[code[now]]
    moved = (before < 0) | (code[now] != code[np.maximum(before, 0)])
    moved |= session_ids(classes, time_ms[now]) != session_ids(classes, time_ms[before])
    inc[now[moved]] = 0
    if base is not None:
        first_tick = starts[np.append(True, seg_code[1:] != seg_code[:-1])]
        first = readings.first_from(first_tick)
        c = code[first_tick]
        ok = (first < n) & base.present[c]
        first, c = first[ok], c[ok]
        ok = code[first] == c
        first, c = first[ok], c[ok]
        classes = ticker_class[c]
        linked = session_ids(classes, time_ms[first]) == session_ids(classes, base.time_ms[c])
        inc[first] = np.where(linked, np.maximum(day_volume[first] - base.day_volume[c], 0), 0)
    last = readings.last_upto(np.append(starts[1:], n) - 1)
    known = last >= starts
    return WindowVolume(inc, np.add.reduceat(inc, starts), known, day_volume[last])


def _step(day_volume: I64, before: NDArray[np.intp], now: NDArray[np.intp]) -> I64:
    """max(v[now] - v[before], 0), or 0 where there is no reading before."""
    step = np.maximum(day_volume[now] - day_volume[np.maximum(before, 0)], 0)
    return np.where(before >= 0, step, 0)
