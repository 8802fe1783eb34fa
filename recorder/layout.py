"""Where a tick lives in the lake: pure functions between (ticker, minute) and paths.

Layout under the lake root::

    ticks/ticker=<folder value>/date=<YYYY-MM-DD>/minute=<HHMM>/part.parquet

one file per (ticker, UTC minute), read back by one glob (``duckdb_read_sql``) or by
``pyarrow.dataset`` with ``pyarrow_partitioning()``.

Invariants:
- only symbols that pass ``validate_symbol`` become folders, and every built path is
  checked to stay inside the root after normalisation (lexically: a ``ticks`` folder that
  is a symlink to another disk is fine);
- folder value = symbol with each ``=`` written as ``%3D``. DuckDB cannot read a Hive value
  that contains ``=`` (``ticker=EURUSD=X`` fails to bind), and both DuckDB and PyArrow
  percent-decode values, so ``ticker=EURUSD%3DX`` reads back as ``EURUSD=X`` in both.
  Symbols never contain ``%``, so the encoding is unambiguous and exactly reversible; a
  folder whose value is not the canonical encoding of a valid symbol is not ours;
- minutes are ``[start, start + 60 s)`` in UTC; ``minute_start_ms`` is a multiple of 60,000;
- readers must pass ``hive_types`` (DuckDB) or an explicit partitioning schema (PyArrow):
  otherwise a ticker such as ``1234`` comes back as an integer.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.dataset as ds

from recorder.symbols import SymbolError, validate_symbol

__all__ = [
    "HIVE_TYPES_SQL",
    "MINUTE_MS",
    "PARTITION_SCHEMA",
    "PART_NAME",
    "TICKS_DIR",
    "TICKS_GLOB",
    "date_dir",
    "decode_ticker",
    "duckdb_read_sql",
    "encode_ticker",
    "minute_dir",
    "minute_file",
    "parse_minute_dir",
    "pyarrow_partitioning",
    "ticker_dir",
]

MINUTE_MS: Final = 60_000
TICKS_DIR: Final = "ticks"
PART_NAME: Final = "part.parquet"
TICKS_GLOB: Final = f"{TICKS_DIR}/*/*/*/*.parquet"
"""Every minute file, relative to the lake root (temporaries end in ``.tmp``, not matched)."""

HIVE_TYPES_SQL: Final = "{'ticker': VARCHAR, 'date': DATE, 'minute': VARCHAR}"
PARTITION_SCHEMA: Final = pa.schema(
    [("ticker", pa.string()), ("date", pa.date32()), ("minute", pa.string())]
)
_GLOB_CHARS: Final = re.compile(r"[*?\[\]{}]")
_DATE_RE: Final = re.compile(r"date=(\d{4}-\d{2}-\d{2})")
_MINUTE_RE: Final = re.compile(r"minute=([01]\d|2[0-3])([0-5]\d)")


def encode_ticker(symbol: str) -> str:
    """The folder value for a valid symbol (``EURUSD=X`` -> ``EURUSD%3DX``)."""
    return validate_symbol(symbol).replace("=", "%3D")


def decode_ticker(value: str) -> str:
    """The symbol a folder value names; SymbolError unless it is a canonical encoding."""
    symbol = value.replace("%3D", "=")
    if "%" in symbol or "=" in value:
        raise SymbolError(f"folder value {value!r} rejected: not an encoded symbol")
    return validate_symbol(symbol)


def ticker_dir(root: Path, ticker: str) -> Path:
    """``<root>/ticks/ticker=<folder value>``."""
    return _inside(root, Path(root, TICKS_DIR, f"ticker={encode_ticker(ticker)}"))


def date_dir(root: Path, ticker: str, date: dt.date) -> Path:
    """``<root>/ticks/ticker=…/date=YYYY-MM-DD``."""
    return ticker_dir(root, ticker) / f"date={date.isoformat()}"


def minute_dir(root: Path, ticker: str, minute_start_ms: int) -> Path:
    """The folder of one (ticker, UTC minute); ``minute_start_ms`` must be minute-aligned."""
    if minute_start_ms % MINUTE_MS:
        raise ValueError(f"minute_start_ms={minute_start_ms} is not a multiple of {MINUTE_MS}")
    start = dt.datetime.fromtimestamp(minute_start_ms / 1000, tz=dt.UTC)
    return date_dir(root, ticker, start.date()) / f"minute={start:%H%M}"


def minute_file(root: Path, ticker: str, minute_start_ms: int) -> Path:
    """The Parquet file of one (ticker, UTC minute)."""
    return minute_dir(root, ticker, minute_start_ms) / PART_NAME


def parse_minute_dir(path: Path) -> tuple[str, int]:
    """(ticker, minute_start_ms) of a minute folder or of the ``part.parquet`` inside it.

    Raises SymbolError for a foreign ticker folder and ValueError for any other name that
    ``minute_dir`` would not have produced.
    """
    path = Path(path)
    if path.name == PART_NAME:
        path = path.parent
    ticker_part, date_part, minute_part = path.parts[-3:] if len(path.parts) >= 3 else ("",) * 3
    date_match = _DATE_RE.fullmatch(date_part)
    minute_match = _MINUTE_RE.fullmatch(minute_part)
    if not ticker_part.startswith("ticker=") or date_match is None or minute_match is None:
        raise ValueError(f"{path} is not a minute folder (…/ticker=…/date=…/minute=HHMM)")
    ticker = decode_ticker(ticker_part.removeprefix("ticker="))
    day = dt.date.fromisoformat(date_match[1])
    hour, minute = int(minute_match[1]), int(minute_match[2])
    start = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC)
    return ticker, int(start.timestamp()) * 1000


def duckdb_read_sql(root: Path | str) -> str:
    """The ``read_parquet(...)`` expression over every minute file; use it in every reader."""
    text = os.fspath(root).rstrip("/") or "/"
    if _GLOB_CHARS.search(text):
        raise ValueError(f"lake root {text!r} contains a glob character; move the lake")
    quoted = text.replace("'", "''")
    return (
        f"read_parquet('{quoted}/{TICKS_GLOB}', hive_partitioning = true, "
        f"hive_types = {HIVE_TYPES_SQL})"
    )


def pyarrow_partitioning() -> ds.Partitioning:
    """Hive partitioning for ``pyarrow.dataset`` that reads tickers back exactly."""
    return ds.partitioning(PARTITION_SCHEMA, flavor="hive")


def _inside(root: Path, path: Path) -> Path:
    """``path`` if it normalises to a location under ``root``, else SymbolError."""
    base = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.abspath(path))
    if os.path.commonpath([base, full]) != base or full == base:
        raise SymbolError(f"path {full!r} escapes the lake root {base!r}")
    return path
