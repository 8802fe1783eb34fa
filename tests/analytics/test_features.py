"""Window features against an independent DuckDB SQL computation over the same ticks, the
volume rule on hand-made sessions, and the seed's six features on a hand-made window."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from analytics.features import FEATURE_SCHEMA, FeatureInputError, compute_features
from analytics.volume import ASSET_CLASSES
from bench.baselines import (
    FAST_SQL,
    assert_same_features,
    reference_features,
    seed_accumulate,
    seed_calculate_features,
)
from lake.utc import DAY_MS, HOUR_MS, MINUTE_MS
from recorder.wire.markets import asset_class, session_id

TIME = pa.timestamp("ms", tz="UTC")


def utc_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


# 2024-04-16 is EDT (UTC-4): equities reset at 08:00 UTC, FX at 21:00, futures at 22:00,
# crypto's (unused) day boundary is 00:00 UTC. Each span straddles one of them.
SPANS = [("07:50", "08:10"), ("20:50", "21:10"), ("21:50", "22:10"), ("23:50", "24:10")]
TICKERS = ["AMZN", "MSFT", "SPY", "BTC-USD", "EURUSD=X", "ES=F", "^GSPC"]
MARKET_HOURS = ["PRE_MARKET", "REGULAR_MARKET", "POST_MARKET", "OVERNIGHT_MARKET"]


def span_bounds() -> list[tuple[int, int]]:
    day = utc_ms("2024-04-16T00:00:00")
    out = []
    for lo, hi in SPANS:
        (h0, m0), (h1, m1) = (map(int, x.split(":")) for x in (lo, hi))
        out.append((day + (h0 * 60 + m0) * MINUTE_MS, day + (h1 * 60 + m1) * MINUTE_MS))
    return out


def random_ticks(seed: int, per_ticker: int = 1500) -> pa.Table:
    """Ticks of several asset classes around their session resets, rows shuffled, with ties
    on time, arrival order unrelated to time, NULL volumes, corrections and rolling crypto."""
    rng = np.random.default_rng(seed)
    spans = span_bounds()
    parts = []
    for symbol in TICKERS:
        n = per_ticker // 25 if symbol == "^GSPC" else per_ticker  # sparse: lone ticks
        span = np.array(spans)[rng.integers(0, len(spans), n)]
        seconds = rng.integers(0, (span[:, 1] - span[:, 0]) // 1000)
        ms = np.where(rng.random(n) < 0.1, rng.integers(0, 1000, n), 0)
        parts.append((symbol, span[:, 0] + seconds * 1000 + ms))
    total = sum(len(t) for _, t in parts)
    seq = rng.permutation(total) + 1000  # arrival order unrelated to event time
    columns: dict[str, list[object]] = {k: [] for k in ("ticker", "time", "seq", "price")}
    columns |= {"day_volume": [], "market_hours": []}
    offset = 0
    for symbol, times in parts:
        s = seq[offset : offset + len(times)]
        offset += len(times)
        order = np.lexsort((s, times))
        times, s = times[order], s[order]
        price = (100 + np.cumsum(rng.normal(0, 0.05, len(times)))).astype(np.float32)
        columns["ticker"] += [symbol] * len(times)
        columns["time"] += times.tolist()
        columns["seq"] += s.tolist()
        columns["price"] += price.tolist()
        columns["day_volume"] += day_volumes(rng, symbol, times)
        columns["market_hours"] += rng.choice(MARKET_HOURS, len(times)).tolist()
    table = pa.table(
        {
            "ticker": columns["ticker"],
            "time": pa.array(columns["time"], TIME),
            "seq": pa.array(columns["seq"], pa.int64()),
            "price": pa.array(columns["price"], pa.float32()),
            "day_volume": pa.array(columns["day_volume"], pa.int64()),
            "market_hours": columns["market_hours"],
        }
    )
    return table.take(pa.array(rng.permutation(table.num_rows)))


def day_volumes(rng: np.random.Generator, symbol: str, times: np.ndarray) -> list[int | None]:
    """Cumulative readings in (time, seq) order: resets at each session, corrections."""
    cls = asset_class(symbol)
    if cls == "CURRENCY":
        return [None] * len(times)
    out: list[int | None] = []
    volume, session = 0, None
    for t in times.tolist():
        if cls == "CRYPTOCURRENCY":  # rolling 24 h: wanders up and down
            volume = max(0, volume + int(rng.integers(-400, 500))) or 10**6
        else:
            s = session_id(symbol, t / 1000)
            if s != session:  # a new session: half the time above the old total
                volume = int(rng.integers(100, 5000)) + volume * int(rng.random() < 0.5)
                session = s
            elif rng.random() < 0.03:
                volume = max(0, volume - int(rng.integers(1, 300)))  # a Yahoo correction
            else:
                volume += int(rng.integers(0, 500)) * int(rng.random() < 0.7)
        out.append(None if rng.random() < (0.3 if cls == "INDEX" else 0.05) else volume)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_duckdb_sql_on_random_ticks(seed: int) -> None:
    ticks = random_ticks(seed)
    ours = compute_features(ticks)
    assert_same_features(ours, reference_features(ticks))
    counts = ours["tick_count"].to_numpy()
    assert (counts == 1).any() and (counts > 1).any()  # single-tick windows are covered
    assert ours["volume"].null_count > 0 and pc.min(ours["volume"]).as_py() == 0


def test_fast_sql_of_the_benchmark_is_the_same_computation() -> None:
    ticks = random_ticks(8)
    assert_same_features(compute_features(ticks), reference_features(ticks, FAST_SQL))


def test_input_order_does_not_matter() -> None:
    ticks = random_ticks(3, per_ticker=400)
    keys = [("ticker", "descending"), ("time", "ascending"), ("seq", "ascending")]
    sorted_ticks = ticks.sort_by(keys)  # grouped by ticker: the no-sort path
    ties_reversed = ticks.sort_by([*keys[:2], ("seq", "descending")])  # grouped, not sorted
    reversed_rows = ticks.take(pa.array(np.arange(ticks.num_rows)[::-1]))
    dictionary = sorted_ticks.set_column(0, "ticker", pc.dictionary_encode(sorted_ticks[0]))
    chunks = pa.concat_tables([sorted_ticks.slice(0, 999), sorted_ticks.slice(999)])
    offset = pa.concat_tables([ticks.slice(0, 1), ticks]).slice(1)  # buffers at an offset
    expected = compute_features(ticks)
    for variant in (sorted_ticks, ties_reversed, reversed_rows, dictionary, chunks, offset):
        assert compute_features(variant).equals(expected)


LATE_SQL = """
SELECT ticker, epoch_ms(time) // 60000 * 60000 AS window_start,
    coalesce(bool_or(received_at > time_bucket(INTERVAL 1 MINUTE, time)
        + INTERVAL 1 MINUTE + to_microseconds($lateness_us)), false) AS late
