"""How ``ticklake sql`` shows a result: the aligned text table, cut to a width, and times in
JSON."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa

from ticklake.sql_output import (
    BOX_MIN_WIDTH,
    MIN_WIDTH,
    box_table,
    fit_widths,
    format_table,
    shown_columns,
    write_result,
)


def test_format_table_handles_empty_results_and_booleans() -> None:
    table = pa.table({"flag": pa.array([True, None]), "name": pa.array(["a", "bb"])})
    assert format_table(table).splitlines() == [
        "flag | name",
        "-----+-----",
        "true | a",
        "NULL | bb",
    ]
    assert format_table(table.slice(0, 0)).splitlines() == ["flag | name", "-----+-----"]


def test_the_widest_columns_are_cut_first_to_a_common_width() -> None:
    assert fit_widths([4, 30, 50], 100) == [4, 30, 50]  # fits: unchanged
    assert fit_widths([4, 30, 50], 60) == [4, 28, 28]  # both cut to 28: 4 + 28 + 28 = 60
    assert fit_widths([4, 30, 50], 61) == [4, 29, 28]  # the spare character goes left
    assert fit_widths([30, 50], 4) == [MIN_WIDTH, MIN_WIDTH]  # never below the floor
    assert fit_widths([3, 50], 4) == [3, MIN_WIDTH]  # nor wider than a column was


def test_columns_that_cannot_fit_are_left_out_on_the_right() -> None:
    assert shown_columns([20, 20, 20], 66) == 3  # 20 + 3 + 20 + 3 + 20: all fit uncut
    assert shown_columns([20, 20, 20], 40) == 3  # cut to 10 each, with the marker: 37
    assert shown_columns([20, 20, 20], 36) == 2  # 2 x (10 + 3) and the marker
    assert shown_columns([20, 20, 20], 3) == 1  # at least one


def test_a_table_cut_to_a_width_ends_its_cells_in_an_ellipsis() -> None:
    table = pa.table({"n": [1, 22], "text": ["short", "a rather long sentence of words"]})
    lines = format_table(table, max_width=20).splitlines()
    assert lines == [
        " n | text",
        "---+----------------",
        " 1 | short",
        "22 | a rather long …",  # 2 + 3 + 15 = 20
    ]
    wide = pa.table({f"c{i}": ["x" * 30] for i in range(5)})
    lines = format_table(wide, max_width=40).splitlines()
    assert lines[0].split(" | ")[-1] == "…" and lines[2].endswith("| …")
    assert max(map(len, lines)) <= 40


def test_json_times_are_iso_utc_with_milliseconds_and_z(
    tmp_path: Path,
) -> None:
    moment = dt.datetime(2024, 4, 16, 14, 0, 5, 123456, tzinfo=dt.UTC)
    naive = moment.replace(tzinfo=None)  # a time without a zone is taken as UTC
    table = pa.table(
        {
            "us_utc": pa.array([moment, None], pa.timestamp("us", tz="UTC")),
            "ns_ny": pa.array([moment, moment], pa.timestamp("ns", tz="America/New_York")),
            "s": pa.array([naive, naive], pa.timestamp("s")),
            "day": pa.array([moment.date(), None], pa.date32()),
        }
    )
    target = tmp_path / "out.json"
    write_result(table, "json", target)
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert rows == [
        {
            "us_utc": "2024-04-16T14:00:05.123Z",
            "ns_ny": "2024-04-16T14:00:05.123Z",
            "s": "2024-04-16T14:00:05.000Z",
            "day": "2024-04-16",
        },
        {
            "us_utc": None,
            "ns_ny": "2024-04-16T14:00:05.123Z",
            "s": "2024-04-16T14:00:05.000Z",
            "day": None,
        },
    ]


def test_duckdb_draws_a_terminal_table_within_the_width() -> None:
    wide = pa.table({f"col{i}": ["x" * 25] * 3 for i in range(12)})
    lines = box_table(wide, 100).splitlines()
    assert lines[0].startswith("┌") and max(map(len, lines)) == 100  # columns left out: "…"
    assert "12 columns" in lines[-1]
    assert max(map(len, box_table(wide, 40).splitlines())) == BOX_MIN_WIDTH  # DuckDB's least
    moment = dt.datetime(2024, 4, 16, 14, 0, 5, tzinfo=dt.UTC)
    table = pa.table(
        {
            "close": pa.array([184.38, None], pa.float32()),
            "at": pa.array([moment, moment], pa.timestamp("ms", tz="UTC")),
        }
    )
    drawn = box_table(table, None)
    assert "184.38" in drawn and "NULL" in drawn  # the decimals that were sent
    assert "2024-04-16 14:00:05" in drawn  # in UTC, whatever the machine's zone
