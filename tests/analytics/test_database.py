"""The DuckDB database: schema and migrations, views on an empty and a moved lake, the
lock retry against real other processes, and the one-transaction, deduplicated upsert."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from analytics.database import (
    MIGRATIONS,
    ROW_SCHEMA,
    SCHEMA_VERSION,
    DatabaseError,
    DatabaseLockedError,
    DatabaseMissingError,
    Pause,
    SchemaVersionError,
    database_path,
    dedupe_keys,
    lock_holder,
    open_db,
    schema_version,
    upsert_features,
)
from analytics.features import FEATURE_SCHEMA
from analytics.sql_files import sql_text
from lake.clock import ManualClock, SystemClock
from lake.utc import MINUTE_MS
from tests.kit.features import hold_database
from tests.kit.lake import write_lake
from tests.kit.ticks import Feed
from tests.kit.times import T0

DUCKDB_TYPES = {
    pa.string(): "VARCHAR",
    pa.float32(): "FLOAT",
    pa.float64(): "DOUBLE",
    pa.int64(): "BIGINT",
    pa.bool_(): "BOOLEAN",
}


def rows(keys: list[tuple[str, int]], close: float = 100.0, late: bool = False) -> pa.Table:
    """Feature rows (ROW_SCHEMA) for (ticker, minute start) keys."""
    n = len(keys)
    data = {f.name: pa.nulls(n, f.type) for f in ROW_SCHEMA}
    starts = [s for _, s in keys]
    ts = ROW_SCHEMA.field("window_start").type
    data |= {
        "ticker": pa.array([t for t, _ in keys]),
        "window_start": pa.array(starts, pa.int64()).cast(ts),
        "window_end": pa.array([s + MINUTE_MS for s in starts], pa.int64()).cast(ts),
        "first_time": pa.array(starts, pa.int64()).cast(ts),
        "last_time": pa.array(starts, pa.int64()).cast(ts),
        "tick_count": pa.array([1] * n, pa.int64()),
        "late": pa.array([late] * n),
        "computed_at": pa.array([T0 * 1000] * n, pa.int64()).cast(
            ROW_SCHEMA.field("computed_at").type
        ),
    }
    for name in ("open", "high", "low", "close"):
        data[name] = pa.array([close] * n, pa.float32())
    return pa.table(data, schema=ROW_SCHEMA)


def stored(path: Path) -> list[tuple[str, int, float, bool]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(
            "SELECT ticker, epoch_ms(window_start), close, late FROM features ORDER BY ALL"
        ).fetchall()
    finally:
        con.close()


def test_a_new_database_gets_the_schema_and_its_version(tmp_path: Path) -> None:
    con = open_db(database_path(tmp_path), clock=ManualClock())
    try:
        assert schema_version(con) == SCHEMA_VERSION == MIGRATIONS[-1].version
        described = con.execute("DESCRIBE features").fetchall()
        timezone = con.execute("SELECT current_setting('TimeZone')").fetchall()
    finally:
        con.close()
    assert [row[0] for row in described] == ROW_SCHEMA.names  # FEATURE_SCHEMA + flags
    assert ROW_SCHEMA.names[: len(FEATURE_SCHEMA)] == FEATURE_SCHEMA.names
    for (name, kind, *_), field in zip(described, ROW_SCHEMA, strict=True):
        expected = (
            "TIMESTAMP WITH TIME ZONE"
            if pa.types.is_timestamp(field.type)
            else DUCKDB_TYPES[field.type]
        )
        assert kind == expected, name
    assert timezone == [("UTC",)]
    assert [row[0] for row in described if row[2] == "NO"] == NOT_NULL
    assert [row[3] for row in described] == [None] * len(described)  # keys: upsert_features


NOT_NULL = ["ticker", "window_start", "window_end", "open", "high", "low", "close"]
NOT_NULL += ["tick_count", "first_time", "last_time", "late", "computed_at"]


def test_a_version_1_database_is_migrated_keeping_its_rows(tmp_path: Path, caplog) -> None:
    path = database_path(tmp_path)
    con = duckdb.connect(str(path))
    con.execute(sql_text(MIGRATIONS[0].sql_file))
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    keys = [("MSFT", T0 + MINUTE_MS), ("AMZN", T0), ("AMZN", T0 + MINUTE_MS)]
    con.register("old", rows(keys, close=7.0))
    con.execute("INSERT INTO features SELECT * FROM old")
    con.close()
    with caplog.at_level(logging.INFO, logger="analytics.database"):
        con = open_db(path, lake=tmp_path)
    try:
        assert "event=db_migrated version=2" in caplog.text and schema_version(con) == 2
        described = con.execute("DESCRIBE features").fetchall()
        assert [row[0] for row in described] == ROW_SCHEMA.names
        assert [row[0] for row in described if row[2] == "NO"] == NOT_NULL
        assert con.execute("SELECT count(*) FROM seed_features").fetchall() == [(3,)]
        assert upsert_features(con, rows([("AMZN", T0), ("IBM", T0)], close=8.0)) == 2
    finally:
        con.close()
    assert stored(path) == [
        ("AMZN", T0, 8.0, False),
        ("AMZN", T0 + MINUTE_MS, 7.0, False),
        ("IBM", T0, 8.0, False),
        ("MSFT", T0 + MINUTE_MS, 7.0, False),
    ]


def test_reopening_does_not_migrate_again(tmp_path: Path, caplog) -> None:
    path = database_path(tmp_path)
    open_db(path).close()
    with caplog.at_level(logging.INFO, logger="analytics.database"):
        open_db(path, lake=tmp_path).close()
        open_db(path, lake=tmp_path).close()
    assert "db_migrated" not in caplog.text
    assert caplog.text.count("event=db_views_created") == 1  # then unchanged


def test_a_newer_or_foreign_database_is_refused(tmp_path: Path) -> None:
    path = database_path(tmp_path)
    open_db(path).close()
    con = duckdb.connect(str(path))
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(SchemaVersionError, match="newer than this ticklake"):
        open_db(path)
    with pytest.raises(SchemaVersionError, match="newer than this ticklake"):
        open_db(path, read_only=True)
    foreign = tmp_path / "foreign.duckdb"
    duckdb.connect(str(foreign)).execute("CREATE TABLE t (x INT)").close()
    with pytest.raises(SchemaVersionError, match="no ticklake meta table"):
        open_db(foreign)
    with pytest.raises(SchemaVersionError, match="not a ticklake database"):
        open_db(foreign, read_only=True)


def test_a_reader_needs_an_existing_database(tmp_path: Path) -> None:
    with pytest.raises(DatabaseMissingError, match="no database at"):
        open_db(database_path(tmp_path), read_only=True)
    assert not database_path(tmp_path).exists()


def test_upsert_replaces_rows_in_one_transaction(tmp_path: Path) -> None:
    path = database_path(tmp_path)
    con = open_db(path)
    try:
        assert upsert_features(con, rows([("AMZN", T0), ("AMZN", T0 + MINUTE_MS)])) == 2
        assert upsert_features(con, rows([("AMZN", T0 + MINUTE_MS)], close=101.5, late=True)) == 1
        # stored and new keys in one batch: the stored one at the low end of its time range,
        mixed = rows(
            [("AMZN", T0 + 2 * MINUTE_MS), ("AMZN", T0), ("MSFT", T0 + MINUTE_MS)], close=99.0
        )
        assert upsert_features(con, mixed) == 3
        # then at the high end
        assert (
            upsert_features(con, rows([("MSFT", T0 - MINUTE_MS), ("AMZN", T0 + 2 * MINUTE_MS)]))
            == 2
        )
        broken = rows([("MSFT", T0), ("AMZN", T0)], close=7.0)
        broken = broken.set_column(
            broken.schema.get_field_index("open"), "open", pa.array([1.0, None], pa.float32())
        )  # the second row violates NOT NULL: nothing of the statement may land
        with pytest.raises(duckdb.ConstraintException):
            upsert_features(con, broken)
    finally:
        con.close()
    assert stored(path) == [
        ("AMZN", T0, 99.0, False),
        ("AMZN", T0 + MINUTE_MS, 101.5, True),
        ("AMZN", T0 + 2 * MINUTE_MS, 100.0, False),
        ("MSFT", T0 - MINUTE_MS, 100.0, False),
        ("MSFT", T0 + MINUTE_MS, 99.0, False),
    ]


def test_duplicate_keys_in_one_upsert_keep_the_last(tmp_path: Path) -> None:
    table = pa.concat_tables(
        [rows([("AMZN", T0)], close=1.0), rows([("MSFT", T0)]), rows([("AMZN", T0)], close=3.0)]
    )
    deduped, dropped = dedupe_keys(table)
    assert dropped == 1 and deduped["close"].to_pylist() == [100.0, 3.0]
    path = database_path(tmp_path)
    for _ in range(2):  # again: the stored rows of those keys are replaced, never doubled
        con = open_db(path)
        try:
            assert upsert_features(con, table) == 2
        finally:
            con.close()
        assert stored(path) == [("AMZN", T0, 3.0, False), ("MSFT", T0, 100.0, False)]


def test_upsert_rejects_rows_without_the_flags(tmp_path: Path) -> None:
    con = open_db(database_path(tmp_path))
    try:
        with pytest.raises(ValueError, match="late, gap, computed_at"):
            upsert_features(con, rows([("AMZN", T0)]).select(FEATURE_SCHEMA.names))
    finally:
        con.close()


def test_the_writer_waits_for_a_reader_process_and_names_it(tmp_path: Path, caplog) -> None:
    path = database_path(tmp_path)
    open_db(path).close()
    reader = hold_database(path, 1.0)
    with caplog.at_level(logging.WARNING, logger="analytics.database"):
        con = open_db(path, clock=SystemClock(), timeout=30)
    con.close()
    reader.wait()
    assert f"event=db_locked path={path} holder={reader.pid}/python" in caplog.text
    assert "retry_in=" in caplog.text and "read_only=False" in caplog.text


def test_a_reader_waits_for_the_writer_then_gives_up_after_its_timeout(tmp_path: Path) -> None:
    path = database_path(tmp_path)
    open_db(path).close()
    writer = hold_database(path, 30, read_only=False)
    try:
        clock = ManualClock()
        slept: list[float] = []

        def sleep(seconds: float) -> None:  # time passes on the injected clock only
            slept.append(seconds)
            clock.advance(seconds)

        with pytest.raises(DatabaseLockedError, match=f"held by process {writer.pid}/"):
            open_db(path, read_only=True, clock=clock, timeout=5.0, pause=Pause(sleep=sleep))
    finally:
        writer.terminate()
        writer.wait()
    assert sum(slept) == pytest.approx(5.0) and len(slept) > 3  # backoff: several retries
    assert max(slept) <= 2.0  # capped
    open_db(path, read_only=True).close()  # free again


def test_lock_holder_parses_duckdb_messages() -> None:
    message = (
        'IO Error: Could not set lock on file "/d/t.duckdb": Conflicting lock is held in '
        "/usr/local/bin/python3.11 (PID 4242). However, you would be able to open ..."
    )
    assert lock_holder(duckdb.IOException(message)) == "4242/python3.11"
    assert lock_holder(duckdb.IOException("IO Error: Could not set lock on file x")) == "unknown"
    assert lock_holder(duckdb.IOException("IO Error: disk full")) is None
    assert lock_holder(ValueError("lock")) is None


def test_other_open_errors_are_not_retried(tmp_path: Path) -> None:
    (tmp_path / "not-a-db.duckdb").write_bytes(b"this is not a database file" * 100)
    with pytest.raises(DatabaseError, match="cannot open"):
        open_db(tmp_path / "not-a-db.duckdb", timeout=60)


def test_views_follow_the_lake_from_empty_to_files(tmp_path: Path) -> None:
    path = database_path(tmp_path)
    con = open_db(path, lake=tmp_path)
    try:
        empty = con.execute("DESCRIBE ticks").fetchall()
        assert con.execute("SELECT count(*) FROM ticks").fetchall() == [(0,)]
    finally:
        con.close()
    write_lake(tmp_path, [Feed().ticks("EURUSD=X", T0, 2)])
    con = open_db(path, lake=tmp_path)
    try:
        real = con.execute("DESCRIBE ticks").fetchall()
        count = con.execute("SELECT count(*), min(ticker) FROM ticks").fetchall()
    finally:
        con.close()
    assert [r[:2] for r in empty] == [r[:2] for r in real]  # the placeholder has the columns
    assert count[0][0] > 0 and count[0][1] == "EURUSD=X"


def test_a_reader_of_a_moved_data_directory_reads_the_right_lake(tmp_path: Path) -> None:
    old = tmp_path / "old"
    write_lake(old, [Feed().ticks("AMZN", T0, 1)])
    open_db(database_path(old), lake=old).close()
    new = tmp_path / "new"
    shutil.move(old, new)
    stale = duckdb.connect(str(database_path(new)), read_only=True)
    with pytest.raises(duckdb.IOException, match="No files found"):
        stale.execute("SELECT count(*) FROM ticks")  # the stored view reads the old path
    stale.close()
    con = open_db(database_path(new), read_only=True, lake=new)
    try:
        count = con.execute("SELECT count(*) FROM ticks").fetchall()
        one = con.execute("SELECT count(*) FROM ticks_of('AMZN')").fetchall()
    finally:
        con.close()
    assert count[0][0] > 0 and one == count
