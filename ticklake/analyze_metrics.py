"""``analyze --metrics-port``: the per-minute job's metrics and health, served by
``ticklake.metrics.MetricsServer``.

Read at scrape time from the scheduler's running totals (``analytics.scheduler.RunTotals``),
never counted here. Healthy means the job ran (finished without raising) less than
``max_age`` seconds ago (default 2 minutes: the job fires every minute), counting from the
collector's start before the first run; a run in progress counts from its start, so a
catch-up longer than ``max_age`` answers 503 too.

Needs the ``metrics`` extra, as ``ticklake.metrics`` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate
from typing import Final

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from analytics.scheduler import DURATION_BUCKETS, Scheduler
from lake.clock import Clock
from ticklake.metrics import HealthCollector

__all__ = ["MAX_RUN_AGE", "AnalyticsCollector", "job_verdict"]

MAX_RUN_AGE: Final = 120.0  # seconds since the last run before /healthz answers 503


def job_verdict(
    since_ok: float, running_for: float | None, last_failure: str | None, max_age: float
) -> str | None:
    """Why the job is unhealthy, in one line; None when healthy. ``since_ok``: seconds since
    its last good run (or the start); ``running_for``: the run in progress's seconds."""
    if running_for is not None and running_for < max_age:
        return None
    if running_for is not None:
        return f"analytics run in progress for {running_for:.0f} s (bound {max_age:g} s)"
    if since_ok < max_age:
        return None
    why = f"; last run failed: {last_failure}" if last_failure else ""
    return f"no analytics run finished for {since_ok:.0f} s (bound {max_age:g} s){why}"


class AnalyticsCollector(HealthCollector):
    """The scheduler's totals as ``ticklake_*`` metrics, and the job's health."""

    def __init__(self, scheduler: Scheduler, clock: Clock, max_age: float = MAX_RUN_AGE) -> None:
        self.scheduler = scheduler
        self.clock = clock
        self.max_age = max_age
        self._started = clock.now()

    def verdict(self) -> str | None:
        totals, now = self.scheduler.totals, self.clock.now()
        since_ok = now - (totals.last_ok if totals.last_ok is not None else self._started)
        running = totals.running_since
        running_for = None if running is None else now - running
        return job_verdict(since_ok, running_for, totals.last_failure, self.max_age)

    def collect(self) -> Iterator[Metric]:
        totals = self.scheduler.totals
        yield CounterMetricFamily(
            "ticklake_analytics_runs", "runs of the features job", value=totals.runs
        )
        yield CounterMetricFamily(
            "ticklake_analytics_failures", "runs that raised", value=totals.failures
        )
        yield CounterMetricFamily(
            "ticklake_feature_rows_written", "feature rows written", value=totals.rows
        )
        yield CounterMetricFamily(
            "ticklake_feature_windows", "windows the job computed", value=totals.windows
        )
        yield CounterMetricFamily(
            "ticklake_duckdb_lock_wait_seconds",
            "seconds the job waited for DuckDB's lock",
            value=totals.lock_wait_s,
        )
        cumulative = list(accumulate(totals.buckets))
        bounds = [*(f"{b:g}" for b in DURATION_BUCKETS), "+Inf"]
        yield HistogramMetricFamily(
            "ticklake_minute_job_duration_seconds",
            "duration of each run of the features job",
            buckets=list(zip(bounds, cumulative, strict=True)),
            sum_value=totals.duration_s,
        )
        last = totals.last_duration_s
        yield GaugeMetricFamily(
            "ticklake_minute_job_last_duration_seconds",
            "duration of the last run (NaN before the first)",
            value=float("nan") if last is None else last,
        )
        yield GaugeMetricFamily(
            "ticklake_healthy", "1 when /healthz answers 200", value=self.verdict() is None
        )
