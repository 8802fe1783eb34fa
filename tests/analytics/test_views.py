"""The views: bars derived from the one-minute rows equal a direct computation over the
stored ticks; seed_features speaks the seed's names; every example query returns rows."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from analytics.database import database_path, open_db
from analytics.job import JobConfig, run_once
from analytics.sql_files import example_names, example_text
from lake.clock import ManualClock
from lake.utc import HOUR_MS, MINUTE_MS
from tests.kit.lake import seal, sessions, write_lake
from tests.kit.ticks import Feed
from tests.kit.times import T0

# 22:30 to 01:30 UTC: across a UTC midnight (two daily bars) and no session reset of the
# tickers below (equities reset at 08:00 UTC, FX at 21:00), so the direct computation can
# chain each ticker's readings without session arithmetic (tested in test_features).
START = T0 + 8 * HOUR_MS + 30 * MINUTE_MS  # 22:30 UTC
MINUTES = 180
TICKERS = ("AMZN", "BTC-USD", "EURUSD=X", "^GSPC")

DIRECT_SQL = """
WITH t AS (
    SELECT ticker, epoch_ms(time) AS ms, seq, price, day_volume
    FROM ticks WHERE time IS NOT NULL AND price IS NOT NULL
), readings AS (
    SELECT ticker, seq,
        coalesce(greatest(day_volume - lag(day_volume) OVER w, 0), 0) AS inc
    FROM t WHERE day_volume IS NOT NULL
    WINDOW w AS (PARTITION BY ticker ORDER BY ms, seq)
), j AS (
    SELECT t.*, coalesce(r.inc, 0) AS inc, r.seq IS NOT NULL AS reading
    FROM t LEFT JOIN readings AS r USING (ticker, seq)
)
SELECT ticker, ms // $width * $width AS bar_ms,
    arg_min(price, (ms, seq)) AS open, max(price) AS high, min(price) AS low,
    arg_max(price, (ms, seq)) AS close,
    CASE WHEN bool_or(reading) THEN sum(inc) END AS volume,
    sum(price::DOUBLE * inc) / nullif(sum(inc), 0) AS vwap,
    count(*) AS tick_count, avg(price::DOUBLE) AS mean_price,
    stddev_samp(price::DOUBLE) AS std_price,
    min(ms) AS first_ms, max(ms) AS last_ms
FROM j GROUP BY ALL ORDER BY ALL
"""
BARS_SQL = """
SELECT ticker, epoch_ms(bar_start) AS bar_ms, open, high, low, close, volume, vwap,
    tick_count, mean_price, std_price, epoch_ms(first_time) AS first_ms,
    epoch_ms(last_time) AS last_ms, epoch_ms(bar_end) - epoch_ms(bar_start) AS width,
    log_return
