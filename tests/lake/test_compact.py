"""Compaction: which days, what the day file holds, crash recovery, readers during compaction."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lake.compact
from lake.compact import compact_eligible
from lake.history import read_day
from lake.layout import date_dir, duckdb_read_sql, history_file, minute_file, minute_placeholder
from lake.minutes import write_minute
from lake.schema import LAKE_SCHEMA
from lake.seal import SealState, save_seal
from lake.utc import DAY_MS, MINUTE_MS
from tests.kit.lake import count, to_legacy, write_days
from tests.kit.ticks import equity_ticks
from tests.kit.times import DAY1, OPEN_MS

DAY2, DAY3 = DAY1 + dt.timedelta(days=1), DAY1 + dt.timedelta(days=2)
LATER = (OPEN_MS + 10 * DAY_MS) / 1000  # epoch s, long after every test day
ROOT_DIR = Path(__file__).parents[2]


def day_rows(table: pa.Table, ticker: str, date: dt.date) -> pa.Table:
    times = table["time"].cast(pa.int64()).to_numpy()
    start = (date - dt.date(1970, 1, 1)).days * DAY_MS
    mask = (np.asarray(table["id"].to_pylist()) == ticker) & (times >= start)
    mask &= times < start + DAY_MS
    return table.filter(pa.array(mask)).sort_by([("time", "ascending"), ("seq", "ascending")])


def assert_exactly_once(root: Path, written: pa.Table) -> None:
    with duckdb.connect() as con:
        seqs = con.execute(f"SELECT seq FROM {duckdb_read_sql(root)} ORDER BY seq").fetchall()
    assert [s for (s,) in seqs] == sorted(written["seq"].to_pylist())


def leftovers(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.name.endswith(".tmp")
    ) + sorted(str(p.relative_to(root)) for p in root.glob("ticks/.deleting/**/*"))


# --- which days ---------------------------------------------------------------------------------


def test_days_are_compacted_once_sealed_for_the_horizon(tmp_path: Path) -> None:
    write_days(tmp_path, ["AAPL", "EURUSD=X"], days=3, minutes=2)
    horizon = 3600.0
    day2_end = OPEN_MS - (14 * 60 + 30) * MINUTE_MS + 2 * DAY_MS  # 2024-01-04 00:00 UTC
    save_seal(tmp_path, SealState(watermark_ms=day2_end + int(horizon * 1000) - MINUTE_MS))
    assert compact_eligible(tmp_path, LATER, horizon).days_compacted == 2  # only DAY1
    assert history_file(tmp_path, "AAPL", DAY1).is_file()
    assert not history_file(tmp_path, "AAPL", DAY2).exists()
    save_seal(tmp_path, SealState(watermark_ms=day2_end + int(horizon * 1000)))
    result = compact_eligible(tmp_path, LATER, horizon)
    assert result.days_compacted == 2 and result.days_waiting == 4
    assert not history_file(tmp_path, "AAPL", DAY3).exists()


def test_before_compacts_ended_days_but_never_the_open_one(tmp_path: Path) -> None:
    write_days(tmp_path, ["AAPL"], days=3, minutes=2)
    day3_noon = (OPEN_MS + 2 * DAY_MS) / 1000  # DAY3 has not ended
    result = compact_eligible(tmp_path, day3_noon, before=DAY3 + dt.timedelta(days=5))
    assert result.days_compacted == 2
    assert [history_file(tmp_path, "AAPL", d).is_file() for d in (DAY1, DAY2, DAY3)] == [
        True,
        True,
        False,
    ]
    assert compact_eligible(tmp_path, LATER, before=DAY1).days_compacted == 0  # none before


def test_max_days_bounds_a_pass(tmp_path: Path) -> None:
    write_days(tmp_path, ["AAPL", "MSFT"], days=3, minutes=2)
    assert compact_eligible(tmp_path, LATER, before=DAY3, max_days=3).days_compacted == 3
    assert compact_eligible(tmp_path, LATER, before=DAY3, max_days=3).days_compacted == 1
    assert history_file(tmp_path, "MSFT", DAY2).is_file()


def test_a_pass_with_nothing_due_only_lists_folders(tmp_path: Path) -> None:
    for i in range(300):  # 300 tickers with two live days each: folders only
        for date in (DAY2, DAY3):
            (date_dir(tmp_path, f"T{i:03d}", date) / "minute=1430").mkdir(parents=True)
    save_seal(tmp_path, SealState(watermark_ms=OPEN_MS + 2 * DAY_MS))
    start = time.perf_counter()
    result = compact_eligible(tmp_path, (OPEN_MS + 2 * DAY_MS) / 1000)
    elapsed = time.perf_counter() - start
    assert result == lake.compact.CompactionPass()
    assert elapsed < 0.5, f"an idle pass took {elapsed:.3f} s"
    assert not (tmp_path / "history").exists()


# --- what a pass does ---------------------------------------------------------------------------


def test_day_file_holds_exactly_the_minute_files_rows(tmp_path: Path) -> None:
    written = write_days(tmp_path, ["AAPL", "EURUSD=X"], days=2, minutes=7)
    minute_count = len(list(date_dir(tmp_path, "AAPL", DAY1).glob("minute=*/part.parquet")))
    result = compact_eligible(tmp_path, LATER, before=DAY2)
    assert (result.days_compacted, result.files_merged, result.days_waiting) == (2, 14, 2)
    assert result.rows == 2 * 7 * 6 and minute_count == 7
    for ticker in ("AAPL", "EURUSD=X"):
        day = pq.read_table(history_file(tmp_path, ticker, DAY1))
        assert day.equals(day_rows(written, ticker, DAY1))
        marker = date_dir(tmp_path, ticker, DAY1) / ".compacted.json"
        assert marker.is_file(), "minute files stay, hidden, for the grace period"
    assert_exactly_once(tmp_path, written)


def test_minute_files_of_the_placeholder_columns_compact_into_todays_columns(
    tmp_path: Path,
) -> None:
    """Issue 16: a day recorded while fields 35-45 were ``field_35`` ... placeholders
    compacts (it stopped with "does not hold LAKE_SCHEMA" before), cmc_rank kept, and a
    day file of that time reads as today's columns too."""
    written = write_days(tmp_path, ["AAPL", "MSFT"], days=2, minutes=3)
    compact_eligible(tmp_path, LATER, before=DAY2, grace=0)  # DAY1: a day file
    to_legacy(tmp_path)
    old_day = read_day(history_file(tmp_path, "AAPL", DAY1))
    assert old_day.schema.equals(LAKE_SCHEMA)
    assert old_day.equals(day_rows(written, "AAPL", DAY1))
    narrow = read_day(history_file(tmp_path, "AAPL", DAY1), ["seq", "indices", "cmc_rank"])
    assert narrow.column_names == ["seq", "indices", "cmc_rank"]
    assert narrow["indices"].null_count == narrow.num_rows > 0
    for path in date_dir(tmp_path, "MSFT", DAY2).glob("minute=*/part.parquet"):  # a rank
        table = pq.read_table(path)
        rank = pa.array([3] * table.num_rows, pa.int64())
        table = table.set_column(table.schema.get_field_index("field_36"), "field_36", rank)
        pq.write_table(table, path)
    result = compact_eligible(tmp_path, LATER, before=DAY3, grace=0)
    assert result.days_compacted == 2
    day = pq.read_table(history_file(tmp_path, "MSFT", DAY2))
    assert day.schema.equals(LAKE_SCHEMA)
    expected = day_rows(written, "MSFT", DAY2)
    assert day.drop_columns("cmc_rank").equals(expected.drop_columns("cmc_rank"))
    assert day["cmc_rank"].to_pylist() == [3] * day.num_rows
    assert_exactly_once(tmp_path, written)


