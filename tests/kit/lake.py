"""A data directory for tests: ticks written into the lake, a seal and a session log
published, and what a data directory holds read back."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lake.compact import compact_eligible
from lake.datadir import QUARANTINE_FILE, TICKS_DIR, seal_file, sessions_file
from lake.dedupe import merge_ticks
from lake.deltas import designated_to_files, latest_fold, list_deltas, read_delta
from lake.layout import PART_NAME, duckdb_read_sql, minute_placeholder, ticker_dir
from lake.minutes import list_minutes, list_tickers, read_minutes, write_minutes
from lake.schema import LAKE_SCHEMA, LEGACY_COLUMNS, LEGACY_SOURCES, NAMED_COLUMNS
from lake.seal import LateWindow, SealState, save_seal
from tests.kit.ticks import sessions_of
from tests.kit.times import DAY3, LATER

ODD_SYMBOLS = [
    "^GSPC", "EURUSD=X", "ES=F", "BRK-B", "BTC-USD", "RDS.A", "M&M.NS", "1234", "007", "A==B",
]  # fmt: skip
"""Yahoo symbols a folder name must escape or that look like something else."""

# --- writing ------------------------------------------------------------------------------------


def write_lake(data: Path, tables: Sequence[pa.Table]) -> int:
    """Write the ticks into the lake under ``data``; returns how many rows were written."""
    table = pa.concat_tables(tables)
    result = write_minutes(data, table)
    assert result.rejected_rows == 0
    return int(table.num_rows)


def write_days(
    root: Path, tickers: list[str], days: int, minutes: int = 20, per: int = 6
) -> pa.Table:
    """Equity sessions (:func:`tests.kit.ticks.sessions_of`) into the minute tier; returns
    every row written."""
    table = sessions_of(tickers, days, minutes, per)
    write_minutes(root, table)
    return table


def three_days(root: Path) -> int:
    """AAPL and MSFT on ``DAY1``-``DAY3``, 4 minutes each, the first two days compacted (their
    minute files deleted); returns how many rows were written."""
    written = write_days(root, ["AAPL", "MSFT"], days=3, minutes=4)
    compact_eligible(root, LATER, before=DAY3, grace=0)
    return int(written.num_rows)


def seal(
    data: Path, watermark_ms: int, late: Sequence[tuple[str, int]] = (), first_id: int = 1
) -> SealState:
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
    path = sessions_file(data)
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


def to_legacy(root: Path) -> int:
    """Rewrite every Parquet file under ``root`` (placeholders, minute, day and delta files)
    as versions before issue 16 wrote them: fields 35-45 as int64 ``field_35`` ...
    ``field_45`` after ``components``, 36 and 41 holding ``cmc_rank`` and
    ``latest_funding_date``, the others NULL. Returns how many files it rewrote."""
    sources = {column: name for name, column in LEGACY_SOURCES.items()}
    paths = sorted(root.rglob("*.parquet"))
    for path in paths:
        table = pq.ParquetFile(path).read()
        columns: dict[str, pa.Array | pa.ChunkedArray] = {}
        for name in LAKE_SCHEMA.names:
            if name not in NAMED_COLUMNS:
                columns[name] = table[name]
            if name == "components":
                for column in LEGACY_COLUMNS:
                    source = sources.get(column)
                    nulls = pa.nulls(table.num_rows, pa.int64())
                    columns[column] = table[source] if source else nulls
        pq.write_table(pa.table(columns), path)
    return len(paths)


# --- reading ------------------------------------------------------------------------------------


def count(root: Path, where: str = "true") -> tuple[int, int]:
    """(rows, distinct seqs) of both tiers through ``duckdb_read_sql``."""
    sql = f"SELECT count(*), count(DISTINCT seq) FROM {duckdb_read_sql(root)} WHERE {where}"
    with duckdb.connect() as con:
        rows, seqs = con.execute(sql).fetchall()[0]
    return int(rows), int(seqs)


def lake_ticks(data: Path) -> pa.Table:
    """Every tick in the minute tier, via exact paths (not the SQL under test)."""
    parts = []
    for ticker in list_tickers(data):
        for date_dir in sorted(ticker_dir(data, ticker).glob("date=*")):
            day = dt.date.fromisoformat(date_dir.name.removeprefix("date="))
            parts.append(read_minutes(data, ticker, list_minutes(data, ticker, day)))
    return pa.concat_tables(parts)


def lake_files(data: Path) -> dict[str, Path]:
    """Every minute file, keyed by its path relative to ``data`` (not the tier's zero-row
    placeholder)."""
    files = {}
    for folder, _dirs, names in os.walk(data / TICKS_DIR):
        if PART_NAME in names and Path(folder, PART_NAME) != minute_placeholder(data):
            path = Path(folder, PART_NAME)
            files[str(path.relative_to(data))] = path
    return files


def lake_table(data: Path) -> pa.Table:
    """Every tick a reader sees, in LAKE_SCHEMA, sorted by seq: the minute files' rows and the
    deltas' rows, each kept where the newest fold marker designates it (read file by file
    with PyArrow, not through the SQL under test; no partition columns)."""
    parts = [pq.read_table(path) for path in lake_files(data).values()]
    table = pa.concat_tables(parts) if parts else LAKE_SCHEMA.empty_table()
    assert table.schema.equals(LAKE_SCHEMA)
    fold = latest_fold(data)
    if fold is not None:
        table = table.filter(pa.array(designated_to_files(fold, *_seqs_times(table))))
        edge = [read_delta(d) for d in list_deltas(data)]
        if edge:
            rows, _ = merge_ticks(LAKE_SCHEMA.empty_table(), pa.concat_tables(edge))
            rows = rows.filter(pa.array(~designated_to_files(fold, *_seqs_times(rows))))
            table = pa.concat_tables([table, rows])
    return table.sort_by("seq")


def _seqs_times(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    seqs = np.asarray(table["seq"].to_numpy(), dtype=np.int64)
    return seqs, np.asarray(table["time"].cast(pa.int64()).to_numpy(), dtype=np.int64)


def tree(root: Path) -> set[str]:
    """Every path under ``root`` (files and folders), relative to it."""
    found = set()
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            found.add(str(Path(folder, name).relative_to(root)))
    return found


def read_seal(data: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(seal_file(data).read_text())
    return result


def read_quarantine(data: Path) -> list[dict[str, Any]]:
    """The quarantine's entries, oldest first ([] when there is no file)."""
    path = data / QUARANTINE_FILE
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]
