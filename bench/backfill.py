"""Backfill ticks per second end to end (read + compute + write DuckDB), beside DuckDB SQL
computing the same features over the same files and the seed's per-tick ``np.insert``
fold; over compacted history and over minute files; and the per-minute job at 500 tickers.

Run: ``.venv/bin/python -m bench.backfill [--ticks 20000000] [--tickers 50] [--workers 2]``.

- History: ``--ticks`` over ``--tickers`` equity-like symbols, ~1 tick/s in regular hours
  (13:30-20:00 UTC, EDT) and one every ~10 s before and after (08:00-24:00), whole-second
  times with ties, session-cumulative ``day_volume``, weekdays from 2024-04-15. Written as
  one day file per ticker-day by ``lake.history.write_day_atomically``, the writer
  compaction itself uses (``--history-via day-files``, ~25 s for 20 M ticks), or through
  the lake's own paths (``--history-via lake-writer``: the first tick of every ticker-day
  to a minute file by ``write_minutes``, ``compact_eligible`` turns those into day files,
  then ``write_minutes`` of the other ticks merges each ticker-day into its day file, the
  late-tick path: ~0.7 s per ticker-day here). Writing 20 M ticks as ~330 k minute files
  and compacting them would take over half an hour here (~5 ms per minute file).
- Minute files: ``--minute-ticks`` (default one day of every ticker) written as minute
  files by ``write_minutes`` (4 threads), measured, then compacted with
  ``compact_eligible`` and measured again: the same ticks in both tiers.
- Per run: backfill with ``--workers`` threads into a fresh database, again over it (a
  re-backfill replaces rows, while another process opens the database every 0.5 s as the
  per-minute job would), one thread, and ``--workers`` processes; DuckDB SQL
  (``FAST_SQL``: every feature, volume and VWAP included; no flags, no write) over the same
  files with all cores; the seed's fold on ``--seed-sample`` ticks. Backfill rows are
  checked equal to DuckDB's.
- The job: ``--job-tickers`` tickers, ~60 ticks a minute each, one run per sealed minute.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analytics.backfill import BackfillConfig, BackfillResult, backfill
from analytics.features import FEATURE_SCHEMA
from analytics.job import AnalyticsJob, JobConfig
from bench.baselines import FAST_SQL, assert_same_features, seed_fold
from lake.clock import ManualClock, SystemClock
from lake.compact import compact_eligible
from lake.datadir import HISTORY_DIR, TICKS_DIR
from lake.history import write_day_atomically
from lake.layout import history_file
from lake.minutes import MinutesWrite, write_minutes
from lake.recent import RECENT
from lake.schema import LAKE_SCHEMA
from lake.seal import SealState, save_seal
from lake.utc import DAY_MS, HOUR_MS, MINUTE_MS
from recorder.wire.markets import asset_class

FIRST_DAY = int(dt.datetime(2024, 4, 15, tzinfo=dt.UTC).timestamp()) * 1000
SEGMENTS = (  # (start, end) within the UTC day, mean seconds between ticks, market hours
    (8 * HOUR_MS, 13 * HOUR_MS + 30 * MINUTE_MS, 10, "PRE_MARKET"),
    (13 * HOUR_MS + 30 * MINUTE_MS, 20 * HOUR_MS, 1, "REGULAR_MARKET"),
    (20 * HOUR_MS, 24 * HOUR_MS, 10, "POST_MARKET"),
)
TICKS_PER_DAY = sum((hi - lo) // 1000 // every for lo, hi, every, _ in SEGMENTS)


def weekdays(count: int) -> list[int]:
    days: list[int] = []
    day = FIRST_DAY
    while len(days) < count:
        if dt.datetime.fromtimestamp(day / 1000, dt.UTC).weekday() < 5:
            days.append(day)
        day += DAY_MS
    return days


class Generator:
    """Ticks of equity-like symbols ``EQ000``...: each call gives one LAKE_SCHEMA table of
    one ticker over some segments; prices walk on, seqs increase, deterministic by seed."""

    def __init__(self, seed: int) -> None:
        self.rng, self.seq = np.random.default_rng(seed), 1
        self.prices: dict[str, float] = {}

    def ticks(self, ticker: str, segments: list[tuple[int, int, int, str]]) -> pa.Table:
        """``segments``: (start ms, end ms, mean seconds between ticks, market hours)."""
        rng = self.rng
        parts = []
        for lo, hi, every, hours in segments:
            count = (hi - lo) // 1000 // every
            parts.append((lo + np.sort(rng.integers(0, (hi - lo) // 1000, count)) * 1000, hours))
        times = np.concatenate([t for t, _ in parts])
        n = len(times)
        price = self.prices.get(ticker, 20.0 + 200 * rng.random())
        prices = np.round(price + np.cumsum(rng.normal(0, 0.02, n)), 2).astype(np.float32)
        self.prices[ticker] = float(prices[-1])
        market_hours = np.repeat([h for _, h in parts], [len(t) for t, _ in parts])
        volume = rng.integers(100, 5000) + np.cumsum(rng.integers(1, 500, n))  # no duplicates
        received = times * 1000 + rng.integers(50_000, 900_000, n)
        columns: dict[str, Any] = {f.name: pa.nulls(n, f.type) for f in LAKE_SCHEMA}
        columns |= {
            "id": pa.repeat(pa.scalar(ticker), n),
            "time": pa.array(times, pa.int64()).cast(LAKE_SCHEMA.field("time").type),
            "price": pa.array(prices),
            "day_volume": pa.array(volume),
            "market_hours": pa.array(market_hours),
            "received_at": pa.array(received).cast(LAKE_SCHEMA.field("received_at").type),
            "seq": pa.array(np.arange(self.seq, self.seq + n)),
        }
        self.seq += n
        return pa.table(columns, schema=LAKE_SCHEMA)


def ticker_days(ticks: int, tickers: int, seed: int = 1) -> Iterator[pa.Table]:
    """One table per (ticker, weekday), about ``ticks`` rows in all, lazily."""
    generator = Generator(seed)
    days = weekdays(max(1, round(ticks / tickers / TICKS_PER_DAY)))
    for i in range(tickers):
        for day in days:
            segments = [(day + lo, day + hi, every, h) for lo, hi, every, h in SEGMENTS]
            yield generator.ticks(f"EQ{i:03d}", segments)


def each(
    tables: Iterator[pa.Table], write: Callable[[pa.Table], MinutesWrite], threads: int
) -> int:
    """``write`` every table in ``threads`` threads, a few tables in memory at once; returns
    the number of files written."""
    files = 0
    first = next(tables, None)
    if first is not None:  # alone: concurrent first writes to a new lake race (placeholder)
        files += len(write(first).writes)
    with ThreadPoolExecutor(threads) as pool:
        pending: deque[Future[MinutesWrite]] = deque()
        for table in tables:
            pending.append(pool.submit(write, table))
            while len(pending) > 2 * threads or (pending and pending[0].done()):
                result = pending.popleft().result()
                assert result.rejected_rows == 0
                files += len(result.writes)
        for future in pending:
            files += len(future.result().writes)
    return files


def write_history(data: Path, ticks: int, tickers: int, via: str, threads: int) -> None:
    """Day files of the generated ticks (see the module docstring for ``via``)."""
    if via == "day-files":
        started = time.perf_counter()

        def day_file(table: pa.Table) -> MinutesWrite:
            first = int(table["time"].cast(pa.int64())[0].as_py())
            date = dt.datetime.fromtimestamp(first / 1000, dt.UTC).date()
            write_day_atomically(table, history_file(data, table["id"][0].as_py(), date))
            return MinutesWrite([], table.slice(0, 0))

        each(ticker_days(ticks, tickers), day_file, threads)
        print(f"  day files written by write_day_atomically: {_since(started):.1f} s")
        return
    started = time.perf_counter()
    firsts = [t.slice(0, 1) for t in ticker_days(ticks, tickers)]
    write_minutes(data, pa.concat_tables(firsts))
    print(f"  first tick of each ticker-day to minute files: {_since(started):.1f} s")
    started = time.perf_counter()
    last = max(int(t["time"].cast(pa.int64())[0].as_py()) for t in firsts)
    after = dt.datetime.fromtimestamp(last / 1000 + 86400, dt.UTC).date()
    done = compact_eligible(data, time.time(), grace=0.0, before=after)
    assert done.days_compacted == len(firsts) and not done.failed, done
    print(f"  compact_eligible: {done.days_compacted} day files in {_since(started):.1f} s")
    started = time.perf_counter()
    each(ticker_days(ticks, tickers), lambda t: write_minutes(data, t.slice(1)), threads)
    print(f"  the other ticks merged into the day files by write_minutes: {_since(started):.1f} s")


def count_ticks(data: Path, tier: str) -> int:
    con = duckdb.connect()
    try:
        row = con.execute(f"SELECT count(*) FROM read_parquet('{_glob(data, tier)}')").fetchone()
    finally:
        con.close()
    assert row is not None
    return int(row[0])


def _glob(data: Path, tier: str) -> str:
    if tier == "history":
        return f"{data}/{HISTORY_DIR}/*/*/*.parquet"
    return f"{data}/{TICKS_DIR}/*/*/*/*.parquet"


def write_minute_files(
    data: Path, tables: Iterator[pa.Table], threads: int, *, quiet: bool = False
) -> None:
    started = time.perf_counter()
    files = each(tables, lambda t: write_minutes(data, t), threads)
    seconds = time.perf_counter() - started
    if not quiet:
        print(f"  wrote {files:,} minute files in {seconds:.1f} s ({files / seconds:,.0f} files/s)")


def sql_features(data: Path, tier: str) -> tuple[float, pa.Table]:
    """FAST_SQL over every lake file of one tier, read-only, all cores: (seconds, rows)."""
    started = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute(
        "CREATE VIEW ticks AS SELECT id AS ticker, time, seq, price, day_volume, market_hours "
        f"FROM read_parquet('{_glob(data, tier)}')"
    )
    tickers = [r[0] for r in con.sql("SELECT DISTINCT ticker FROM ticks").fetchall()]
    classes = pa.table({"ticker": tickers, "cls": [str(asset_class(t)) for t in tickers]})
    con.register("classes", classes)
    table = con.sql(FAST_SQL).to_arrow_table()
    con.close()
    return time.perf_counter() - started, table


def run_backfill(
    data: Path, db: Path, workers: int, pool: Literal["thread", "process"] = "thread"
) -> BackfillResult:
    """Everything in the lake, into ``db``."""
    config = BackfillConfig(0, 4_000_000_000_000, workers=workers, database=db, pool=pool)
    return backfill(data, config, SystemClock())


def measure(data: Path, tier: str, ticks: int, workers: int, scratch: Path) -> dict[str, float]:
    """Backfill variants and DuckDB SQL over one tier; returns ticks/s by name."""
    rates: dict[str, float] = {}
    runs: list[tuple[str, Callable[[], BackfillResult]]] = [
        (
            f"backfill, {workers} threads, new database",
            lambda: run_backfill(data, scratch / "a.duckdb", workers),
        ),
        (
            f"backfill, {workers} threads, replacing rows",
            lambda: run_backfill(data, scratch / "a.duckdb", workers),
        ),
        ("backfill, 1 thread", lambda: run_backfill(data, scratch / "b.duckdb", 1)),
        (
            f"backfill, {workers} processes, new database",
            lambda: run_backfill(data, scratch / "c.duckdb", workers, "process"),
        ),
    ]
    for name, go in runs:
        probe = JobProbe(scratch / "a.duckdb") if "replacing" in name else None
        result = go()
        if probe is not None:
            print(f"  {probe.stop()}")
        assert result.ticks == ticks, (result.ticks, ticks)
        rates[name] = result.ticks_per_second
        write = result.timings.get("write", 0.0)
        print(
            f"  {name:<44} {result.seconds:7.2f} s {result.ticks_per_second / 1e6:6.2f} M ticks/s"
            f"  ({result.rows:,} rows, {result.transactions} transactions, writer {write:.2f} s)"
        )
    seconds, table = sql_features(data, tier)
    rates["duckdb SQL"] = ticks / seconds
    name = "duckdb SQL (FAST_SQL, all cores)"
    print(f"  {name:<44} {seconds:7.2f} s {ticks / seconds / 1e6:6.2f} M ticks/s")
    con = duckdb.connect(str(scratch / "a.duckdb"), read_only=True)
    ours = con.sql(
        "SELECT * EXCLUDE (late, gap, computed_at) FROM features ORDER BY ticker, window_start"
    )
    assert_same_features(ours.to_arrow_table().cast(FEATURE_SCHEMA), table)
    con.close()
    for name in ("a", "b", "c"):
        (scratch / f"{name}.duckdb").unlink(missing_ok=True)
    return rates


class JobProbe:
    """Another process opening the database as the writer every 0.5 s, as the per-minute
    job does, and timing each open (waiting out the backfill's transactions)."""

    CODE = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from analytics.database import open_db\n"
        "waits = []\n"
        "while not Path(sys.argv[2]).exists():\n"
        "    started = time.perf_counter()\n"
        "    open_db(Path(sys.argv[1]), timeout=120.0).close()\n"
        "    waits.append(time.perf_counter() - started)\n"
        "    time.sleep(0.5)\n"
        "n, waits = len(waits), sorted(waits) or [0.0]  # none: the backfill was quicker\n"
        "print(n, waits[len(waits) // 2], waits[-1])\n"
    )

    def __init__(self, database: Path) -> None:
        self.flag = database.with_suffix(".stop")
        self.flag.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-c", self.CODE, str(database), str(self.flag)],
            stdout=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> str:
        self.flag.touch()
        out, _ = self.process.communicate(timeout=300)
        count, median, worst = out.split()
        return (
            f"  meanwhile another writer opened the database {count} times: median "
            f"{float(median) * 1000:.0f} ms, longest {float(worst) * 1000:.0f} ms"
        )


