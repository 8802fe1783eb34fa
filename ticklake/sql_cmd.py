"""``ticklake sql``: one read-only query on the features database, its result printed.

Runs one query (or the statements of ``--file`` or of a shipped ``--example``; the last
one's result is shown) on a read-only connection, retrying while the job writes (it holds
the database for milliseconds a minute), closes it before printing, and writes the result
as :mod:`ticklake.sql_output` formats it: on a terminal a table is drawn by DuckDB's own
renderer within the terminal's width (``--max-width`` sets another, 0 none); elsewhere it
is plain aligned text (cut to ``--max-width`` when given), stable for scripts. The query
reads the database and the files under the data directory, nothing else, and writes
nothing (:mod:`ticklake.sql_sandbox`). An SQL error is printed whole (DuckDB's hint,
candidates and caret are lines of their own). Exit status 1 for an SQL error or a statement
that is not allowed, 2 when the query, the data
directory or the database cannot be read.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import duckdb

from analytics.database import READER_TIMEOUT, DatabaseError, database_path
from analytics.sql_files import example_names, example_text
from ticklake.commands import Command, data_problem, report_error, usage_error
from ticklake.config import add_options, non_negative_int, positive_float
from ticklake.options import DATA, DATABASE, LAKE_URL, use_lake_url
from ticklake.reader import read_database
from ticklake.sql_output import FORMATS, write_result
from ticklake.sql_sandbox import SandboxError

__all__ = ["COMMAND", "SQL_OPTIONS", "add_arguments", "run", "table_width"]

NAME: Final = "sql"
SQL_OPTIONS: Final = (DATA, DATABASE, LAKE_URL)


def add_arguments(parser: argparse.ArgumentParser, file_values: Mapping[str, Any]) -> None:
    add_options(parser, SQL_OPTIONS, file_values)
    parser.add_argument(
        "query", nargs="?", help='SQL to run (read-only), e.g. "FROM bars_5m LIMIT 5"'
    )
    parser.add_argument(
        "--file",
        type=Path,
        metavar="FILE",
        help="run the SQL in FILE (e.g. analytics/sql/examples/...)",
    )
    parser.add_argument(
        "--example",
        choices=example_names(),
        metavar="NAME",
        help="run a shipped example (the same as analytics/sql/examples/NAME.sql): "
        + ", ".join(example_names()),
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="table", help="output format (default: table)"
    )
    parser.add_argument("--output", type=Path, metavar="FILE", help="write here instead of stdout")
    parser.add_argument(
        "--max-width",
        type=non_negative_int,
        metavar="COLUMNS",
        help="fit a table in this many characters a line (cells cut with …, columns left "
        "out); 0: never (default: the terminal's width when stdout is one, else never)",
    )
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
    if [ns.query, ns.file, ns.example].count(None) != 2:
        return usage_error(NAME, "give a query, --file FILE or --example NAME (one of them)")
    try:
        query = _query_text(ns)
    except OSError as exc:
        return usage_error(NAME, f"cannot read {ns.file}: {exc.strerror}")
    problem = use_lake_url(ns.data, ns.lake_url) or data_problem(ns.data)
    if problem is not None:
        return usage_error(NAME, problem)
    try:
        table = read_database(
            ns.data, query, database=ns.database or database_path(ns.data), timeout=ns.timeout
        )
    except DatabaseError as exc:
        return usage_error(NAME, exc)
    except (SandboxError, duckdb.Error) as exc:
        report_error(NAME, exc, whole=True)  # DuckDB's hint and caret are lines of their own
        return 1
    if table is None:
        return 0
    try:
        write_result(table, ns.format, ns.output, table_width(ns), box=_on_terminal(ns))
    except OSError as exc:
        return usage_error(NAME, f"cannot write {ns.output}: {exc.strerror}")
    return 0


def _query_text(ns: argparse.Namespace) -> str:
    if ns.file is not None:
        return str(ns.file.read_text(encoding="utf-8"))
    if ns.example is not None:
        return example_text(ns.example)
    return str(ns.query)


def _on_terminal(ns: argparse.Namespace) -> bool:
    return ns.output is None and sys.stdout.isatty()


def table_width(ns: argparse.Namespace) -> int | None:
    """The width a table must fit: ``--max-width`` (0: none), else the terminal's when the
    table goes to a terminal, else none."""
    if ns.max_width is not None:
        return int(ns.max_width) or None
    if _on_terminal(ns):
        return shutil.get_terminal_size().columns
    return None


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
