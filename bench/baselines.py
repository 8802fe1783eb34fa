"""The baselines window features are measured and checked against: DuckDB SQL computing the
same features independently of ``analytics.features``, and the seed's per-tick fold.

The tests (``tests/analytics/test_features.py``) prove ``compute_features`` equal to
``REFERENCE_SQL`` and ``FAST_SQL``; the benchmarks time them and check again.
"""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analytics.features import FEATURE_SCHEMA
from recorder.wire.markets import asset_class

# The reference: per-tick increments by window functions over the readings, the session
# from DuckDB's own time zone arithmetic (not recorder.wire.markets), first/last by
# arg_min/arg_max over (time, seq). Inputs: `ticks` (lake columns) and `classes`
# (ticker, asset class name).
REFERENCE_SQL = """
WITH t AS (
    SELECT k.ticker, epoch_ms(k.time) AS ms, k.seq, k.price, k.day_volume, k.market_hours,
        CASE WHEN c.cls = 'CRYPTOCURRENCY' THEN DATE '1970-01-01'
            ELSE CAST(timezone('America/New_York', k.time)
                + to_hours(CASE c.cls WHEN 'CURRENCY' THEN 7 WHEN 'FUTURE' THEN 6 ELSE -4 END)
                AS DATE)
        END AS session
    FROM ticks AS k JOIN classes AS c USING (ticker)
    WHERE k.time IS NOT NULL AND k.price IS NOT NULL
), readings AS (
    SELECT ticker, ms, seq,
        CASE WHEN lag(session) OVER w = session
            THEN greatest(day_volume - lag(day_volume) OVER w, 0) ELSE 0 END AS inc
    FROM t WHERE day_volume IS NOT NULL
    WINDOW w AS (PARTITION BY ticker ORDER BY ms, seq)
), j AS (
    SELECT t.*, r.inc, ms // 60000 * 60000 AS window_start,
        CASE WHEN price > 0 THEN ln(price) END
            - lag(CASE WHEN price > 0 THEN ln(price) END)
                OVER (PARTITION BY t.ticker, ms // 60000 ORDER BY ms, t.seq) AS step
    FROM t LEFT JOIN readings AS r USING (ticker, ms, seq)
), w AS (
    SELECT ticker, window_start,
        arg_min(price, (ms, seq)) AS open, max(price) AS high, min(price) AS low,
        arg_max(price, (ms, seq)) AS close,
        CASE WHEN count(day_volume) > 0 THEN sum(inc) END AS volume,
        sum(price::DOUBLE * inc) / nullif(sum(inc), 0) AS vwap,
        count(*) AS tick_count, min(ms) AS first_time, max(ms) AS last_time,
        avg(price::DOUBLE) AS mean_price, stddev_samp(price::DOUBLE) AS std_price,
        CASE WHEN count(*) > 1 AND bool_and(price > 0) THEN sum(step * step) END
            AS realized_variance,
        arg_max(day_volume, (ms, seq)) FILTER (WHERE day_volume IS NOT NULL)
            AS last_day_volume,
        arg_max(market_hours, (ms, seq)) AS market_hours
    FROM j GROUP BY ticker, window_start
)
SELECT *, window_start + 60000 AS window_end,
    CASE WHEN open > 0 AND close > 0 THEN ln(close::DOUBLE / open::DOUBLE) END AS log_return
FROM w ORDER BY ticker, window_start
"""

# The same computation written for speed (bench/features.py runs it): sessions looked up
# once per (ticker, hour) instead of per tick, one window pass with IGNORE NULLS, no join
# back. Proven equal in tests/analytics/test_features.py, so the benchmarks compare like
# with like.
FAST_SQL = """
WITH hours AS (
    SELECT DISTINCT ticker, epoch_ms(time) // 3600000 AS hour FROM ticks
), sessions AS (
    SELECT h.ticker, h.hour, CASE WHEN c.cls = 'CRYPTOCURRENCY' THEN DATE '1970-01-01'
        ELSE CAST(timezone('America/New_York', to_timestamp(h.hour * 3600))
            + to_hours(CASE c.cls WHEN 'CURRENCY' THEN 7 WHEN 'FUTURE' THEN 6 ELSE -4 END)
            AS DATE) END AS session
    FROM hours AS h JOIN classes AS c USING (ticker)
), t AS (
    SELECT k.ticker, epoch_ms(k.time) AS ms, k.seq, k.price, k.day_volume, k.market_hours,
        CASE WHEN k.day_volume IS NOT NULL THEN s.session END AS reading_session
    FROM ticks AS k JOIN sessions AS s
        ON s.ticker = k.ticker AND s.hour = epoch_ms(k.time) // 3600000
    WHERE k.price IS NOT NULL
), l AS (
    SELECT *, ms // 60000 * 60000 AS window_start,
        CASE WHEN lag(reading_session IGNORE NULLS) OVER w = reading_session
            THEN greatest(day_volume - lag(day_volume IGNORE NULLS) OVER w, 0) ELSE 0 END AS inc,
        CASE WHEN lag(ms) OVER w // 60000 = ms // 60000
            THEN ln(price::DOUBLE / lag(price) OVER w) END AS step
    FROM t WINDOW w AS (PARTITION BY ticker ORDER BY ms, seq)
), w AS (
    SELECT ticker, window_start,
        arg_min(price, (ms, seq)) AS open, max(price) AS high, min(price) AS low,
        arg_max(price, (ms, seq)) AS close,
        CASE WHEN count(day_volume) > 0 THEN sum(inc) END AS volume,
        sum(price::DOUBLE * inc) / nullif(sum(inc), 0) AS vwap,
        count(*) AS tick_count, min(ms) AS first_time, max(ms) AS last_time,
        avg(price::DOUBLE) AS mean_price, stddev_samp(price::DOUBLE) AS std_price,
        CASE WHEN count(*) > 1 AND bool_and(price > 0) THEN sum(step * step) END
            AS realized_variance,
        arg_max(day_volume, (ms, seq)) AS last_day_volume,
        arg_max(market_hours, (ms, seq)) AS market_hours
    FROM l GROUP BY ticker, window_start
)
SELECT *, window_start + 60000 AS window_end,
    CASE WHEN open > 0 AND close > 0 THEN ln(close::DOUBLE / open::DOUBLE) END AS log_return
FROM w ORDER BY ticker, window_start
"""

