"""The minute tier: round-trips through DuckDB and PyArrow, dedupe, atomicity."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from lake.atomic import atomic_write_bytes, temporary_path, temporary_pid
from lake.deltas import read_delta, write_delta
from lake.errors import LakeReadError, LakeWriteError
from lake.layout import (
    duckdb_read_sql,
    minute_dir,
    minute_file,
    parse_minute_dir,
    pyarrow_partitioning,
)
from lake.minutes import (
    clean_temporaries,
    list_minutes,
    list_tickers,
    read_minutes,
    write_minute,
    write_minutes,
)
from lake.schema import LAKE_SCHEMA
from lake.symbols import SymbolError
from lake.utc import MINUTE_MS
from tests.kit.lake import ODD_SYMBOLS, to_legacy
from tests.kit.ticks import ticks
from tests.kit.times import OPEN_MS as T0

TRAVERSALS = ["../x", "..", ".", "/etc", "a/b", "a\x00b", "x" * 1000, "C:x", "a\\b", "%2e%2e"]


def read_file(path: Path) -> pa.Table:
    return pq.ParquetFile(path).read()


# --- symbols that cannot be a folder -------------------------------------------------------


@pytest.mark.parametrize("symbol", TRAVERSALS)
def test_traversal_symbols_never_create_anything(tmp_path: Path, symbol: str) -> None:
    root = tmp_path / "lake"
    root.mkdir()
    with pytest.raises(SymbolError):
        minute_dir(root, symbol, T0)
    with pytest.raises(SymbolError):
        write_minute(root, symbol, T0, ticks(symbol, [T0], [1]))
    result = write_minutes(root, ticks(symbol, [T0], [1]))
    assert result.rejected_rows == 1 and result.writes == []
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("*")] == [Path("lake")]


# --- readers see what was subscribed --------------------------------------------------------


@pytest.fixture
def odd_lake(tmp_path: Path) -> Path:
    root = tmp_path / "it's a lake"  # a quote in the root must survive the SQL
    for i, symbol in enumerate(ODD_SYMBOLS):
        write_minute(
            root, symbol, T0 + i * MINUTE_MS, ticks(symbol, [T0 + i * MINUTE_MS + 1000], [i + 1])
        )
    return root


def test_odd_symbols_round_trip_through_duckdb(odd_lake: Path) -> None:
    sql = f"SELECT ticker, id, date, minute, typeof(ticker) FROM {duckdb_read_sql(odd_lake)}"
    rows = duckdb.execute(sql).fetchall()
    assert sorted(r[0] for r in rows) == sorted(ODD_SYMBOLS)
    assert all(r[0] == r[1] for r in rows)
    assert {r[2] for r in rows} == {dt.date(2024, 1, 2)}
    assert {r[4] for r in rows} == {"VARCHAR"}
    assert sorted(r[3] for r in rows) == [f"14{30 + i}" for i in range(len(ODD_SYMBOLS))]


def test_odd_symbols_round_trip_through_pyarrow_dataset(odd_lake: Path) -> None:
    dataset = ds.dataset(odd_lake / "ticks", format="parquet", partitioning=pyarrow_partitioning())
    table = dataset.to_table(columns=["ticker", "id", "date"])
    assert table["ticker"].to_pylist() == table["id"].to_pylist()
    assert sorted(table["ticker"].to_pylist()) == sorted(ODD_SYMBOLS)
    assert table.schema.field("date").type == pa.date32()


def test_list_tickers_returns_symbols_as_subscribed(odd_lake: Path) -> None:
    (odd_lake / "ticks" / "ticker=a%2Fb").mkdir()
    (odd_lake / "ticks" / "stray").mkdir()
    assert list_tickers(odd_lake) == sorted(ODD_SYMBOLS)
    assert list_tickers(odd_lake / "missing") == []


def test_duckdb_sql_refuses_a_glob_in_the_root() -> None:
    with pytest.raises(ValueError, match="glob character"):
        duckdb_read_sql("/data/lake*")


# --- writing and merging --------------------------------------------------------------------


def test_write_minute_writes_lake_schema_with_lz4(tmp_path: Path) -> None:
    rows = ticks("AAPL", [T0 + 2000, T0 + 1000], [2, 1], [1.5, 2.5])
    result = write_minute(tmp_path, "AAPL", T0, rows)
    table = read_file(result.path)
    assert table.schema.equals(LAKE_SCHEMA)
    assert table["seq"].to_pylist() == [1, 2]
    codec = pq.ParquetFile(result.path).metadata.row_group(0).column(0).compression
    assert codec in ("LZ4", "LZ4_RAW")
    assert (result.rows_before, result.rows_in, result.rows_after) == (0, 2, 2)
    assert result.bytes_written == result.path.stat().st_size > 0
    assert [p.name for p in result.path.parent.iterdir()] == ["part.parquet"]


def test_replayed_frames_are_one_row_and_leave_the_file_alone(tmp_path: Path) -> None:
    rows = ticks("AAPL", [T0, T0 + 1000, T0 + 2000], [1, 2, 3], [1.0, 2.0, 3.0])
    first = write_minute(tmp_path, "AAPL", T0, rows)
    inode, mtime = first.path.stat().st_ino, first.path.stat().st_mtime_ns
    again = write_minute(tmp_path, "AAPL", T0, rows.slice(1))
    assert (again.rows_after, again.duplicates_dropped, again.written) == (3, 2, False)
    assert (first.path.stat().st_ino, first.path.stat().st_mtime_ns) == (inode, mtime)


def test_same_seq_in_one_batch_is_one_row(tmp_path: Path) -> None:
    rows = pa.concat_tables([ticks("AAPL", [T0], [7]), ticks("AAPL", [T0], [7])])
    result = write_minute(tmp_path, "AAPL", T0, rows)
    assert result.rows_after == 1 and result.duplicates_dropped == 1


def test_replay_over_a_partly_applied_minute_keeps_every_seq_once(tmp_path: Path) -> None:
    # A crash after the lake got seqs 5-6 but before the seal said so: the replay brings
    # 4-8 again, mixed with rows the file already has at other positions.
    times = [T0 + 1000 * i for i in range(10)]
    write_minute(tmp_path, "AAPL", T0, ticks("AAPL", times[:3], [1, 2, 3], [1.0, 2.0, 3.0]))
    write_minute(tmp_path, "AAPL", T0, ticks("AAPL", times[5:7], [5, 6], [5.0, 6.0]))
    replay = ticks("AAPL", times[4:9], [4, 5, 6, 7, 8], [4.0, 5.0, 6.0, 7.0, 8.0])
    result = write_minute(tmp_path, "AAPL", T0, replay)
    table = read_file(result.path)
    assert table["seq"].to_pylist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert table["price"].to_pylist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]


def test_resent_snapshot_keeps_the_earliest_seq(tmp_path: Path) -> None:
    snapshot: dict[str, list[Any]] = {"day_volume": [500], "quote_type": ["EQUITY"], "bid": [None]}
    write_minute(tmp_path, "AAPL", T0, ticks("AAPL", [T0 + 1000], [10], **snapshot))
    later = ticks("AAPL", [T0 + 1000], [4], **snapshot)  # same tick, received again
    result = write_minute(tmp_path, "AAPL", T0, later)
    table = read_file(result.path)
    assert table["seq"].to_pylist() == [4]
    assert result.rows_after == 1 and result.written
    resent = ticks("AAPL", [T0 + 1000], [99], **snapshot)  # received_at differs too
    assert write_minute(tmp_path, "AAPL", T0, resent).rows_after == 1


def test_same_time_different_content_are_different_ticks(tmp_path: Path) -> None:
    rows = pa.concat_tables(
        [
            ticks("AAPL", [T0 + 1000], [1], [10.0]),
            ticks("AAPL", [T0 + 1000], [2], [10.5]),
            ticks("AAPL", [T0 + 1000], [3], [10.0], day_volume=[1]),  # NULL vs value differs
            ticks("AAPL", [T0 + 1000], [4], [float("nan")]),
            ticks("AAPL", [T0 + 1000], [5], [float("nan")]),  # same NaN bits: same tick
        ]
    )
    table = read_file(write_minute(tmp_path, "AAPL", T0, rows).path)
    assert table["seq"].to_pylist() == [1, 2, 3, 4]


def test_sorted_by_time_then_seq(tmp_path: Path) -> None:
    times = [T0 + 3000, T0 + 1000, T0 + 1000, T0 + 3000, T0 + 1000]
    seqs = [9, 8, 3, 2, 5]
    write_minute(tmp_path, "AAPL", T0, ticks("AAPL", times[:2], seqs[:2], [1.0, 2.0]))
    result = write_minute(tmp_path, "AAPL", T0, ticks("AAPL", times[2:], seqs[2:], [3, 4, 5]))
    table = read_file(result.path)
    assert table["seq"].to_pylist() == [3, 5, 8, 2, 9]
    assert table["time"].cast(pa.int64()).to_pylist() == sorted(times)


@pytest.mark.parametrize("offset", [-1, MINUTE_MS, 10 * MINUTE_MS])
def test_rows_outside_the_minute_are_a_programming_error(tmp_path: Path, offset: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        write_minute(tmp_path, "AAPL", T0, ticks("AAPL", [T0, T0 + offset], [1, 2]))
    assert not (tmp_path / "ticks").exists()


def test_rows_of_another_ticker_or_without_seq_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="id other than"):
        write_minute(tmp_path, "AAPL", T0, ticks("MSFT", [T0], [1]))
    with pytest.raises(ValueError, match="id other than"):
        write_minute(tmp_path, "AAPL", T0, ticks(None, [T0], [1]))
    with pytest.raises(ValueError, match="no seq"):
        write_minute(tmp_path, "AAPL", T0, ticks("AAPL", [T0], [None]))
    with pytest.raises(ValueError, match="missing columns"):
        write_minute(tmp_path, "AAPL", T0, ticks("AAPL", [T0], [1]).drop_columns("seq"))


def test_incoming_tables_are_cast_to_lake_schema(tmp_path: Path) -> None:
    rows = ticks("AAPL", [T0], [1])
    loose = rows.set_column(1, "price", rows["price"].cast(pa.float64())).select(
        list(reversed(rows.column_names))
    )
    table = read_file(write_minute(tmp_path, "AAPL", T0, loose).path)
    assert table.schema.equals(LAKE_SCHEMA)


def test_a_foreign_existing_file_is_kept_in_quarantine_never_lost(tmp_path: Path) -> None:
    path = minute_file(tmp_path, "AAPL", T0)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not parquet")
    written = write_minute(tmp_path, "AAPL", T0, ticks("AAPL", [T0], [1]))
    assert (written.rows_before, written.rows_after) == (0, 1)
    assert read_file(path)["seq"].to_pylist() == [1]
    kept = tmp_path / "quarantine" / path.relative_to(tmp_path)
    assert kept.read_bytes() == b"not parquet", "its bytes are kept, never overwritten"


# --- atomicity and failures -----------------------------------------------------------------


@pytest.mark.slow
def test_reader_never_sees_a_partial_or_doubled_minute(tmp_path: Path) -> None:
    base = 50
    rows = ticks("AAPL", [T0] * base, range(base), [float(p) for p in range(base)])
    path = write_minute(tmp_path, "AAPL", T0, rows).path
    written = {base}
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                seen.append(read_file(path).num_rows)
            except BaseException as exc:
                errors.append(exc)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(200):
            seq = base + i
            rows = ticks("AAPL", [T0 + (i % 60) * 1000], [seq], [float(seq)])
            written.add(write_minute(tmp_path, "AAPL", T0, rows).rows_after)
    finally:
        done.set()
        thread.join()
    assert errors == []
    assert len(seen) > 20
    assert set(seen) <= written
    assert seen == sorted(seen)  # each read is the minute before or after a write
    assert read_file(path).num_rows == base + 200


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_leaves_the_old_file_intact(tmp_path: Path) -> None:
    path = write_minute(tmp_path, "AAPL", T0, ticks("AAPL", [T0], [1])).path
    before = path.read_bytes()
    tmp = temporary_path(path)
    tmp.symlink_to("/dev/full")  # every write to the temporary fails with ENOSPC
    with pytest.raises(LakeWriteError, match="No space left on device") as info:
        write_minute(tmp_path, "AAPL", T0, ticks("AAPL", [T0 + 1000], [2]))
    assert str(path) in str(info.value)
    assert path.read_bytes() == before
    assert not os.path.lexists(tmp)
    assert write_minute(tmp_path, "AAPL", T0, ticks("AAPL", [T0 + 1000], [2])).rows_after == 2


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions")
def test_permission_denied_leaves_the_old_file_intact(tmp_path: Path) -> None:
    path = write_minute(tmp_path, "AAPL", T0, ticks("AAPL", [T0], [1])).path
    before = path.read_bytes()
    path.parent.chmod(0o555)
    try:
        with pytest.raises(LakeWriteError, match="Permission denied"):
            write_minute(tmp_path, "AAPL", T0, ticks("AAPL", [T0 + 1000], [2]))
    finally:
        path.parent.chmod(0o755)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["part.parquet"]


def test_threads_writing_a_new_lake_at_once_do_not_collide(tmp_path: Path) -> None:
    """The first writes to a lake all create its placeholders: each thread has its own
    temporary name, so none renames another's half-written file or finds it gone."""
    here = temporary_path(tmp_path / "part.parquet")
    names: list[Path] = []
    thread = threading.Thread(
        target=lambda: names.append(temporary_path(tmp_path / "part.parquet"))
    )
    thread.start()
    thread.join()
    assert names[0] != here and temporary_pid(here.name) == temporary_pid(names[0].name)
    assert temporary_pid(here.name) == os.getpid()
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def write(i: int) -> None:
        barrier.wait()
        try:
            write_minutes(tmp_path, ticks(f"T{i}", [T0 + 1], [i + 1]))
        except BaseException as exc:  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(list_tickers(tmp_path)) == 8