def test_minute_files_are_deleted_after_the_grace_period(tmp_path: Path) -> None:
    written = write_days(tmp_path, ["AAPL"], days=2, minutes=3)
    now = LATER
    compact_eligible(tmp_path, now, before=DAY2, grace=600)
    waiting = compact_eligible(tmp_path, now + 599, grace=600)
    assert (waiting.days_waiting, waiting.days_finished) == (1, 0)
    assert date_dir(tmp_path, "AAPL", DAY1).is_dir()
    done = compact_eligible(tmp_path, now + 600, grace=600)
    assert (done.days_finished, done.files_deleted) == (1, 3)
    assert not date_dir(tmp_path, "AAPL", DAY1).exists()
    assert minute_placeholder(tmp_path).is_file()
    assert leftovers(tmp_path) == []
    assert_exactly_once(tmp_path, written)


def test_a_minute_file_changed_behind_the_lock_is_compacted_again(tmp_path: Path) -> None:
    written = write_days(tmp_path, ["AAPL"], days=2, minutes=3)
    compact_eligible(tmp_path, LATER, before=DAY2)
    path = minute_file(tmp_path, "AAPL", OPEN_MS + MINUTE_MS)  # a foreign writer, ignoring the lock
    extra = equity_ticks("AAPL", [OPEN_MS + MINUTE_MS + 999], 77_777)
    pq.write_table(pa.concat_tables([pq.read_table(path), extra]), path)
    again = compact_eligible(tmp_path, LATER + 600)
    assert (again.days_compacted, again.days_finished) == (1, 0)  # grace restarts
    day = pq.read_table(history_file(tmp_path, "AAPL", DAY1))
    assert 77_777 in day["seq"].to_pylist()
    assert compact_eligible(tmp_path, LATER + 1200).days_finished == 1
    assert_exactly_once(tmp_path, pa.concat_tables([written, extra]))


