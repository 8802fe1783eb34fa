"""One-minute window features of many tickers and windows at once (contract 4).

``compute_features(ticks, windows, previous=...)`` turns an Arrow table of ticks (any
number of tickers and minutes, in any order) into one row per requested
(ticker, window_start) that holds at least one tick, with ``FEATURE_SCHEMA``'s columns.
Pure computation: it reads no file and writes nothing.

Invariants:
- a window is ``[start, start + 60 s)`` in UTC by event ``time``, start a multiple of 60 s.
  Within a ticker, ticks are ordered by (``time``, ``seq``): ties on ``time`` are broken
  by arrival order, and "first" and "last" follow that order whatever the input order;
- a tick is a row with a ticker (``ticker``, else ``id``), ``time`` and a price that is
  not NaN; other rows are ignored;
- ``open``/``high``/``low``/``close`` are float32, bit for bit the stored prices (the
  seed's first_price/max/min/last_price); ``first_time``/``last_time`` are the times of the
  first and last tick (the seed's ``time`` is ``last_time``); ``tick_count`` >= 1;
- ``volume`` is the sum of the window's traded increments (``analytics.volume``): the
  change of ``day_volume`` from the last reading before the window in the same session to
  the last reading in it, split at resets; never negative; NULL when no tick of the window
  carries a ``day_volume`` (FX). After a recorder gap, the first window's volume includes
  what traded during the gap (the caller flags such windows);
- ``vwap`` = sum(price * increment) / sum(increment) over the window, using the same
  increments; NULL when the volume is 0 or NULL;
- ``mean_price`` is the float64 mean; ``std_price`` the *sample* standard deviation
  (ddof=1), NULL for one tick;
- ``log_return`` = ln(close / open) *within* the window (not against the previous window's
  close, which may be hours old or absent); NULL when open or close <= 0;
- ``realized_variance`` = sum of ln(p[i] / p[i-1])**2 over consecutive ticks inside the
  window (the step from the previous window is not included); NULL for one tick or when a
  price <= 0;
- ``last_day_volume`` is the last non-NULL ``day_volume`` in the window; ``market_hours``
  that of the last tick;
- NULL, never NaN or infinity, wherever a float feature is undefined;
- rows are sorted by (ticker, window_start) and depend only on the set of ticks, not on
  their order in the input (given unique (ticker, time, seq), as in the lake);
- with ``lateness`` (seconds), a ``late`` column follows the features: whether a tick of
  the window was received (``received_at``) after ``window_end + lateness``, i.e. after
  the window was sealed. A NULL ``received_at`` (imported ticks) is never late. Derived
  from stored ticks only, so live runs, replays and backfills agree on it.

Lookback (what the caller must supply for ``volume``): the last reading before each window
in the same session. Either load ticks from before the windows into ``ticks`` (their
windows are simply not requested), or pass ``previous``: rows earlier than every tick of
their ticker in ``ticks`` (typically the last tick of each ticker before the first window);
the last one with a ``day_volume`` per ticker is used. Readings of an earlier session never
matter, so the lookback never needs to reach past the session start (crypto: any earlier
reading counts). Without it, a window counts as the first of its session, whose volume
only starts at its first tick: an undercount, never an overcount.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from analytics.codes import ticker_codes
from analytics.volume import Base, VolumeTicks, WindowVolume, class_codes, window_volume
from lake.schema import RECEIVED_TYPE, TIME_TYPE
from lake.utc import MINUTE_MS

__all__ = ["FEATURE_SCHEMA", "FeatureInputError", "compute_features"]

_F64, _F32, _I64 = pa.float64(), pa.float32(), pa.int64()
_LATE: Final = pa.field("late", pa.bool_())
FEATURE_SCHEMA: Final = pa.schema(
    [
        ("ticker", pa.string()),
        ("window_start", TIME_TYPE),
        ("window_end", TIME_TYPE),
        ("open", _F32),
        ("high", _F32),
        ("low", _F32),
        ("close", _F32),
        ("volume", _I64),
        ("vwap", _F64),
        ("tick_count", _I64),
        ("first_time", TIME_TYPE),
        ("last_time", TIME_TYPE),
        ("mean_price", _F64),
        ("std_price", _F64),
        ("log_return", _F64),
        ("realized_variance", _F64),
        ("last_day_volume", _I64),
        ("market_hours", pa.string()),
    ]
)

_NEVER: Final = np.iinfo(np.int64).min  # the received_at of a tick never late

I64 = NDArray[np.int64]
Bools = NDArray[np.bool_]
Codes = NDArray[np.int32]


class FeatureInputError(ValueError):
    """Ticks, windows or previous ticks that cannot be used as given."""


def compute_features(
    ticks: pa.Table,
    windows: pa.Table | None = None,
    *,
    previous: pa.Table | None = None,
    lateness: float | None = None,
) -> pa.Table:
    """Features of the requested windows (all windows holding a tick of ``ticks`` if None).

    ``ticks`` needs ``ticker`` (or ``id``), ``time``, ``seq`` and ``price``; ``day_volume``,
    ``market_hours`` and ``received_at`` are used when present. ``windows`` has ``ticker``
    and ``window_start`` (timestamp, or int64 epoch ms), each start a multiple of 60 s.
    ``previous`` has the columns of ``ticks``; see the module docstring for the lookback.
    With ``lateness`` (seconds), a ``late`` column follows ``FEATURE_SCHEMA``'s.
    Fastest when ticks come grouped by ticker and sorted by (time, seq), as the lake
    stores them: then nothing is sorted.
    """
    t = _normalize(ticks, "ticks")
    schema = FEATURE_SCHEMA if lateness is None else FEATURE_SCHEMA.append(_LATE)
    if t.num_rows == 0:
        return schema.empty_table()
    code, names, runs = _encode(t["ticker"])
    time_ms, seq = _int64(t["time"].cast(_I64)), _int64(t["seq"])
    price = np.asarray(t["price"].to_numpy(), dtype=np.float32)
    day_volume, has_volume = _with_validity(t["day_volume"])
    order = None if _is_sorted(code, runs, time_ms, seq) else np.lexsort((seq, time_ms, code))
    if order is not None:
        code, time_ms, seq, price = code[order], time_ms[order], seq[order], price[order]
        day_volume, has_volume = day_volume[order], has_volume[order]
        runs = np.flatnonzero(code[1:] != code[:-1]) + 1
    n = len(time_ms)
    minute = time_ms // MINUTE_MS
    new = np.ones(n, np.bool_)
    np.not_equal(minute[1:], minute[:-1], out=new[1:])
    new[runs] = True
    starts = np.flatnonzero(new)
    base = None if previous is None else _base(previous, names, code, time_ms, seq, starts)
    volume_ticks = VolumeTicks(code, time_ms, day_volume, has_volume)
    volume = window_volume(volume_ticks, class_codes(names), starts, base)
    feats = _reduce(starts, price, volume)

    chosen = _chosen(windows, names, code[starts], minute[starts])
    all_starts, ends = starts, np.append(starts[1:], n)[chosen]
    starts, last = starts[chosen], ends - 1
    seg_code, seg_start = code[starts], minute[starts] * MINUTE_MS
    rank = np.argsort(np.argsort(np.array(names, dtype=object)))
    out = np.lexsort((seg_start, rank[seg_code]))
    last_row = last if order is None else order[last]
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        "ticker": pc.take(pa.array(names, pa.string()), pa.array(seg_code)),
        "window_start": pa.array(seg_start, TIME_TYPE),
        "window_end": pa.array(seg_start + MINUTE_MS, TIME_TYPE),
        "open": pa.array(price[starts]),
        "close": pa.array(price[last]),
        "first_time": pa.array(time_ms[starts], TIME_TYPE),
        "last_time": pa.array(time_ms[last], TIME_TYPE),
        "market_hours": pc.take(t["market_hours"], pa.array(last_row)).cast(pa.string()),
    }
    for name, (values, defined) in feats.items():
        columns[name] = pa.array(values[chosen], mask=~defined[chosen])
    if lateness is not None:
        received = _received(t["received_at"])
        latest = np.maximum.reduceat(received if order is None else received[order], all_starts)
        sealed_us = (seg_start + MINUTE_MS) * 1000 + round(lateness * 1_000_000)
        columns["late"] = pa.array(latest[chosen] > sealed_us)
    table = pa.table([columns[f.name] for f in schema], schema=schema)
    in_order = len(out) < 2 or bool(np.all(out[1:] > out[:-1]))  # names sorted: the loader's
    return table if in_order else table.take(pa.array(out))


def _reduce(
    starts: NDArray[np.intp], price: NDArray[np.float32], volume: WindowVolume
) -> dict[str, tuple[NDArray[np.generic], Bools]]:
    """(values, defined) per window; the windows tile the sorted ticks from 0."""
    n, m = len(price), len(starts)
    ends = np.append(starts[1:], n)
    count = ends - starts
    p64 = price.astype(np.float64)
    work = np.empty(n)
    mean = np.add.reduceat(p64, starts) / count
    weighted = np.add.reduceat(np.multiply(p64, volume.increment, out=work), starts)
    centred = np.repeat(mean, count)  # two passes: exact enough for the sample std
    np.square(np.subtract(p64, centred, out=centred), out=centred)
    squares = np.add.reduceat(centred, starts)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.log(p64, out=p64)
        work[0] = 0.0
        np.subtract(logp[1:], logp[:-1], out=work[1:])
        work[starts] = 0.0  # the step into a window is not part of it
        realized = np.add.reduceat(np.square(work, out=work), starts)
        std = np.sqrt(squares / (count - 1))
        open_, close = price[starts].astype(np.float64), price[ends - 1].astype(np.float64)
        log_return = np.log(close / open_)
        vwap = weighted / volume.volume
    several, every = count > 1, np.ones(m, np.bool_)
    return {
        "high": (np.maximum.reduceat(price, starts), every),
        "low": (np.minimum.reduceat(price, starts), every),
        "tick_count": (count.astype(np.int64), every),
        "volume": (volume.volume, volume.known),
        "vwap": (vwap, volume.known & (volume.volume > 0) & np.isfinite(vwap)),
        "mean_price": (mean, np.isfinite(mean)),
        "std_price": (std, several & np.isfinite(std)),
        "log_return": (log_return, (open_ > 0) & (close > 0) & np.isfinite(log_return)),
        "realized_variance": (realized, several & np.isfinite(realized)),
        "last_day_volume": (volume.last_day_volume, volume.known),
    }


def _normalize(table: pa.Table, what: str) -> pa.Table:
    """The columns used, in their canonical types, without rows lacking ticker/time/price."""
    have = set(table.column_names)
    ticker = "ticker" if "ticker" in have else "id"
    missing = [c for c in (ticker, "time", "seq", "price") if c not in have]
    if missing:
        raise FeatureInputError(
            f"{what} lack column(s) {', '.join(missing)}: need ticker (or id), time, seq, price"
        )
    n = table.num_rows
    symbols = table[ticker]
    if not pa.types.is_dictionary(symbols.type):
        symbols = symbols.cast(pa.string())
    optional = {"day_volume": _I64, "market_hours": pa.string(), "received_at": RECEIVED_TYPE}
    out = pa.table(
        {
            "ticker": symbols,
            "time": table["time"].cast(TIME_TYPE, safe=False),
            "seq": table["seq"].cast(_I64),
            "price": table["price"].cast(_F32),
        }
        | {k: _cast(table[k], v) if k in have else pa.nulls(n, v) for k, v in optional.items()}
    )
    if out["seq"].null_count:
        raise FeatureInputError(f"{what} have {out['seq'].null_count} rows without a seq")
    drop = np.isnan(out["price"].to_numpy())  # a NULL price reads as NaN here
    if out["ticker"].null_count or out["time"].null_count:
        valid = pc.and_(pc.is_valid(out["ticker"]), pc.is_valid(out["time"]))
        drop |= ~np.asarray(valid.to_numpy(), np.bool_)
    return out.filter(pa.array(~drop)) if drop.any() else out


def _cast(column: pa.ChunkedArray, kind: pa.DataType) -> pa.ChunkedArray:
    """``column`` as ``kind``; a dictionary of ``kind`` stays one (decoded per window)."""
    if pa.types.is_dictionary(column.type) and column.type.value_type == kind:
        return column
    return column.cast(kind)


def _encode(symbols: pa.ChunkedArray) -> tuple[Codes, list[str], NDArray[np.intp]]:
    """Integer codes of the ticker column, the names they index, and where runs of one
    code begin (after the first). Grouped tickers take one cheap run-end pass."""
    n = len(symbols)
    if not pa.types.is_dictionary(symbols.type):
        runs = pc.run_end_encode(symbols.combine_chunks())
        if len(runs.values) <= n // 16 + 1:
            values = pc.dictionary_encode(runs.values)
            run_code = np.asarray(values.indices.to_numpy(), np.int32)
            ends = np.asarray(runs.run_ends.to_numpy(), np.intp)
            code = np.repeat(run_code, np.diff(ends, prepend=0))
            return code, values.dictionary.to_pylist(), ends[:-1]
        symbols = pc.dictionary_encode(symbols)
    symbols = symbols.unify_dictionaries()
    names = symbols.chunk(0).dictionary.cast(pa.string()).to_pylist()
    code = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in symbols.chunks])
    code = code.astype(np.int32, copy=False)
    return code, names, np.flatnonzero(code[1:] != code[:-1]) + 1


def _int64(column: pa.ChunkedArray | pa.Array) -> I64:
    return np.asarray(column.to_numpy(), dtype=np.int64)


def _with_validity(column: pa.ChunkedArray) -> tuple[I64, Bools]:
    """Values (arbitrary where NULL) and validity, straight from the Arrow buffers."""
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    n, offset = len(array), array.offset
    values = np.frombuffer(array.buffers()[1], np.int64, n, offset * 8)
    if array.null_count == 0:
        return values, np.ones(n, np.bool_)
    bits = np.frombuffer(array.buffers()[0], np.uint8)
    valid = np.unpackbits(bits, count=offset + n, bitorder="little")[offset:]
    return values, valid.view(np.bool_)


def _received(column: pa.ChunkedArray) -> I64:
    """``received_at`` in epoch µs, ``_NEVER`` where NULL."""
    if column.null_count == len(column):
        return np.full(len(column), _NEVER, np.int64)
    values, valid = _with_validity(column)
    return values if valid.all() else np.where(valid, values, _NEVER)


def _is_sorted(code: Codes, runs: NDArray[np.intp], time_ms: I64, seq: I64) -> bool:
    """Whether rows are grouped by ticker (each ticker one run) and sorted by (time, seq)
    within each group."""
    if len(np.unique(code[np.append(0, runs)])) != len(runs) + 1:
        return False
    later, earlier = time_ms[1:], time_ms[:-1]
    bad = later < earlier
    bad |= (later == earlier) & (seq[1:] < seq[:-1])
    bad[runs - 1] = False  # a new ticker may start anywhere
    return not bad.any()


def _base(
    previous: pa.Table, names: list[str], code: Codes, time_ms: I64, seq: I64, starts: I64
) -> Base:
    """Per ticker code, the last reading in ``previous``; each must precede the ticker's
    first tick in ``ticks``."""
    p = _normalize(previous, "previous ticks")
    p = p.filter(pc.is_valid(p["day_volume"]))
    p_code = _int64(pc.fill_null(pc.index_in(p["ticker"], pa.array(names, pa.string())), -1))
    p_time, p_seq, p_volume = (
        _int64(p["time"].cast(_I64)),
        _int64(p["seq"]),
        _int64(p["day_volume"]),
    )
    first = np.full(len(names), -1, np.int64)  # each ticker's first tick, sorted order
    first[code[starts][::-1]] = starts[::-1]
    keep = np.flatnonzero((p_code >= 0) & (first[np.maximum(p_code, 0)] >= 0))
    keep = keep[np.lexsort((p_seq[keep], p_time[keep], p_code[keep]))]
    last = keep[np.append(p_code[keep][1:] != p_code[keep][:-1], True)]
    c, f = p_code[last], first[p_code[last]]
    late = (p_time[last] > time_ms[f]) | ((p_time[last] == time_ms[f]) & (p_seq[last] >= seq[f]))
    if late.any():
        bad = last[np.argmax(late)]
        raise FeatureInputError(
            f"previous tick of {names[p_code[bad]]} (seq {p_seq[bad]}) is not earlier than its "
            "first tick in ticks; pass only ticks before them"
        )
    zeros = np.zeros(len(names), np.int64)
    base = Base(zeros, zeros.copy(), np.zeros(len(names), np.bool_))
    base.time_ms[c], base.day_volume[c], base.present[c] = p_time[last], p_volume[last], True
    return base


def _chosen(
    windows: pa.Table | None, names: list[str], seg_code: Codes, seg_minute: I64
) -> NDArray[np.intp]:
    """Indexes of the segments (sorted by code, minute) that ``windows`` asks for."""
    if windows is None or len(seg_code) == 0:
        return np.arange(len(seg_code))
    have = set(windows.column_names)
    if not {"ticker", "window_start"} <= have:
        raise FeatureInputError("windows need columns ticker and window_start")
    start = windows["window_start"]
    if pa.types.is_timestamp(start.type):
        start = start.cast(TIME_TYPE)
    elif not pa.types.is_integer(start.type):
        raise FeatureInputError(f"window_start must be a timestamp or epoch ms, not {start.type}")
    start_ms = _int64(pc.fill_null(start.cast(_I64), 1))
    if np.any(start_ms % MINUTE_MS):
        bad = int(start_ms[np.argmax(start_ms % MINUTE_MS != 0)])
        raise FeatureInputError(f"window_start {bad} ms is NULL or not aligned to a minute")
    want_code = ticker_codes(windows["ticker"], pa.array(names, pa.string()))
    low = seg_minute.min()
    span = seg_minute.max() - low + 1
    want_minute = start_ms // MINUTE_MS - low
    ok = (want_code >= 0) & (want_minute >= 0) & (want_minute < span)
    key = seg_code * span + (seg_minute - low)  # sorted, since segments are
    want = want_code[ok] * span + want_minute[ok]
    pos = np.searchsorted(key, want)
    hit = pos < len(key)
    hit[hit] = key[pos[hit]] == want[hit]
    found = pos[hit]
    return found if np.all(found[1:] > found[:-1]) else np.unique(found)