def test_clean_temporaries_removes_only_crashed_writers_files(tmp_path: Path) -> None:
    folder = minute_dir(tmp_path, "AAPL", T0)
    folder.mkdir(parents=True)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        ours = folder / f".part.parquet.{os.getpid()}.tmp"
        dead = folder / f".part.parquet.{int(finished.stdout)}.tmp"
        busy = folder / f".part.parquet.{live.pid}.tmp"
        kept = [folder / "part.parquet", folder / "notes.tmp", busy]
        for p in [ours, dead, *kept]:
            p.write_bytes(b"x")
        assert clean_temporaries(tmp_path) == 2
        assert sorted(folder.iterdir()) == sorted(kept)
    finally:
        live.kill()
        live.wait()


def test_atomic_write_bytes_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "state" / "watermark.json"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["watermark.json"]


# --- write_minutes and reading --------------------------------------------------------------


def test_write_minutes_splits_by_ticker_and_minute_and_rejects_bad_ids(tmp_path: Path) -> None:
    good = pa.concat_tables(
        [
            ticks("AAPL", [T0 + 1000, T0 + MINUTE_MS + 5, T0 + 2000], [1, 2, 3]),
            ticks("EURUSD=X", [T0 + MINUTE_MS - 1, T0 - 1], [4, 5]),
        ]
    )
    bad = pa.concat_tables(
        [
            ticks(None, [T0], [6]),
            ticks("../x", [T0], [7]),
            ticks("a b", [T0], [8]),
            ticks("AAPL", [T0], [9]).set_column(2, "time", pa.nulls(1, LAKE_SCHEMA[2].type)),
        ]
    )
    mixed = pa.concat_tables([good, bad]).take(pa.array(np.random.default_rng(1).permutation(9)))
    result = write_minutes(tmp_path, mixed)
    assert result.rejected_rows == 4
    assert sorted(result.rejected["seq"].to_pylist()) == [6, 7, 8, 9]
    got = {parse_minute_dir(w.path): w.rows_after for w in result.writes}
    assert got == {("AAPL", T0): 2, ("AAPL", T0 + MINUTE_MS): 1, ("EURUSD=X", T0): 1,
                   ("EURUSD=X", T0 - MINUTE_MS): 1}  # fmt: skip
    assert list_tickers(tmp_path) == ["AAPL", "EURUSD=X"]


