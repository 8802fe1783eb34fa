"""``ticklake tail``: each window's features as they are written to the database, until
interrupted (SIGINT/SIGTERM end it with status 0).

From any process, beside a running ``record`` or ``analyze``: every ``--interval`` seconds a
short read-only connection (:mod:`ticklake.reader`: open, read, close) fetches the rows
written since the last poll; none is held in between, so the job never waits for more than
one read. Rows come out as ``demo`` prints windows (``--format table``) or as one JSON
object per line (``--format json``, times ISO-8601 UTC with milliseconds). A window written
again is marked: ``late`` at the end of its line, ``"recomputed": true`` in JSON; that is a
row whose ``late`` flag is set (late ticks were recomputed into it) or whose window this
tail printed within ``OVERLAP_US`` (a backfill, say).

Invariants: rows written before the tail started are not printed (on a database that does
not exist yet, every row is new); a row is printed once per version (its ``computed_at``).
New rows are found by ``computed_at``, which the job sets before it waits for the write
lock, so a transaction may commit rows older than rows already printed: each poll reads
back ``OVERLAP_US`` (the job's lock timeout) and skips what it printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from analytics.database import (
    READER_TIMEOUT,
    WRITER_TIMEOUT,
    DatabaseLockedError,
    DatabaseMissingError,
    database_path,
)
from lake.utc import MINUTE_MS, iso_utc
from recorder.wire.render import shortest_float32
from ticklake.commands import Command, data_problem, usage_error
from ticklake.config import add_options, positive_float
from ticklake.options import DATA, DATABASE, tickers
from ticklake.reader import read_database

__all__ = ["COMMAND", "OVERLAP_US", "Tail", "follow", "render", "run", "window_lines"]

log = logging.getLogger(__name__)

NAME: Final = "tail"
TAIL_OPTIONS: Final = (DATA, DATABASE)
OVERLAP_US: Final = int(WRITER_TIMEOUT * 1_000_000)
"""How far before the newest ``computed_at`` seen each poll reads back (µs); what was
printed longer ago than that is forgotten."""

Key = tuple[str, int]  # (ticker, window_start µs)


@dataclass
class Tail:
    """What a tail has printed, and the poll that finds what it has not."""

    data: Path
    database: Path
    tickers: tuple[str, ...] | None = None
    timeout: float = READER_TIMEOUT
    cursor_us: int | None = None  # the newest computed_at seen; None: print every row
    printed: dict[Key, set[int]] = field(default_factory=dict)  # computed_at µs printed

    def start(self) -> None:
        """Start after the rows already written (none when there is no database yet): the
        newest ``computed_at``, and the rows a poll would read back, taken as printed."""
        try:
            table = read_database(
                self.data,
                "SELECT epoch_us(max(computed_at)) AS newest FROM features",
                database=self.database,
                timeout=self.timeout,
            )
        except DatabaseMissingError:
            return
        newest = None if table is None else table["newest"][0].as_py()
        if newest is not None:
            self.cursor_us = int(newest)
            self.poll()

    def poll(self) -> tuple[pa.Table, list[bool]]:
        """The rows written since the last poll, by ``computed_at``, and for each whether it
        is a recomputation (see the module docstring). DatabaseMissingError while the
        database does not exist; DatabaseLockedError when the writer held it too long."""
        where: list[str] = ["true"]
        params: list[object] = []
        if self.cursor_us is not None:
            where.append("computed_at >= make_timestamptz(?)")
            params.append(self.cursor_us - OVERLAP_US)
        if self.tickers is not None:
            where.append("list_contains(?, ticker)")
            params.append(list(self.tickers))
        query = (
            f"SELECT * FROM features WHERE {' AND '.join(where)} "
            "ORDER BY computed_at, window_start, ticker"
        )
        table = read_database(
            self.data, query, params, database=self.database, timeout=self.timeout
        )
        return self._new(table if table is not None else pa.table({}))

    def _new(self, table: pa.Table) -> tuple[pa.Table, list[bool]]:
        if table.num_rows == 0:
            return table, []
        starts = _micros(table["window_start"])
        computed = _micros(table["computed_at"])
        tickers, lates = table["ticker"].to_pylist(), table["late"].to_pylist()
        keep, again = [], []
        for i, key in enumerate(zip(tickers, starts, strict=True)):
            versions = self.printed.setdefault(key, set())
            if computed[i] in versions:
                continue
            keep.append(i)
            again.append(bool(lates[i]) or bool(versions))
            versions.add(computed[i])
        newest = max(computed)
        self.cursor_us = newest if self.cursor_us is None else max(self.cursor_us, newest)
        self._forget()
        return table.take(pa.array(keep, pa.int64())), again

    def _forget(self) -> None:
        assert self.cursor_us is not None
        horizon = self.cursor_us - OVERLAP_US
        for key in [k for k, v in self.printed.items() if max(v) < horizon]:
            del self.printed[key]


PRICES: Final = ("open", "high", "low", "close")
HH_MM: Final = slice(11, 16)
"""Where ``HH:MM`` sits in :func:`lake.utc.iso_utc`'s ``minutes`` form."""


