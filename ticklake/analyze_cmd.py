"""``ticklake analyze`` and ``ticklake sql``: options, wiring, output formats.

``analyze`` runs the per-minute analytics job alone (for a recorder in another process):
until SIGINT/SIGTERM, or once with ``--once`` (for cron and tests; exit status 0 when
everything sealed is materialized, 1 when work was left for the next run, 2 on an error).

``sql`` runs one query (or the statements of ``--file``; the last one's result is shown)
on a read-only connection, retrying while the job writes (it holds the database for
milliseconds a minute), closes it before printing, and prints an aligned table, CSV, JSON
lines or Parquet. Exit status 1 for an SQL error, 2 when the database cannot be opened.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import json
import logging
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Final

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from analytics.database import (
    READER_TIMEOUT,
    WRITER_TIMEOUT,
    DatabaseError,
    database_path,
    open_db,
)
from analytics.job import AnalyticsJob, JobConfig
from analytics.scheduler import start_scheduler
from lake.clock import SystemClock
from lake.minutes import LakeError
from ticklake.config import Option, add_options, positive_float, positive_int
from ticklake.record_cmd import DATA, RECORD_OPTIONS, run_until_signal

__all__ = [
    "ANALYTICS_OPTIONS",
    "ANALYZE_OPTIONS",
    "SQL_OPTIONS",
    "add_analyze_arguments",
    "add_sql_arguments",
    "analyze",
    "format_table",
    "job_config",
    "sql",
]

log = logging.getLogger(__name__)

_SHARED = {option.name: option for option in RECORD_OPTIONS}
DATABASE = Option("database", Path, None, "DuckDB file (default: DATA/ticklake.duckdb)", "FILE")
LOCK_TIMEOUT = Option(
    "lock_timeout",
    positive_float,
    WRITER_TIMEOUT,
    "seconds the job waits for SQL readers to release the database before leaving the "
    "work to its next run",
)
CHUNK_MINUTES = Option(
    "chunk_minutes", positive_int, 60, "minutes of windows per transaction when catching up"
)
ANALYTICS_OPTIONS: Final = (DATABASE, LOCK_TIMEOUT, CHUNK_MINUTES)
"""The job's own settings: for ``analyze``, and for ``record``, which runs the job too."""
ANALYZE_OPTIONS: Final = (
    DATA,
    _SHARED["lateness"],
    _SHARED["recompute_horizon"],
    *ANALYTICS_OPTIONS,
)
SQL_OPTIONS: Final = (DATA, DATABASE)
FORMATS: Final = ("table", "csv", "json", "parquet")


def job_config(ns: argparse.Namespace) -> JobConfig:
    """The job's settings from ``analyze``'s (or ``record``'s) parsed options."""
    return JobConfig(
        lateness=ns.lateness,
        recompute_horizon=ns.recompute_horizon,
        chunk_minutes=getattr(ns, "chunk_minutes", CHUNK_MINUTES.default),
        lock_timeout=getattr(ns, "lock_timeout", LOCK_TIMEOUT.default),
        database=getattr(ns, "database", None),
    )


def add_analyze_arguments(parser: argparse.ArgumentParser, file_values: Mapping[str, Any]) -> None:
    add_options(parser, ANALYZE_OPTIONS, file_values)
    parser.add_argument(
        "--once",
        action="store_true",
        help="run the job once and exit (0: all sealed windows done, 1: work left)",
    )


def add_sql_arguments(parser: argparse.ArgumentParser, file_values: Mapping[str, Any]) -> None:
    add_options(parser, SQL_OPTIONS, file_values)
    parser.add_argument(
        "query", nargs="?", help='SQL to run (read-only), e.g. "FROM bars_5m LIMIT 5"'
    )
    parser.add_argument(
        "--file", type=Path, metavar="FILE", help="run the SQL in FILE (e.g. sql/examples/...)"
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="table", help="output format (default: table)"
    )
    parser.add_argument("--output", type=Path, metavar="FILE", help="write here instead of stdout")
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=READER_TIMEOUT,
        help=f"seconds to wait while the writer holds the database (default: {READER_TIMEOUT:g})",
    )


