"""One confined read: the lake-only connection reads files under the data directory and
nothing else, and the database read runs ticklake's setup before it is locked down."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from analytics.database import database_path, open_db
from tests.kit.lake import write_days
from ticklake.reader import read_database, read_lake
from ticklake.sql_sandbox import SandboxError


def test_the_lake_connection_reads_only_under_the_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_days(data, ["AAPL"], days=1, minutes=2, per=3)
    (tmp_path / "secret.csv").write_text("x\n1\n")
    glob = f"{data.resolve()}/ticks/*/*/*/*.parquet"
    found = read_lake(
        data, f"SELECT count(*) AS n FROM read_parquet('{glob}') WHERE id = ?", ["AAPL"]
    )
    assert found.to_pylist() == [{"n": 6}]
    with pytest.raises(SandboxError, match="reads only files under"):
        read_lake(data, f"SELECT * FROM read_csv('{tmp_path}/secret.csv')")
    with pytest.raises(duckdb.Error, match="locked"):  # a query cannot undo the confinement
        read_lake(data, "SET enable_external_access = true")


def test_setup_runs_first_and_the_database_is_closed_after(tmp_path: Path) -> None:
    open_db(database_path(tmp_path), lake=tmp_path).close()  # the writer creates it

    def setup(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("CREATE TEMP VIEW answer AS SELECT 42 AS x")

    table = read_database(tmp_path, "SELECT x FROM answer", setup=setup)
    assert table is not None and table.to_pylist() == [{"x": 42}]
    duckdb.connect(str(database_path(tmp_path))).close()  # no connection of ours is left
    with pytest.raises(SandboxError, match="read-only"):
        read_database(tmp_path, "CREATE TABLE t (x INT)")
