"""The APScheduler wiring: trigger, overlap rules, the immediate catch-up run, stopping.

APScheduler reads the wall clock, so these tests check the trigger's fields and drive runs
with ``run_soon`` instead of waiting for a minute to pass; the job's clock is a
ManualClock."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from analytics.database import database_path
from analytics.job import JobConfig
from analytics.plan import AnalyticsState, load_state
from analytics.scheduler import Scheduler, run_second, start_scheduler
from lake.clock import ManualClock
from lake.utc import MINUTE_MS
from tests.kit.features import db_features, hold_database
from tests.kit.lake import seal, write_lake
from tests.kit.ticks import Feed
from tests.kit.times import T0


async def until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_the_job_fires_just_after_the_seal() -> None:
    assert run_second(10.0) == 12 and run_second(10.5) == 13 and run_second(0) == 2
    assert run_second(58) == 0  # wraps: still once a minute


def test_it_starts_with_a_catch_up_run_and_never_overlaps(tmp_path: Path) -> None:
    feed = Feed(1)
    write_lake(
        tmp_path, [feed.ticks(t, T0 + k * MINUTE_MS, 1) for t in ("AMZN", "MSFT") for k in range(5)]
    )
    seal(tmp_path, T0 + 3 * MINUTE_MS)
    clock = ManualClock(T0 / 1000 + 3 * 60 + 12)

    async def main() -> Scheduler:
        scheduler = start_scheduler(tmp_path, JobConfig(lateness=10.0), clock)
        job = scheduler._scheduler.get_job("analytics")
        assert (job.max_instances, job.coalesce, job.misfire_grace_time) == (1, True, 50)
        fields = {f.name: str(f) for f in scheduler.trigger.fields}
        assert fields["second"] == "12" and fields["minute"] == "*"
        await until(lambda: scheduler.runs >= 1)  # the catch-up run at start
        assert load_state(tmp_path) == AnalyticsState(T0 + 3 * MINUTE_MS, 0)
        seal(tmp_path, T0 + 5 * MINUTE_MS)
        for _ in range(3):  # asked for repeatedly: runs coalesce, never overlap
            scheduler.run_soon()
        await until(lambda: load_state(tmp_path) == AnalyticsState(T0 + 5 * MINUTE_MS, 0))
        await scheduler.stop()
        return scheduler

    scheduler = asyncio.run(main())
    assert scheduler.failures == 0 and scheduler.last_result is not None
    assert scheduler.last_result.reason == "ok"  # never "busy": no two runs at once
    assert db_features(database_path(tmp_path)).num_rows == 10
    totals = scheduler.totals  # running totals over every run, not the last one's
    assert totals.runs == scheduler.runs >= 2 and totals.failures == 0
    assert totals.rows == 10 and totals.windows == 10
    assert sum(totals.buckets) == totals.runs and totals.duration_s > 0
    assert totals.last_ok == clock.now() and totals.running_since is None


def test_stop_interrupts_a_run_waiting_for_the_database(tmp_path: Path) -> None:
    write_lake(tmp_path, [Feed(2).ticks("AMZN", T0, 1)])
    seal(tmp_path, T0 + MINUTE_MS)
    clock = ManualClock(T0 / 1000 + 72)

    async def main() -> tuple[Scheduler, float]:
        first = start_scheduler(tmp_path, JobConfig(), clock)
        await until(lambda: first.runs >= 1)
        await first.stop()
        write_lake(tmp_path, [Feed(3).ticks("AMZN", T0 + MINUTE_MS, 1)])
        seal(tmp_path, T0 + 2 * MINUTE_MS)
        reader = await asyncio.to_thread(hold_database, database_path(tmp_path), 30)
        try:
            scheduler = start_scheduler(tmp_path, JobConfig(), clock)  # waits on the reader
            await asyncio.sleep(0.5)
            started = time.monotonic()
            await scheduler.stop()
            return scheduler, time.monotonic() - started
        finally:
            reader.terminate()
            reader.wait()

    scheduler, stopping = asyncio.run(main())
    assert stopping < 3.0  # the lock wait noticed the stop flag (backoff is capped at 2 s)
    assert scheduler.last_result is not None and scheduler.last_result.reason == "stopped"
    assert load_state(tmp_path) == AnalyticsState(T0 + MINUTE_MS, 0)  # the next start catches up
    assert scheduler.totals.lock_wait_s > 0.3  # waited on the reader before giving up
