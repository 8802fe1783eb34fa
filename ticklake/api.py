"""The Python API: a data directory read from a notebook or a script.

    import ticklake
    lake = ticklake.open("data")
    lake.features(tickers=["AAPL"], start="2024-04-15", end="2024-04-16")   # pyarrow.Table
    lake.ticks("AAPL", start="2024-04-15T13:30Z", end="2024-04-15T14:00Z")
    lake.bars("5m", tickers=["AAPL"], start="2024-04-15")
    lake.sql("SELECT ticker, count(*) FROM features GROUP BY ticker")
    lake.status()                                  # a dict: what ticklake status prints

Invariants:

- nothing is held between calls: each opens what it reads, copies the result out and closes
  it before returning (:mod:`ticklake.reader`), so an idle notebook never keeps the
  features job (DuckDB's one writer, which no reader may overlap) waiting. A call that
  finds the job writing waits for it, up to ``timeout`` seconds, as ``ticklake sql`` does;
  ``ticks`` does not open the database at all;
- read-only and confined like ``ticklake sql`` (:mod:`ticklake.sql_sandbox`): a query reads
  the database and files under the data directory, writes nothing, loads no extension;
- times in: ``datetime`` (naive = UTC), ``date``, ISO-8601 text, ``pandas.Timestamp``
  (:mod:`ticklake.times`); every range is ``[start, end)``, either end open when None;
  times out: timestamp columns in UTC;
- tickers are checked as the recorder checks them (``lake.symbols``) before any SQL is built.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import duckdb
import pyarrow as pa

from analytics.database import READER_TIMEOUT, database_path
from lake.clock import SystemClock
from lake.layout import duckdb_read_sql, duckdb_ticker_sql
from lake.remote import RemoteError, bind_remote
from lake.retention import RetentionConfig
from lake.symbols import validate_symbol
from lake.utc import DAY_MS, MINUTE_MS
from ticklake.reader import Setup, read_database, read_lake
from ticklake.status_cmd import add_arguments as status_arguments
from ticklake.status_cmd import maintenance_json, status_tiers, tier_json
from ticklake.times import Instant, time_range

__all__ = ["Lake", "Tickers", "bar_width_ms", "open", "to_pandas", "to_polars"]

Tickers = str | Sequence[str] | None
"""One symbol, several, or None for every ticker."""

_WIDTH: Final = re.compile(r"(?P<n>[1-9][0-9]*)(?P<unit>m|h|d)")
_UNIT_MS: Final = {"m": MINUTE_MS, "h": 60 * MINUTE_MS, "d": DAY_MS}


def open(
    data: str | os.PathLike[str] = "data",
    *,
    database: str | os.PathLike[str] | None = None,
    timeout: float = READER_TIMEOUT,
    lake_url: str | None = None,
) -> Lake:
    """The data directory ``data`` (what ``--data`` names), read through :class:`Lake`.

    Nothing is opened yet; ``database`` is the features database when it is not
    ``DATA/ticklake.duckdb``; ``timeout`` is how long a call waits while the features job
    writes (seconds). ``lake_url``: the object store of compacted days (``s3://bucket/
    prefix``); ``data`` is then bound to it (``state/lake_url.json``, created with ``data``
    if missing: a machine without a recorder reads the object store alone). A data
    directory whose maintenance offloads days is bound already. FileNotFoundError when
    ``data`` is not a directory; ValueError (one line) for a URL that cannot be read."""
    root = Path(data)
    if lake_url is not None:
        try:
            root.mkdir(parents=True, exist_ok=True)
            bind_remote(root, lake_url, create=False)
        except RemoteError as exc:
            raise ValueError(str(exc)) from exc
    if not root.is_dir():
        raise FileNotFoundError(f"no data directory {root}")
    db = database_path(root) if database is None else Path(database)
    return Lake(root, db, float(timeout))


@dataclass(frozen=True)
class Lake:
    """A data directory, read-only. Every method opens, reads, copies out and closes."""

    data: Path
    database: Path
    timeout: float = READER_TIMEOUT

    def features(
        self, tickers: Tickers = None, start: Instant | None = None, end: Instant | None = None
    ) -> pa.Table:
        """The rows of ``features`` (one per ticker and one-minute window; README, Features
        and SQL) whose ``window_start`` is in ``[start, end)``, by ticker and window."""
        where, params = _filters(tickers, *time_range(start, end), column="window_start")
        query = f"SELECT * FROM features{where} ORDER BY ticker, window_start"
        return self._database(query, params)

    def ticks(
        self, ticker: str, start: Instant | None = None, end: Instant | None = None
    ) -> pa.Table:
        """Every stored tick of ``ticker`` with ``time`` in ``[start, end)``, by time and
        journal seq: both tiers and the open minutes, each tick once (what the ``ticks_of``
        macro reads). Reads the Parquet files only; the database is not opened."""
        symbol = validate_symbol(ticker)
        lo, hi = time_range(start, end)
        root = self.data.resolve()
        source = duckdb_ticker_sql(root, f"'{symbol}'", _one_day(lo, hi))
        if source is None:  # a lake no writer of this version has written yet
            source = f"(SELECT * FROM {duckdb_read_sql(root)} WHERE ticker = '{symbol}')"
        where, params = _filters(None, lo, hi, column="time")
        return read_lake(root, f"SELECT * FROM {source}{where} ORDER BY time, seq", params)

    def bars(
        self,
        width: str,
        tickers: Tickers = None,
        start: Instant | None = None,
        end: Instant | None = None,
    ) -> pa.Table:
        """Bars of ``width`` (``1m``, ``5m``, ``15m``, ``1h``, ``1d``: minutes, hours or days
        dividing a UTC day), derived exactly from the one-minute rows as the ``bars`` macro
        does (``analytics/sql/views.sql``), by ticker and ``bar_start``. Every bar overlapping
        ``[start, end)`` comes whole: its minutes outside the range count too."""
        width_ms = bar_width_ms(width)
        lo, hi = time_range(start, end)
        lo = None if lo is None else _floor(lo, width_ms)
        hi = None if hi is None else _ceil(hi, width_ms)
        # The macro reads the table `features`; a temporary view of that name (resolved
        # before the stored table) hands it only the requested minutes, so the bars of a
        # range cost that range, not the whole table.
        where, _ = _filters(tickers, lo, hi, column="window_start", literal=True)

        def only_the_range(con: duckdb.DuckDBPyConnection) -> None:
            catalog = str(con.execute("SELECT current_database()").fetchall()[0][0])
            stored = f'"{catalog.replace(chr(34), chr(34) * 2)}".main.features'
            con.execute(f"CREATE TEMP VIEW features AS SELECT * FROM {stored}{where}")

        query = f"SELECT * FROM bars({width_ms}) ORDER BY ticker, bar_start"
        return self._database(query, [], setup=only_the_range)

    def sql(self, query: str, params: Sequence[object] | None = None) -> pa.Table:
        """The result of ``query`` as ``ticklake sql`` runs it: read-only queries, ``SET
        VARIABLE``, the last statement's result (an empty table when it returns none).
        ``params`` fill ``?`` placeholders (one statement then)."""
        return self._database(query, params)

    def status(self) -> dict[str, dict[str, Any]]:
        """What ``ticklake status --format json`` prints, keyed by tier (``minute``,
        ``history``, ``journal``: files, rows, bytes, ``oldest``/``newest`` as ISO-8601 UTC
        or None, what retention removes next, unreadable files) and ``maintenance``; with the
        command's settings (defaults, ``TICKLAKE_*``). Reads file metadata only."""
        parser = argparse.ArgumentParser()
        status_arguments(parser, {})
        ns = parser.parse_args(["--data", os.fspath(self.data)])
        config = RetentionConfig(ns.tick_retention_days, ns.journal_retention_days)
        tiers = status_tiers(self.data, config, ns.recompute_horizon)
        out = {tier.tier: tier_json(tier) for tier in tiers}
        out["maintenance"] = maintenance_json(self.data, ns, SystemClock().now())
        parsed: dict[str, dict[str, Any]] = json.loads(json.dumps(out))  # as printed
        return parsed

    def _database(
        self, query: str, params: Sequence[object] | None, setup: Setup | None = None
    ) -> pa.Table:
        table = read_database(
            self.data, query, params, database=self.database, timeout=self.timeout, setup=setup
        )
        return pa.table({}) if table is None else table


