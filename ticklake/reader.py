"""One read, confined like ``ticklake sql``: open, run, copy the result out, close.

Two sources:

- :func:`read_database`: the features database, opened read-only (waiting while the job
  writes, as ``analytics.database.open_db`` does), its ``ticks`` view pointed at the data
  directory;
- :func:`read_lake`: the Parquet lake alone, through an in-memory DuckDB connection; the
  database is not opened at all, so such a read never waits for the job nor delays it.

Invariants: the connection is confined by :func:`ticklake.sql_sandbox.lock_down` (reads
files under the data directory only, loads no extension) before the query runs, runs with
``TimeZone = 'UTC'`` (timestamps come out as UTC), and is closed before the function
returns: the Arrow table returned owns its memory. A statement the sandbox forbids, or an
access it refuses, raises SandboxError with a one-line message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa

from analytics.database import READER_TIMEOUT, database_path, open_db
from ticklake.sql_sandbox import SandboxError, check_statements, lock_down, refusal

__all__ = ["Params", "Setup", "read_database", "read_lake"]

Params = Sequence[object] | None
"""Values for the query's ``?`` placeholders (None: a script of one or more statements)."""
Setup = Callable[[duckdb.DuckDBPyConnection], None]
"""ticklake's own preparation of a connection (temporary views), before it is locked down."""


def read_database(
    data: Path,
    query: str,
    params: Params = None,
    *,
    database: Path | None = None,
    timeout: float = READER_TIMEOUT,
    setup: Setup | None = None,
) -> pa.Table | None:
    """The result of ``query`` (its last statement's; None when that returns no rows, such
    as ``SET VARIABLE``) on the database of ``data`` (or ``database``).

    Only what ``ticklake sql`` runs is accepted (``check_statements``); ``setup`` runs
    before the connection is locked down.
    Raises ``analytics.database.DatabaseError`` when the database is missing, foreign or
    held past ``timeout`` seconds, SandboxError, and DuckDB's errors for a bad query.
    """
    check_statements(query)
    path = database or database_path(data)
    con = open_db(path, read_only=True, timeout=timeout, lake=data)
    try:
        if setup is not None:
            setup(con)
        return _run(con, data, query, params)
    finally:
        con.close()  # before anything else: the writer may be waiting


def read_lake(data: Path, query: str, params: Params = None) -> pa.Table:
    """The result of ``query`` (ticklake's own SQL over ``lake.layout``'s expressions) on an
    in-memory connection confined to ``data``."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        table = _run(con, data, query, params)  # lock_down registers the object store
    finally:
        con.close()
    if table is None:
        raise ValueError("the lake query returned no result")
    return table


def _run(con: duckdb.DuckDBPyConnection, data: Path, query: str, params: Params) -> pa.Table | None:
    try:
        lock_down(con, data)
        relation = con.sql(query) if params is None else con.sql(query, params=list(params))
        return None if relation is None else relation.to_arrow_table()
    except duckdb.Error as exc:
        message = refusal(exc, data)
        if message is not None:
            raise SandboxError(message) from exc
        raise
