"""``ticklake sql`` (formats, errors, a writer holding the file) and ``ticklake analyze
--once``, through their argument parsers and handlers."""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analytics.database import database_path
from analytics.job import JobConfig, run_once
from lake.clock import ManualClock
from tests.analytics.synthetic import MIN, T0, Feed, hold_database, seal, write_lake
from ticklake.analyze_cmd import (
    add_analyze_arguments,
    add_sql_arguments,
    analyze,
    format_table,
    sql,
)

QUERY = "SELECT ticker, close, volume, window_start FROM features ORDER BY ticker"


def build(data: Path) -> None:
    amzn = Feed(1).ticks("AMZN", T0, 1, 20).slice(0, 3)
    amzn = amzn.set_column(
        amzn.schema.get_field_index("price"),
        "price",
        pa.array([184.61, 184.5, 184.38], pa.float32()),
    )
    write_lake(data, [amzn, Feed(2).ticks("EURUSD=X", T0, 1, 3, volume=False)])
    seal(data, T0 + MIN)
    assert run_once(data, ManualClock(T0 / 1000 + 72), JobConfig()).done


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sql")
    build(root)
    return root


def parse(adder, args: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    adder(parser, {})
    return parser.parse_args(args)


def run_sql(capsysbinary, *args: str) -> tuple[int, str, str]:
    code = sql(parse(add_sql_arguments, list(args)))
    out, err = capsysbinary.readouterr()
    return code, out.decode(), err.decode()


def test_table_output_is_aligned_with_the_decimals_that_were_sent(data, capsysbinary) -> None:
    code, out, err = run_sql(capsysbinary, "--data", str(data), QUERY)
    lines = out.splitlines()
    assert code == 0 and err == ""
    assert [c.strip() for c in lines[0].split(" | ")] == [
        "ticker",
        "close",
        "volume",
        "window_start",
    ]
    assert set(lines[1]) <= {"-", "+"}
    assert lines[2].startswith("AMZN     | 184.38 |") and "2024-04-16 14:00:00+00:00" in lines[2]
    assert lines[3].startswith("EURUSD=X |") and "|   NULL |" in lines[3]  # numbers right-aligned
    assert lines[-1] == "(2 rows)"
    assert len({len(line) for line in lines[1:4]}) == 1  # aligned


def test_csv_json_and_parquet(data, capsysbinary, tmp_path: Path) -> None:
    code, out, _ = run_sql(capsysbinary, "--data", str(data), "--format", "csv", QUERY)
    records = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["ticker"] for r in records] == ["AMZN", "EURUSD=X"]
    assert records[0]["close"] == "184.38" and records[1]["volume"] == ""

    code, out, _ = run_sql(capsysbinary, "--data", str(data), "--format", "json", QUERY)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and rows[0]["close"] == 184.38 and rows[1]["volume"] is None
    assert rows[0]["window_start"].startswith("2024-04-16 14:00:00")

    target = tmp_path / "out.parquet"
    code, out, _ = run_sql(
        capsysbinary, "--data", str(data), "--format", "parquet", "--output", str(target), QUERY
    )
    table = pq.read_table(target)
    assert code == 0 and out == "" and table.num_rows == 2
    assert table["close"].type == pa.float32()  # exactly the float32 that was received
    assert table["close"][0].as_py() == pa.scalar(184.38, pa.float32()).as_py()


def test_errors_are_one_line(data, capsysbinary, tmp_path: Path) -> None:
    code, out, err = run_sql(capsysbinary, "--data", str(data), "SELEC 1")
    assert code == 1 and out == "" and err.startswith("ticklake sql: Parser Error:")
    assert err.count("\n") == 1
    code, _, err = run_sql(capsysbinary, "--data", str(data), "DELETE FROM features")
    assert code == 1 and "read-only" in err and err.count("\n") == 1
    code, _, err = run_sql(capsysbinary, "--data", str(tmp_path / "nowhere"), "SELECT 1")
    assert code == 2 and "no database at" in err and err.count("\n") == 1
    code, _, err = run_sql(capsysbinary, "--data", str(data), "--format", "parquet", "SELECT 1")
    assert code == 2 and "--format parquet needs --output FILE" in err


def test_a_query_can_come_from_a_file(data, capsysbinary, tmp_path: Path) -> None:
    query = tmp_path / "q.sql"
    query.write_text(
        "SET VARIABLE t = 'AMZN';\nSELECT ticker FROM features WHERE ticker = getvariable('t')"
    )
    code, out, _ = run_sql(capsysbinary, "--data", str(data), "--file", str(query))
    assert code == 0 and out.splitlines()[2].strip() == "AMZN"
    code, _, err = run_sql(capsysbinary, "--data", str(data), "--file", str(query), "SELECT 1")
    assert code == 2 and "one of them" in err
    code, _, err = run_sql(capsysbinary, "--data", str(data), "--file", str(tmp_path / "no.sql"))
    assert code == 2 and "cannot read" in err


def test_a_query_waits_for_the_writer_to_let_go(data, capsysbinary) -> None:
    writer = hold_database(database_path(data), 0.8, read_only=False)
    try:
        code, out, err = run_sql(
            capsysbinary, "--data", str(data), "SELECT count(*) AS n FROM ticks"
        )
    finally:
        writer.wait()
    assert code == 0 and out.splitlines()[2].strip() == "6" and err == ""


def test_format_table_handles_empty_results_and_booleans() -> None:
    table = pa.table({"flag": pa.array([True, None]), "name": pa.array(["a", "bb"])})
    assert format_table(table).splitlines() == [
        "flag | name",
        "-----+-----",
        "true | a",
        "NULL | bb",
    ]
    assert format_table(table.slice(0, 0)).splitlines() == ["flag | name", "-----+-----"]


def test_analyze_once_materializes_and_reports(tmp_path: Path, capsys) -> None:
    write_lake(
        tmp_path, [Feed(3).ticks(t, T0 + k * MIN, 1) for t in ("AMZN", "MSFT") for k in range(3)]
    )
    seal(tmp_path, T0 + 3 * MIN)
    ns = parse(add_analyze_arguments, ["--data", str(tmp_path), "--once"])
    assert analyze(ns) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "analyzed 6 windows, wrote 6 rows (0 late); done up to 2024-04-16 14:03 UTC"
    )
    holder = hold_database(database_path(tmp_path), 30)
    try:
        seal(tmp_path, T0 + 4 * MIN)
        write_lake(tmp_path, [Feed(4).ticks("AMZN", T0 + 3 * MIN, 1)])
        busy = parse(
            add_analyze_arguments, ["--data", str(tmp_path), "--once", "--lock-timeout", "0.2"]
        )
        assert analyze(busy) == 1  # work left for the next run
    finally:
        holder.terminate()
        holder.wait()
    assert "db_locked" in capsys.readouterr().out
    assert analyze(parse(add_analyze_arguments, ["--data", str(tmp_path / "none"), "--once"])) == 2
