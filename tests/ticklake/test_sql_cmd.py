"""``ticklake sql`` (formats, errors, a writer holding the file, read-only in every way: no
file written, nothing read outside the data directory, no extension, no setting changed),
through its argument parser and handler."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analytics.database import database_path
from analytics.job import JobConfig, run_once
from analytics.sql_files import example_names
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
    assert rows[0]["window_start"] == "2024-04-16T14:00:00.000Z"  # as every JSON output

    target = tmp_path / "out.parquet"
    code, out, _ = run_sql(
        capsysbinary, "--data", str(data), "--format", "parquet", "--output", str(target), QUERY
    )
    table = pq.read_table(target)
    assert code == 0 and out == "" and table.num_rows == 2
    assert table["close"].type == pa.float32()  # exactly the float32 that was received
    assert table["close"][0].as_py() == pa.scalar(184.38, pa.float32()).as_py()


def test_sql_errors_are_whole_and_others_one_line(data, capsysbinary, tmp_path: Path) -> None:
    code, out, err = run_sql(capsysbinary, "--data", str(data), "SELEC 1")
    assert code == 1 and out == "" and err.startswith("ticklake sql: Parser Error:")
    assert err.splitlines()[-2:] == ["LINE 1: SELEC 1", "        ^^^^^"]  # the caret
    code, _, err = run_sql(capsysbinary, "--data", str(data), "FROM featurs")
    assert code == 1 and err.splitlines()[1:] == ['Did you mean "features"?']
    code, _, err = run_sql(capsysbinary, "--data", str(data), "SELECT tickr FROM features")
    assert code == 1 and err.splitlines()[1].startswith('Candidate bindings: "ticker"')
    code, _, err = run_sql(capsysbinary, "--data", str(data), "DELETE FROM features")
    assert code == 1 and "read-only" in err and err.count("\n") == 1
    code, _, err = run_sql(capsysbinary, "--data", str(tmp_path / "nowhere"), "SELECT 1")
    assert (code, err) == (2, f"ticklake sql: no data directory {tmp_path / 'nowhere'}\n")
    assert not (tmp_path / "nowhere").exists()
    code, _, err = run_sql(capsysbinary, "--data", str(tmp_path), "SELECT 1")
    assert code == 2 and "no database at" in err and err.count("\n") == 1
    code, _, err = run_sql(capsysbinary, "--data", str(data), "--format", "parquet", "SELECT 1")
    assert code == 2 and "--format parquet needs --output FILE" in err


def test_a_table_fits_the_width_asked_for(data, capsysbinary) -> None:
    code, out, _ = run_sql(capsysbinary, "--data", str(data), "--max-width", "45", QUERY)
    lines = out.splitlines()
    assert code == 0 and max(map(len, lines)) == 45 and lines[-1] == "(2 rows)"
    assert lines[0].split(" | ")[-1].strip() == "window_start"
    assert lines[2].endswith("| 2024-04-16 14:0…")  # the widest column cut first
    code, out, _ = run_sql(capsysbinary, "--data", str(data), "--max-width", "30", QUERY)
    lines = out.splitlines()
    assert code == 0 and max(map(len, lines[:-1])) == 30
    assert [c.strip() for c in lines[0].split(" | ")] == ["ticker", "close", "volume", "…"]
    assert lines[-1] == "(2 rows; 1 of 4 columns left out: --max-width 0 shows all)"
    code, wide, _ = run_sql(capsysbinary, "--data", str(data), "--max-width", "0", QUERY)
    assert "2024-04-16 14:00:00+00:00" in wide  # 0: never cut
    code, piped, _ = run_sql(capsysbinary, "--data", str(data), QUERY)
    assert piped == wide  # not a terminal: never cut


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


# -- read-only: nothing written, nothing read outside the data directory ---------------------


def lake_file(data: Path) -> Path:
    return next(data.glob("ticks/ticker=AMZN/date=*/minute=*/part.parquet"))


def refused(capsysbinary, data: Path, query: str) -> str:
    """The one-line error of a query ``ticklake sql`` must refuse (exit status 1)."""
    code, out, err = run_sql(capsysbinary, "--data", str(data), query)
    assert (code, out, err.count("\n")) == (1, "", 1), err
    return err


def count_ticks(capsysbinary, data: Path) -> str:
    code, out, _ = run_sql(capsysbinary, "--data", str(data), "SELECT count(*) AS n FROM ticks")
    assert code == 0
    return out.splitlines()[2].strip()


def test_copy_to_a_lake_file_is_refused_and_the_file_is_unchanged(data, capsysbinary) -> None:
    target = lake_file(data)
    before = target.read_bytes()
    copy = f"COPY (SELECT 1 AS a) TO '{target}' (FORMAT parquet)"
    for query, name in [
        (copy, "COPY"),
        (f"EXPLAIN ANALYZE {copy}", "EXPLAIN COPY"),  # EXPLAIN ANALYZE runs the statement
        (f"SELECT 1;\n{copy}", "COPY"),  # a script is refused whole: nothing of it runs
        (f"EXPORT DATABASE '{data / 'exported'}'", "EXPORT"),
        ("CREATE TEMP TABLE t AS SELECT 1", "CREATE"),
        ("INSERT INTO features SELECT * FROM features", "INSERT"),
    ]:
        err = refused(capsysbinary, data, query)
        assert err.startswith(f"ticklake sql: {name} is not allowed: ticklake sql is read-only")
    assert target.read_bytes() == before
    assert not (data / "exported").exists()
    assert count_ticks(capsysbinary, data) == "6"


def test_nothing_outside_the_data_directory_is_read(data, capsysbinary, tmp_path: Path) -> None:
    outside = tmp_path / "secret.csv"
    outside.write_text("secret\n42\n")
    sibling = data.parent / f"{data.name}2"  # shares the data directory's name as a prefix
    sibling.mkdir(exist_ok=True)
    (sibling / "secret.csv").write_text("secret\n42\n")
    root = data.resolve()
    for path in (
        "/etc/passwd",
        str(outside),
        str(sibling / "secret.csv"),
        f"{data}/../{sibling.name}/secret.csv",
    ):
        err = refused(capsysbinary, data, f"SELECT * FROM read_csv('{path}')")
        assert err == (
            f"ticklake sql: access to {path} is not allowed: "
            f"ticklake sql reads only files under {root}\n"
        )
    err = refused(capsysbinary, data, "SELECT * FROM glob('/etc/*')")
    assert "access to /etc/* is not allowed" in err
    code, out, _ = run_sql(
        capsysbinary, "--data", str(data), f"SELECT count(*) AS n FROM '{lake_file(data)}'"
    )
    assert code == 0 and out.splitlines()[2].strip() == "3"  # lake files themselves: readable


def test_no_extension_is_installed_or_loaded(data, capsysbinary) -> None:
    for query, name in [
        ("INSTALL httpfs", "INSTALL"),
        ("FORCE INSTALL httpfs", "FORCE"),
        ("LOAD httpfs", "LOAD"),
        ("UPDATE EXTENSIONS", "UPDATE"),  # a statement type without a name in the Python API
    ]:
        err = refused(capsysbinary, data, query)
        assert err.startswith(f"ticklake sql: {name} is not allowed")
    err = refused(capsysbinary, data, "FROM read_parquet('https://example.invalid/x.parquet')")
    assert "access to https://example.invalid/x.parquet is not allowed" in err


def test_settings_cannot_be_changed_back(data, capsysbinary) -> None:
    for query, name in [
        ("SET enable_external_access = true", "SET enable_external_access"),
        ("SET GLOBAL allowed_directories = ['/']", "SET allowed_directories"),
        ("RESET lock_configuration", "RESET lock_configuration"),
        ("/* hidden */ set autoinstall_known_extensions = 1", "SET autoinstall_known_extensions"),
        ("PRAGMA enable_profiling", "PRAGMA"),
        ("CALL enable_logging()", "CALL"),
    ]:
        err = refused(capsysbinary, data, query)
        assert err.startswith(f"ticklake sql: {name} is not allowed"), err


def test_attach_of_another_file_is_refused(data, capsysbinary, tmp_path: Path) -> None:
    other = tmp_path / "other.duckdb"
    with duckdb.connect(str(other)) as con:
        con.execute("CREATE TABLE t AS SELECT 42 AS x")
    for query in (
        f"ATTACH '{other}' AS other",
        f"ATTACH '{database_path(data)}' AS again (READ_ONLY)",
        f"ATTACH '{data / 'new.duckdb'}' AS new",
    ):
        err = refused(capsysbinary, data, query)
        assert err.startswith("ticklake sql: ATTACH is not allowed")
    assert not (data / "new.duckdb").exists()


def test_queries_of_every_kind_still_run(data, capsysbinary) -> None:
    for query, first_cells in [
        ("DESCRIBE features", ["ticker"]),
        ("SHOW TABLES", ["bars_1d", "bars_1h", "bars_5m", "features"]),
        ("SUMMARIZE SELECT close FROM features", ["close"]),
        ("WITH t AS (FROM ticks_of('AMZN')) SELECT count(*) AS n FROM t", ["3"]),
        ("SELECT tick_count FROM bars_5m ORDER BY ticker", ["3", "3"]),
        ("-- leading comment\nSET VARIABLE n = 2;\nSELECT getvariable('n') AS n", ["2"]),
        ("BEGIN; SELECT 7 AS n FROM ticks LIMIT 1; COMMIT", []),  # COMMIT's result: none
    ]:
        code, out, err = run_sql(capsysbinary, "--data", str(data), query)
        assert code == 0 and err == "", (query, err)
        cells = [line.split(" | ")[0].strip() for line in out.splitlines()[2:-1]]
        assert cells[: len(first_cells)] == first_cells, query
    code, out, _ = run_sql(capsysbinary, "--data", str(data), "EXPLAIN SELECT * FROM ticks")
    assert code == 0 and "READ_PARQUET" in out.upper()


def test_a_database_outside_the_data_directory_is_still_read(
    data, capsysbinary, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere.duckdb"
    elsewhere.write_bytes(database_path(data).read_bytes())
    query = "SELECT (SELECT count(*) FROM features) AS f, (SELECT count(*) FROM ticks) AS t"
    code, out, err = run_sql(capsysbinary, "--data", str(data), "--database", str(elsewhere), query)
    assert (code, err) == (0, "") and out.splitlines()[2].split() == ["2", "|", "6"]
    (tmp_path / "x.csv").write_text("x\n1\n")
    query = f"SELECT * FROM read_csv('{tmp_path}/x.csv')"
    code, _, err = run_sql(capsysbinary, "--data", str(data), "--database", str(elsewhere), query)
    assert code == 1 and "is not allowed" in err  # its directory is not opened to queries


CHECKOUT_EXAMPLES = Path(__file__).resolve().parents[2] / "analytics" / "sql" / "examples"


@pytest.mark.parametrize("example", example_names())
def test_every_example_query_runs_by_name_and_by_path(data, capsysbinary, example: str) -> None:
    code, out, err = run_sql(capsysbinary, "--data", str(data), "--example", example)
    assert (code, err) == (0, "") and out.rstrip().endswith(("row)", "rows)"))
    path = CHECKOUT_EXAMPLES / f"{example}.sql"  # README's form, from the checkout
    assert run_sql(capsysbinary, "--data", str(data), "--file", str(path)) == (0, out, "")


def test_an_example_goes_alone(data, capsysbinary) -> None:
    code, _, err = run_sql(capsysbinary, "--data", str(data), "--example", "latest_bar", "SELECT 1")
    assert code == 2 and "one of them" in err
    with pytest.raises(SystemExit):
        parse(["--example", "no_such_example"])


def test_on_a_terminal_duckdb_draws_the_table_within_its_width(data: Path) -> None:
    main, tty = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TICKLAKE_")}
    query = "SELECT *, repeat('x', 200) AS filler FROM features"
    with subprocess.Popen(
        [sys.executable, "-m", "ticklake.cli", "sql", "--data", str(data), query],
        stdout=tty,
        stderr=subprocess.PIPE,
        env={**environ, "COLUMNS": "100"},
    ) as process:
        os.close(tty)
        chunks = []
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=30) == 0, process.stderr.read() if process.stderr else ""
    os.close(main)
    lines = b"".join(chunks).decode().splitlines()
    assert lines[0].startswith("┌") and lines[1].startswith("│")
    assert max(map(len, lines)) == 100  # the terminal's width, the middle columns left out
    assert any("EURUSD=X" in line for line in lines)
