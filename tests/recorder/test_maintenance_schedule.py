"""The daily maintenance trigger: its time of day, the catch-up and follow-up runs, runs in a
thread that never holds up the event loop, and a stop that does not wait for a long run.

APScheduler reads the wall clock, so these tests check the triggers' fields and ask for runs
with ``run_later(0, ...)`` instead of waiting for 03:30; the runs' clock is a ManualClock."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lake.clock import ManualClock
from lake.maintenance import MaintenanceRecord, load_record, maintenance_lock, save_record
from lake.seal import SealState, save_seal
from lake.utc import DAY_MS, day_start_ms
from recorder import maintenance_job
from recorder.maintenance_job import MaintenanceConfig
from recorder.maintenance_schedule import (
    CATCH_UP_DELAY_S,
    FOLLOW_UP_ID,
    JOB_ID,
    STOP_WAIT_S,
    MaintenanceScheduler,
)
from tests.kit.lake import write_days
from tests.kit.times import DAY3, LATER


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def scheduler(data: Path, grace: float = 600.0) -> MaintenanceScheduler:
    config = MaintenanceConfig(compaction_grace=grace)
    return MaintenanceScheduler(data, config, ManualClock(LATER), dt.time(3, 30))


def test_the_daily_run_fires_at_its_time_of_day_and_a_first_run_catches_up(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        daily = scheduler(tmp_path)
        daily.start()
        job = daily._scheduler.get_job(JOB_ID)
        fields = {f.name: str(f) for f in job.trigger.fields}
        assert (fields["hour"], fields["minute"], fields["second"]) == ("3", "30", "0")
        assert (job.max_instances, job.coalesce) == (1, True)
        extra = daily._scheduler.get_job(FOLLOW_UP_ID)  # never ran here: a catch-up run
        wait = (extra.next_run_time - dt.datetime.now(dt.UTC)).total_seconds()
        assert extra.kwargs == {"trigger": "catch-up"}
        assert CATCH_UP_DELAY_S - 5 < wait <= CATCH_UP_DELAY_S
        await daily.stop()

    asyncio.run(main())


def test_no_catch_up_when_the_last_run_is_recent(tmp_path: Path) -> None:
    save_record(tmp_path, MaintenanceRecord(0, finished_ms=int(LATER * 1000) - DAY_MS))

    async def main() -> None:
        daily = scheduler(tmp_path)
        daily.start()
        assert daily._scheduler.get_job(FOLLOW_UP_ID) is None
        assert daily.next_run_time == daily._scheduler.get_job(JOB_ID).next_run_time
        await daily.stop()

    asyncio.run(main())


def test_a_run_records_its_trigger_and_compacted_days_get_a_follow_up(tmp_path: Path) -> None:
    write_days(tmp_path, ["AAPL"], days=3, minutes=2)
    save_seal(tmp_path, SealState(watermark_ms=day_start_ms(DAY3) + DAY_MS))

    async def main() -> MaintenanceScheduler:
        daily = scheduler(tmp_path, grace=600.0)
        daily.start()
        daily.run_later(0, "daily")
        await until(lambda: daily.runs == 1)
        follow = daily._scheduler.get_job(FOLLOW_UP_ID)
        wait = (follow.next_run_time - dt.datetime.now(dt.UTC)).total_seconds()
        assert follow.kwargs == {"trigger": "follow-up"} and 600 < wait <= 630
        await daily.stop()
        return daily

    daily = asyncio.run(main())
    assert daily.last_record is not None and daily.last_record.days_compacted == 2
    stored = load_record(tmp_path)
    assert stored is not None and stored.trigger == "daily" and stored.days_waiting == 2


def test_a_long_run_never_holds_up_the_loop_and_stop_does_not_wait_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inside, release = threading.Event(), threading.Event()

    def slow_compaction(*_args: object) -> None:
        inside.set()
        release.wait(30)

    monkeypatch.setattr(maintenance_job, "_compact", slow_compaction)

    async def main() -> tuple[int, float]:
        daily = scheduler(tmp_path)
        daily.start()
        daily.run_later(0, "daily")
        await until(inside.is_set)
        ticks = 0
        for _ in range(10):  # the loop keeps running while the run works
            await asyncio.sleep(0.01)
            ticks += 1
        started = time.monotonic()
        await daily.stop()
        return ticks, time.monotonic() - started

    try:
        ticks, stopping = asyncio.run(main())
    finally:
        release.set()
    assert ticks == 10
    assert stopping < STOP_WAIT_S + 1.0, "stop leaves a long run to its daemon thread"


def test_a_run_finding_another_at_work_is_skipped(tmp_path: Path) -> None:
    async def main() -> MaintenanceScheduler:
        daily = scheduler(tmp_path)
        daily.start()
        with maintenance_lock(tmp_path):
            daily.run_later(0, "daily")
            await until(lambda: daily.runs == 1)
        await daily.stop()
        return daily

    daily = asyncio.run(main())
    assert daily.failures == 0 and daily.last_record is None
    assert load_record(tmp_path) is None
