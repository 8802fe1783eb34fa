"""The per-minute job end to end on real lake files and a real DuckDB file, driven by a
ManualClock and a hand-published seal: catch-up, late ticks, crashes, readers, flags."""

from __future__ import annotations

import fcntl
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from analytics.database import database_path, upsert_features
from analytics.job import AnalyticsJob, JobConfig, run_once
from analytics.plan import AnalyticsState, load_state, save_state
from lake.clock import ManualClock, SystemClock
from lake.datadir import ANALYTICS_LOCK_FILE
from lake.utc import MINUTE_MS
from tests.kit.features import columns_of, db_features, hold_database, lake_features
from tests.kit.lake import all_sessions, seal, sessions, write_lake
from tests.kit.ticks import Feed
from tests.kit.times import T0

TICKERS = ("AMZN", "MSFT", "EURUSD=X", "BTC-USD")


def build(data: Path, minutes: int, seed: int = 2) -> set[tuple[str, int]]:
    """``minutes`` minutes from T0 of every ticker, ~15 % of minutes silent; returns the
    (ticker, minute) pairs that have a file."""
    feed, rng = Feed(seed), np.random.default_rng(seed)
    tables, have = [], set()
    for ticker in TICKERS:
        for k in range(minutes):
            if rng.random() < 0.15:
                continue
            minute = T0 + k * MINUTE_MS
            count = int(rng.integers(1, 6))
            tables.append(feed.ticks(ticker, minute, 1, count, volume=ticker != "EURUSD=X"))
            have.add((ticker, minute))
    write_lake(data, tables)
    all_sessions(data, TICKERS, T0)
    return have


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[tuple[str, int]]]:
    """A pristine 75-minute lake; tests copy it (writing 250 small files takes a while)."""
    data = tmp_path_factory.mktemp("lake")
    return data, build(data, 75)


def copy(lake: tuple[Path, set[tuple[str, int]]], into: Path) -> Path:
    shutil.copytree(lake[0], into / "data")
    return into / "data"


def config(**changes: object) -> JobConfig:
    settings: dict[str, object] = {"chunk_minutes": 20, "recompute_horizon": 6 * 3600.0}
    return JobConfig(**{**settings, **changes})  # type: ignore[arg-type]


def clock_at(watermark_ms: int) -> ManualClock:
    return ManualClock(watermark_ms / 1000 + 12)


def keys(table: pa.Table) -> list[tuple[str, int]]:
    starts = table["window_start"].cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())
    return list(zip(table["ticker"].to_pylist(), starts.to_pylist(), strict=True))


def by_key(table: pa.Table) -> dict[tuple[str, int], dict[str, Any]]:
    return dict(zip(keys(table), table.to_pylist(), strict=True))


def test_catch_up_after_downtime_computes_every_window_exactly_once(lake, tmp_path) -> None:
    data = copy(lake, tmp_path)
    seal(data, T0 + 10 * MINUTE_MS)
    first = run_once(data, clock_at(T0 + 10 * MINUTE_MS), config())
    assert first.done and first.rows == len([k for k in lake[1] if k[1] < T0 + 10 * MINUTE_MS])

    end = T0 + 75 * MINUTE_MS  # the job was down while the recorder sealed another 65 minutes
    seal(data, end)
    clock = clock_at(end)
    second = run_once(data, clock, config())
    new = {k for k in lake[1] if k[1] >= T0 + 10 * MINUTE_MS}
    assert second.done and second.steps == 4  # 65 minutes in chunks of 20
    assert second.windows == second.rows == len(new)  # no window requested twice
    table = db_features(database_path(data))
    assert set(keys(table)) == lake[1]  # no minute skipped
    recomputed = pc.equal(
        table["computed_at"],
        pa.scalar(int(clock.now() * 1e6), pa.int64()).cast(pa.timestamp("us", tz="UTC")),
    )
    assert set(keys(table.filter(recomputed))) == new  # the first run's rows stay as they were
    assert columns_of(table) == columns_of(lake_features(data, end))
    assert load_state(data) == AnalyticsState(end, 0)


