"""lake.layout: where a ticker's minute and day files live, and reading the folders back."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lake import layout
from lake.deltas import Fold, publish_fold, write_delta
from lake.layout import (
    duckdb_read_sql,
    duckdb_ticker_sql,
    history_file,
    minute_dir,
    minute_file,
    minute_placeholder,
    parse_history_file,
    parse_minute_dir,
)
from lake.schema import LAKE_SCHEMA
from lake.symbols import SymbolError
from lake.utc import MINUTE_MS
from tests.kit.lake import ODD_SYMBOLS, to_legacy, write_lake
from tests.kit.ticks import ticks
from tests.kit.times import DAY1
from tests.kit.times import OPEN_MS as T0


def test_minute_file_layout(tmp_path: Path) -> None:
    path = minute_file(tmp_path, "EURUSD=X", T0 + 5 * MINUTE_MS)
    assert path == tmp_path / "ticks/ticker=EURUSD%3DX/date=2024-01-02/minute=1435/part.parquet"
    assert minute_dir(tmp_path, "^GSPC", T0).name == "minute=1430"


@pytest.mark.parametrize("symbol", ODD_SYMBOLS)
def test_parse_minute_dir_inverts_minute_dir(tmp_path: Path, symbol: str) -> None:
    start = T0 + 17 * MINUTE_MS
    assert parse_minute_dir(minute_dir(tmp_path, symbol, start)) == (symbol, start)
    assert parse_minute_dir(minute_file(tmp_path, symbol, start)) == (symbol, start)


def test_unaligned_minute_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a multiple"):
        minute_dir(tmp_path, "AAPL", T0 + 1)


@pytest.mark.parametrize(
    "folder",
    [
        "ticks/ticker=EURUSD=X/date=2024-01-02/minute=1430",  # not canonical: DuckDB fails
        "ticks/ticker=a%2Fb/date=2024-01-02/minute=1430",
        "ticks/ticker=EURUSD%3dX/date=2024-01-02/minute=1430",
        "ticks/ticker=../date=2024-01-02/minute=1430",
        "ticks/ticker=AAPL/date=2024-01-02/minute=2460",
        "ticks/ticker=AAPL/date=2024-1-2/minute=1430",
        "ticks/AAPL/date=2024-01-02/minute=1430",
        "minute=1430",
    ],
)
def test_parse_minute_dir_refuses_foreign_folders(tmp_path: Path, folder: str) -> None:
    with pytest.raises(ValueError):
        parse_minute_dir(tmp_path / folder)


def test_paths_that_escape_the_root_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SymbolError, match="escapes the lake root"):
        layout._inside(tmp_path / "lake", tmp_path / "lake" / ".." / "x")
    assert layout._inside(tmp_path / "lake", tmp_path / "lake" / "ticks") == tmp_path / "lake/ticks"


@pytest.mark.parametrize("symbol", ODD_SYMBOLS)
def test_history_paths_round_trip(tmp_path: Path, symbol: str) -> None:
    path = history_file(tmp_path, symbol, DAY1)
    assert path.parent.parent.parent == tmp_path / "history"
    assert parse_history_file(path) == (symbol, DAY1)
    with pytest.raises(SymbolError):
        history_file(tmp_path, "../x", DAY1)
    with pytest.raises(ValueError):
        parse_history_file(tmp_path / "history/ticker=AAPL/date=2024-1-2/part.parquet")


def _read_both_ways(
    root: Path,
) -> tuple[list[str], list[dict[str, object]], list[tuple[object, ...]]]:
    """(columns, rows by seq) of a ``ticks`` view and ``ticks_of`` macro made as
    analytics/sql/views.sql makes them, and the macro's rows for AAPL."""
    with duckdb.connect() as con:
        con.execute(f"CREATE VIEW ticks AS SELECT * FROM {duckdb_read_sql(root)}")
        one = duckdb_ticker_sql(root, "symbol", "day")
        con.execute(f"CREATE MACRO ticks_of(symbol, day := NULL) AS TABLE SELECT * FROM {one}")
        view = con.execute("SELECT * FROM ticks ORDER BY seq")
        names = [d[0] for d in view.description]
        rows = [dict(zip(names, row, strict=True)) for row in view.fetchall()]
        macro = con.execute("SELECT * FROM ticks_of('AAPL') ORDER BY seq").fetchall()
    return names, rows, macro