def bar_width_ms(width: str) -> int:
    """``5m``, ``1h``, ``1d`` ... in ms; ValueError unless it is minutes dividing a day."""
    match = _WIDTH.fullmatch(width.strip()) if isinstance(width, str) else None
    width_ms = 0 if match is None else int(match["n"]) * _UNIT_MS[match["unit"]]
    if not width_ms or DAY_MS % width_ms:
        raise ValueError(
            f"bar width {width!r}: give minutes, hours or days dividing a day (5m, 1h)"
        )
    return width_ms


def to_pandas(table: pa.Table) -> Any:
    """``table`` as a pandas DataFrame (timestamps stay UTC); ImportError saying what to
    install when pandas is missing."""
    _require("pandas")
    return table.to_pandas()


def to_polars(table: pa.Table) -> Any:
    """``table`` as a polars DataFrame (zero-copy where Arrow allows); ImportError saying
    what to install when polars is missing."""
    return _require("polars").from_arrow(table)


def _require(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        raise ImportError(
            f"{name} is not installed: pip install 'ticklake[{name}]' (or pip install {name})"
        ) from None


def _symbols(tickers: Tickers) -> list[str] | None:
    if tickers is None:
        return None
    names = [tickers] if isinstance(tickers, str) else list(tickers)
    return [validate_symbol(name) for name in names]


def _filters(
    tickers: Tickers,
    lo: dt.datetime | None,
    hi: dt.datetime | None,
    *,
    column: str,
    literal: bool = False,
) -> tuple[str, list[object]]:
    """`` WHERE ...`` over ``ticker`` and ``column`` and its parameters (``literal``: as
    constants, for a view; symbols are checked and times are ours, so both quote safely)."""
    conditions: list[str] = []
    params: list[object] = []
    symbols = _symbols(tickers)
    if symbols is not None:
        if literal:
            quoted = ", ".join(f"'{symbol}'" for symbol in symbols) or "NULL"
            conditions.append(f"ticker IN ({quoted})")
        else:
            conditions.append("list_contains(?, ticker)")
            params.append(symbols)
    for bound, op in ((lo, ">="), (hi, "<")):
        if bound is None:
            continue
        if literal:
            conditions.append(f"\"{column}\" {op} TIMESTAMPTZ '{bound.isoformat()}'")
        else:
            conditions.append(f'"{column}" {op} ?')
            params.append(bound)
    return (" WHERE " + " AND ".join(conditions) if conditions else ""), params


def _one_day(lo: dt.datetime | None, hi: dt.datetime | None) -> str | None:
    """The ``DATE`` literal of the one UTC day ``[lo, hi)`` lies in (only its files are
    listed then), or None."""
    if lo is None or hi is None:
        return None
    last = hi - dt.timedelta(microseconds=1)
    return f"DATE '{lo.date().isoformat()}'" if lo.date() == last.date() else None


def _floor(moment: dt.datetime, width_ms: int) -> dt.datetime:
    ms = int(moment.timestamp() * 1000) // width_ms * width_ms
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def _ceil(moment: dt.datetime, width_ms: int) -> dt.datetime:
    ms = -(-int(moment.timestamp() * 1000) // width_ms) * width_ms
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
