"""``ticklake sql``: one read-only query on the features database, its result printed.

Runs one query (or the statements of ``--file``; the last one's result is shown) on a
read-only connection, retrying while the job writes (it holds the database for
milliseconds a minute), closes it before printing, and writes the result as
:mod:`ticklake.sql_output` formats it. The query reads the database and the files under
the data directory, nothing else, and writes nothing (:mod:`ticklake.sql_sandbox`). Exit
status 1 for an SQL error or a statement that is not allowed, 2 when the query or the
database cannot be read.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import duckdb

from analytics.database import READER_TIMEOUT, DatabaseError, database_path, open_db
from ticklake.commands import Command, report_error, usage_error
from ticklake.config import add_options, positive_float
from ticklake.options import DATA, DATABASE
from ticklake.sql_output import FORMATS, write_result
from ticklake.sql_sandbox import SandboxError, check_statements, lock_down, refusal

__all__ = ["COMMAND", "SQL_OPTIONS", "add_arguments", "run"]

NAME: Final = "sql"
SQL_OPTIONS: Final = (DATA, DATABASE)


def add_arguments(parser: argparse.ArgumentParser, file_values: Mapping[str, Any]) -> None:
    add_options(parser, SQL_OPTIONS, file_values)
    parser.add_argument(
        "query", nargs="?", help='SQL to run (read-only), e.g. "FROM bars_5m LIMIT 5"'
    )
    parser.add_argument(
        "--file", type=Path, metavar="FILE", help="run the SQL in FILE (e.g. sql/examples/...)"
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="table", help="output format (default: table)"
    )
    parser.add_argument("--output", type=Path, metavar="FILE", help="write here instead of stdout")
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=READER_TIMEOUT,
        help=f"seconds to wait while the writer holds the database (default: {READER_TIMEOUT:g})",
    )


def run(ns: argparse.Namespace) -> int:
    """Run the query and write its result; see the module docstring for the exit status."""
    if ns.format == "parquet" and ns.output is None:
        return usage_error(NAME, "--format parquet needs --output FILE")
    if (ns.query is None) == (ns.file is None):
        return usage_error(NAME, "give a query or --file FILE (one of them)")
    try:
        query = ns.query if ns.file is None else ns.file.read_text(encoding="utf-8")
    except OSError as exc:
        return usage_error(NAME, f"cannot read {ns.file}: {exc.strerror}")
    try:
        check_statements(query)
    except (SandboxError, duckdb.Error) as exc:
        report_error(NAME, exc)
        return 1
    path = ns.database or database_path(ns.data)
    try:
        con = open_db(path, read_only=True, timeout=ns.timeout, lake=ns.data)
    except DatabaseError as exc:
        return usage_error(NAME, exc)
    try:
        lock_down(con, ns.data)
        relation = con.sql(query)
        table = None if relation is None else relation.to_arrow_table()
    except duckdb.Error as exc:
        report_error(NAME, refusal(exc, ns.data) or exc)
        return 1
    finally:
        con.close()  # before printing: the writer may be waiting
    if table is None:
        return 0
    try:
        write_result(table, ns.format, ns.output)
    except OSError as exc:
        return usage_error(NAME, f"cannot write {ns.output}: {exc.strerror}")
    return 0


COMMAND: Final = Command(
    name=NAME,
    help="run a read-only SQL query on the features database (works while recording)",
    description="Query the DuckDB file read-only: tables features, views ticks, bars_5m, "
    "bars_1h, bars_1d, seed_features. Retries while the job is writing. Only queries, "
    "EXPLAIN and SET VARIABLE run; they read the database and files under DATA, write "
    "nothing and load no extension.",
    add_arguments=add_arguments,
    run=run,
    settings=SQL_OPTIONS,
)
