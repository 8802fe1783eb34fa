"""``ticklake sql`` (formats, errors, a writer holding the file), through its argument parser
and handler."""

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
from lake.utc import MINUTE_MS as MIN
from tests.kit.features import hold_database
from tests.kit.lake import seal, write_lake
from tests.kit.ticks import Feed
from tests.kit.times import T0
from ticklake.sql_cmd import add_arguments, run

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


def parse(args: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser, {})
    return parser.parse_args(args)


def run_sql(capsysbinary, *args: str) -> tuple[int, str, str]:
    code = run(parse(list(args)))
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
