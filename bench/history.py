"""The history tier at scale: import, files, bytes per tick, queries, backfill throughput.

Run: ``.venv/bin/python -m bench.history [--tickers 100] [--days 20] [--dir DIR]``.

Synthetic US equity sessions: 390 regular minutes a day (14:30-21:00 UTC, January), about
one tick a second (0, 1 or 2 ticks per second with p = 0.2/0.6/0.2, so ties happen), the
simulator's own price walk, session volume, day high/low and changes
(``ticklake.simulator.feed.SymbolFeed``), seqs interleaved across tickers as a journal
would number them, receive times 50-300 ms after the tick. Steps:

1. import: every (ticker, day) straight into its history day file (``write_day``); and, for
   ``--via-minutes`` ticker-days, the real path: ``write_minutes`` (one file per minute)
   then ``compact_eligible``; both timed per ticker-day;
2. files on disk and bytes per tick (with the largest columns);
3. one ticker-day and one ticker-hour query through DuckDB: by the day file's exact path,
   through the ``ticks`` view's expression (``layout.duckdb_read_sql``, which lists every
   file of the lake: its cost grows with the file count, so it is also timed at a tenth
   of the tickers) and through the ``ticks_of(symbol, day)`` macro
   (``layout.duckdb_ticker_sql``, which lists only that ticker's folders of that day);
4. backfill: ``analytics.backfill`` over every day file, end to end into a new DuckDB
   database (``--workers`` threads, as ``ticklake backfill`` runs), beside DuckDB SQL over
   the same files in the same run (all cores, no write): the same features
   (``FAST_SQL``, the independent computation the feature tests compare with) and the
   basic ones only (OHLC, count, mean, std); OHLC and tick counts of one ticker are
   checked equal.

Scale: the default is 100 tickers x 20 days (2,000 files, ~47 M ticks, ~0.8 GB). Bytes per
tick, per-file import time, exact-path query time and backfill ticks/s do not depend on the
number of files; files grow as tickers x days (500 tickers x 252 days = 126,000 files,
~2.9 G ticks, ~47 GB at the measured bytes per tick) and backfill time as ticks / rate.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from analytics.backfill import BackfillConfig, BackfillResult
from analytics.backfill import backfill as run_backfill
from bench.backfill import sql_features
from bench.baselines import BASIC_SQL
from lake.clock import SystemClock
from lake.compact import compact_eligible
from lake.datadir import HISTORY_DIR
from lake.history import write_day_atomically
from lake.layout import HISTORY_GLOB, duckdb_read_sql, duckdb_ticker_sql, history_file
from lake.minutes import write_minutes
from lake.schema import LAKE_SCHEMA
from ticklake.simulator.feed import REGULAR, SymbolFeed

FIRST_DAY = dt.date(2024, 1, 2)
OPEN_S = 14 * 3600 + 1800  # 09:30 New York in January
SESSION_S = 390 * 60


def trading_days(count: int) -> list[dt.date]:
    days: list[dt.date] = []
    day = FIRST_DAY
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def session_ticks(
    feed: SymbolFeed, index: int, tickers: int, day: dt.date, rng: np.random.Generator
) -> pa.Table:
    """One regular session of one equity, in LAKE_SCHEMA, sorted by (time, seq)."""
    per_second = rng.choice(np.array([0, 1, 2]), SESSION_S, p=[0.2, 0.6, 0.2])
    second = np.repeat(np.arange(SESSION_S, dtype=np.int64), per_second)
    n = len(second)
    tie = np.arange(n) - np.repeat(np.cumsum(per_second) - per_second, per_second)
    start_s = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) + OPEN_S
    time_ms = (start_s + second) * 1000
    values = feed.next_columns(n, REGULAR, day.toordinal())
    data = {f.name: pa.nulls(n, f.type) for f in LAKE_SCHEMA}
    template = feed.template
    for name in ("id", "exchange"):
        data[name] = pa.array(np.full(n, getattr(template, name), dtype=object), pa.string())
    data["quote_type"] = pa.array(np.full(n, "EQUITY", dtype=object), pa.string())
    data["market_hours"] = pa.array(np.full(n, "REGULAR_MARKET", dtype=object), pa.string())
    data["price_hint"] = pa.array(np.full(n, template.price_hint, dtype=np.int64))
    for name, column in values.items():
        kind = LAKE_SCHEMA.field(name).type
        nonzero = np.asarray(column) != 0  # proto3: a zero is never sent, so it is NULL
        data[name] = pa.array(np.asarray(column).astype(kind.to_pandas_dtype()), kind, ~nonzero)
    data["time"] = pa.array(time_ms).cast(LAKE_SCHEMA.field("time").type)
    received = time_ms * 1000 + rng.integers(50_000, 300_000, n)
    data["received_at"] = pa.array(received).cast(LAKE_SCHEMA.field("received_at").type)
    day_seq = (day - FIRST_DAY).days * SESSION_S * tickers * 3
    data["seq"] = pa.array(day_seq + (second * tickers + index) * 3 + tie)
    return pa.table(data, schema=LAKE_SCHEMA)


def generate(root: Path, tickers: list[str], days: list[dt.date], via: int) -> dict[str, float]:
    """Write every ticker-day; the first ``via`` ticker-days through minute files."""
    rng = np.random.default_rng(7)
    direct_s, gen_s, ticks, done = [], 0.0, 0, 0
    minute_tables: list[pa.Table] = []
    for i, ticker in enumerate(tickers):
        feed = SymbolFeed(ticker, seed=7)
        for day in days:
            start = time.perf_counter()
            table = session_ticks(feed, i, len(tickers), day, rng)
            gen_s += time.perf_counter() - start
            ticks += table.num_rows
            if done < via:
                minute_tables.append(table)
            else:
                start = time.perf_counter()
                write_day_atomically(table, history_file(root, ticker, day))
                direct_s.append(time.perf_counter() - start)
            done += 1
    result = {"ticks": float(ticks), "generate_s": gen_s, "direct_s": sum(direct_s)}
    result["direct_per_day_ms"] = statistics.median(direct_s) * 1000 if direct_s else 0.0
    if minute_tables:
        start = time.perf_counter()
        for table in minute_tables:
            write_minutes(root, table)
        result["minutes_per_day_ms"] = (time.perf_counter() - start) * 1000 / len(minute_tables)
        start = time.perf_counter()
        after = dt.datetime.combine(days[-1], dt.time(), dt.UTC) + dt.timedelta(days=2)
        passed = compact_eligible(root, after.timestamp(), before=days[-1] + dt.timedelta(1))
        assert passed.days_compacted == len(minute_tables), passed
        result["compact_per_day_ms"] = (time.perf_counter() - start) * 1000 / len(minute_tables)
    return result


def bytes_report(root: Path, ticks: float) -> None:
    files = list((root / HISTORY_DIR).glob("*/*/*.parquet"))
    size = sum(f.stat().st_size for f in files)
    columns: dict[str, int] = {}
    footers = 0
    for path in files:
        meta = pq.read_metadata(path)
        footers += meta.serialized_size
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for c in range(group.num_columns):
                name = group.column(c).path_in_schema
                columns[name] = columns.get(name, 0) + group.column(c).total_compressed_size
    top = sorted(columns.items(), key=lambda kv: -kv[1])[:8]
    print(f"files on disk: {len(files):,} history files ({_mib(size)}); ticks {ticks:,.0f}")
    print(f"bytes per tick: {size / ticks:.2f} (footers {footers / ticks:.2f}); largest columns:")
    print("  " + ", ".join(f"{name} {total / ticks:.2f}" for name, total in top))


def timed(run: Callable[[], object], repeat: int = 7) -> float:
    """Median seconds of ``repeat`` runs after one warm-up run."""
    run()
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def query_times(root: Path, ticker: str, day: dt.date, label: str) -> None:
    path = str(history_file(root, ticker, day)).replace("'", "''")
    hour = f"time >= '{day} 15:00:00+00' AND time < '{day} 16:00:00+00'"
    agg = "count(*), min(price), max(price), sum(last_size)"
    con = duckdb.connect()
    exact_day = f"SELECT {agg} FROM read_parquet('{path}')"
    exact_hour = f"{exact_day} WHERE {hour}"
    day_ms = timed(lambda: con.execute(exact_day).fetchall()) * 1000
    hour_ms = timed(lambda: con.execute(exact_hour).fetchall()) * 1000
    print(f"DuckDB, exact day-file path: ticker-day {day_ms:.1f} ms, ticker-hour {hour_ms:.1f} ms")

    def lake(where: str) -> Callable[[], object]:
        return lambda: con.execute(
            f"SELECT {agg} FROM {duckdb_read_sql(root)} WHERE ticker = '{ticker}' AND {where}"
        ).fetchall()

    day_ms = timed(lake(f"date = '{day}'"), 3) * 1000
    hour_ms = timed(lake(hour), 3) * 1000
    print(
        f"DuckDB, the ticks view {label}: ticker-day {day_ms:.1f} ms, ticker-hour {hour_ms:.1f} ms"
    )
    one = duckdb_ticker_sql(root, "symbol", "day")
    if one is None:  # no placeholder of the minute tier yet: the whole lake, by ticker
        one = f"(SELECT * FROM {duckdb_read_sql(root)} WHERE ticker = symbol"
        one += " AND (day IS NULL OR date = day))"
    con.execute(f"CREATE MACRO ticks_of(symbol, day := NULL) AS TABLE SELECT * FROM {one}")
    of_day = f"SELECT {agg} FROM ticks_of('{ticker}', day := DATE '{day}')"
    day_ms = timed(lambda: con.execute(of_day).fetchall()) * 1000
    hour_ms = timed(lambda: con.execute(f"{of_day} WHERE {hour}").fetchall()) * 1000
    print(
        f"DuckDB, ticks_of('{ticker}', day) {label}: ticker-day {day_ms:.1f} ms, "
        f"ticker-hour {hour_ms:.1f} ms (target < 50 ms)"
    )
    con.close()


def backfill(root: Path, workers: int, scratch: Path) -> BackfillResult:
    """``analytics.backfill`` over every day file into a new database: end to end."""
    config = BackfillConfig(0, 4_000_000_000_000, workers=workers, database=scratch / "b.duckdb")
    return run_backfill(root, config, SystemClock())


def duckdb_features(root: Path) -> tuple[float, pa.Table]:
    glob = str(root / HISTORY_GLOB).replace("'", "''")
    con = duckdb.connect()
    con.execute(
        "CREATE VIEW ticks AS SELECT ticker, time, seq, price FROM read_parquet("
        f"'{glob}', hive_partitioning = true, hive_types = {{'ticker': 'VARCHAR'}})"
    )
    start = time.perf_counter()
    table = con.sql(BASIC_SQL).to_arrow_table()
    seconds = time.perf_counter() - start
    con.close()
    return seconds, table


def database_rows(database: Path) -> pa.Table:
    con = duckdb.connect(str(database), read_only=True)
    try:
        return con.sql("SELECT * FROM features").to_arrow_table()
    finally:
        con.close()


def check_same(ours: pa.Table, theirs: pa.Table, ticker: str) -> None:
    """OHLC and tick counts of one ticker agree between the backfill and DuckDB SQL."""
    keys = ["open", "high", "low", "close", "tick_count"]
    a = ours.filter(pa.compute.equal(ours["ticker"], ticker)).sort_by("window_start")
    b = theirs.filter(pa.compute.equal(theirs["ticker"], ticker)).sort_by("window_start")
    assert a.num_rows == b.num_rows, (a.num_rows, b.num_rows)
    for key in keys:
        assert a[key].to_pylist() == b[key].to_pylist(), key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickers", type=int, default=100)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--via-minutes", type=int, default=4, help="ticker-days via minutes")
    parser.add_argument("--workers", type=int, default=2, help="backfill threads")
    parser.add_argument("--dir", type=Path, help="lake directory (default: a temporary one)")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="ticklake-history-"))
    tickers = [f"EQ{i:03d}" for i in range(args.tickers)]
    days = trading_days(args.days)
    print(f"{args.tickers} tickers x {args.days} sessions of 390 minutes into {root}")
    try:
        made = generate(root, tickers, days, args.via_minutes)
        print(
            f"import: generated in {made['generate_s']:.1f} s; direct day files "
            f"{made['direct_per_day_ms']:.1f} ms per ticker-day ({made['direct_s']:.1f} s total)"
        )
        if "minutes_per_day_ms" in made:
            print(
                f"import via {args.via_minutes} ticker-days of minute files: write_minutes "
                f"{made['minutes_per_day_ms']:.0f} ms + compaction "
                f"{made['compact_per_day_ms']:.0f} ms per ticker-day"
            )
        bytes_report(root, made["ticks"])
        query_times(root, tickers[7 % len(tickers)], days[len(days) // 2], "(all files)")
        scratch = Path(tempfile.mkdtemp(prefix="ticklake-history-db-"))
        result = backfill(root, args.workers, scratch)
        ticks, seconds = result.ticks, result.seconds
        print(
            f"backfill (analytics.backfill, {args.workers} threads, end to end into DuckDB): "
            f"{ticks:,} ticks in {seconds:.2f} s = {ticks / seconds / 1e6:.1f} M ticks/s "
            f"({result.rows:,} rows; writer busy {result.timings.get('write', 0.0):.2f} s)"
        )
        ours = database_rows(scratch / "b.duckdb")
        shutil.rmtree(scratch, ignore_errors=True)
        same_s, _ = sql_features(root, "history")
        print(
            f"DuckDB SQL, the same features (FAST_SQL) over the same files: {same_s:.2f} s = "
            f"{ticks / same_s / 1e6:.1f} M ticks/s; backfill / DuckDB = {same_s / seconds:.1f}x "
            "(target >= 2x)"
        )
        sql_s, theirs = duckdb_features(root)
        print(
            f"DuckDB SQL, basic features only (OHLC, count, mean, std; no volume, VWAP, flags, "
            f"no write): {sql_s:.2f} s = {ticks / sql_s / 1e6:.1f} M ticks/s; "
            f"backfill / DuckDB = {sql_s / seconds:.1f}x"
        )
        check_same(ours, theirs, tickers[0])
        small = max(1, args.tickers // 10)
        for ticker in tickers[small:]:
            shutil.rmtree(root / HISTORY_DIR / f"ticker={ticker}")
        query_times(root, tickers[0], days[len(days) // 2], f"({small * args.days} files)")
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


def _mib(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB"


if __name__ == "__main__":
    main()
