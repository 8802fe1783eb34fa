"""The history tier: day files, reading both tiers, the union SQL, late ticks into a day file."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lake import history
from lake.compact import compact_eligible
from lake.history import (
    ROW_GROUP_MINUTES,
    merge_into_day,
    merge_streams_into_day,
    read_day,
    write_day_atomically,
)
from lake.layout import (
    date_dir,
    duckdb_read_sql,
    duckdb_ticker_sql,
    history_file,
    minute_file,
)
from lake.minutes import (
    list_minutes,
    list_tickers,
    minute_source,
    read_minutes,
    write_minute,
    write_minutes,
)
from lake.quarantine import Quarantine
from lake.schema import LAKE_SCHEMA
from lake.seal import SealState
from lake.utc import DAY_MS, MINUTE_MS
from recorder.ingest import Ingest
from tests.kit.frames import pricing, v1
from tests.kit.lake import count, write_days
from tests.kit.ticks import equity_ticks, session
from tests.kit.times import DAY1, OPEN_MS

ODD = ["^GSPC", "EURUSD=X", "ES=F", "BRK-B", "M&M.NS", "1234"]


def compact_all(root: Path, before: dt.date, grace: float = 600.0) -> None:
    now = (OPEN_MS + 10 * DAY_MS) / 1000
    compact_eligible(root, now, grace=grace, before=before)


# --- paths and the day file -------------------------------------------------------------------


def test_day_file_is_sorted_typed_and_cut_into_two_hour_row_groups(tmp_path: Path) -> None:
    table = session("AAPL", 0, 390, 60, 1)  # a regular US session at 1 tick/s
    path = tmp_path / "day.parquet"
    write_day_atomically(table.take(np.random.default_rng(0).permutation(table.num_rows)), path)
    back = pq.read_table(path)
    assert back.schema.equals(LAKE_SCHEMA) and back.equals(table)  # sorted by (time, seq)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == 4  # 14:30-21:00 cut at 16:00, 18:00 and 20:00
    group = meta.row_group(1)
    time_col = group.column(LAKE_SCHEMA.get_field_index("time"))
    assert time_col.statistics.has_min_max and time_col.compression in ("LZ4", "LZ4_RAW")
    assert "DELTA_BINARY_PACKED" in time_col.encodings
    assert "RLE_DICTIONARY" in group.column(LAKE_SCHEMA.get_field_index("price")).encodings
    span = ROW_GROUP_MINUTES * MINUTE_MS
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(LAKE_SCHEMA.get_field_index("time")).statistics
        lo, hi = (int(v.timestamp() * 1000) for v in (stats.min, stats.max))
        assert lo // span == hi // span, "a row group crosses a two-hour boundary"


def test_write_day_needs_sorted_rows_and_read_day_skips_row_groups(tmp_path: Path) -> None:
    table = session("AAPL", 0, 390, 60, 1)
    path = tmp_path / "day.parquet"
    write_day_atomically(table, path)
    assert pq.read_table(path).equals(table)
    hour = (OPEN_MS + 30 * MINUTE_MS, OPEN_MS + 90 * MINUTE_MS)  # 15:00-16:00
    file = pq.ParquetFile(path)
    time_index = LAKE_SCHEMA.get_field_index("time")
    overlapping = 0
    for g in range(file.num_row_groups):
        stats = file.metadata.row_group(g).column(time_index).statistics
        lo, hi = (int(v.timestamp() * 1000) for v in (stats.min, stats.max))
        overlapping += int(lo < hour[1] and hour[0] <= hi)
    assert overlapping == 1 and file.num_row_groups == 4  # an hour reads 1/4 of the session
    rows = read_day(path, ["time", "seq"], [hour])
    times = rows["time"].cast(pa.int64()).to_numpy()
    assert rows.num_rows == 3600 and times.min() == hour[0] and times.max() < hour[1]


def test_duckdb_skips_row_groups_of_a_day_file_for_an_hour(tmp_path: Path) -> None:
    table = session("AAPL", 0, 390, 60, 1)
    write_day_atomically(table, history_file(tmp_path, "AAPL", DAY1))
    sql = (
        f"EXPLAIN ANALYZE SELECT max(price) FROM {duckdb_read_sql(tmp_path)} WHERE ticker = 'AAPL'"
        " AND time >= '2024-01-02 15:00:00+00' AND time < '2024-01-02 16:00:00+00'"
    )
    with duckdb.connect() as con:
        plan = con.execute(sql).fetchall()[0][1]
    scanned = [tuple(map(int, m)) for m in re.findall(r"Row Groups Scanned: (\d+) / (\d+)", plan)]
    assert (1, 4) in scanned, plan


# --- reading both tiers -----------------------------------------------------------------------


def test_read_minutes_reads_both_tiers_in_the_order_given(tmp_path: Path) -> None:
    written = write_days(tmp_path, ["AAPL"], days=3)
    compact_all(tmp_path, before=DAY1 + dt.timedelta(days=2))  # days 0, 1 compacted
    assert history_file(tmp_path, "AAPL", DAY1).is_file()
    assert not history_file(tmp_path, "AAPL", DAY1 + dt.timedelta(days=2)).exists()
    asked = [
        OPEN_MS + 2 * DAY_MS + MINUTE_MS,
        OPEN_MS + DAY_MS + 3 * MINUTE_MS,
        OPEN_MS + 2 * MINUTE_MS,
        OPEN_MS,
    ]
    got = read_minutes(tmp_path, "AAPL", [*asked, OPEN_MS], ["seq", "price"])
    times = written["time"].cast(pa.int64()).to_numpy()
    expected = np.concatenate([np.flatnonzero(times // MINUTE_MS * MINUTE_MS == m) for m in asked])
    assert got["seq"].to_pylist() == written["seq"].take(expected).to_pylist()
    assert got.column_names == ["seq", "price"]
    assert read_minutes(tmp_path, "AAPL", [OPEN_MS + 300 * MINUTE_MS]).num_rows == 0


def test_listings_cover_both_tiers(tmp_path: Path) -> None:
    write_days(tmp_path, ["AAPL", "EURUSD=X"], days=2, minutes=5)
    before = [list_minutes(tmp_path, "AAPL", DAY1 + dt.timedelta(days=d)) for d in range(2)]
    compact_all(tmp_path, before=DAY1 + dt.timedelta(days=1), grace=0)
    assert not date_dir(tmp_path, "AAPL", DAY1).exists()  # minute files deleted (grace 0)
    assert list_tickers(tmp_path) == ["AAPL", "EURUSD=X"]
    after = [list_minutes(tmp_path, "AAPL", DAY1 + dt.timedelta(days=d)) for d in range(2)]
    assert after == before and len(after[0]) == 5
    assert minute_source(tmp_path, "AAPL", OPEN_MS) == history_file(tmp_path, "AAPL", DAY1)
    next_day = OPEN_MS + DAY_MS
    assert minute_source(tmp_path, "AAPL", next_day) == minute_file(tmp_path, "AAPL", next_day)
    assert minute_source(tmp_path, "AAPL", next_day + 60 * MINUTE_MS) is None


# --- the union SQL ----------------------------------------------------------------------------


def describe(root: Path) -> list[tuple[Any, ...]]:
    with duckdb.connect() as con:
        rows = con.execute(f"DESCRIBE SELECT * FROM {duckdb_read_sql(root)}").fetchall()
    return [row[:2] for row in rows]


def test_sql_has_one_shape_of_columns_whatever_the_tiers_hold(tmp_path: Path) -> None:
    root = tmp_path / "it's a lake"  # a quote in the root must survive the SQL
    assert count(root) == (0, 0)  # no lake at all: no rows, no error
    empty = describe(root)
    assert [name for name, _ in empty][-3:] == ["date", "minute", "ticker"]
    written = write_days(root, ODD, days=2, minutes=3)
    assert describe(root) == empty and count(root) == (written.num_rows,) * 2
    compact_all(root, before=DAY1 + dt.timedelta(days=1), grace=0)
    assert describe(root) == empty and count(root) == (written.num_rows,) * 2
    shutil.rmtree(root / "ticks")  # only the history tier left
    assert describe(root) == empty
    assert count(root) == (written.num_rows // 2,) * 2
    with duckdb.connect() as con:
        rows = con.execute(f"SELECT DISTINCT ticker, id FROM {duckdb_read_sql(root)}").fetchall()
    assert sorted(t for t, _ in rows) == sorted(ODD) and all(t == i for t, i in rows)


def test_history_rows_carry_their_utc_minute(tmp_path: Path) -> None:
    write_days(tmp_path, ["AAPL"], days=2, minutes=3)
    compact_all(tmp_path, before=DAY1 + dt.timedelta(days=1))
    sql = (
        f"SELECT date, minute, count(*) FROM {duckdb_read_sql(tmp_path)} GROUP BY ALL ORDER BY ALL"
    )
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'America/New_York'")
        rows = con.execute(sql).fetchall()
        one = con.execute(
            f"SELECT count(*) FROM {duckdb_read_sql(tmp_path)} WHERE minute = '1431'"
        ).fetchall()
    assert [(str(d), m) for d, m, _ in rows] == [
        (str(DAY1 + dt.timedelta(days=d)), f"143{m}") for d in range(2) for m in range(3)
    ]
    assert one == [(12,)]  # 6 ticks in 14:31 of each day, one day in each tier


def test_hidden_minute_files_are_pruned_unopened(tmp_path: Path) -> None:
    written = write_days(tmp_path, ["AAPL", "MSFT"], days=2, minutes=4)
    compact_all(tmp_path, before=DAY1 + dt.timedelta(days=1))  # day 0 hidden, files kept
    sql = f"SELECT count(*), count(DISTINCT seq) FROM {duckdb_read_sql(tmp_path)}"
    for ticker in ("AAPL", "MSFT"):  # a deletion racing the query: the files are gone
        for part in date_dir(tmp_path, ticker, DAY1).glob("minute=*/part.parquet"):
            part.unlink()
    with duckdb.connect() as con:
        assert con.execute(sql).fetchall() == [(written.num_rows, written.num_rows)]


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_duckdb_lists_every_history_day_before_the_history_files(tmp_path: Path) -> None:
    """Exactly once relies on DuckDB listing the history tier completely for the days
    (``read_blob``) before ``read_parquet`` lists it for the rows, both while binding, and
    never again while executing (``glob()`` would list lazily, during execution)."""
    write_days(tmp_path, ["AAPL", "MSFT", "^GSPC"], days=4, minutes=2)
    compact_all(tmp_path, before=DAY1 + dt.timedelta(days=3))
    script = (
        "import duckdb, os; from lake.layout import duckdb_read_sql; "
        f"sql = 'SELECT max(price), count(*) FROM ' + duckdb_read_sql({str(tmp_path)!r}); "
        "con = duckdb.connect(); os.write(2, b'START\\n'); con.execute(sql).fetchall()"
    )
    trace = tmp_path / "trace"
    command = ["strace", "-f", "-e", "trace=openat,write", "-o", str(trace), sys.executable]
    subprocess.run([*command, "-c", script], check=True, cwd=Path(__file__).parents[2])
    events: list[str] = []
    query = trace.read_text().split('write(2, "START')[1]  # after the expression is built
    for path, flags in re.findall(r'openat\(AT_FDCWD, "([^"]+)", ([A-Z_|]+)', query):
        if path.startswith(f"{tmp_path}/history") and "O_DIRECTORY" in flags:
            kind = "day" if path.rsplit("/", 1)[-1].startswith("date=") else "dir"
            events.append(kind)
        elif path.startswith(f"{tmp_path}/history/") and path.endswith(".parquet"):
            events.append("file")
        elif path.startswith(f"{tmp_path}/ticks"):
            events.append("ticks")
    days = 3 * 3 + 1  # compacted ticker-days and the placeholder
    first_file = events.index("file")  # the history read_parquet's schema, while binding
    listing = [e for e in events[:first_file] if e in ("day", "ticks")]
    assert listing == ["day"] * days + ["ticks"] * (len(listing) - 2 * days) + ["day"] * days
    assert "day" not in events[first_file:] and "dir" not in events[first_file:]
    assert events.count("file") > days  # then it executes: files only, no more listing


def test_ticks_of_one_ticker_reads_what_the_whole_lake_holds_for_it(tmp_path: Path) -> None:
    """``duckdb_ticker_sql`` (the ``ticks_of`` macro) against ``duckdb_read_sql`` filtered:
    day files, hidden minute files awaiting their grace period, plain minute files, a
    symbol with ``=``, one day, a ticker without files."""
    tickers = ["AAPL", "EURUSD=X", "^GSPC"]
    written = write_days(tmp_path, tickers, days=4)
    compact_all(tmp_path, before=DAY1 + dt.timedelta(days=1), grace=0.0)  # day 0: files gone
    compact_all(tmp_path, before=DAY1 + dt.timedelta(days=3))  # days 1-2: minute files hidden
    assert history_file(tmp_path, "EURUSD=X", DAY1 + dt.timedelta(days=2)).is_file()
    assert minute_file(tmp_path, "EURUSD=X", OPEN_MS + 2 * DAY_MS).is_file()
    columns = "ticker, date, minute, seq, price, time"
    whole = duckdb_read_sql(tmp_path)
    with duckdb.connect() as con:
        for ticker in [*tickers, "NOPE"]:
            one = duckdb_ticker_sql(tmp_path, f"'{ticker}'")
            assert one is not None
            got = con.execute(f"SELECT {columns} FROM {one} ORDER BY seq").fetchall()
            expected = f"SELECT {columns} FROM {whole} WHERE ticker = ? ORDER BY seq"
            assert got == con.execute(expected, [ticker]).fetchall()
            ids = written.filter(pa.compute.equal(written["id"], ticker))["seq"].to_pylist()
            assert [row[3] for row in got] == sorted(ids)  # each tick exactly once
            for d in range(4):
                day = DAY1 + dt.timedelta(days=d)
                one_day = duckdb_ticker_sql(tmp_path, f"'{ticker}'", f"DATE '{day}'")
                rows = con.execute(f"SELECT {columns} FROM {one_day} ORDER BY seq").fetchall()
                assert rows == [row for row in got if row[1] == day]


# --- writes into a compacted day ----------------------------------------------------------------


def test_late_tick_for_a_compacted_day_lands_in_its_day_file_and_is_marked_late(
    tmp_path: Path,
) -> None:
    write_days(tmp_path, ["AAPL"], days=2, minutes=3)
    compact_all(tmp_path, before=DAY1 + dt.timedelta(days=1), grace=0)
    day_file = history_file(tmp_path, "AAPL", DAY1)
    rows_before = pq.read_metadata(day_file).num_rows
    seal = SealState(watermark_ms=OPEN_MS + 5 * DAY_MS, applied_seq=10_000)
    ingest = Ingest(tmp_path, seal, Quarantine(tmp_path))
    late_ms = OPEN_MS + MINUTE_MS + 500
    frames = [v1(pricing("AAPL", late_ms, 101.5))] * 2
    stats = ingest.apply(frames, np.array([10_001, 10_002]), np.array([1, 2]), OPEN_MS + 5 * DAY_MS)
    ingest.quarantine.close()
    assert (stats.ticks_added, stats.duplicates, stats.late_ticks) == (1, 1, 1)
    assert [(w.ticker, w.window_start_ms) for w in seal.late] == [("AAPL", OPEN_MS + MINUTE_MS)]
    assert not date_dir(tmp_path, "AAPL", DAY1).exists(), "no minute file for a compacted day"
    day = pq.read_table(day_file)
    assert day.num_rows == rows_before + 1
    assert day["seq"].to_pylist()[6:8] == [7, 10_001]  # 14:31:00 (seq 7), then 14:31:00.5
    assert day.sort_by([("time", "ascending"), ("seq", "ascending")]).equals(day)
    assert pq.ParquetFile(day_file).metadata.num_row_groups == 1


def test_replaying_a_compacted_day_rewrites_nothing(tmp_path: Path) -> None:
    written = write_days(tmp_path, ["AAPL"], days=2, minutes=30)
    compact_all(tmp_path, before=DAY1 + dt.timedelta(days=1), grace=0)
    day_file = history_file(tmp_path, "AAPL", DAY1)
    inode = day_file.stat().st_ino
    result = write_minutes(tmp_path, written)
    day_writes = [w for w in result.writes if w.path == day_file]
    assert len(day_writes) == 30 and not any(w.written for w in day_writes)
    assert sum(w.duplicates_dropped for w in day_writes) == written.num_rows // 2
    assert day_file.stat().st_ino == inode
    single = write_minute(tmp_path, "AAPL", OPEN_MS, written.slice(0, 3))
    assert (single.rows_before, single.rows_after, single.written) == (6, 6, False)
    assert count(tmp_path) == (written.num_rows,) * 2


def test_write_minute_creates_the_history_placeholder_once(tmp_path: Path) -> None:
    write_minute(tmp_path, "AAPL", OPEN_MS, equity_ticks("AAPL", [OPEN_MS], 1))
    placeholder = tmp_path / "history/ticker=!empty/date=1970-01-01/part.parquet"
    assert pq.read_table(placeholder).num_rows == 0
    assert sorted(os.listdir(tmp_path / "history")) == [".lock", "ticker=!empty"]
    assert list_tickers(tmp_path) == ["AAPL"]


def test_streamed_merge_equals_merge_into_day_across_ties_and_row_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,200 rows of one millisecond (wider than any batch), groups cut at 2 h and at
    ``MAX_ROW_GROUP_ROWS`` (500 here), new rows in three sorted runs read 100 at a time:
    the same rows and row groups as ``merge_into_day``; a second merge changes nothing."""
    monkeypatch.setattr(history, "MAX_ROW_GROUP_ROWS", 500)
    start = OPEN_MS - 4 * 3_600_000
    held = equity_ticks("AAPL", start + np.arange(3000, dtype=np.int64) * 5_000, 1)
    tie = equity_ticks("AAPL", np.full(1200, start + 7_200_000, dtype=np.int64), 10_000)
    shifted = held["time"].cast(pa.int64()).to_numpy()[::7] + 1
    new = pa.concat_tables([tie, held.slice(100, 300), equity_ticks("AAPL", shifted, 20_000)])
    whole, streamed = tmp_path / "whole.parquet", tmp_path / "streamed.parquet"
    write_day_atomically(held, whole)
    write_day_atomically(held, streamed)
    minutes = sorted({t // MINUTE_MS * MINUTE_MS for t in new["time"].cast(pa.int64()).to_pylist()})
    merge_into_day(whole, minutes, new, lambda t: write_day_atomically(t, whole))
    order = new.sort_by([("time", "ascending"), ("seq", "ascending")])
    runs = [order.filter(pa.array(np.arange(order.num_rows) % 3 == k)) for k in range(3)]
    result = merge_streams_into_day(streamed, [iter([r]) for r in runs], (101, 30_000), 100)
    assert result.kept_new == new.num_rows - 300 and result.bytes_written > 0
    want, have = pq.ParquetFile(whole), pq.ParquetFile(streamed)
    sizes = [want.metadata.row_group(g).num_rows for g in range(want.num_row_groups)]
    assert sizes == [have.metadata.row_group(g).num_rows for g in range(have.num_row_groups)]
    assert max(sizes) == 500 and have.read().equals(want.read())
    stamp = streamed.stat().st_ino
    again = merge_streams_into_day(streamed, [iter([r]) for r in runs], (101, 30_000), 100)
    assert (again.kept_new, again.bytes_written, streamed.stat().st_ino) == (0, 0, stamp)