def test_write_minutes_with_nothing_usable_writes_nothing(tmp_path: Path) -> None:
    result = write_minutes(tmp_path, ticks(None, [T0, T0], [1, 2]))
    assert result.rejected_rows == 2 and result.writes == []
    assert not (tmp_path / "ticks").exists()


def test_read_minutes_reads_exactly_the_requested_files(tmp_path: Path) -> None:
    for m in range(4):
        write_minute(
            tmp_path, "ES=F", T0 + m * MINUTE_MS, ticks("ES=F", [T0 + m * MINUTE_MS], [m + 1])
        )
    write_minute(tmp_path, "NQ=F", T0, ticks("NQ=F", [T0], [100]))
    table = read_minutes(
        tmp_path, "ES=F", [T0 + 3 * MINUTE_MS, T0 + MINUTE_MS, T0 + 9 * MINUTE_MS, T0 + MINUTE_MS]
    )
    assert table.schema.equals(LAKE_SCHEMA)
    assert table["seq"].to_pylist() == [4, 2]
    narrow = read_minutes(tmp_path, "ES=F", [T0, T0 + 2 * MINUTE_MS], columns=["seq", "time"])
    assert narrow.column_names == ["seq", "time"] and narrow["seq"].to_pylist() == [1, 3]
    empty = read_minutes(tmp_path, "ES=F", [T0 + 30 * MINUTE_MS], columns=["price"])
    assert empty.num_rows == 0 and empty.schema.field("price").type == pa.float32()
    with pytest.raises(ValueError, match="unknown lake columns"):
        read_minutes(tmp_path, "ES=F", [T0], columns=["nope"])


