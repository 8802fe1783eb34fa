"""The daily trigger of maintenance inside ``ticklake record`` and ``ticklake analyze``.

An ``AsyncIOScheduler`` on the caller's event loop fires :func:`run_maintenance` once a day
at a UTC time of day (``maintain_at``, 03:30 by default). The run itself happens in a
thread of its own, so the event loop (the recorder's receive loop) never waits on it.

Invariants:
- ``max_instances=1`` and ``coalesce=True``: runs never overlap; a run that could not start
  on time (a busy loop, a suspended machine) still starts within ``MISFIRE_GRACE_S``;
- a run that compacted days leaves their minute files for the grace period; a *follow-up*
  run ``grace + FOLLOW_UP_MARGIN_S`` later deletes them, so the minute tier shrinks the
  same day instead of the next;
- a process that starts when the last run (``state/maintenance.json``) is older than
  ``CATCH_UP_AFTER_S``, or that never ran, runs once ``CATCH_UP_DELAY_S`` after its start:
  a recorder restarted every day before ``maintain_at`` still gets its maintenance;
- a run that finds another one working (``record`` and ``analyze`` over the same data) is
  skipped and logged; a failing run is logged and the next day tries again;
- :meth:`MaintenanceScheduler.stop` asks a run in progress to stop after its current batch
  and waits at most ``STOP_WAIT_S`` for it (the thread is a daemon: every step leaves the
  lake complete at any instant, so exiting under it loses nothing).

APScheduler reads the wall clock for its trigger; the run's own time comes from the
injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from lake.clock import Clock
from lake.logfmt import logfmt
from lake.maintenance import (
    MaintenanceBusyError,
    MaintenanceRecord,
    MaintenanceStateError,
    load_record,
)
from recorder.maintenance_job import MaintenanceConfig, run_maintenance

__all__ = ["MaintenanceScheduler", "start_maintenance"]

log = logging.getLogger(__name__)

JOB_ID: Final = "maintenance"
FOLLOW_UP_ID: Final = "maintenance-follow-up"
MISFIRE_GRACE_S: Final = 3600
FOLLOW_UP_MARGIN_S: Final = 30.0
CATCH_UP_AFTER_S: Final = 25 * 3600.0
CATCH_UP_DELAY_S: Final = 300.0
STOP_WAIT_S: Final = 2.0


class MaintenanceScheduler:
    """Runs maintenance over ``data`` once a day at ``at`` (UTC) on the running event loop."""

    def __init__(self, data: Path, config: MaintenanceConfig, clock: Clock, at: dt.time) -> None:
        self.data, self.config, self.clock, self.at = Path(data), config, clock, at
        self.stop_event = threading.Event()
        self.runs = 0
        self.failures = 0
        self.last_record: MaintenanceRecord | None = None
        self._scheduler = AsyncIOScheduler(timezone=dt.UTC)
        self._running: asyncio.Future[MaintenanceRecord] | None = None

    def start(self) -> None:
        """Add the daily job (and a catch-up run if one is due) and start; call from inside
        the event loop that should drive it."""
        self._scheduler.add_job(
            self._tick,
            CronTrigger(hour=self.at.hour, minute=self.at.minute, second=0, timezone=dt.UTC),
            id=JOB_ID,
            kwargs={"trigger": "daily"},
            max_instances=1,
            coalesce=True,
            misfire_grace_time=MISFIRE_GRACE_S,
        )
        self._scheduler.start()
        if self._catch_up_due():
            self.run_later(CATCH_UP_DELAY_S, "catch-up")
        log.info("event=maintenance_scheduled at=%s data=%s", self.at.strftime("%H:%M"), self.data)

    def run_later(self, seconds: float, trigger: str) -> None:
        """One extra run ``seconds`` from now (it replaces a pending extra run)."""
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
        self._scheduler.add_job(
            self._tick,
            DateTrigger(when, timezone=dt.UTC),
            id=FOLLOW_UP_ID,
            kwargs={"trigger": trigger},
            replace_existing=True,
            misfire_grace_time=MISFIRE_GRACE_S,
        )

    @property
    def next_run_time(self) -> dt.datetime | None:
        """When the next run (daily or extra) fires; None when none is scheduled."""
        times = [job.next_run_time for job in self._scheduler.get_jobs() if job.next_run_time]
        return min(times, default=None)

    def _catch_up_due(self) -> bool:
        try:
            last = load_record(self.data)
        except MaintenanceStateError:
            return True
        return last is None or self.clock.now() - last.finished_ms / 1000 > CATCH_UP_AFTER_S

    async def _tick(self, trigger: str) -> None:
        def work() -> MaintenanceRecord:
            return run_maintenance(
                self.data, self.clock, self.config, trigger=trigger, stop=self.stop_event
            )

        self._running = _in_daemon_thread(work)
        try:  # shielded: a cancelled tick must not orphan the run's result
            record = await asyncio.shield(self._running)
        except MaintenanceBusyError as exc:
            log.info("event=maintenance_skipped reason=%s", logfmt(str(exc)))
        except Exception:
            self.failures += 1
            log.exception("event=maintenance_failed trigger=%s", trigger)
        else:
            self.last_record = record
            if record.days_waiting and not self.stop_event.is_set():
                self.run_later(self.config.compaction_grace + FOLLOW_UP_MARGIN_S, "follow-up")
        finally:
            self.runs += 1
            self._running = None

    async def stop(self) -> None:
        """Stop triggering; ask a run in progress to stop and wait up to ``STOP_WAIT_S``."""
        self.stop_event.set()
        if self._scheduler.running:
            self._scheduler.pause()
        running = self._running
        if running is not None:
            done, _ = await asyncio.wait([running], timeout=STOP_WAIT_S)
            if not done:
                log.warning("event=maintenance_left_running after_s=%g", STOP_WAIT_S)
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        log.info("event=maintenance_stopped runs=%d failures=%d", self.runs, self.failures)


def _in_daemon_thread(work: Callable[[], MaintenanceRecord]) -> asyncio.Future[MaintenanceRecord]:
    """``work()`` in a daemon thread (not the loop's executor, which the loop's shutdown
    would wait for); its result or exception arrives in the returned future."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[MaintenanceRecord] = loop.create_future()

    def settle(outcome: MaintenanceRecord | BaseException) -> None:
        if future.done():
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def body() -> None:
        outcome: MaintenanceRecord | BaseException
        try:
            outcome = work()
        except BaseException as exc:  # handed to the loop, which decides
            outcome = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=body, name="maintenance", daemon=True).start()
    return future


def start_maintenance(
    data: Path, config: MaintenanceConfig, clock: Clock, at: dt.time
) -> MaintenanceScheduler:
    """Start daily maintenance on the running event loop; ``await handle.stop()`` to end."""
    scheduler = MaintenanceScheduler(data, config, clock, at)
    scheduler.start()
    return scheduler
