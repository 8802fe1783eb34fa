"""lake.layout: where a ticker's minute and day files live, and reading the folders back."""

from __future__ import annotations

from pathlib import Path

import pytest

from lake import layout
from lake.layout import history_file, minute_dir, minute_file, parse_history_file, parse_minute_dir
from lake.symbols import SymbolError
from lake.utc import MINUTE_MS
from tests.kit.lake import ODD_SYMBOLS
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
