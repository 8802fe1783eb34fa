"""Window features per second: ``compute_features`` beside DuckDB SQL and the seed's fold.

Run: ``.venv/bin/python -m bench.features [--ticks 20000000] [--tickers 50]``.

All runs read the same in-memory Arrow table of synthetic ticks (40 equities, 5 crypto
pairs, 5 FX pairs without volume; ~1 tick/s with ties; several session resets):

- ``compute_features`` from Arrow, in lake order (grouped by ticker, sorted by time and
  seq: no sort needed; ``ticker`` as strings, then dictionary-encoded as a hive-partitioned
  dataset reads it) and shuffled (one ``np.lexsort``, one run); one core;
- DuckDB, full: every feature, VWAP and session-aware volume included, in
  ``bench.baselines.FAST_SQL`` (the test suite proves it equal to ``compute_features``; checked
  again here), all cores;
- DuckDB, basic: OHLC, count, first/last time, mean and standard deviation only (no
  volume, VWAP, realized variance or log return), all cores;
- the seed: its per-tick ``np.insert(arr, 0, row, 0)`` fold plus its features per window,
  on the first ``--seed-sample`` ticks in arrival order;
- the per-minute job's share: one minute of 500 tickers with their previous ticks.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analytics.features import compute_features
from bench.baselines import BASIC_SQL, FAST_SQL, assert_same_features, reference_features, seed_fold

TIME = pa.timestamp("ms", tz="UTC")
START_MS = 1_713_139_200_000  # 2024-04-15 00:00 UTC
MARKET_HOURS = ["PRE_MARKET", "REGULAR_MARKET", "POST_MARKET", "OVERNIGHT_MARKET"]


def classes(count: int) -> tuple[int, int, int]:
    """How many equities, crypto pairs and FX pairs among ``count`` tickers."""
    crypto = fx = count // 10
    return count - crypto - fx, crypto, fx


def symbols(count: int) -> list[str]:
    equities, crypto, fx = classes(count)
    return (
        [f"EQ{i:03d}" for i in range(equities)]
        + [f"COIN{i}-USD" for i in range(crypto)]
        + [f"EUR{i:03d}=X" for i in range(fx)]
    )


def synthetic_ticks(total: int, tickers: int, seed: int = 1) -> pa.Table:
    """Lake order: grouped by ticker, each sorted by (time, seq)."""
    rng = np.random.default_rng(seed)
    names = symbols(tickers)
    per = total // tickers
    n = per * tickers
    code = np.repeat(np.arange(tickers, dtype=np.int32), per)
    gaps = rng.choice(np.array([0, 1000, 2000], np.int64), n, p=[0.2, 0.6, 0.2])
    gaps[::per] = 0
    time_ms = START_MS + np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[::per], per)
    steps = rng.normal(0, 0.02, n).astype(np.float32)
    steps[::per] = 100
    price = np.cumsum(steps.reshape(tickers, per), axis=1).ravel()
    day_volume = np.cumsum(rng.integers(0, 500, n)).reshape(tickers, per)
    equities, crypto, _ = classes(tickers)
    rolling = day_volume[equities : equities + crypto]  # crypto's rolling 24 h figure
    rolling += rng.integers(-400, 0, rolling.shape)
    no_volume = code >= equities + crypto  # the FX pairs
    hours = pa.DictionaryArray.from_arrays(rng.integers(0, 4, n).astype(np.int8), MARKET_HOURS)
    ticker = pa.DictionaryArray.from_arrays(code, names)
    return pa.table(
        {
            "ticker": ticker.cast(pa.string()),
            "time": pa.array(time_ms, TIME),
            "seq": pa.array(np.arange(n, dtype=np.int64)),
            "price": pa.array(price),
            "day_volume": pa.array(day_volume.ravel(), mask=no_volume),
            "market_hours": hours.cast(pa.string()),
        }
    )


def timed(run: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    """Median and best wall time of ``repeat`` runs (other processes share the cores, so
    the best is the unloaded figure), and the last result."""
    seconds, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), min(seconds), result


def minute_job(repeat: int, tickers: int = 500) -> None:
    """One minute of 500 tickers (~60 ticks each) with each ticker's previous tick."""
    ticks = synthetic_ticks(61 * tickers, tickers, seed=3)
    first = np.arange(ticks.num_rows) % 61 == 0
    previous, minute = ticks.filter(pa.array(first)), ticks.filter(pa.array(~first))
    median, best, rows = timed(lambda: compute_features(minute, previous=previous), repeat)
    assert isinstance(rows, pa.Table)
    print(f"one-minute job: {tickers} tickers, {minute.num_rows:,} ticks and previous ticks ")
    print(f"  -> {rows.num_rows} rows: median {median * 1000:.1f} ms, best {best * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=20_000_000)
    parser.add_argument("--tickers", type=int, default=50)
    parser.add_argument("--seed-sample", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    ticks = synthetic_ticks(args.ticks, args.tickers)
    n = ticks.num_rows
    rates: dict[str, tuple[float, float]] = {}

    def measure(name: str, count: int, run: Callable[[], object], repeat: int) -> object:
        median, best, result = timed(run, repeat)
        rates[name] = (count / median, count / best)
        print(
            f"{name:<36} {count:>11,} ticks  median {median:7.3f} s {count / median / 1e6:7.2f}"
            f" M ticks/s  best {count / best / 1e6:7.2f} M ticks/s  ({repeat} runs)"
        )
        return result

    threads = duckdb.connect().sql("SELECT current_setting('threads')").fetchall()[0][0]
    print(f"{n:,} ticks, {args.tickers} tickers; numpy: 1 thread, DuckDB: {threads} threads")
    ours = measure("compute_features, lake order", n, lambda: compute_features(ticks), args.repeat)
    encoded = ticks.set_column(0, "ticker", pc.dictionary_encode(ticks["ticker"]))
    measure(
        "compute_features, dictionary ticker", n, lambda: compute_features(encoded), args.repeat
    )
    shuffled = ticks.take(pa.array(np.random.default_rng(2).permutation(n)))
    measure("compute_features, shuffled", n, lambda: compute_features(shuffled), 1)
    full = measure(
        "duckdb SQL, full (same features)", n, lambda: reference_features(ticks, FAST_SQL), 1
    )
    assert isinstance(ours, pa.Table) and isinstance(full, pa.Table)
    assert_same_features(ours, full)
    basic = lambda: reference_features(ticks, BASIC_SQL)  # noqa: E731
    measure("duckdb SQL, basic (no volume/vwap)", n, basic, args.repeat)
    sample = ticks.sort_by([("time", "ascending"), ("seq", "ascending")]).slice(0, args.seed_sample)
    measure("seed np.insert fold (sample)", sample.num_rows, lambda: seed_fold(sample), 1)
    minute_job(max(args.repeat, 5))
    ours_median, ours_best = rates["compute_features, lake order"]
    for name, (median, best) in list(rates.items())[1:]:
        print(f"lake order / {name}: {ours_median / median:,.1f}x (best: {ours_best / best:,.1f}x)")


if __name__ == "__main__":
    main()