def test_a_writer_slipping_in_before_the_swap_is_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = write_days(tmp_path, ["AAPL"], days=2, minutes=3)
    late = equity_ticks("AAPL", [OPEN_MS + 5 * MINUTE_MS + 1000], 88_888)

    def writer(step: str) -> None:  # between reading the minute files and taking the lock
        if step == "written" and not history_file(tmp_path, "AAPL", DAY1).exists():
            assert write_minute(tmp_path, "AAPL", OPEN_MS + 5 * MINUTE_MS, late).written

    monkeypatch.setattr(lake.compact, "_after_step", writer)
    compact_eligible(tmp_path, LATER, before=DAY2, grace=0)
    monkeypatch.setattr(lake.compact, "_after_step", None)
    assert 88_888 in pq.read_table(history_file(tmp_path, "AAPL", DAY1))["seq"].to_pylist()
    assert not date_dir(tmp_path, "AAPL", DAY1).exists()
    assert_exactly_once(tmp_path, pa.concat_tables([written, late]))


def test_a_day_file_deleted_by_hand_unhides_the_minute_files(tmp_path: Path) -> None:
    written = write_days(tmp_path, ["AAPL"], days=2, minutes=3)
    compact_eligible(tmp_path, LATER, before=DAY2)
    history_file(tmp_path, "AAPL", DAY1).unlink()
    assert compact_eligible(tmp_path, LATER + 600).days_finished == 0
    assert not (date_dir(tmp_path, "AAPL", DAY1) / ".compacted.json").exists()
    assert_exactly_once(tmp_path, written)


# --- crashes --------------------------------------------------------------------------------


CRASH = """
import os, signal, sys, datetime as dt
import lake.compact as c
step = sys.argv[2]
def hook(name):
    if name == step:
        os.kill(os.getpid(), signal.SIGKILL)
c._after_step = hook
c.compact_eligible(sys.argv[1], float(sys.argv[3]), grace=600, before=dt.date(2024, 1, 3))
"""


