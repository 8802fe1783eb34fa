"""ticklake.sql_sandbox: each layer on its own. The statements allowed and refused (with the
name the error gives), and a locked-down connection that reads only the data directory and
cannot be unlocked; ``tests/ticklake/test_sql_cmd.py`` runs both through ``ticklake sql``."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from ticklake.sql_sandbox import SandboxError, check_statements, lock_down, refusal


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "FROM features",
        "(SELECT 1) UNION ALL (SELECT 2)",
        "WITH a AS (SELECT 1) SELECT * FROM a",
        "VALUES (1), (2)",
        "DESCRIBE features",
        "SHOW TABLES",
        "SUMMARIZE features",
        "EXPLAIN SELECT 1",
        "EXPLAIN ANALYZE SELECT 1",
        "explain (format json) select 1",
        "SET VARIABLE x = 1",
        "set variable x = (SELECT max(close) FROM features)",
        "RESET VARIABLE x",
        "-- a comment\n/* and another */ SET VARIABLE x = 1; SELECT getvariable('x')",
        "BEGIN; SELECT 1; COMMIT",
    ],
)
def test_queries_are_allowed(sql: str) -> None:
    check_statements(sql)  # raises if refused


@pytest.mark.parametrize(
    ("sql", "name"),
    [
        ("COPY features TO 'x.csv'", "COPY"),
        ("COPY features FROM 'x.csv'", "COPY"),
        ("EXPLAIN ANALYZE COPY features TO 'x.csv'", "EXPLAIN COPY"),
        ("EXPLAIN COPY features TO 'x.csv'", "EXPLAIN COPY"),
        ("explain\nanalyse\ncopy features to 'x.csv'", "EXPLAIN COPY"),
        ("EXPLAIN (FORMAT json, ANALYZE true) COPY features TO 'x.csv'", "EXPLAIN COPY"),
        ("EXPLAIN /* hides ANALYZE */ ANALYZE COPY features TO 'x.csv'", "EXPLAIN"),
        ("EXPORT DATABASE 'x'", "EXPORT"),
        ("IMPORT DATABASE 'x'", "IMPORT"),
        ("ATTACH 'x.duckdb'", "ATTACH"),
        ("DETACH x", "DETACH"),
        ("INSTALL httpfs", "INSTALL"),
        ("LOAD httpfs", "LOAD"),
        ("SET threads = 1", "SET threads"),
        ("SET SESSION enable_external_access = true", "SET enable_external_access"),
        ("RESET allowed_directories", "RESET allowed_directories"),
        ("USE main", "USE main"),
        ("PRAGMA table_info('features')", "PRAGMA"),
        ("CALL duckdb_settings()", "CALL"),
        ("CHECKPOINT", "CHECKPOINT"),
        ("CREATE TEMP VIEW v AS SELECT 1", "CREATE"),
        ("CREATE SECRET (TYPE s3, KEY_ID 'k', SECRET 's')", "CREATE"),
        ("DROP TABLE features", "DROP"),
        ("DELETE FROM features", "DELETE"),
        ("UPDATE features SET close = 0", "UPDATE"),
        ("PREPARE p AS SELECT 1", "PREPARE"),
        ("PIVOT features ON ticker USING sum(tick_count)", "PIVOT"),
        ("VACUUM", "VACUUM"),
        ("SELECT 1; COPY features TO 'x.csv'; SELECT 2", "COPY"),  # the script, refused whole
    ],
)
def test_everything_else_is_refused_by_name(sql: str, name: str) -> None:
    with pytest.raises(SandboxError) as refused:
        check_statements(sql)
    assert str(refused.value).startswith(f"{name} is not allowed: ticklake sql is read-only")
    assert "\n" not in str(refused.value)


def test_a_script_that_does_not_parse_is_an_sql_error() -> None:
    with pytest.raises(duckdb.ParserException):
        check_statements("SELEC 1")


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A data directory holding a CSV file, and a directory beside it holding another."""
    data, outside = tmp_path / "data", tmp_path / "data2"
    for folder in (data, outside):
        folder.mkdir()
        (folder / "t.csv").write_text("x\n1\n")
    return data, outside


def test_a_locked_connection_reads_only_the_data_directory(dirs: tuple[Path, Path]) -> None:
    data, outside = dirs
    with duckdb.connect() as con:
        lock_down(con, data)
        assert con.sql(f"SELECT x FROM '{data / 't.csv'}'").fetchall() == [(1,)]
        for sql in (
            f"SELECT x FROM '{outside / 't.csv'}'",
            f"COPY (SELECT 1) TO '{outside / 'new.csv'}'",
            f"ATTACH '{outside / 'new.duckdb'}'",
            "SELECT * FROM read_text('/etc/hostname')",
            "LOAD httpfs",
        ):
            with pytest.raises(duckdb.PermissionException) as denied:
                con.sql(sql)
            assert refusal(denied.value, data) is not None
        assert sorted(p.name for p in outside.iterdir()) == ["t.csv"], "nothing written there"


def test_a_locked_connection_cannot_be_unlocked(dirs: tuple[Path, Path]) -> None:
    data, outside = dirs
    with duckdb.connect() as con:
        lock_down(con, data)
        for sql in (
            "SET enable_external_access = true",
            "RESET enable_external_access",
            f"SET allowed_directories = ['{outside}/']",
            "SET lock_configuration = false",
            "SET autoinstall_known_extensions = true",
        ):
            with pytest.raises(duckdb.InvalidInputException, match="configuration has been locked"):
                con.execute(sql)
        settings = dict(
            con.sql(
                "SELECT name, value FROM duckdb_settings() WHERE name IN ("
                "'enable_external_access', 'autoinstall_known_extensions', "
                "'autoload_known_extensions', 'lock_configuration')"
            ).fetchall()
        )
        assert settings == {
            "enable_external_access": "false",
            "autoinstall_known_extensions": "false",
            "autoload_known_extensions": "false",
            "lock_configuration": "true",
        }
        with pytest.raises(duckdb.PermissionException):
            con.sql(f"SELECT x FROM '{outside / 't.csv'}'")


def test_refusal_names_the_path_and_the_rule(tmp_path: Path) -> None:
    denied = duckdb.PermissionException(
        'Permission Error: Cannot access file "/etc/passwd" - file system operations are '
        "disabled by configuration"
    )
    assert refusal(denied, tmp_path) == (
        f"access to /etc/passwd is not allowed: ticklake sql reads only files under "
        f"{tmp_path.resolve()}"
    )
    extension = duckdb.PermissionException(
        "Permission Error: Loading external extensions is disabled through configuration"
    )
    assert refusal(extension, tmp_path) == (
        "not allowed: Loading external extensions is disabled through configuration "
        "(ticklake sql loads no extension)"
    )
    assert refusal(duckdb.CatalogException("no table x"), tmp_path) is None