def seed_rate(data: Path, sample: int) -> float:
    con = duckdb.connect()
    files = f"{data}/{HISTORY_DIR}/*/*/*.parquet"
    ticks = con.sql(
        f"SELECT id AS ticker, time, price, day_volume FROM read_parquet('{files}') "
        f"WHERE id = 'EQ000' ORDER BY time, seq LIMIT {sample}"
    ).to_arrow_table()
    con.close()
    started = time.perf_counter()
    seed_fold(ticks)
    rate = float(ticks.num_rows / (time.perf_counter() - started))
    print(f"  seed np.insert fold, {ticks.num_rows:,} ticks: {rate / 1e3:,.1f} k ticks/s")
    return rate


def job_minutes(root: Path, tickers: int, minutes: int, *, in_process: bool) -> list[float]:
    """Seconds of each per-minute run after the first, ``tickers`` tickers of ~60 ticks.

    As in ``ticklake record``: each minute's files are written (``write_minutes``, 4
    threads), then the job runs for that minute once it is sealed. ``in_process``: the job
    finds the files this process just wrote in memory (``lake.recent``), as the
    scheduler inside ``record`` does; else that memory is cleared before each run, as for
    ``ticklake analyze`` beside a recorder in another process.
    """
    data, start = root / ("job-in" if in_process else "job-apart"), FIRST_DAY + 14 * HOUR_MS
    shutil.rmtree(data, ignore_errors=True)  # a kept --dir holds the last run's state
    generator = Generator(5)
    segment = [(start, start + minutes * MINUTE_MS, 1, "REGULAR_MARKET")]
    tables = [generator.ticks(f"J{i:03d}", segment) for i in range(tickers)]
    ticks = pa.concat_tables(tables)
    minute = pc.divide(ticks["time"].cast(pa.int64()), MINUTE_MS)
    clock = ManualClock(start / 1000)
    job = AnalyticsJob(data, JobConfig(recompute_horizon=600.0), clock)
    seconds = []
    for k in range(1, minutes + 1):
        rows = ticks.filter(pc.equal(minute, (start + (k - 1) * MINUTE_MS) // MINUTE_MS))
        RECENT.clear()  # only this minute's files are in memory at most
        write_minute_files(data, iter(_by_ticker(rows)), 4, quiet=True)
        if not in_process:
            RECENT.clear()
        save_seal(data, SealState(watermark_ms=start + k * MINUTE_MS))
        clock.set((start + k * MINUTE_MS) / 1000 + 12)
        result = job.run_once()
        assert result.done
        seconds.append(result.timings["total"])
        if k > 1:
            parts = " ".join(f"{n} {v * 1000:.0f}" for n, v in result.timings.items())
            print(f"  minute {k}: {result.windows} windows, {result.ticks:,} ticks; ms: {parts}")
    return seconds[1:]


def _by_ticker(table: pa.Table) -> list[pa.Table]:
    ids = table["id"].combine_chunks()
    return [table.filter(pc.equal(ids, name)) for name in pc.unique(ids).to_pylist()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=20_000_000)
    parser.add_argument("--tickers", type=int, default=50)
    parser.add_argument("--minute-ticks", type=int, default=None, help="default: one day")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed-sample", type=int, default=20_000)
    parser.add_argument("--job-tickers", type=int, default=500)
    parser.add_argument("--job-minutes", type=int, default=6)
    parser.add_argument(
        "--history-via",
        choices=("day-files", "lake-writer"),
        default="day-files",
        help="how the history is written (see the module docstring)",
    )
    parser.add_argument("--dir", type=Path, help="work here (kept) instead of a temporary one")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    root.mkdir(parents=True, exist_ok=True)
    cores = len(os.sched_getaffinity(0))
    print(
        f"machine: {cores} cores ({os.cpu_count()} online), {platform.machine()}, "
        f"load average {os.getloadavg()[0]:.2f}; python {platform.python_version()}, "
        f"pyarrow {pa.__version__}, duckdb {duckdb.__version__}"
    )
    try:
        print(f"history: {args.ticks:,} ticks, {args.tickers} tickers")
        history = root / "history"
        write_history(history, args.ticks, args.tickers, args.history_via, 4)
        ticks = count_ticks(history, "history")
        size = _bytes(history / HISTORY_DIR)
        print(f"  {ticks:,} ticks in {size / 1e6:.0f} MB, {size / ticks:.1f} bytes/tick")
        rates = measure(history, "history", ticks, args.workers, root)
        seed = seed_rate(history, args.seed_sample)
        best = max(v for k, v in rates.items() if k.startswith("backfill"))
        print(
            f"  ratios: backfill/duckdb {best / rates['duckdb SQL']:.2f}x, "
            f"backfill/seed {best / seed:,.0f}x; targets: >= 10 M ticks/s on 2 cores "
            f"({best / 1e6:.2f}), >= 2x SQL, >= 100x seed"
        )

        minute_ticks = args.minute_ticks
        if minute_ticks is None:
            minute_ticks = args.tickers * TICKS_PER_DAY
        if minute_ticks > 0:
            minute_files(root, minute_ticks, args.tickers, args.workers)
        if args.job_tickers > 0:
            for in_process, how in ((True, "inside record"), (False, "apart (analyze)")):
                print(f"per-minute job {how}: {args.job_tickers} tickers")
                runs = job_minutes(root, args.job_tickers, args.job_minutes, in_process=in_process)
                print(
                    f"  per run: median {statistics.median(runs) * 1000:.0f} ms, "
                    f"best {min(runs) * 1000:.0f} ms (target < 250 ms)"
                )
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


def minute_files(root: Path, minute_ticks: int, tickers: int, workers: int) -> None:
    """The minute-file stage: write, measure, compact, measure the same ticks again."""
    print(f"minute files: {minute_ticks:,} ticks, {tickers} tickers")
    minute = root / "minute"
    write_minute_files(minute, ticker_days(minute_ticks, tickers, seed=2), 4)
    ticks = count_ticks(minute, "minute")
    on_minutes = measure(minute, "minute", ticks, workers, root)
    started = time.perf_counter()
    compact_eligible(minute, time.time(), grace=0.0, before=dt.date(2100, 1, 1))
    print(f"  compacted by compact_eligible in {_since(started):.1f} s; the same ticks again:")
    on_history = measure(minute, "history", ticks, workers, root)
    for name, rate in on_minutes.items():
        print(f"  {name}: history / minute files {on_history[name] / rate:.1f}x")


def _since(started: float) -> float:
    return time.perf_counter() - started


def _bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*.parquet"))


if __name__ == "__main__":
    main()