def window_lines(features: pa.Table) -> list[str]:
    """One aligned line per window, prices shown as the decimals Yahoo meant."""
    lines = []
    for row in features.to_pylist():
        start = int(row["window_start"].timestamp() * 1000)
        begins, ends = iso_utc(start, "minutes"), iso_utc(start + MINUTE_MS, "minutes")
        volume = "-" if row["volume"] is None else f"{row['volume']:,}"
        vwap = "-" if row["vwap"] is None else f"{row['vwap']:.4f}"
        prices = "".join(f"{k} {shortest_float32(row[k])!s:<10} " for k in PRICES)
        lines.append(
            f"{begins[HH_MM]}-{ends[HH_MM]} UTC  {row['ticker']:<9} {prices}"
            f"volume {volume:>12}  vwap {vwap:>12}  ticks {row['tick_count']}"
        )
    return lines


def render(table: pa.Table, again: list[bool], fmt: str) -> list[str]:
    """The lines of ``table``'s rows: demo's window lines (``table``) or JSON objects."""
    if fmt == "json":
        return [
            json.dumps({**row, "recomputed": flag})
            for row, flag in zip(_json_rows(table), again, strict=True)
        ]
    return [
        line + ("  late" if flag else "")
        for line, flag in zip(window_lines(table), again, strict=True)
    ]


def follow(
    tail: Tail,
    fmt: str,
    interval: float,
    stop: threading.Event,
    write: Callable[[str], None],
) -> None:
    """Poll and write until ``stop`` is set; a missing or busy database is waited for."""
    waiting = False
    while not stop.is_set():
        try:
            table, again = tail.poll()
        except DatabaseMissingError:
            if not waiting:
                log.info("event=tail_waiting database=%s", tail.database)
            waiting = True
        except DatabaseLockedError as exc:
            log.warning("event=tail_locked error=%s", exc)
        else:
            waiting = False
            for line in render(table, again, fmt):
                write(line)
        stop.wait(interval)


def add_arguments(parser: argparse.ArgumentParser, file_values: Mapping[str, Any]) -> None:
    add_options(parser, TAIL_OPTIONS, file_values)
    parser.add_argument(
        "--tickers", type=tickers, metavar="SYMBOLS", help="only these (default: every ticker)"
    )
    parser.add_argument(
        "--format", choices=("table", "json"), default="table", help="output (default: table)"
    )
    parser.add_argument(
        "--interval",
        type=positive_float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between polls (default: 1)",
    )


def run(ns: argparse.Namespace) -> int:
    """Print new rows until SIGINT/SIGTERM (0); 2 without a data directory."""
    problem = data_problem(ns.data)
    if problem is not None:
        return usage_error(NAME, problem)
    tail = Tail(ns.data, ns.database or database_path(ns.data), ns.tickers)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    tail.start()
    follow(tail, ns.format, ns.interval, stop, lambda line: print(line, flush=True))
    return 0


def _micros(column: pa.ChunkedArray) -> list[int]:
    return list(pc.cast(column, pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist())


def _json_rows(table: pa.Table) -> list[dict[str, Any]]:
    """The rows as dicts, timestamps as ISO-8601 UTC text with milliseconds."""
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type):
            text = [None if us is None else iso_utc(us // 1000) for us in _micros(table[i])]
            table = table.set_column(i, f.name, pa.array(text, pa.string()))
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


COMMAND: Final = Command(
    name=NAME,
    help="print each window's features as they are written (late recomputations marked)",
    description="Poll the features database read-only (a short connection each time, so "
    "the job is never kept waiting) and print every row written since the tail started, "
    "until interrupted.",
    add_arguments=add_arguments,
    run=run,
    settings=TAIL_OPTIONS,
)
