"""The DuckDB features database: opening it politely, its schema, its views, the upsert.

Contract 6: one writer (the analytics job), which holds the write lock only while it
writes: open, upsert, close. DuckDB refuses a second *process* outright while any
connection is open (a read-only one blocks the writer, the writer blocks readers), so
:func:`open_db` retries on that lock error with capped exponential backoff and full jitter,
logging who holds the file, until its timeout.

Invariants:
- the schema is ``analytics/sql/schema.sql`` (version 1) plus the numbered ``MIGRATIONS`` after it
  (``analytics/sql/migrate_*.sql``);
  ``meta.schema_version`` is the last one applied, each in its own transaction with the
  version bump; a database newer than this code is refused, never downgraded;
- the views (``analytics/sql/views.sql``) are re-created by the writer when that file or the data
  directory changes (``meta.views_signature``); a reader whose data directory moved gets a
  temporary ``ticks`` view over the right lake, so readers never need write access;
- every connection runs with ``TimeZone = 'UTC'``;
- one row per (ticker, window_start) (contract 5), kept by :func:`upsert_features`, the
  only writer of ``features`` (since migration 2 the table has no PRIMARY KEY: its index
  dominated the insert's cost; see README, Benchmarks): in one transaction it deletes the
  stored rows of the batch's keys, then inserts the batch, deduplicated first (the last
  occurrence wins).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analytics.features import FEATURE_SCHEMA
from analytics.sql_files import sql_text
from analytics.views import reader_ticks_view, signature, views_to_create
from lake.backoff import Backoff
from lake.clock import Clock, SystemClock
from lake.datadir import database_file
from lake.errors import first_line
from lake.layout import remote_lake
from lake.logfmt import logfmt
from lake.remote import RemoteError
from lake.schema import TIME_TYPE
from lake.utc import MINUTE_MS

__all__ = [
    "MIGRATIONS",
    "ROW_SCHEMA",
    "SCHEMA_VERSION",
    "DatabaseError",
    "DatabaseLockedError",
    "DatabaseMissingError",
    "Migration",
    "Pause",
    "SchemaVersionError",
    "database_path",
    "dedupe_keys",
    "ensure_views",
    "lock_holder",
    "migrate",
    "open_db",
    "schema_version",
    "upsert_features",
]

log = logging.getLogger(__name__)

WRITER_TIMEOUT: Final = 600.0
READER_TIMEOUT: Final = 30.0
ROW_SCHEMA: Final = (
    FEATURE_SCHEMA.append(pa.field("late", pa.bool_()))
    .append(pa.field("gap", pa.bool_()))
    .append(pa.field("computed_at", pa.timestamp("us", tz="UTC")))
)
"""The Arrow schema of the rows :func:`upsert_features` writes: features, flags, computed_at."""

_HOLDER_RE: Final = re.compile(r"held in (?P<process>.*?) \(PID (?P<pid>\d+)\)")
_LOG_EVERY: Final = 10.0  # seconds between repeated db_locked warnings


class DatabaseError(Exception):
    """The database cannot be used; the message says which file and why."""


class DatabaseMissingError(DatabaseError):
    """A reader asked for a database that does not exist yet."""


class DatabaseLockedError(DatabaseError):
    """Another process held the database for longer than the timeout."""


class SchemaVersionError(DatabaseError):
    """The file is not a ticklake database, or one written by a newer ticklake."""


@dataclass(frozen=True)
class Migration:
    """Schema version ``version`` is reached by running ``sql_file`` (a shipped SQL file:
    :mod:`analytics.sql_files`)."""

    version: int
    name: str
    sql_file: str


MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(1, "features and meta tables", "schema.sql"),
    Migration(2, "features without a primary key", "migrate_2_features_keyless.sql"),
)
SCHEMA_VERSION: Final = MIGRATIONS[-1].version


@dataclass(frozen=True)
class Pause:
    """How ``open_db`` spends the pauses between attempts while another process holds
    the file: in ``sleep`` (tests pass a fake one); once ``stop`` is set, the next attempt
    that fails gives up (DatabaseLockedError)."""

    sleep: Callable[[float], None] = time.sleep
    stop: threading.Event | None = None


def database_path(data: Path) -> Path:
    """Where the database of the data directory ``data`` lives."""
    return database_file(data)


def open_db(
    path: Path,
    *,
    read_only: bool = False,
    clock: Clock | None = None,
    timeout: float | None = None,
    lake: Path | None = None,
    pause: Pause | None = None,
) -> duckdb.DuckDBPyConnection:
    """Connect, waiting while another process holds the file; then prepare the connection.

    The writer (``read_only=False``) creates the file if needed and migrates it; a reader
    raises DatabaseMissingError for a missing file and SchemaVersionError for a foreign or
    newer one. With ``lake`` (the data directory), the views are brought up to date (see
    the module docstring). The wait is measured on ``clock`` and spent as ``pause`` says;
    ``timeout`` defaults to ``WRITER_TIMEOUT`` for the writer (it must not lose windows to a
    reader) and ``READER_TIMEOUT`` for readers. DatabaseLockedError when it runs out or
    ``pause.stop`` is set.
    """
    path = Path(path)
    if read_only and not path.exists():
        raise DatabaseMissingError(f"no database at {path} yet: run ticklake record or analyze")
    clock = clock or SystemClock()
    limit = timeout if timeout is not None else READER_TIMEOUT if read_only else WRITER_TIMEOUT
    con = _connect(path, read_only, clock, limit, pause or Pause())
    try:
        con.execute("SET TimeZone = 'UTC'")
        if read_only:
            _check_version(con, path)
            if lake is not None:
                register_remote(con, lake)
                _attach_lake(con, lake)
        else:
            migrate(con)
            if lake is not None:
                _update_views(con, lake)
    except BaseException:
        con.close()
        raise
    return con


def lock_holder(exc: BaseException) -> str | None:
    """``pid/process`` of the lock holder named by a DuckDB lock error; None if not one.

    DuckDB raises IOException ("Could not set lock on file ... Conflicting lock is held in
    /usr/bin/python3 (PID 123)") for another process, and ConnectionException ("... with a
    different configuration ...") for another connection of this process.
    """
    text = str(exc)
    if isinstance(exc, duckdb.ConnectionException) and "different configuration" in text:
        return f"{os.getpid()}/this-process"
    if not isinstance(exc, duckdb.IOException) or "lock" not in text.lower():
        return None
    match = _HOLDER_RE.search(text)
    if match is None:
        return "unknown"
    return f"{match['pid']}/{os.path.basename(match['process']).replace(' ', '_')}"


def _connect(
    path: Path,
    read_only: bool,
    clock: Clock,
    timeout: float,
    pause: Pause,
) -> duckdb.DuckDBPyConnection:
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    backoff = Backoff(base=0.05, cap=2.0)
    started = clock.now()
    last_log = -_LOG_EVERY
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            holder = lock_holder(exc)
            if holder is None:
                reason = str(exc).splitlines()[0]
                raise DatabaseError(f"cannot open {path}: {reason}") from exc
            waited = clock.now() - started
            if waited >= timeout or (pause.stop is not None and pause.stop.is_set()):
                raise DatabaseLockedError(
                    f"{path} is held by process {holder}; gave up after {waited:.1f} s "
                    "(close that connection, or retry later)"
                ) from exc
            delay = min(backoff.next_delay(), timeout - waited)
            level = logging.WARNING if waited - last_log >= _LOG_EVERY else logging.DEBUG
            if level == logging.WARNING:
                last_log = waited
            log.log(
                level,
                "event=db_locked path=%s holder=%s retry_in=%.3f waited=%.1f read_only=%s",
                path,
                holder,
                delay,
                waited,
                read_only,
            )
            pause.sleep(delay)


# -- schema ---------------------------------------------------------------------------------


def schema_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The recorded schema version; None for a database without ticklake's ``meta`` table."""
    found = _one(
        con,
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = 'meta'",
    )
    if not found or not found[0]:
        return None
    row = _one(con, "SELECT value FROM meta WHERE key = 'schema_version'")
    return None if row is None else int(str(row[0]))


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Apply every migration after the recorded version; returns the version reached."""
    version = schema_version(con)
    if version is None:
        tables = _one(
            con, "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"
        )
        if tables and tables[0]:
            raise SchemaVersionError("the database has tables but no ticklake meta table")
        version = 0
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"database schema {version} is newer than this ticklake's {SCHEMA_VERSION}; "
            "upgrade ticklake"
        )
    for migration in MIGRATIONS:
        if migration.version <= version:
            continue
        con.begin()
        try:
            con.execute(sql_text(migration.sql_file))
            _set_meta(con, "schema_version", str(migration.version))
            con.commit()
        except BaseException:
            con.rollback()
            raise
        log.info("event=db_migrated version=%d name=%r", migration.version, migration.name)
        version = migration.version
    return version


def _check_version(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    version = schema_version(con)
    if version is None:
        raise SchemaVersionError(f"{path} is not a ticklake database (no meta table)")
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path} has schema {version}, newer than this ticklake's {SCHEMA_VERSION}; "
            "upgrade ticklake"
        )


def _meta(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    row = _one(con, "SELECT value FROM meta WHERE key = ?", [key])
    return None if row is None else str(row[0])


def _one(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: list[object] | dict[str, object] | None = None,
) -> tuple[object, ...] | None:
    """The first row of a query, fetching all of it: DuckDB 2 refuses new work (register,
    ...) on a connection whose last result was not read to the end."""
    rows = con.execute(sql, params).fetchall()
    return tuple(rows[0]) if rows else None


def _set_meta(con: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
    con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, value]).fetchall()


def ensure_views(con: duckdb.DuckDBPyConnection, lake: Path) -> bool:
    """Re-create the views if ``views.sql`` or the lake changed; True if it did."""
    text = views_to_create(lake, _meta(con, "views_signature"))
    if text is None:
        return False
    con.begin()
    try:
        con.execute(text)
        _set_meta(con, "views_signature", signature(text))
        con.commit()
    except BaseException:
        con.rollback()
        raise
    log.info("event=db_views_created lake=%s", lake)
    return True


def register_remote(con: duckdb.DuckDBPyConnection, lake: Path) -> None:
    """Let ``con`` read the object store the lake's views read (``lake.remote``), if any."""
    remote = remote_lake(lake)
    if remote is not None:
        remote.register(con)


def _update_views(con: duckdb.DuckDBPyConnection, lake: Path) -> None:
    """``ensure_views`` for the writer; an object store it cannot reach now (creating a
    view lists it) leaves the views as they were, with one line: the writer works from the
    files, and the next open tries again."""
    try:
        register_remote(con, lake)
        ensure_views(con, lake)
    except (RemoteError, duckdb.IOException, duckdb.HTTPException) as exc:
        log.warning("event=db_views_not_updated lake=%s reason=%s", lake, logfmt(first_line(exc)))


def _attach_lake(con: duckdb.DuckDBPyConnection, lake: Path) -> None:
    statement = reader_ticks_view(lake, _meta(con, "views_signature"))
    if statement is not None:
        con.execute(statement)


# -- the upsert -----------------------------------------------------------------------------


def dedupe_keys(table: pa.Table) -> tuple[pa.Table, int]:
    """``table`` with one row per (ticker, window_start), the last occurrence; and how many
    rows were dropped. Row order is otherwise kept."""
    if table.num_rows < 2 or _distinct_minute_keys(table):
        return table, 0
    keyed = table.select(["ticker", "window_start"]).append_column(
        "_row", pa.array(np.arange(table.num_rows, dtype=np.int64))
    )
    last = keyed.group_by(["ticker", "window_start"], use_threads=False).aggregate(
        [("_row", "max")]
    )
    if last.num_rows == table.num_rows:
        return table, 0
    keep = pc.sort_indices(last["_row_max"])
    return table.take(pc.take(last["_row_max"], keep)), table.num_rows - last.num_rows


def _distinct_minute_keys(table: pa.Table) -> bool:
    """True when every key is distinct, checked on integers (faster than grouping):
    the features' case, minute-aligned starts. False when it cannot tell so cheaply."""
    starts, tickers = table["window_start"], table["ticker"]
    if starts.null_count or tickers.null_count or not pa.types.is_timestamp(starts.type):
        return False
    ms = np.asarray(starts.cast(TIME_TYPE).cast(pa.int64()).to_numpy(), np.int64)
    if np.any(ms % MINUTE_MS):
        return False
    codes = pc.dictionary_encode(tickers).combine_chunks().indices.to_numpy()
    minute = ms // MINUTE_MS
    key = np.left_shift(codes.astype(np.int64), 32) | (minute - minute.min())
    key.sort()
    return not np.any(key[1:] == key[:-1])


def upsert_features(con: duckdb.DuckDBPyConnection, table: pa.Table) -> int:
    """Insert or replace ``table``'s rows (``ROW_SCHEMA``'s columns) in one transaction.

    Returns the number of rows written after deduplicating keys (the last occurrence of a
    (ticker, window_start) wins). On any error the transaction is rolled back.
    """
    missing = [name for name in ROW_SCHEMA.names if name not in table.column_names]
    if missing:
        raise ValueError(f"rows lack column(s) {', '.join(missing)}")
    rows, dropped = dedupe_keys(table.select(ROW_SCHEMA.names))
    if dropped:
        log.warning("event=duplicate_keys_dropped rows=%d", dropped)
    if rows.num_rows == 0:
        return 0
    columns = ", ".join(f'"{name}"' for name in ROW_SCHEMA.names)
    span = pc.min_max(rows["window_start"])
    bounds = {"lo": span["min"].as_py(), "hi": span["max"].as_py()}
    con.register("_ticklake_rows", rows)
    try:
        con.begin()
        try:
            # The key lookups are joins pruned by the batch's time range: the table grows
            # in time order, so DuckDB skips row groups by their min/max of window_start.
            if _one(con, _COUNT_STORED, bounds) != (0,):
                con.execute(_DELETE_STORED, bounds).fetchall()
            con.execute(f"INSERT INTO features ({columns}) SELECT {columns} FROM _ticklake_rows")
            con.commit()
        except BaseException:
            con.rollback()
            raise
    finally:
        con.unregister("_ticklake_rows")
    return int(rows.num_rows)


_COUNT_STORED: Final = (
    "SELECT count(*) FROM features AS f SEMI JOIN _ticklake_rows USING (ticker, window_start) "
    "WHERE f.window_start BETWEEN $lo AND $hi"
)
_DELETE_STORED: Final = (
    "DELETE FROM features AS f USING _ticklake_rows AS r WHERE f.ticker = r.ticker "
    "AND f.window_start = r.window_start AND f.window_start BETWEEN $lo AND $hi"
)