@pytest.mark.slow
def test_minute_by_minute_runs_equal_one_backfill_like_run(lake, tmp_path) -> None:
    live, batch = copy(lake, tmp_path / "live"), copy(lake, tmp_path / "batch")
    end = T0 + 15 * MINUTE_MS
    seal(live, T0 + MINUTE_MS)
    clock = clock_at(T0 + MINUTE_MS)
    job = AnalyticsJob(live, config(), clock)  # one instance, as the scheduler keeps it
    job.run_once()
    for k in range(2, 16):
        seal(live, T0 + k * MINUTE_MS)
        clock.advance(60)
        result = job.run_once()
        assert result.done and result.steps == 1
    seal(batch, end)
    assert run_once(batch, clock_at(end), config()).done
    ours, theirs = db_features(database_path(live)), db_features(database_path(batch))
    assert ours.num_rows > 40
    assert columns_of(ours) == columns_of(theirs) == columns_of(lake_features(live, end))
    assert ours["late"].to_pylist() == theirs["late"].to_pylist()
    assert ours["gap"].to_pylist() == theirs["gap"].to_pylist()


def test_a_late_tick_recomputes_exactly_its_window(lake, tmp_path) -> None:
    data = copy(lake, tmp_path)
    end = T0 + 30 * MINUTE_MS
    seal(data, end)
    clock = clock_at(end)
    run_once(data, clock, config())
    before = db_features(database_path(data))
    window = T0 + 5 * MINUTE_MS
    late = Feed(99).ticks("AMZN", window, 1, 1, delay_s=300.0)  # received 5 min after
    late = late.set_column(late.schema.get_field_index("seq"), "seq", pa.array([10**9]))
    write_lake(data, [late])
    seal(data, end, late=[("AMZN", window)])
    clock.advance(300)
    result = run_once(data, clock, config())
    # the window, and the next one: its volume counts from the late tick's day_volume
    following = min(m for t, m in lake[1] if t == "AMZN" and m > window)
    assert (result.windows, result.rows, result.late_windows) == (2, 2, 1)
    after = db_features(database_path(data))
    old, new = by_key(before), by_key(after)
    assert [k for k in new if new[k] != old.get(k)] == [("AMZN", window), ("AMZN", following)]
    assert new["AMZN", window]["late"] and new["AMZN", window]["tick_count"] == (
        old["AMZN", window]["tick_count"] + 1 if ("AMZN", window) in old else 1
    )
    assert columns_of(after) == columns_of(lake_features(data, end))
    assert load_state(data) == AnalyticsState(end, 1)
    again = run_once(data, clock, config())
    assert again.done and again.windows == 0  # the late entry was handled


def test_a_crash_in_the_second_chunk_is_finished_by_the_rerun(lake, tmp_path, monkeypatch) -> None:
    data, reference = copy(lake, tmp_path / "a"), copy(lake, tmp_path / "b")
    end = T0 + 75 * MINUTE_MS
    for d in (data, reference):
        seal(d, end)
    assert run_once(reference, clock_at(end), config()).done
    real = upsert_features
    calls = []

    def crashing(con, table):
        calls.append(table.num_rows)
        if len(calls) == 2:
            raise RuntimeError("simulated crash inside the second chunk's upsert")
        return real(con, table)

    monkeypatch.setattr("analytics.job.upsert_features", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_once(data, clock_at(end), config())
    state = load_state(data)
    assert state is not None and T0 < state.done_watermark_ms <= T0 + 20 * MINUTE_MS  # 1st chunk
    monkeypatch.setattr("analytics.job.upsert_features", real)
    assert run_once(data, clock_at(end), config()).done
    ours, theirs = db_features(database_path(data)), db_features(database_path(reference))
    assert columns_of(ours) == columns_of(theirs) and ours.num_rows > 200


def test_a_crash_between_commit_and_state_save_only_recomputes(lake, tmp_path, monkeypatch) -> None:
    data = copy(lake, tmp_path)
    end = T0 + 40 * MINUTE_MS
    seal(data, end)
    real = save_state
    saves = []

    def crashing(where, state):
        saves.append(state)
        if len(saves) == 1:
            raise OSError("simulated power cut after the commit")
        return real(where, state)

    monkeypatch.setattr("analytics.job.save_state", crashing)
    with pytest.raises(OSError, match="power cut"):
        run_once(data, clock_at(end), config())
    assert load_state(data) is None and db_features(database_path(data)).num_rows > 0
    assert run_once(data, clock_at(end), config()).done
    table = db_features(database_path(data))
    assert len(set(keys(table))) == table.num_rows  # recomputed, not doubled
    assert columns_of(table) == columns_of(lake_features(data, end))


@pytest.mark.slow
def test_a_reader_holding_the_database_delays_but_loses_nothing(lake, tmp_path, caplog) -> None:
    data = copy(lake, tmp_path)
    seal(data, T0 + 5 * MINUTE_MS)
    assert run_once(data, clock_at(T0 + 5 * MINUTE_MS), config()).done
    seal(data, T0 + 20 * MINUTE_MS)
    reader = hold_database(database_path(data), 1.5)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="analytics.database"):
        result = run_once(
            data, clock_at(T0 + 20 * MINUTE_MS), config()
        )  # a ManualClock: no timeout
    waited = time.monotonic() - started
    reader.wait()
    assert result.done and waited > 1.0
    assert f"event=db_locked path={database_path(data)} holder={reader.pid}/python" in caplog.text
    assert set(keys(db_features(database_path(data)))) == {
        k for k in lake[1] if k[1] < T0 + 20 * MINUTE_MS
    }


