"""Features for comparison: computed over a whole lake, as plain columns, read from the
database, and a separate process holding the database open."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from analytics.features import compute_features
from tests.kit.lake import lake_ticks

FEATURE_COLUMNS = [
    "ticker", "window_start", "window_end", "open", "high", "low", "close", "volume", "vwap",
    "tick_count", "first_time", "last_time", "mean_price", "std_price", "log_return",
    "realized_variance", "last_day_volume", "market_hours",
]  # fmt: skip


def lake_features(data: Path, below_ms: int) -> pa.Table:
    """compute_features over *all* stored ticks at once (what a backfill over everything
    computes), keeping windows that start before ``below_ms``."""
    table = compute_features(lake_ticks(data))
    start = table["window_start"].cast(pa.int64())
    return table.filter(pc.less(start, below_ms))


def columns_of(table: pa.Table, names: Sequence[str] = FEATURE_COLUMNS) -> dict[str, list[Any]]:
    """Column values as Python lists, timestamps as epoch ms, rows by (ticker, start)."""
    table = table.sort_by([("ticker", "ascending"), ("window_start", "ascending")])
    out = {}
    for name in names:
        column = table[name]
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())
        out[name] = column.to_pylist()
    return out


def db_features(path: Path) -> pa.Table:
    """The features table of the database at ``path``, read-only."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.sql("SELECT * FROM features ORDER BY ticker, window_start").to_arrow_table()
    finally:
        con.close()


HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
print("ready", flush=True)
time.sleep(float(sys.argv[3]))
con.close()
"""


def hold_database(path: Path, seconds: float, *, read_only: bool = True) -> subprocess.Popen[str]:
    """A separate process holding ``path`` open for ``seconds``; returns once it holds it."""
    mode = "ro" if read_only else "rw"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), mode, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc
