"""The per-minute trigger: APScheduler runs the analytics job shortly after each seal.

An ``AsyncIOScheduler`` on the caller's event loop (the recorder's inside ``ticklake
record``, its own in ``ticklake analyze``) fires a cron job every minute at second
``ceil(lateness) + 2`` UTC, when the recorder has just published the seal of the previous
minute, plus once right at start so a restart catches up without waiting. The job itself
runs in a worker thread (``asyncio.to_thread``): the event loop never waits on Parquet or
DuckDB.

Invariants:
- ``max_instances=1`` and ``coalesce=True``: runs never overlap, and runs missed while one
  was slow (a reader holding the database for minutes) collapse into one; since each run
  does *all* outstanding work, nothing is lost by skipping;
- ``misfire_grace_time`` of 50 s: a run that could not start on time (a busy loop) still
  starts late rather than being dropped;
- a failing run is logged (``event=analytics_run_failed``) and the next one tries again;
- :attr:`Scheduler.totals` only grows (runs, failures, rows, windows, seconds run and
  waited on DuckDB's lock, a duration histogram) and is written on the event loop only;
  ``analyze --metrics-port`` reads it from its server's thread;
- :meth:`Scheduler.stop` sets the job's stop flag (a run waiting on the database lock or
  between steps gives up, saving its progress) and waits for the run in progress.

APScheduler reads the wall clock for its trigger; the job's own notion of time
(``computed_at``, the first run's horizon) comes from the injected clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from analytics.job import AnalyticsJob, JobConfig, JobResult
from lake.clock import Clock
from lake.errors import first_line

__all__ = ["DURATION_BUCKETS", "RunTotals", "Scheduler", "run_second", "start_scheduler"]

log = logging.getLogger(__name__)

JOB_ID: Final = "analytics"
MISFIRE_GRACE: Final = 50
SEAL_MARGIN: Final = 2
DURATION_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds (seconds) of the run-duration histogram; a last bucket holds the rest."""


@dataclass
class RunTotals:
    """Running totals over every run a scheduler started; times in the job clock's seconds
    (``last_*``, ``running_since``) or seconds of work (durations, ``lock_wait_s``)."""

    runs: int = 0
    failures: int = 0  # runs that raised
    rows: int = 0  # feature rows written
    windows: int = 0
    lock_wait_s: float = 0.0  # seconds spent waiting for DuckDB's lock
    duration_s: float = 0.0  # sum over every run, failed ones included
    last_duration_s: float | None = None
    last_ok: float | None = None  # when the last run that did not raise finished
    last_failure: str | None = None  # the last run's error when it raised, else None
    running_since: float | None = None  # when the run in progress started
    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))

    def add(self, seconds: float, result: JobResult | None, error: str | None, now: float) -> None:
        """Count one finished run: its ``result``, or the ``error`` it raised (neither: it
        was cancelled)."""
        self.runs += 1
        self.duration_s += seconds
        self.last_duration_s = seconds
        self.buckets[sum(seconds > bound for bound in DURATION_BUCKETS)] += 1
        self.running_since = None
        self.last_failure = error
        if result is None:  # raised, or cancelled at stop (not a failure)
            self.failures += error is not None
            return
        self.last_ok = now
        self.rows += result.rows
        self.windows += result.windows
        self.lock_wait_s += result.timings.get("lock_wait", 0.0)


def run_second(lateness: float) -> int:
    """The second of each minute the job fires at: just after the seal (lateness + 2 s)."""
    return (math.ceil(lateness) + SEAL_MARGIN) % 60


class Scheduler:
    """Runs an :class:`AnalyticsJob` every minute on the running event loop."""

    def __init__(self, data: Path, config: JobConfig, clock: Clock) -> None:
        quiet = logging.getLogger("apscheduler.executors")
        if quiet.level == logging.NOTSET:  # the job logs one line per run itself
            quiet.setLevel(logging.WARNING)
        self.stop_event = threading.Event()
        self.job = AnalyticsJob(data, config, clock, stop=self.stop_event)
        self.config = config
        self.totals = RunTotals()
        self.last_result: JobResult | None = None
        self._scheduler = AsyncIOScheduler(timezone=dt.UTC)
        self._running: asyncio.Task[JobResult] | None = None

    def start(self) -> None:
        """Add the job and start; call from inside the event loop that should drive it."""
        self._scheduler.add_job(
            self._tick,
            CronTrigger(second=run_second(self.config.lateness), timezone=dt.UTC),
            id=JOB_ID,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=MISFIRE_GRACE,
            next_run_time=dt.datetime.now(dt.UTC),  # catch up at once after a restart
        )
        self._scheduler.start()
        log.info(
            "event=scheduler_started second=%d data=%s",
            run_second(self.config.lateness),
            self.job.data,
        )

    def run_soon(self) -> None:
        """Ask for a run now (on top of the schedule); it coalesces with one in progress."""
        job = self._scheduler.get_job(JOB_ID)
        if job is not None:
            job.modify(next_run_time=dt.datetime.now(dt.UTC))
            self._scheduler.wakeup()

    @property
    def trigger(self) -> CronTrigger:
        job = self._scheduler.get_job(JOB_ID)
        if job is None:
            raise RuntimeError("the scheduler has not been started")
        trigger: CronTrigger = job.trigger
        return trigger

    @property
    def runs(self) -> int:
        return self.totals.runs

    @property
    def failures(self) -> int:
        return self.totals.failures

    async def _tick(self) -> None:
        clock, started = self.job.clock, time.perf_counter()
        self.totals.running_since = clock.now()
        self._running = asyncio.create_task(asyncio.to_thread(self.job.run_once))
        result, error = None, None
        try:  # shielded: a cancelled tick must not orphan the run's result
            result = self.last_result = await asyncio.shield(self._running)
        except Exception as exc:  # logged by the job; the next minute retries
            error = first_line(exc)
        finally:
            self.totals.add(time.perf_counter() - started, result, error, clock.now())
            self._running = None

    async def stop(self) -> None:
        """Stop triggering, interrupt a run waiting on the database, wait for it to end."""
        self.stop_event.set()
        if self._scheduler.running:
            self._scheduler.pause()
        running = self._running
        if running is not None:
            results = await asyncio.gather(running, return_exceptions=True)
            if isinstance(results[0], JobResult):
                self.last_result = results[0]
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)  # cancels the finished tick, if still pending
        log.info("event=scheduler_stopped runs=%d failures=%d", self.runs, self.failures)


def start_scheduler(data: Path, config: JobConfig, clock: Clock) -> Scheduler:
    """Start the per-minute job on the running event loop; ``await handle.stop()`` to end."""
    scheduler = Scheduler(data, config, clock)
    scheduler.start()
    return scheduler
