"""Scale-out (issue 15): backfill ticks per second with the local backfill (the baseline)
beside a Dask LocalCluster of 1 and of 2 worker processes, over the same generated
history in the same run; then the ticker-day query and the Python read of one day from
local files vs from the object store (moto's S3 server on 127.0.0.1).

Run: ``.venv/bin/python -m bench.scaleout [--ticks 6000000] [--tickers 20] [--repeat 2]
[--only backfill|reads]`` (needs the dask extra; the reads need the s3 extra and moto[server]).

- History: ``bench.backfill``'s generator (equity-like symbols, ~23,000 ticks per
  ticker-day) written as day files, as ``bench.backfill --history-via day-files`` does.
- Each backfill: everything in the lake into a new database, the same ManualClock, so
  every run's rows (``computed_at`` included) must equal the baseline's, which is checked.
  Local: ``--workers`` threads (the CLI's default: one per core) and one thread. Dask:
  ``analytics.cluster.cluster_pool`` over ``local:N`` (N single-threaded worker processes
  on 127.0.0.1), as ``ticklake backfill --cluster local:N`` runs it; the cluster's start
  (and the workers' first imports, in a warm-up backfill of one chunk) is timed apart from
  the backfill, and the end-to-end figure includes it.
- Reads: a copy of the lake is offloaded whole (``lake.offload``, grace 0, two passes, so
  no local day file is left) to moto's server on 127.0.0.1; the ``ticks_of(symbol, day)``
  expression (``layout.duckdb_ticker_sql``, DuckDB reading s3 through s3fs) and
  ``lake.minutes.read_minutes`` of the day's 1,440 minutes run before and after, best of
  ``READS``. moto's request log counts the S3 requests of the offload and of each read.
  Loopback to an in-memory server: no network latency, so the ratio is a floor for a real
  object store (each request to S3 costs ~10-50 ms more).
- Each figure is the best of ``--repeat`` runs (shared cores: timings are noisy).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa

from analytics.backfill import BackfillConfig, BackfillResult, ChunkPool, backfill
from analytics.cluster import ClusterSpec, cluster_pool
from bench.backfill import count_ticks, weekdays, write_history
from bench.history import query_times
from lake.clock import ManualClock
from lake.datadir import HISTORY_DIR
from lake.history import ensure_placeholder
from lake.layout import (
    duckdb_ticker_sql,
    history_placeholder,
    lake_days,
    minute_placeholder,
    remote_lake,
)
from lake.minutes import read_minutes
from lake.offload import offload_days
from lake.remote import bind_remote
from lake.utc import DAY_MS, MINUTE_MS, day_start_ms

END_MS = 4_000_000_000_000
CLOCK = ManualClock(END_MS / 1000 + 3600)  # every window sealed; one computed_at for all
S3_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")


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
# A copy of the lake is offloaded whole (``lake.offload``, grace 0, two passes: the local day
# files are gone) to moto's S3 server on 127.0.0.1; the same reads run before and after.
# moto's request log (one line per HTTP request) gives the requests each step makes.

READS = 7  # best of: the reads take milliseconds
_REQUEST = re.compile(r'"(?:\x1b\[[0-9;]*m)*([A-Z]+) (\S+) HTTP')


class MotoServer:
    """``moto_server`` on a free port of 127.0.0.1, its request log in ``log``; the AWS
    variables point at it while it runs (as tests/conftest.py does)."""

    def __init__(self, log: Path) -> None:
        self.log, self._saved = log, {k: os.environ.get(k) for k in S3_ENV}
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        server = Path(sys.executable).with_name("moto_server")
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(server), "-H", "127.0.0.1", "-p", str(self.port)], stdout=out, stderr=out
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto_server did not start: {log.read_text()}") from None
                time.sleep(0.05)
        values = (f"http://127.0.0.1:{self.port}", "bench-key", "bench-secret", "us-east-1")
        os.environ.update(zip(S3_ENV, values, strict=True))

    def requests(self) -> Counter[str]:
        """Requests served so far, by kind: PUT, GET, HEAD, LIST, multipart (POST, parts)."""
        time.sleep(0.2)  # the server logs a request after answering it
        kinds: Counter[str] = Counter()
        for method, target in _REQUEST.findall(self.log.read_text(errors="replace")):
            if method == "GET" and ("list-type" in target or "prefix=" in target):
                method = "LIST"
            elif "uploadId" in target or "uploads" in target:
                method = "multipart"
            kinds[method] += 1
        return kinds

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def fastest(go: Callable[[], object], repeat: int = READS) -> float:
    """Best seconds of ``repeat`` runs after one warm-up run."""
    go()
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        go()
        seconds.append(time.perf_counter() - started)
    return min(seconds)


def _per(kinds: Counter[str], count: int) -> str:
    return ", ".join(f"{kinds[k] / count:.2f} {k}" for k in sorted(kinds)) or "none"


def reads(lake: Path, ticker: str, day: dt.date) -> tuple[Callable[[], int], Callable[[], int]]:
    """The ticker-day query (``ticks_of(symbol, day)``'s expression, aggregated) and the
    Python-side read of the day (``read_minutes`` of its 1,440 minutes); each gives its
    row count. Built now: the expression's shape depends on the tiers holding the day."""
    con = duckdb.connect()
    store = remote_lake(lake)
    if store is not None:
        store.register(con)
    one = duckdb_ticker_sql(lake, f"'{ticker}'", f"DATE '{day}'")
    assert one is not None
    sql = f"SELECT count(*), avg(price), min(price), max(price) FROM {one}"
    start = day_start_ms(day)
    minutes = range(start, start + DAY_MS, MINUTE_MS)

    def query() -> int:
        row = con.execute(sql).fetchone()
        assert row is not None
        return int(row[0])

    return query, lambda: read_minutes(lake, ticker, minutes, ["time", "price"]).num_rows


def first_query(lake: Path, ticker: str, day: dt.date) -> float:
    """Seconds of the ticker-day query on a new connection (DuckDB caches the remote
    bytes it read, per database, and checks them with a HEAD request on later reads)."""
    query, _ = reads(lake, ticker, day)
    started = time.perf_counter()
    query()
    return time.perf_counter() - started


def ticker_day_reads(data: Path, ticker: str, day: dt.date, scratch: Path) -> None:
    """The ticker-day query (``bench.history.query_times``) over local files; then the
    ticker-day query and ``read_minutes`` of one day, local vs object store, on a copy
    of the lake offloaded to moto."""
    print(f"ticker-day query, {ticker} on {day}:")
    query_times(data, ticker, day, "local files")
    lake = scratch / "offloaded"
    shutil.rmtree(lake, ignore_errors=True)
    shutil.copytree(data, lake)
    ensure_placeholder(minute_placeholder(lake))  # ticks_of lists only the ticker's folders
    ensure_placeholder(history_placeholder(lake))
    query, python = reads(lake, ticker, day)
    local = fastest(query), fastest(python)
    rows_local = query(), python()
    server = MotoServer(scratch / "moto.log")
    try:
        import boto3

        boto3.client("s3").create_bucket(Bucket="ticklake-bench")
        remote = bind_remote(lake, "s3://ticklake-bench/lake")
        files = sum(1 for _ in lake_days(lake, HISTORY_DIR))
        size = sum(f.stat().st_size for f in (lake / HISTORY_DIR).glob("*/*/*.parquet"))
        before = server.requests()
        now = day_start_ms(max(d for _, d, _ in lake_days(lake, HISTORY_DIR))) / 1000 + 30 * 86400
        started = time.perf_counter()
        first = offload_days(lake, remote, now, after_days=1, grace=0)
        second = offload_days(lake, remote, now, after_days=1, grace=0)
        seconds = time.perf_counter() - started
        assert first.days_uploaded == second.days_removed == files, (first, second)
        assert not first.failed and not second.failed, (first, second)
        offload = server.requests() - before
        print(
            f"  offload to moto (127.0.0.1): {files} day files, {size / 2**20:.0f} MiB in "
            f"{seconds:.1f} s ({size / 2**20 / seconds:.1f} MiB/s); S3 requests per day "
            f"file: {_per(offload, files)} (both passes)"
        )
        query, python = reads(lake, ticker, day)
        assert (query(), python()) == rows_local
        remote_s = fastest(query), fastest(python)
        counts = []
        for go in (query, python):
            before = server.requests()
            go()
            counts.append(server.requests() - before)
        cold_s, cold = first_query(lake, ticker, day), Counter[str]()
        for _ in range(READS):
            before = server.requests()
            cold_s = min(cold_s, first_query(lake, ticker, day))
            cold += server.requests() - before
    finally:
        server.stop()
    for (name, what), here, there, kinds in zip(
        (("ticks_of query, warm", "count/avg/min/max"), ("read_minutes", "1,440 minutes")),
        local,
        remote_s,
        counts,
        strict=True,
    ):
        print(
            f"  {name} ({what}, {rows_local[0]:,} ticks): local {here * 1000:.1f} ms, "
            f"object store {there * 1000:.1f} ms = {there / here:.1f}x local "
            f"(best of {READS}); S3 requests per read: {_per(kinds, 1)}"
        )
    print(
        f"  ticks_of query, cold (a new connection: DuckDB's external file cache empty): "
        f"object store {cold_s * 1000:.1f} ms (best of {READS}); S3 requests per read: "
        f"{_per(cold, READS)}"
    )


# -------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=6_000_000)
    parser.add_argument("--tickers", type=int, default=20)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dir", type=Path, help="work here (kept) instead of a temporary one")
    parser.add_argument(
        "--only", choices=("backfill", "reads"), help="run one part (default: both)"
    )
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
        if args.only != "reads":
            base = best(lambda: run(data, root / "base.duckdb", args.workers), args.repeat)
            assert base.ticks == ticks, (base.ticks, ticks)
            baseline = base.ticks_per_second
            line(f"local, {args.workers} threads (baseline)", base, baseline)
            one = best(lambda: run(data, root / "one.duckdb", 1), args.repeat)
            assert rows(root / "one.duckdb").equals(rows(root / "base.duckdb"))
            line("local, 1 thread", one, baseline)
            for workers in (1, 2):
                dask_runs(data, root, workers, args.repeat, baseline)
        if args.only != "backfill":
            day = dt.datetime.fromtimestamp(weekdays(1)[0] / 1000, dt.UTC).date()
            ticker_day_reads(data, "EQ000", day, root)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