def test_after_its_timeout_the_writer_leaves_the_work_to_the_next_run(lake, tmp_path) -> None:
    data = copy(lake, tmp_path)
    seal(data, T0 + 5 * MINUTE_MS)
    assert run_once(data, SystemClock(), config()).done
    seal(data, T0 + 20 * MINUTE_MS)
    reader = hold_database(database_path(data), 30)
    try:
        result = run_once(data, SystemClock(), config(lock_timeout=0.3))
    finally:
        reader.terminate()
        reader.wait()
    assert not result.done and result.reason == "db_locked"
    assert load_state(data) == AnalyticsState(T0 + 5 * MINUTE_MS, 0)  # nothing claimed
    assert run_once(data, SystemClock(), config()).done
    assert set(keys(db_features(database_path(data)))) == {
        k for k in lake[1] if k[1] < T0 + 20 * MINUTE_MS
    }


def test_a_second_concurrent_run_is_busy(tmp_path: Path) -> None:
    seal(tmp_path, T0 + MINUTE_MS)
    (tmp_path / ANALYTICS_LOCK_FILE).parent.mkdir(parents=True, exist_ok=True)
    with (tmp_path / ANALYTICS_LOCK_FILE).open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        result = run_once(tmp_path, clock_at(T0 + MINUTE_MS), config())
    assert not result.done and result.reason == "busy" and load_state(tmp_path) is None


def test_flags_come_from_receive_times_and_the_session_log(tmp_path: Path) -> None:
    feed = Feed(4)
    late_minute, tables = T0 + 3 * MINUTE_MS, []
    for k in range(10):
        minute = T0 + k * MINUTE_MS
        delay = 75.0 if minute == late_minute else 2.0  # after end + 10 s for every tick
        tables += [feed.ticks(s, minute, 1, 3, delay_s=delay) for s in ("AMZN", "IBM")]
    write_lake(tmp_path, tables)
    # AMZN: connected until 14:05:30, reconnected at 14:08; IBM: never in a session
    sessions(
        tmp_path,
        [(1, ["AMZN"], T0 / 1000 - 60, T0 / 1000 + 330), (2, ["AMZN"], T0 / 1000 + 480, None)],
    )
    seal(tmp_path, T0 + 10 * MINUTE_MS)  # no late entry: the flag is derived from received_at
    assert run_once(tmp_path, clock_at(T0 + 10 * MINUTE_MS), config()).done
    table = db_features(database_path(tmp_path))
    amzn = table.filter(pc.equal(table["ticker"], "AMZN"))
    assert amzn["gap"].to_pylist() == [False] * 5 + [True, True, True, False, False]
    assert amzn["late"].to_pylist() == [k == 3 for k in range(10)]
    ibm = table.filter(pc.equal(table["ticker"], "IBM"))
    assert ibm["gap"].to_pylist() == [None] * 10  # unknown: no session ever carried it
    assert ibm["late"].to_pylist() == [k == 3 for k in range(10)]


def test_first_run_on_an_empty_lake_creates_the_database(tmp_path: Path) -> None:
    seal(tmp_path, T0 + MINUTE_MS)
    result = run_once(tmp_path, clock_at(T0 + MINUTE_MS), config())
    assert result.done and result.rows == 0
    assert database_path(tmp_path).exists() and load_state(tmp_path) == AnalyticsState(
        T0 + MINUTE_MS, 0
    )


def test_nothing_happens_before_the_recorder_seals(tmp_path: Path) -> None:
    result = run_once(tmp_path, ManualClock(), config())
    assert result.done and result.steps == 0 and load_state(tmp_path) is None


def test_a_stop_request_ends_the_run_between_steps(lake, tmp_path) -> None:
    data = copy(lake, tmp_path)
    seal(data, T0 + 30 * MINUTE_MS)
    job = AnalyticsJob(data, config(), clock_at(T0 + 30 * MINUTE_MS))
    job.stop.set()
    result = job.run_once()
    assert not result.done and result.reason == "stopped" and result.steps_done == 0
