"""Synthetic ticks written to a real lake, a seal and a session log, for analytics tests."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from lake.minutes import write_minutes
from lake.schema import LAKE_SCHEMA
from lake.seal import LateWindow, SealState, save_seal

MIN = 60_000
# 2024-04-16 14:00 UTC (10:00 New York, EDT): inside one equity session until 08:00 UTC
# the next day, so equity volumes chain across every minute of a test.
T0 = int(dt.datetime(2024, 4, 16, 14, 0, tzinfo=dt.UTC).timestamp()) * 1000


class Feed:
    """Generates ticks with increasing seqs and cumulative day volumes per ticker."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = np.random.default_rng(seed)
        self.seq = 1
        self.volume: dict[str, int] = {}
        self.price: dict[str, float] = {}

    def ticks(
        self,
        ticker: str,
        start_ms: int,
        minutes: int,
        per_minute: int = 8,
        *,
        delay_s: float = 0.5,
        volume: bool = True,
        ties: bool = True,
    ) -> pa.Table:
        """``per_minute`` ticks (on average) per minute over ``minutes`` minutes, received
        ``delay_s`` after their time, whole seconds with ties when ``ties``."""
        rng = self.rng
        n = max(1, int(rng.poisson(per_minute * minutes)))
        span_s = minutes * 60
        seconds = np.sort(rng.integers(0, span_s, n))
        times = start_ms + seconds * 1000
        if not ties:
            times = start_ms + np.sort(rng.choice(span_s * 1000, n, replace=False))
        price = self.price.get(ticker, 100.0 + rng.random() * 50)
        steps = rng.normal(0, 0.05, n)
        prices = np.round(price + np.cumsum(steps), 2).astype(np.float32)
        self.price[ticker] = float(prices[-1])
        data: dict[str, pa.Array] = {f.name: pa.nulls(n, f.type) for f in LAKE_SCHEMA}
        data["id"] = pa.array([ticker] * n, pa.string())
        data["time"] = pa.array(times, pa.int64()).cast(LAKE_SCHEMA.field("time").type)
        data["price"] = pa.array(prices, pa.float32())
        data["market_hours"] = pa.array(["REGULAR_MARKET"] * n, pa.string())
        if volume:
            base = self.volume.get(ticker, int(rng.integers(1_000, 100_000)))
            cumulative = base + np.cumsum(rng.integers(0, 500, n))
            self.volume[ticker] = int(cumulative[-1])
            data["day_volume"] = pa.array(cumulative, pa.int64())
        received = times * 1000 + int(delay_s * 1e6)
        data["received_at"] = pa.array(received, pa.int64()).cast(
            LAKE_SCHEMA.field("received_at").type
        )
        data["seq"] = pa.array(np.arange(self.seq, self.seq + n), pa.int64())
        self.seq += n
        return pa.table(data, schema=LAKE_SCHEMA)


def write_lake(data: Path, tables: Sequence[pa.Table]) -> int:
    """Write the ticks into the lake under ``data``; returns how many rows were written."""
    table = pa.concat_tables(tables)
    result = write_minutes(data, table)
    assert result.rejected_rows == 0
    return int(table.num_rows)


def seal(data: Path, watermark_ms: int, late: Sequence[tuple[str, int]] = (), first_id: int = 1):
    """Publish a seal at ``watermark_ms`` with late entries (ticker, window_start)."""
    entries = [
        LateWindow(first_id + i, ticker, start, watermark_ms)
        for i, (ticker, start) in enumerate(late)
    ]
    state = SealState(watermark_ms=watermark_ms, applied_seq=0, next_late_id=first_id + len(late))
    state.late = entries
    save_seal(data, state)
    return state


def sessions(data: Path, records: Sequence[tuple[int, Sequence[str], float, float | None]]) -> None:
    """Write a session log: (session number, symbols, start s, end s or None)."""
    path = data / "state" / "sessions.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for number, symbols, start, end in records:
        record = {
            "connection": 1,
            "session": number,
            "url": "ws://127.0.0.1/",
            "symbols": list(symbols),
            "start": start,
            "end": end,
            "reason": None if end is None else "dropped: test",
        }
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")


def all_sessions(data: Path, symbols: Sequence[str], start_ms: int) -> None:
    """One open session carrying ``symbols`` since ``start_ms`` (no gaps afterwards)."""
    sessions(data, [(1, symbols, start_ms / 1000 - 3600, None)])


def lake_ticks(data: Path) -> pa.Table:
    """Every tick in the lake (for references), via exact paths."""
    from lake.layout import ticker_dir
    from lake.minutes import list_minutes, list_tickers, read_minutes

    parts = []
    for ticker in list_tickers(data):
        for date_dir in sorted(ticker_dir(data, ticker).glob("date=*")):
            day = dt.date.fromisoformat(date_dir.name.removeprefix("date="))
            parts.append(read_minutes(data, ticker, list_minutes(data, ticker, day)))
    return pa.concat_tables(parts)


def reference_features(data: Path, below_ms: int) -> pa.Table:
    """compute_features over *all* stored ticks at once (what a backfill over everything
    computes), keeping windows that start before ``below_ms``."""
    import pyarrow.compute as pc

    from analytics.features import compute_features

    table = compute_features(lake_ticks(data))
    start = table["window_start"].cast(pa.int64())
    return table.filter(pc.less(start, below_ms))


FEATURE_COLUMNS = [
    "ticker", "window_start", "window_end", "open", "high", "low", "close", "volume", "vwap",
    "tick_count", "first_time", "last_time", "mean_price", "std_price", "log_return",
    "realized_variance", "last_day_volume", "market_hours",
]  # fmt: skip


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
    import duckdb

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


def hold_database(path: Path, seconds: float, *, read_only: bool = True):
    """A separate process holding ``path`` open for ``seconds``; returns once it holds it."""
    import subprocess
    import sys

    mode = "ro" if read_only else "rw"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), mode, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc
