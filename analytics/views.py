"""The views of ``analytics/sql/views.sql`` for one data directory, and when they need re-creating.

``{{lake}}`` in the file stands for the lake's ``read_parquet(...)`` expression
(``lake.layout.duckdb_read_sql``), ``{{ticker_lake}}`` for one ticker's
(``duckdb_ticker_sql``, whose macro parameters are ``symbol`` and ``day``). DuckDB binds a
view when it is created and refuses a glob that matches no file, so while the lake is still
empty the placeholder becomes an empty relation with the same columns; the writer swaps in
the real one once the first minute file exists. A signature of the text created is kept in
``meta.views_signature``.

Only the writer creates views. A reader whose stored views read another directory (the
data directory was moved, or the writer has not yet seen the first file) gets a temporary
``ticks`` view instead, which needs no write access.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Final

import pyarrow as pa

from analytics.sql_files import sql_text
from lake.datadir import TICKS_DIR
from lake.layout import PART_NAME, duckdb_read_sql, duckdb_ticker_sql, hidden_days_sql
from lake.schema import LAKE_SCHEMA

__all__ = [
    "LAKE_PLACEHOLDER",
    "TICKER_PLACEHOLDER",
    "lake_has_files",
    "reader_ticks_view",
    "signature",
    "views_sql",
    "views_to_create",
]

LAKE_PLACEHOLDER: Final = "{{lake}}"
TICKER_PLACEHOLDER: Final = "{{ticker_lake}}"


def views_sql(lake: Path, *, empty: bool = False) -> str:
    """``analytics/sql/views.sql`` with the lake substituted (an empty typed relation if ``empty``),
    and ``{{ticker_lake}}`` with one ticker's expression (``ticks`` filtered while the
    lake has no placeholders yet)."""
    text = sql_text("views.sql")
    root = Path(lake).resolve()
    hidden = [] if empty else hidden_days_sql(root)  # listed once for both
    source = _EMPTY_LAKE_SQL if empty else duckdb_read_sql(root, hidden)
    one = None if empty else duckdb_ticker_sql(root, "symbol", "day", hidden)
    if one is None:
        one = "ticks WHERE ticker = symbol AND (day IS NULL OR date = CAST(day AS DATE))"
    return text.replace(LAKE_PLACEHOLDER, source).replace(TICKER_PLACEHOLDER, one)


def signature(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def views_to_create(lake: Path, stored: str | None) -> str | None:
    """The SQL that brings the views up to date, or None when ``stored`` (the signature
    of what was created last) already matches."""
    real = views_sql(lake)
    if stored == signature(real):
        return None
    text = real if lake_has_files(lake) else views_sql(lake, empty=True)
    return None if stored == signature(text) else text


def reader_ticks_view(lake: Path, stored: str | None) -> str | None:
    """``CREATE TEMP VIEW ticks`` and ``CREATE TEMP MACRO ticks_of`` for a reader whose
    stored views do not read ``lake``."""
    if stored == signature(views_sql(lake)) or not lake_has_files(lake):
        return None
    root = Path(lake).resolve()
    hidden = hidden_days_sql(root)  # listed once for both
    statement = f"CREATE TEMP VIEW ticks AS SELECT * FROM {duckdb_read_sql(root, hidden)}"
    one = duckdb_ticker_sql(root, "symbol", "day", hidden)
    if one is not None:
        statement += (
            f"; CREATE TEMP MACRO ticks_of(symbol, day := NULL) AS TABLE SELECT * FROM {one}"
        )
    return statement


def lake_has_files(lake: Path) -> bool:
    """Whether any minute file exists (stops at the first one; never walks the lake)."""
    for level_1 in _subdirs(Path(lake, TICKS_DIR)):
        for level_2 in _subdirs(level_1):
            for level_3 in _subdirs(level_2):
                if (level_3 / PART_NAME).is_file():
                    return True
    return False


def _subdirs(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as entries:
            return [Path(e.path) for e in entries if e.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _duckdb_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMPTZ" if arrow_type.tz else "TIMESTAMP"
    if pa.types.is_list(arrow_type):
        return f"{_duckdb_type(arrow_type.value_type)}[]"
    names = {pa.string(): "VARCHAR", pa.float32(): "FLOAT", pa.float64(): "DOUBLE"}
    names |= {pa.int64(): "BIGINT", pa.bool_(): "BOOLEAN", pa.date32(): "DATE"}
    return names[arrow_type]


# read_parquet appends the Hive columns in name order
_PARTITIONS: Final = (("date", "DATE"), ("minute", "VARCHAR"), ("ticker", "VARCHAR"))
_EMPTY_LAKE_SQL: Final = (
    "(SELECT "
    + ", ".join(
        [f'CAST(NULL AS {_duckdb_type(f.type)}) AS "{f.name}"' for f in LAKE_SCHEMA]
        + [f'CAST(NULL AS {kind}) AS "{name}"' for name, kind in _PARTITIONS]
    )
    + " WHERE false)"
)
