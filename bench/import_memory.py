"""Peak memory of ``ticklake import`` into history day files, against the day's size.

Run: ``.venv/bin/python -m bench.import_memory [--rows 1000000 2000000] [--dir DIR]``.

For each size, one ticker-day of a past date (``history_before`` after it, as ``ticklake
import`` sets it) is generated as Parquet: 08:00-24:00 UTC, a price walk, volume, changes,
a few text columns, 1 % exact duplicates and blocks shuffled out of order. Each import runs
in a process of its own, which reports its peak RSS (``VmHWM``; ``ru_maxrss`` would count
the bench's own pages through fork), into (a) a fresh lake and (b) a lake that already
holds that day (the same size again, other ticks, 10 % of them copies of held ones); then
(c) many ticker-days at once (``--tickers`` x 5 days, the same total rows, rows in random
order). Baseline: the same import through the whole-table merge (``stream_days=False``)
in the same run; the ratio is streamed / baseline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lake.importer import ImportOptions, import_files

DAY = dt.date(2024, 1, 2)
START_MS = int(dt.datetime(2024, 1, 2, 8, tzinfo=dt.UTC).timestamp() * 1000)
SPAN_MS = 16 * 3_600_000
DAY_MS = 86_400_000
NOW_US = 1_800_000_000_000_000


def ticks(rows: int, seed: int, tickers: int = 1, days: int = 1) -> pa.Table:
    """``rows`` synthetic ticks (1 % duplicated), in shuffled blocks (all shuffled if many
    tickers)."""
    rng = np.random.default_rng(seed)
    unique = rows - rows // 100
    day = rng.integers(0, days, unique) * 86_400_000
    times = np.sort(START_MS + rng.integers(0, SPAN_MS, unique)) + day
    price = 100 + np.cumsum(rng.normal(0, 0.01, unique))
    names = np.array([f"T{i:03d}" for i in range(tickers)])
    table = pa.table(
        {
            "ticker": names[rng.integers(0, tickers, unique)] if tickers > 1 else ["AAPL"] * unique,
            "time": pa.array(times).cast(pa.timestamp("ms", "UTC")),
            "price": price,
            "day_volume": np.cumsum(rng.integers(0, 500, unique)),
            "change": price - 100,
            "change_percent": (price - 100) / 100,
            "market_hours": np.where(
                times % 86_400_000 < 52_200_000, "PRE_MARKET", "REGULAR_MARKET"
            ),
            "exchange": ["NMS"] * unique,
            "currency": ["USD"] * unique,
            "short_name": ["Apple Inc."] * unique,
        }
    )
    table = pa.concat_tables([table, table.take(rng.integers(0, unique, rows - unique))])
    if tickers > 1:
        return table.take(rng.permutation(rows))
    blocks = np.array_split(np.arange(rows), 64)  # out of order: blocks shuffled
    return table.take(np.concatenate([blocks[i] for i in rng.permutation(len(blocks))]))


def child(data: Path, source: Path, stream: bool) -> None:
    """One import (this process's own), then its figures as one JSON line."""
    started = time.perf_counter()
    options = ImportOptions(history_before=DAY + dt.timedelta(days=30), stream_days=stream)
    stats = import_files(data, [source], NOW_US, options)
    status = Path("/proc/self/status").read_text()
    hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    figures = {"rss_mb": hwm / 1024, "seconds": time.perf_counter() - started}
    figures |= {"added": stats.ticks_added, "duplicates": stats.duplicates}
    print(json.dumps(figures))


def measure(data: Path, source: Path, stream: bool) -> dict[str, float]:
    command = [sys.executable, "-m", "bench.import_memory", "--child", str(data), str(source)]
    out = subprocess.run([*command, "--stream" if stream else "--whole"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    figures: dict[str, float] = json.loads(out.splitlines()[-1])
    return figures


def compare(label: str, base: Path, source: Path, work: Path) -> None:
    results = {}
    for stream in (False, True):
        data = work / f"lake-{'stream' if stream else 'whole'}"
        shutil.rmtree(data, ignore_errors=True)
        if base.exists():
            shutil.copytree(base, data)
        results[stream] = measure(data, source, stream)
    whole, streamed = results[False], results[True]
    assert (whole["added"], whole["duplicates"]) == (streamed["added"], streamed["duplicates"])
    print(
        f"  {label:<34} whole-table {whole['rss_mb']:7.0f} MB {whole['seconds']:6.1f} s | "
        f"streamed {streamed['rss_mb']:5.0f} MB {streamed['seconds']:6.1f} s | "
        f"ratio {streamed['rss_mb'] / whole['rss_mb']:.2f} (added {streamed['added']:,.0f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 2_000_000])
    parser.add_argument("--tickers", type=int, default=50)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--stream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.child:
        child(ns.child[0], ns.child[1], ns.stream)
        return
    work = Path(tempfile.mkdtemp(prefix="import-memory-", dir=ns.dir))
    try:
        print("import peak RSS (VmHWM of the importing process), whole-table vs streamed:")
        for rows in ns.rows:
            first, second = work / f"first-{rows}.parquet", work / f"second-{rows}.parquet"
            pq.write_table(ticks(rows, seed=1), first)
            again = ticks(rows, seed=2)
            held = pq.read_table(first).slice(0, rows // 10)
            pq.write_table(pa.concat_tables([again.slice(rows // 10), held]), second)
            empty = work / "empty"
            compare(f"{rows:,} rows, fresh lake", empty, first, work)
            base = work / f"base-{rows}"
            child_lake = work / "lake-stream"  # the streamed import just made it
            shutil.rmtree(base, ignore_errors=True)
            shutil.copytree(child_lake, base)
            compare(f"{rows:,} rows into a held day", base, second, work)
            shutil.rmtree(base)
        rows = max(ns.rows)
        many = work / "many.parquet"
        pq.write_table(ticks(rows, seed=3, tickers=ns.tickers, days=5), many)
        compare(f"{rows:,} rows, {ns.tickers}x5 ticker-days", work / "empty", many, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