def test_a_lake_of_both_vintages_reads_through_the_view_and_ticks_of(tmp_path: Path) -> None:
    """Issue 16: files written while fields 35-45 were ``field_35`` ... placeholders (a
    minute file, a delta, the placeholders) beside files with today's columns: one shape,
    the old rows' new columns NULL but for 36 and 41, which the placeholders held."""
    old = ticks("AAPL", [T0, T0 + 1000], [1, 2], cmc_rank=[5, None])
    write_lake(tmp_path, [old])
    write_delta(tmp_path, ticks("AAPL", [T0 + 2 * MINUTE_MS], [3], latest_funding_date=[17]))
    publish_fold(tmp_path, Fold(1, 2, 2, T0 + MINUTE_MS))  # seq 3 is read from its delta
    assert to_legacy(tmp_path) == 5  # three placeholders, the minute file, the delta
    assert "field_36" in pq.read_schema(minute_placeholder(tmp_path)).names
    names, rows, macro = _read_both_ways(tmp_path)  # old files only: no file has `indices`
    assert names == [*LAKE_SCHEMA.names, "date", "minute", "ticker"]
    assert [(r["seq"], r["cmc_rank"], r["latest_funding_date"]) for r in rows] == [
        (1, 5, None),
        (2, None, None),
        (3, None, 17),
    ]
    assert all(r["indices"] is None and r["ytd_return"] is None for r in rows)

    new = ticks("AAPL", [T0 + MINUTE_MS], [4], indices=[["^GSPC", "^NDX"]], cmc_rank=[7])
    write_lake(tmp_path, [new])
    publish_fold(tmp_path, Fold(2, 2, 4, T0 + 2 * MINUTE_MS))  # seq 4 folded, not 3
    write_delta(tmp_path, ticks("AAPL", [T0 + 2 * MINUTE_MS + 1], [5], ytd_return=[2.5]))
    assert "indices" in pq.read_schema(minute_file(tmp_path, "AAPL", T0 + MINUTE_MS)).names
    names, rows, macro = _read_both_ways(tmp_path)
    assert names == [*LAKE_SCHEMA.names, "date", "minute", "ticker"]
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["cmc_rank"] for r in rows] == [5, None, None, 7, None]
    assert [r["indices"] for r in rows] == [None, None, None, ["^GSPC", "^NDX"], None]
    assert [r["ytd_return"] for r in rows] == [None] * 4 + [2.5]
    assert [r["minute"] for r in rows] == ["1430", "1430", "1432", "1431", "1432"]
    assert macro == [tuple(r.values()) for r in rows]


def test_a_lake_of_todays_columns_reads_files_without_union_by_name(tmp_path: Path) -> None:
    """Binding from the placeholder alone stays the rule for a lake this version wrote (a
    union by name opens every file while binding); an old lake reads by name."""
    write_lake(tmp_path, [ticks("AAPL", [T0], [1], indices=[["^GSPC"]])])
    assert "union_by_name" not in duckdb_read_sql(tmp_path)
    assert "union_by_name" not in (duckdb_ticker_sql(tmp_path, "'AAPL'") or "")
    to_legacy(tmp_path)
    assert "union_by_name" in duckdb_read_sql(tmp_path)
    assert "union_by_name" in (duckdb_ticker_sql(tmp_path, "'AAPL'") or "")
    with duckdb.connect() as con:
        table = con.sql(f"SELECT * FROM {duckdb_read_sql(tmp_path)}").to_arrow_table()
    assert table.num_rows == 1 and table["indices"].to_pylist() == [None]
    assert table.schema.field("indices").type.equals(pa.list_(pa.string()))
