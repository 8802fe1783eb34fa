"""``ticklake analyze``: the per-minute analytics job alone (for a recorder in another process).

Until SIGINT/SIGTERM, with daily maintenance unless ``maintain = false`` (the journal is
left to the recorder while one holds it) and, with ``--metrics-port``, ``/metrics`` and
``/healthz`` (``ticklake.analyze_metrics``); or once with ``--once`` (for cron and tests; no
maintenance; exit status 0 when everything sealed is materialized, 1 when work was left for
the next run, 2 on an error).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from analytics.database import DatabaseError
from analytics.job import AnalyticsJob, JobConfig
from analytics.scheduler import start_scheduler
from lake.clock import Clock, SystemClock
from lake.errors import LakeError
from lake.retention import RetentionError
from lake.utc import iso_utc
from recorder.maintenance_schedule import start_maintenance
from ticklake.commands import Command, usage_error
from ticklake.config import add_options
from ticklake.options import (
    ANALYTICS_OPTIONS,
    DAILY_MAINTENANCE_OPTIONS,
    DATA,
    JOURNAL_RETENTION_DAYS,
    LATENESS,
    RECOMPUTE_HORIZON,
    job_config,
    maintenance_config,
)
from ticklake.serve_metrics import METRICS_HOST, METRICS_PORT, MetricsUnavailable, bind_metrics
from ticklake.signals import run_until_signal

__all__ = ["ANALYZE_OPTIONS", "COMMAND", "add_arguments", "run"]

NAME: Final = "analyze"
ANALYZE_OPTIONS: Final = (
    DATA,
    LATENESS,
    RECOMPUTE_HORIZON,
    *ANALYTICS_OPTIONS,
    *DAILY_MAINTENANCE_OPTIONS,
    JOURNAL_RETENTION_DAYS,
    METRICS_PORT,
    METRICS_HOST,
)


def add_arguments(parser: argparse.ArgumentParser, file_values: Mapping[str, Any]) -> None:
    add_options(parser, ANALYZE_OPTIONS, file_values)
    parser.add_argument(
        "--once",
        action="store_true",
        help="run the job once and exit (0: all sealed windows done, 1: work left; no metrics)",
    )


def run(ns: argparse.Namespace) -> int:
    """Run the job once (``--once``) or every minute until a signal; see the module doc."""
    config = job_config(ns)
    data: Path = ns.data
    if not data.is_dir():
        return usage_error(NAME, f"no data directory {data}")
    clock = SystemClock()
    if ns.once:
        return _run_once(data, config, clock)
    maintenance_settings = maintenance_config(ns)
    try:
        maintenance_settings.check()
        server = bind_metrics(ns)  # a taken port fails before the job starts
    except (RetentionError, MetricsUnavailable) as exc:
        return usage_error(NAME, exc)
    stopped: list[asyncio.Event] = []

    async def main() -> None:
        stopped.append(asyncio.Event())
        scheduler = start_scheduler(data, config, clock)
        if server is not None:
            from ticklake.analyze_metrics import AnalyticsCollector

            server.serve(AnalyticsCollector(scheduler, clock))
        maintenance = None
        if ns.maintain:
            maintenance = start_maintenance(data, maintenance_settings, clock, ns.maintain_at)
        try:
            await stopped[0].wait()
        finally:
            if maintenance is not None:
                await maintenance.stop()
            await scheduler.stop()

    try:
        run_until_signal(main, lambda: stopped[0].set() if stopped else None)
    finally:
        if server is not None:
            server.close()
    return 0


def _run_once(data: Path, config: JobConfig, clock: Clock) -> int:
    try:
        result = AnalyticsJob(data, config, clock).run_once()
    except (DatabaseError, LakeError, OSError, ValueError) as exc:
        return usage_error(NAME, exc)
    watermark = result.done_watermark_ms
    done_up_to = "nothing yet" if watermark is None else iso_utc(watermark, "minutes")
    print(
        f"analyzed {result.windows} windows, wrote {result.rows} rows "
        f"({result.late_windows} late); done up to {done_up_to}; {result.reason}"
    )
    return 0 if result.done else 1


COMMAND: Final = Command(
    name=NAME,
    help="run the per-minute features job alone (beside a recorder in another process)",
    description="Every minute, shortly after the seal, compute the features of every "
    "sealed window not yet in DuckDB and of every window late ticks touched.",
    add_arguments=add_arguments,
    run=run,
    settings=ANALYZE_OPTIONS,
)