def analyze(ns: argparse.Namespace) -> int:
    config = job_config(ns)
    data: Path = ns.data
    if not data.is_dir():
        print(f"ticklake analyze: no data directory {data}", file=sys.stderr)
        return 2
    clock = SystemClock()
    if ns.once:
        try:
            result = AnalyticsJob(data, config, clock).run_once()
        except (DatabaseError, LakeError, OSError, ValueError) as exc:
            print(f"ticklake analyze: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 2
        watermark = result.done_watermark_ms
        print(
            f"analyzed {result.windows} windows, wrote {result.rows} rows "
            f"({result.late_windows} late); done up to {_utc(watermark)}; {result.reason}"
        )
        return 0 if result.done else 1

    stopped: list[asyncio.Event] = []

    async def main() -> None:
        stopped.append(asyncio.Event())
        scheduler = start_scheduler(data, config, clock)
        try:
            await stopped[0].wait()
        finally:
            await scheduler.stop()

    run_until_signal(main, lambda: stopped[0].set() if stopped else None)
    return 0


def sql(ns: argparse.Namespace) -> int:
    if ns.format == "parquet" and ns.output is None:
        print("ticklake sql: --format parquet needs --output FILE", file=sys.stderr)
        return 2
    if (ns.query is None) == (ns.file is None):
        print("ticklake sql: give a query or --file FILE (one of them)", file=sys.stderr)
        return 2
    try:
        query = ns.query if ns.file is None else ns.file.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"ticklake sql: cannot read {ns.file}: {exc.strerror}", file=sys.stderr)
        return 2
    path = ns.database or database_path(ns.data)
    try:
        con = open_db(path, read_only=True, timeout=ns.timeout, lake=ns.data)
    except DatabaseError as exc:
        print(f"ticklake sql: {exc}", file=sys.stderr)
        return 2
    try:
        relation = con.sql(query)
        table = None if relation is None else relation.to_arrow_table()
    except duckdb.Error as exc:
        print(f"ticklake sql: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    finally:
        con.close()  # before printing: the writer may be waiting
    if table is None:
        return 0
    try:
        write_result(table, ns.format, ns.output)
    except OSError as exc:
        print(f"ticklake sql: cannot write {ns.output}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


def write_result(table: pa.Table, form: str, output: Path | None) -> None:
    """Write ``table`` in ``form`` to ``output`` (stdout if None; parquet needs a file)."""
    if form == "parquet":
        assert output is not None
        pq.write_table(table, output, compression="zstd")
        return
    if form == "csv":
        buffer = io.BytesIO()
        pacsv.write_csv(table, buffer)
        _emit(buffer.getvalue(), output)
    elif form == "json":
        lines = (json.dumps(row, default=str) + "\n" for row in _json_rows(table))
        _emit("".join(lines).encode(), output)
    else:
        rows = "row" if table.num_rows == 1 else "rows"
        _emit(f"{format_table(table)}\n({table.num_rows} {rows})\n".encode(), output)


def _emit(data: bytes, output: Path | None) -> None:
    if output is None:
        stream: IO[bytes] = sys.stdout.buffer
        stream.write(data)
        stream.flush()
    else:
        output.write_bytes(data)


def format_table(table: pa.Table) -> str:
    """An aligned text table: a header, a rule, one line per row; numbers right-aligned,
    NULL shown as ``NULL``, float32 prices with the decimals that were sent."""
    names = table.column_names
    columns = [_cells(table.column(i)) for i in range(table.num_columns)]
    numeric = [_is_numeric(f.type) for f in table.schema]
    widths = [max([len(n), *map(len, c)]) for n, c in zip(names, columns, strict=True)]

    def line(cells: list[str]) -> str:
        parts = [
            cell.rjust(w) if right else cell.ljust(w)
            for cell, w, right in zip(cells, widths, numeric, strict=True)
        ]
        return " | ".join(parts).rstrip()

    out = [line(names), "-+-".join("-" * w for w in widths)]
    out.extend(line([c[i] for c in columns]) for i in range(table.num_rows))
    return "\n".join(out)


def _is_numeric(kind: pa.DataType) -> bool:
    return any(
        test(kind) for test in (pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal)
    )


def _cells(column: pa.ChunkedArray) -> list[str]:
    values = column.to_pylist()
    if pa.types.is_float32(column.type):
        return ["NULL" if v is None else str(np.float32(v)) for v in values]
    if pa.types.is_boolean(column.type):
        return ["NULL" if v is None else str(v).lower() for v in values]
    return ["NULL" if v is None else str(v) for v in values]


def _json_rows(table: pa.Table) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = table.to_pylist()
    floats32 = [f.name for f in table.schema if pa.types.is_float32(f.type)]
    floats = [f.name for f in table.schema if pa.types.is_floating(f.type)]
    for row in rows:
        for name in floats32:
            if row[name] is not None:
                row[name] = float(str(np.float32(row[name])))
        for name in floats:
            value = row[name]
            if value is not None and not math.isfinite(value):
                row[name] = None  # JSON has no NaN or infinity
    return rows


def _utc(epoch_ms: int | None) -> str:
    if epoch_ms is None:
        return "nothing yet"
    moment = dt.datetime.fromtimestamp(epoch_ms / 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")