def test_list_minutes_of_a_day(tmp_path: Path) -> None:
    for m in (0, 7, 3):
        write_minute(
            tmp_path, "AAPL", T0 + m * MINUTE_MS, ticks("AAPL", [T0 + m * MINUTE_MS], [m + 1])
        )
    minute_dir(tmp_path, "AAPL", T0 + 9 * MINUTE_MS).mkdir()  # no file yet: not listed
    day = dt.date(2024, 1, 2)
    assert list_minutes(tmp_path, "AAPL", day) == [T0, T0 + 3 * MINUTE_MS, T0 + 7 * MINUTE_MS]
    assert list_minutes(tmp_path, "AAPL", day + dt.timedelta(days=1)) == []


def test_a_minute_file_from_before_fields_35_45_had_names_takes_late_ticks(
    tmp_path: Path,
) -> None:
    old = ticks("AAPL", [T0, T0 + 1000], [1, 2], cmc_rank=[7, None])
    write_minute(tmp_path, "AAPL", T0, old)
    to_legacy(tmp_path)  # the minute file and the lake's placeholders
    path = minute_file(tmp_path, "AAPL", T0)
    assert "field_36" in pq.ParquetFile(path).schema_arrow.names

    assert read_minutes(tmp_path, "AAPL", [T0])["cmc_rank"].to_pylist() == [7, None]
    late = write_minute(tmp_path, "AAPL", T0, ticks("AAPL", [T0 + 500], [3], cmc_rank=[9]))

    table = read_file(late.path)
    assert table.schema.equals(LAKE_SCHEMA), "rewritten with today's columns"
    assert table["seq"].to_pylist() == [1, 3, 2]
    assert table["cmc_rank"].to_pylist() == [7, 9, None]