FROM {view} ORDER BY ticker, bar_ms
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sparse random minutes of four tickers over three hours: single-tick windows, ties,
    ticks without day_volume, an FX pair without volume, late ticks, a recorder gap."""
    root = tmp_path_factory.mktemp("views")
    feed, rng = Feed(21), np.random.default_rng(21)
    tables = []
    for ticker in TICKERS:
        for k in np.flatnonzero(rng.random(MINUTES) < 0.22):
            minute = START + int(k) * MINUTE_MS
            volume = ticker in ("AMZN", "BTC-USD") and rng.random() < 0.85
            late = rng.random() < 0.05
            count = 1 if rng.random() < 0.2 else int(rng.integers(2, 12))
            tables.append(
                feed.ticks(ticker, minute, 1, count, volume=volume, delay_s=90.0 if late else 0.3)
            )
    write_lake(root, tables)
    start_s = START / 1000
    sessions(root, [(1, TICKERS, start_s - 60, start_s + 3600), (2, TICKERS, start_s + 3700, None)])
    end = START + MINUTES * MINUTE_MS
    seal(root, end)
    config = JobConfig(recompute_horizon=6 * 3600.0, chunk_minutes=60)
    assert run_once(root, ManualClock(end / 1000 + 12), config).done
    return root


def fetch(con: duckdb.DuckDBPyConnection, sql: str, **params: object) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = con.sql(sql, params=params or None).to_arrow_table().to_pylist()
    return rows


@pytest.mark.parametrize(
    ("view", "width"), [("bars_5m", 300_000), ("bars_1h", 3_600_000), ("bars_1d", 86_400_000)]
)
def test_bars_equal_a_direct_computation_over_the_ticks(data: Path, view: str, width: int) -> None:
    con = open_db(database_path(data), read_only=True, lake=data)
    try:
        bars = fetch(con, BARS_SQL.format(view=view))
        direct = fetch(con, DIRECT_SQL, width=width)
    finally:
        con.close()
    assert len(bars) == len(direct) > 5
    assert {b["width"] for b in bars} == {width}
    exact = ["ticker", "bar_ms", "open", "high", "low", "close", "volume", "tick_count"]
    exact += ["first_ms", "last_ms"]
    for bar, expected in zip(bars, direct, strict=True):
        for name in exact:
            assert bar[name] == expected[name], (view, name, bar, expected)
        for name in ("vwap", "mean_price", "std_price"):
            a, b = bar[name], expected[name]
            assert (a is None) == (b is None), (view, name, bar, expected)
            if a is not None:
                assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (view, name, a, b)
        log_return = math.log(expected["close"] / expected["open"])
        assert math.isclose(bar["log_return"], log_return, rel_tol=1e-9, abs_tol=1e-12)
    assert any(b["volume"] is None for b in bars)  # the FX pair and ^GSPC carry no volume


def test_seed_features_speaks_the_seeds_names(tmp_path: Path) -> None:
    window = int(dt.datetime(2024, 4, 16, 14, 20, tzinfo=dt.UTC).timestamp()) * 1000
    ticks = Feed(1).ticks("AMZN", window, 1, 20).slice(0, 4)
    prices = pa.array([184.61, 184.38, 184.62, 184.39], pa.float32())
    ticks = ticks.set_column(ticks.schema.get_field_index("price"), "price", prices)
    write_lake(tmp_path, [ticks])
    seal(tmp_path, window + MINUTE_MS)
    assert run_once(tmp_path, ManualClock(window / 1000 + 72), JobConfig()).done
    con = open_db(database_path(tmp_path), read_only=True, lake=tmp_path)
    try:
        row = con.execute(
            'SELECT ticker, open_time, close_time, "time", CAST("min" AS VARCHAR), '
            'CAST("max" AS VARCHAR), CAST(first_price AS VARCHAR), '
            "CAST(last_price AS VARCHAR), volume FROM seed_features"
        ).fetchall()
    finally:
        con.close()
    times = ticks["time"].cast(pa.int64()).to_pylist()
    volumes = ticks["day_volume"].to_pylist()
    start = dt.datetime(2024, 4, 16, 14, 20, tzinfo=dt.UTC)
    expected = (
        "AMZN",
        start,
        start + dt.timedelta(minutes=1),
        times[-1],
        "184.38",  # the decimals Yahoo meant, from the float32 stored exactly
        "184.62",
        "184.61",
        "184.39",
        volumes[-1] - volumes[0],  # the window's first reading starts the session
    )
    assert ticks.num_rows == 4 and row == [expected]


def test_views_work_on_a_read_only_connection_while_nothing_can_write(data: Path) -> None:
    con = open_db(database_path(data), read_only=True, lake=data)
    try:
        counts = {
            name: con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0]
            for name in ("ticks", "seed_features", "bars_5m", "bars_1h", "bars_1d")
        }
        assert con.execute("SELECT count(*) FROM bars(900000)").fetchall()[0][0] > 0
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("DELETE FROM features")
    finally:
        con.close()
    assert all(count > 0 for count in counts.values()) and counts["bars_1d"] == 8  # 4 x 2 days


@pytest.mark.parametrize("ticker", [*TICKERS, "NOPE"])
def test_ticks_of_is_the_ticks_of_one_ticker(data: Path, ticker: str) -> None:
    con = open_db(database_path(data), read_only=True, lake=data)
    try:
        whole = con.execute("SELECT * FROM ticks WHERE ticker = ? ORDER BY seq", [ticker])
        expected = whole.fetchall()
        assert con.execute("SELECT * FROM ticks_of(?) ORDER BY seq", [ticker]).fetchall() == (
            expected
        )
        day = dt.date(2024, 4, 17)
        one_day = con.execute("SELECT * FROM ticks_of(?, day := ?) ORDER BY seq", [ticker, day])
        names = [d[0] for d in one_day.description]
        rows = one_day.fetchall()
        assert rows == [r for r in expected if r[names.index("date")] == day]
    finally:
        con.close()
    assert ticker == "NOPE" or 0 < len(rows) < len(expected)


def test_the_data_has_the_hard_cases(data: Path) -> None:
    con = open_db(database_path(data), read_only=True)
    try:
        cases = con.execute(
            "SELECT count(*) FILTER (tick_count = 1), count(*) FILTER (volume IS NULL), "
            "count(*) FILTER (late), count(*) FILTER (gap) FROM features"
        ).fetchall()[0]
    finally:
        con.close()
    assert all(count > 0 for count in cases), cases


EXAMPLES = example_names()
CHECKOUT_EXAMPLES = Path(__file__).resolve().parents[2] / "analytics" / "sql" / "examples"


def test_there_are_examples_for_what_users_start_from() -> None:
    names = set(EXAMPLES)
    assert {"latest_bar", "day_bars", "gap_windows", "silent_minutes", "late_windows"} <= names
    assert "moving_average" in names
    # the shipped examples are the checkout's analytics/sql/examples (README runs them by path)
    assert names == {p.stem for p in CHECKOUT_EXAMPLES.glob("*.sql")}
    assert example_text("latest_bar") == (CHECKOUT_EXAMPLES / "latest_bar.sql").read_text()
    with pytest.raises(KeyError, match="latest_bar"):
        example_text("no_such_example")


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_returns_rows(data: Path, name: str) -> None:
    con = open_db(database_path(data), read_only=True, lake=data)
    try:
        table = con.sql(example_text(name)).to_arrow_table()
    finally:
        con.close()
    assert table.num_rows > 0 and table.num_columns > 2