@pytest.mark.parametrize("step", ["written", "published", "marked", "moved", "deleting"])
def test_sigkill_at_any_step_loses_and_doubles_nothing(tmp_path: Path, step: str) -> None:
    written = write_days(tmp_path, ["AAPL", "EURUSD=X"], days=2, minutes=4)
    now = LATER
    if step in ("moved", "deleting"):  # the deletion pass: hide first
        compact_eligible(tmp_path, now, before=DAY2)
        now += 600
    run = subprocess.run(
        [sys.executable, "-c", CRASH, str(tmp_path), step, str(now)],
        cwd=ROOT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == -signal.SIGKILL, run.stderr
    assert_exactly_once(tmp_path, written)  # readers are fine right after the crash
    for _ in range(3):  # the next passes finish the job
        compact_eligible(tmp_path, now + 600, before=DAY2)
        now += 600
    for ticker in ("AAPL", "EURUSD=X"):
        assert pq.read_table(history_file(tmp_path, ticker, DAY1)).equals(
            day_rows(written, ticker, DAY1)
        )
        assert not date_dir(tmp_path, ticker, DAY1).exists()
        assert date_dir(tmp_path, ticker, DAY2).is_dir()
    assert leftovers(tmp_path) == []
    assert_exactly_once(tmp_path, written)


# --- readers while compacting -----------------------------------------------------------------


@pytest.mark.slow
def test_a_counting_reader_never_sees_a_different_count(tmp_path: Path) -> None:
    tickers = ["AAPL", "MSFT", "EURUSD=X", "^GSPC"]
    written = write_days(tmp_path, tickers, days=4, minutes=6)
    expected = (written.num_rows, written.num_rows)
    seen: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        with duckdb.connect() as con:
            while not stop.is_set():
                try:  # the expression is built again for every query, as readers do
                    sql = f"SELECT count(*), count(DISTINCT seq) FROM {duckdb_read_sql(tmp_path)}"
                    rows, seqs = con.execute(sql).fetchall()[0]
                    seen.append((int(rows), int(seqs)))
                except BaseException as exc:
                    errors.append(exc)
                    return

    def queries_after(n: int) -> None:  # wait for n queries that started after this call
        target = len(seen) + n + 1
        while len(seen) < target and not errors:
            time.sleep(0.005)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        queries_after(2)
        for date in (DAY2, DAY3, DAY3 + dt.timedelta(days=1)):  # one day per pass
            compact_eligible(tmp_path, LATER, before=date)
            queries_after(1)
        queries_after(2)  # every running query has its expression built after the hiding
        finished = compact_eligible(tmp_path, LATER + 600)
        queries_after(2)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert finished.days_finished == 12
    assert len(seen) >= 10
    assert set(seen) == {expected}, f"counts seen: {sorted(set(seen))}"
    assert count(tmp_path) == expected


def test_writers_and_compaction_in_threads_keep_every_tick_once(tmp_path: Path) -> None:
    written = write_days(tmp_path, ["AAPL", "MSFT"], days=2, minutes=10)
    late = [equity_ticks(t, [OPEN_MS + m * MINUTE_MS + 321], 500_000 + 10 * m + i)
            for m in range(10) for i, t in enumerate(["AAPL", "MSFT"])]  # fmt: skip

    def writer() -> None:
        for rows in late:
            write_minute(
                tmp_path,
                rows["id"][0].as_py(),
                rows["time"][0].value // MINUTE_MS * MINUTE_MS,
                rows,
            )

    thread = threading.Thread(target=writer)
    thread.start()
    compact_eligible(tmp_path, LATER, before=DAY2, grace=0)
    thread.join()
    compact_eligible(tmp_path, LATER + 1, before=DAY2, grace=0)
    assert_exactly_once(tmp_path, pa.concat_tables([written, *late]))
    assert not date_dir(tmp_path, "AAPL", DAY1).exists()


def test_the_minute_glob_never_goes_empty(tmp_path: Path) -> None:
    written = write_days(tmp_path, ["AAPL"], days=1, minutes=2)
    compact_eligible(tmp_path, LATER, before=DAY2, grace=0)
    assert not any(p for p in (tmp_path / "ticks").rglob("part.parquet") if "!empty" not in str(p))
    assert count(tmp_path) == (written.num_rows,) * 2
    assert os.listdir(tmp_path / "ticks") == ["ticker=!empty"]