def test_a_delta_from_before_fields_35_45_had_names_keeps_its_values(tmp_path: Path) -> None:
    delta = write_delta(tmp_path, ticks("AAPL", [T0], [1], cmc_rank=[4]))
    assert delta is not None
    to_legacy(tmp_path)
    rows = read_delta(delta)
    assert rows.schema.equals(LAKE_SCHEMA)
    assert rows["cmc_rank"].to_pylist() == [4]


def test_a_damaged_minute_file_is_set_aside_and_stops_no_other_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_minutes(tmp_path, pa.concat_tables([ticks("AAPL", [T0], [1]), ticks("MSFT", [T0], [2])]))
    damaged = minute_file(tmp_path, "AAPL", T0)
    truncated = damaged.read_bytes()[:40]  # no footer
    damaged.write_bytes(truncated)
    later = pa.concat_tables([ticks("AAPL", [T0 + 5], [3]), ticks("MSFT", [T0 + 5], [4])])

    written = write_minutes(tmp_path, later)

    assert {w.ticker: w.rows_after for w in written.writes} == {"AAPL": 1, "MSFT": 2}
    assert read_file(minute_file(tmp_path, "MSFT", T0))["seq"].to_pylist() == [2, 4]
    assert read_file(damaged)["seq"].to_pylist() == [3], "rewritten from what came in"
    kept = tmp_path / "quarantine" / damaged.relative_to(tmp_path)
    assert kept.read_bytes() == truncated, "kept as it was, never deleted"
    lines = [r.getMessage() for r in caplog.records if "event=lake_file_damaged" in r.getMessage()]
    assert len(lines) == 1 and "ticklake verify --repair" in lines[0]
    kept.replace(damaged)  # damaged again: a reader gets a clear error, not Arrow's
    with pytest.raises(LakeReadError, match="cannot read"):
        read_minutes(tmp_path, "AAPL", [T0])