EXACT = ["ticker", "window_start", "window_end", "open", "high", "low", "close", "volume"]
EXACT += ["tick_count", "first_time", "last_time", "last_day_volume", "market_hours"]
RELATIVE = {"vwap": 1e-12, "mean_price": 1e-12, "std_price": 1e-9, "log_return": 1e-9}
RELATIVE["realized_variance"] = 1e-9


def reference_features(ticks: pa.Table, sql: str = REFERENCE_SQL) -> pa.Table:
    """Run ``sql`` over ``ticks`` (and the asset class of each ticker) in DuckDB."""
    tickers = pc.unique(ticks["ticker"]).to_pylist()
    classes = pa.table({"ticker": tickers, "cls": [str(asset_class(t)) for t in tickers]})
    con = duckdb.connect()
    con.register("ticks", ticks)
    con.register("classes", classes)
    result: pa.Table = con.sql(sql).to_arrow_table()
    con.close()
    return result


def as_columns(table: pa.Table) -> dict[str, list[object]]:
    out = {}
    for name in FEATURE_SCHEMA.names:
        column = table[name]
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.int64())
        out[name] = column.to_pylist()
    return out


def assert_same_features(ours: pa.Table, reference: pa.Table) -> None:
    assert ours.schema == FEATURE_SCHEMA
    a, b = as_columns(ours), as_columns(reference)
    assert len(a["ticker"]) == len(b["ticker"]) > 0
    for name in EXACT:
        assert a[name] == b[name], name
    for name, rel in RELATIVE.items():
        for i, (x, y) in enumerate(zip(a[name], b[name], strict=True)):
            assert (x is None) == (y is None), (name, i, x, y)
            if x is not None:
                assert isinstance(x, float) and isinstance(y, float)
                assert math.isclose(x, y, rel_tol=rel, abs_tol=1e-300), (name, i, x, y)


# OHLC, count, first/last time, mean and standard deviation only: no volume, VWAP,
# realized variance or log return.
BASIC_SQL = """
SELECT ticker, epoch_ms(time) // 60000 * 60000 AS window_start,
    arg_min(price, (time, seq)) AS open, max(price) AS high, min(price) AS low,
    arg_max(price, (time, seq)) AS close, count(*) AS tick_count,
    min(time) AS first_time, max(time) AS last_time,
    avg(price::DOUBLE) AS mean_price, stddev_samp(price::DOUBLE) AS std_price
FROM ticks GROUP BY ALL
"""


def seed_accumulate(rows: list[tuple[float, float, float]]) -> np.ndarray:
    """The seed's accumulator: every tick inserted at the top of a (n, 3) array."""
    array = np.empty((0, 3))
    for row in rows:
        array = np.insert(array, 0, np.array(row), 0)
    return array


def seed_calculate_features(win_data: np.ndarray) -> dict[str, float]:
    """The seed's six (its dict survived only as the volume line; the rest is read from its
    printed output: row 0 is the newest tick, row -1 the oldest)."""
    return {
        "time": win_data[:, 0][0],
        "min": np.amin(win_data[:, 1]),
        "max": np.amax(win_data[:, 1]),
        "first_price": win_data[:, 1][-1],
        "last_price": win_data[:, 1][0],
        "volume": win_data[:, 2][0] - win_data[:, 2][-1],
    }


def seed_fold(ticks: pa.Table) -> int:
    """The seed's dataflow on ``ticks`` in arrival order: fold per (ticker, window), then
    its features per window. Returns the number of windows."""
    windows: dict[tuple[str, int], np.ndarray] = {}
    rows = zip(
        ticks["ticker"].to_pylist(),
        ticks["time"].cast(pa.int64()).to_pylist(),
        ticks["price"].to_pylist(),
        pc.fill_null(ticks["day_volume"], 0).to_pylist(),
        strict=True,
    )
    for ticker, t, price, volume in rows:
        key = (ticker, t // 60_000)
        array = windows.get(key, np.empty((0, 3)))
        windows[key] = np.insert(array, 0, np.array((t, price, volume)), 0)
    for array in windows.values():
        seed_calculate_features(array)
    return len(windows)
