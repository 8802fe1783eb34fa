"""Scale-out (issue 15): backfill ticks per second with the local backfill (the baseline)
beside a Dask LocalCluster of 1 and of 2 worker processes, over the same generated
history in the same run; then the ticker-day query over local files (object-store reads:
a marked place below, for the object-store tier).

Run: ``.venv/bin/python -m bench.scaleout [--ticks 6000000] [--tickers 20] [--repeat 2]``
(needs the dask extra).

- History: ``bench.backfill``'s generator (equity-like symbols, ~23,000 ticks per
  ticker-day) written as day files, as ``bench.backfill --history-via day-files`` does.
- Each backfill: everything in the lake into a new database, the same ManualClock, so
  every run's rows (``computed_at`` included) must equal the baseline's, which is checked.
  Local: ``--workers`` threads (the CLI's default: one per core) and one thread. Dask:
  ``analytics.cluster.cluster_pool`` over ``local:N`` (N single-threaded worker processes
  on 127.0.0.1), as ``ticklake backfill --cluster local:N`` runs it; the cluster's start
  (and the workers' first imports, in a warm-up backfill of one chunk) is timed apart from
  the backfill, and the end-to-end figure includes it.
- Each figure is the best of ``--repeat`` runs (shared cores: timings are noisy).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa

from analytics.backfill import BackfillConfig, BackfillResult, ChunkPool, backfill
from analytics.cluster import ClusterSpec, cluster_pool
from bench.backfill import count_ticks, weekdays, write_history
from bench.history import query_times
from lake.clock import ManualClock

END_MS = 4_000_000_000_000
CLOCK = ManualClock(END_MS / 1000 + 3600)  # every window sealed; one computed_at for all


def run(data: Path, db: Path, workers: int = 1, pool: ChunkPool | None = None) -> BackfillResult:
    """Everything in the lake into a new database ``db``."""
    db.unlink(missing_ok=True)
    config = BackfillConfig(0, END_MS, workers=workers, database=db)
    return backfill(data, config, CLOCK, pool=pool)


def rows(db: Path) -> pa.Table:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.sql("SELECT * FROM features ORDER BY ticker, window_start").to_arrow_table()
    finally:
        con.close()


def best(go: Callable[[], BackfillResult], repeat: int) -> BackfillResult:
    results = [go() for _ in range(repeat)]
    return min(results, key=lambda r: r.seconds)


def line(name: str, r: BackfillResult, baseline: float, extra: str = "") -> None:
    rate = r.ticks_per_second
    print(
        f"  {name:<34} {r.seconds:7.2f} s {rate / 1e6:6.2f} M ticks/s  "
        f"{rate / baseline:5.2f}x baseline{extra}"
    )


def dask_runs(data: Path, scratch: Path, workers: int, repeat: int, baseline: float) -> None:
    """Backfills on a LocalCluster of ``workers`` processes; rows checked against the
    baseline's (``scratch / "base.duckdb"``)."""
    started = time.perf_counter()
    with cluster_pool(ClusterSpec(local_workers=workers)) as pool:
        ready = time.perf_counter() - started
        warm = time.perf_counter()  # the workers import ticklake on their first task
        first = BackfillConfig(0, END_MS, tickers=("EQ000",), database=scratch / "warm.duckdb")
        backfill(data, first, CLOCK, pool=pool)
        warm_s = time.perf_counter() - warm
        result = best(lambda: run(data, scratch / "dask.duckdb", pool=pool), repeat)
    assert rows(scratch / "dask.duckdb").equals(rows(scratch / "base.duckdb"))
    total = ready + warm_s + result.seconds
    word = "worker" if workers == 1 else "workers"
    line(
        f"dask, {workers} {word} (local:{workers})",
        result,
        baseline,
        f"  (start {ready:.1f} s + first imports {warm_s:.1f} s; end to end "
        f"{result.ticks / total / 1e6:.2f} M ticks/s)",
    )


# --- object-store reads vs local reads (issue 15, the object-store tier) -----------------------
# The lead adds here the same ticker-day query against the lake at a lake_url (s3://...,
# moto's server or MinIO on 127.0.0.1) beside the local figures below, in the same run.


def ticker_day_reads(data: Path, ticker: str, day: dt.date) -> None:
    """The ticker-day query (``bench.history.query_times``) over local files."""
    print(f"ticker-day query, {ticker} on {day}:")
    query_times(data, ticker, day, "local files")
    print("  object store: not measured yet (the object-store tier adds it here)")


# -------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=6_000_000)
    parser.add_argument("--tickers", type=int, default=20)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dir", type=Path, help="work here (kept) instead of a temporary one")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    root.mkdir(parents=True, exist_ok=True)
    print(
        f"machine: {len(os.sched_getaffinity(0))} cores, {platform.machine()}, load average "
        f"{os.getloadavg()[0]:.2f}; python {platform.python_version()}"
    )
    try:
        data = root / "lake"
        if not data.exists():
            write_history(data, args.ticks, args.tickers, "day-files", 4)
        ticks = count_ticks(data, "history")
        print(f"history: {ticks:,} ticks, {args.tickers} tickers; best of {args.repeat} runs")
        base = best(lambda: run(data, root / "base.duckdb", args.workers), args.repeat)
        assert base.ticks == ticks, (base.ticks, ticks)
        baseline = base.ticks_per_second
        line(f"local, {args.workers} threads (baseline)", base, baseline)
        one = best(lambda: run(data, root / "one.duckdb", 1), args.repeat)
        assert rows(root / "one.duckdb").equals(rows(root / "base.duckdb"))
        line("local, 1 thread", one, baseline)
        for workers in (1, 2):
            dask_runs(data, root, workers, args.repeat, baseline)
        ticker_day_reads(
            data, "EQ000", dt.datetime.fromtimestamp(weekdays(1)[0] / 1000, dt.UTC).date()
        )
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