FROM ticks WHERE time IS NOT NULL AND price IS NOT NULL
GROUP BY ALL ORDER BY ticker, window_start
"""


@pytest.mark.parametrize("lateness", [0.0, 10.0, 2.5])
def test_late_flags_match_sql_over_receive_times(lateness: float) -> None:
    ticks = random_ticks(6, per_ticker=600)
    rng = np.random.default_rng(7)
    times = ticks["time"].cast(pa.int64()).to_numpy() * 1000
    delay = rng.choice([0, 70_000_000, 69_999_999, 72_500_001, 80_000_000], ticks.num_rows)
    received = pa.array(
        times + delay, pa.timestamp("us", tz="UTC"), mask=rng.random(len(times)) < 0.2
    )
    ticks = ticks.append_column("received_at", received)
    ours = compute_features(ticks, lateness=lateness)
    assert ours.schema == FEATURE_SCHEMA.append(pa.field("late", pa.bool_()))
    assert ours.drop_columns(["late"]).equals(compute_features(ticks))
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("ticks", ticks)
    expected = con.sql(LATE_SQL, params={"lateness_us": round(lateness * 1e6)}).to_arrow_table()
    con.close()
    assert ours["window_start"].cast(pa.int64()).to_pylist() == expected["window_start"].to_pylist()
    assert ours["late"].to_pylist() == expected["late"].to_pylist()
    assert 0 < sum(ours["late"].to_pylist()) < ours.num_rows
    unsorted = ticks.take(pa.array(rng.permutation(ticks.num_rows)))
    assert compute_features(unsorted, lateness=lateness).equals(ours)
    never = compute_features(ticks.drop_columns(["received_at"]), lateness=lateness)
    assert not any(never["late"].to_pylist())


def last_before(ticks: pa.Table, cut_ms: int, readings_only: bool) -> pa.Table:
    """Per ticker, the last tick (or reading) before ``cut_ms`` by (time, seq)."""
    earlier = ticks.filter(pc.less(ticks["time"].cast(pa.int64()), cut_ms))
    if readings_only:
        earlier = earlier.filter(pc.is_valid(earlier["day_volume"]))
    keys = [("ticker", "ascending"), ("time", "descending"), ("seq", "descending")]
    earlier = earlier.sort_by(keys)
    tickers = earlier["ticker"].to_pylist()
    firsts = [i for i, t in enumerate(tickers) if i == 0 or t != tickers[i - 1]]
    return earlier.take(pa.array(firsts, pa.int64()))


def test_requested_windows_with_lookback_match_the_full_computation() -> None:
    ticks = random_ticks(4)
    lo, hi = utc_ms("2024-04-16T08:05:00"), utc_ms("2024-04-16T23:55:00")
    reference = reference_features(ticks)
    starts = reference["window_start"].to_numpy()
    expected = reference.filter(pa.array((starts >= lo) & (starts < hi)))
    ms = ticks["time"].cast(pa.int64())
    inside = ticks.filter(pc.and_(pc.greater_equal(ms, lo), pc.less(ms, hi)))
    wanted = expected.select(["ticker", "window_start"])
    # the lookback as earlier ticks in `ticks` (their windows not requested) ...
    assert_same_features(compute_features(ticks, wanted), expected)
    # ... as every earlier tick in `previous`, or only the last reading per ticker
    earlier = ticks.filter(pc.less(ms, lo))
    assert_same_features(compute_features(inside, previous=earlier), expected)
    last = last_before(ticks, lo, readings_only=True)
    assert last.num_rows == len(TICKERS) - 1  # FX has no reading
    assert_same_features(compute_features(inside, wanted, previous=last), expected)
    # without the lookback the first window only counts volume after its first tick
    alone = compute_features(inside)["volume"].to_pylist()
    full = expected["volume"].to_pylist()
    assert all(a is None or a <= f for a, f in zip(alone, full, strict=True)) and alone != full


def test_only_requested_windows_get_rows_once() -> None:
    ticks = random_ticks(5, per_ticker=200)
    everything = compute_features(ticks)
    row = everything.slice(3, 1).select(["ticker", "window_start"])
    missing = pa.table(
        {"ticker": ["AMZN", "NOPE"], "window_start": pa.array([0, utc_ms("2024-04-16T08:00")])}
    )
    wanted = pa.concat_tables([row, row, missing.cast(row.schema)])
    assert compute_features(ticks, wanted).equals(everything.slice(3, 1))
    as_ms = row.set_column(1, "window_start", row["window_start"].cast(pa.int64()))
    assert compute_features(ticks, as_ms).equals(everything.slice(3, 1))


def ticks_of(rows: Sequence[tuple[str, str, int, float, int | None]]) -> pa.Table:
    """Ticks from (ticker, UTC ISO time, seq, price, day_volume)."""
    ticker, when, seq, price, volume = zip(*rows, strict=True)
    return pa.table(
        {
            "ticker": list(ticker),
            "time": pa.array([utc_ms(w) for w in when], TIME),
            "seq": pa.array(seq, pa.int64()),
            "price": pa.array(price, pa.float32()),
            "day_volume": pa.array(volume, pa.int64()),
            "market_hours": ["REGULAR_MARKET"] * len(rows),
        }
    )


def by_window(table: pa.Table) -> dict[tuple[str, str], dict[str, object]]:
    rows = table.to_pylist()
    return {(r["ticker"], r["window_start"].strftime("%H:%M")): r for r in rows}


def test_volume_across_the_equity_session_reset_and_a_correction() -> None:
    # 04:00 New York is 08:00 UTC on 2024-04-16; a minute window can never straddle it.
    ticks = ticks_of(
        [
            ("AMZN", "2024-04-16T07:59:30", 1, 100.0, 9_000),  # old session, first reading
            ("AMZN", "2024-04-16T08:00:05", 2, 101.0, 12_000),  # new session, above the old
            ("AMZN", "2024-04-16T08:00:30", 3, 102.0, 12_500),
            ("AMZN", "2024-04-16T08:01:10", 4, 103.0, 12_400),  # a correction: a reset
            ("AMZN", "2024-04-16T08:01:20", 5, 104.0, 12_900),
        ]
    )
    rows = by_window(compute_features(ticks))
    assert rows["AMZN", "07:59"]["volume"] == 0 and rows["AMZN", "07:59"]["vwap"] is None
    assert rows["AMZN", "08:00"]["volume"] == 500  # counted from the session's first tick
    assert rows["AMZN", "08:00"]["vwap"] == 102.0
    assert rows["AMZN", "08:01"]["volume"] == 500  # 12_400 contributes 0, then +500
    assert rows["AMZN", "08:01"]["last_day_volume"] == 12_900


def test_crypto_rolling_volume_never_goes_negative_and_fx_has_none() -> None:
    ticks = ticks_of(
        [
            ("BTC-USD", "2024-04-16T23:59:50", 1, 60_000.0, 1_000),
            ("BTC-USD", "2024-04-17T00:00:10", 2, 60_010.0, 900),  # rolling figure drops
            ("BTC-USD", "2024-04-17T00:00:20", 3, 60_020.0, 950),
            ("BTC-USD", "2024-04-17T00:00:30", 4, 60_030.0, 800),
            ("BTC-USD", "2024-04-17T00:01:30", 5, 60_040.0, 700),
            ("EURUSD=X", "2024-04-17T00:00:30", 6, 1.0625, None),
        ]
    )
    rows = by_window(compute_features(ticks))
    assert rows["BTC-USD", "00:00"]["volume"] == 50  # only the rise 900 -> 950 counts
    assert rows["BTC-USD", "00:00"]["vwap"] == pytest.approx(60_020.0)
    assert rows["BTC-USD", "00:01"]["volume"] == 0 and rows["BTC-USD", "00:01"]["vwap"] is None
    fx = rows["EURUSD=X", "00:00"]
    assert fx["volume"] is None and fx["vwap"] is None and fx["last_day_volume"] is None


def test_previous_reading_links_only_its_own_tickers_first_reading() -> None:
    previous = ticks_of([("AAA", "2024-04-16T14:19:00", 1, 10.0, 100)])
    ticks = ticks_of(
        [
            ("AAA", "2024-04-16T14:20:01", 2, 10.0, None),  # AAA has no reading here
            ("BBB", "2024-04-16T14:20:02", 3, 20.0, 500),
            ("BBB", "2024-04-16T14:20:03", 4, 20.0, 600),
        ]
    )
    rows = by_window(compute_features(ticks, previous=previous))
    assert rows["AAA", "14:20"]["volume"] is None
    assert rows["BBB", "14:20"]["volume"] == 100  # not 600 - 100 from AAA's reading


def test_values_hidden_under_null_day_volume_are_ignored() -> None:
    ticks = ticks_of(
        [
            ("AAA", "2024-04-16T14:20:01", 1, 10.0, 100),
            ("AAA", "2024-04-16T14:20:02", 2, 11.0, None),
            ("AAA", "2024-04-16T14:20:03", 3, 12.0, 150),
            ("AAA", "2024-04-16T14:21:01", 4, 13.0, None),
        ]
    )
    clean = ticks["day_volume"].combine_chunks()
    garbage = np.array([100, 10**9, 150, 10**12], np.int64)  # what NULL slots may hold
    dirty = pa.Array.from_buffers(
        pa.int64(), 4, [clean.buffers()[0], pa.py_buffer(garbage.tobytes())], clean.null_count
    )
    assert dirty.to_pylist() == clean.to_pylist()
    result = compute_features(ticks.set_column(4, "day_volume", dirty))
    assert result.equals(compute_features(ticks))
    assert result["volume"].to_pylist() == [50, None]


def test_undefined_features_are_null_never_nan() -> None:
    ticks = ticks_of(
        [
            ("AAA", "2024-04-16T14:20:01", 1, 0.0, None),  # open of 0
            ("AAA", "2024-04-16T14:20:02", 2, 5.0, None),
            ("BBB", "2024-04-16T14:20:01", 3, -1.0, None),  # negative prices
            ("BBB", "2024-04-16T14:20:02", 4, -2.0, None),
            ("CCC", "2024-04-16T14:20:01", 5, 7.0, 10),  # one tick
        ]
    )
    table = compute_features(ticks)
    rows = by_window(table)
    for name in ("AAA", "BBB"):
        assert rows[name, "14:20"]["log_return"] is None
        assert rows[name, "14:20"]["realized_variance"] is None
        assert rows[name, "14:20"]["std_price"] is not None
    single = rows["CCC", "14:20"]
    assert single["std_price"] is None and single["realized_variance"] is None
    assert single["log_return"] == 0.0 and single["volume"] == 0 and single["vwap"] is None
    for field in FEATURE_SCHEMA:
        if pa.types.is_floating(field.type):
            assert not pc.any(pc.is_nan(table[field.name])).as_py(), field.name


def test_seed_features_reproduced_and_its_volume_misses_trades_between_windows() -> None:
    rows = [
        ("AMZN", "2024-04-16T14:19:58", 1, 184.60, 7_140_000),  # the window before
        ("AMZN", "2024-04-16T14:20:00", 2, 184.61, 7_150_000),
        ("AMZN", "2024-04-16T14:20:05", 3, 184.62, 7_170_000),
        ("AMZN", "2024-04-16T14:20:12", 4, 184.38, 7_190_000),
        ("AMZN", "2024-04-16T14:20:19", 5, 184.3899, 7_206_134),
    ]
    ticks = ticks_of(rows)
    in_window = [(float(utc_ms(w)), float(np.float32(p)), float(v)) for _, w, _, p, v in rows]
    seed = seed_calculate_features(seed_accumulate(in_window[1:]))
    # exactly the seed article's printed AMZN line
    assert seed == {
        "time": 1713277219000.0,
        "min": 184.3800048828125,
        "max": 184.6199951171875,
        "first_price": 184.61000061035156,
        "last_price": 184.389892578125,
        "volume": 56134.0,
    }
    ours = by_window(compute_features(ticks))["AMZN", "14:20"]
    last_time = ours["last_time"]
    assert isinstance(last_time, datetime) and last_time.timestamp() * 1000 == seed["time"]
    assert (ours["low"], ours["high"]) == (seed["min"], seed["max"])
    assert (ours["open"], ours["close"]) == (seed["first_price"], seed["last_price"])
    # the 10,000 shares traded between 14:19:58 and 14:20:00 belong to this window
    assert ours["volume"] == 66_134 and seed["volume"] == 56_134


def test_id_column_stands_in_for_ticker_and_empty_input_gives_no_rows() -> None:
    ticks = random_ticks(6, per_ticker=100)
    renamed = ticks.rename_columns(["id" if n == "ticker" else n for n in ticks.column_names])
    assert compute_features(renamed).equals(compute_features(ticks))
    empty = compute_features(ticks.slice(0, 0))
    assert empty.num_rows == 0 and empty.schema == FEATURE_SCHEMA


def test_rows_without_time_or_price_or_with_a_nan_price_are_ignored() -> None:
    ticks = ticks_of([("AMZN", "2024-04-16T14:20:01", 1, 10.0, 5)])
    holes = pa.table(
        {
            "ticker": ["AMZN", "AMZN", "AMZN"],
            "time": pa.array(
                [None, utc_ms("2024-04-16T14:20:02"), utc_ms("2024-04-16T14:20:03")], TIME
            ),
            "seq": pa.array([2, 3, 4], pa.int64()),
            "price": pa.array([11.0, None, float("nan")], pa.float32()),
            "day_volume": pa.array([7, 9, 11], pa.int64()),
            "market_hours": ["REGULAR_MARKET"] * 3,
        }
    )
    row = compute_features(pa.concat_tables([ticks, holes])).to_pylist()
    assert [(r["tick_count"], r["close"], r["volume"]) for r in row] == [(1, 10.0, 0)]


def test_unusable_input_raises_an_actionable_error() -> None:
    ticks = ticks_of([("AMZN", "2024-04-16T14:20:01", 5, 10.0, 5)])
    with pytest.raises(FeatureInputError, match="price"):
        compute_features(ticks.drop_columns(["price"]))
    odd = pa.table({"ticker": ["AMZN"], "window_start": [utc_ms("2024-04-16T14:20:30")]})
    with pytest.raises(FeatureInputError, match="aligned to a minute"):
        compute_features(ticks, odd)
    later = ticks_of([("AMZN", "2024-04-16T14:20:01", 6, 10.0, 4)])  # same time, later seq
    with pytest.raises(FeatureInputError, match="not earlier"):
        compute_features(ticks, previous=later)


def test_sessions_are_constant_within_each_utc_hour() -> None:
    """analytics.volume computes sessions once per (class, UTC hour); check the premise
    over two years, both DST switches included."""
    rng = np.random.default_rng(7)
    start = utc_ms("2023-01-01T00:00:00")
    for t in rng.integers(start, start + 2 * 365 * DAY_MS, 3000).tolist():
        hour = t // HOUR_MS * HOUR_MS
        for cls in ASSET_CLASSES:
            assert session_id(cls, t / 1000) == session_id(cls, hour / 1000), (cls, t)
