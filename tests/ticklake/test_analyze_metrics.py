"""``analyze --metrics-port``: a real ``ticklake analyze`` process scraped over HTTP on
127.0.0.1 while it runs; the health rules of the job on their own, and over a scheduler's
totals on a ManualClock."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analytics.job import JobConfig
from analytics.scheduler import Scheduler
from lake.clock import ManualClock
from lake.utc import MINUTE_MS
from tests.kit.lake import seal, write_lake
from tests.kit.metrics import Samples, get, parse, value
from tests.kit.ticks import Feed
from tests.kit.times import T0
from ticklake.analyze_metrics import AnalyticsCollector, job_verdict
from ticklake.metrics import MetricsServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_analyze_serves_the_jobs_metrics_and_health(tmp_path: Path) -> None:
    write_lake(
        tmp_path, [Feed(1).ticks(t, T0 + k * MINUTE_MS, 2) for t in ("A", "B") for k in range(4)]
    )
    seal(tmp_path, T0 + 4 * MINUTE_MS)
    port = free_port()
    env = {**os.environ, "TICKLAKE_MAINTAIN": "false"}
    args = ["analyze", "--data", str(tmp_path), "--metrics-port", str(port)]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from ticklake.cli import main; sys.exit(main())",
            *args,
        ],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        samples: Samples = {}
        while time.monotonic() < deadline:
            try:
                status, text = get(url + "/metrics")
            except OSError:  # not listening yet
                time.sleep(0.1)
                continue
            samples = parse(text)
            if status == 200 and value(samples, "ticklake_analytics_runs_total") >= 1:
                break
            time.sleep(0.1)
        assert value(samples, "ticklake_feature_rows_written_total") == 8
        assert value(samples, "ticklake_analytics_failures_total") == 0
        count = value(samples, "ticklake_minute_job_duration_seconds_count")
        assert count == value(samples, "ticklake_analytics_runs_total")
        inf = value(samples, "ticklake_minute_job_duration_seconds_bucket", le="+Inf")
        assert inf == count
        assert value(samples, "ticklake_minute_job_last_duration_seconds") > 0
        assert value(samples, "ticklake_duckdb_lock_wait_seconds_total") == 0
        assert get(url + "/healthz") == (200, "ok\n")
        assert value(samples, "ticklake_healthy") == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


def test_healthz_turns_503_two_minutes_after_the_last_run(tmp_path: Path) -> None:
    clock = ManualClock(1_000.0)
    scheduler = Scheduler(tmp_path, JobConfig(), clock)  # not started: totals driven here
    server = MetricsServer("127.0.0.1", 0)
    try:
        server.serve(AnalyticsCollector(scheduler, clock))
        assert get(server.url + "/healthz") == (200, "ok\n")  # within 2 minutes of the start
        clock.advance(121)
        status, body = get(server.url + "/healthz")
        assert status == 503 and body.startswith("no analytics run finished for 121 s")
        scheduler.totals.running_since = clock.now()
        assert get(server.url + "/healthz")[0] == 200  # a run in progress
        scheduler.totals.add(0.5, None, "disk full", clock.now())
        clock.advance(200)
        status, body = get(server.url + "/healthz")
        assert status == 503 and body.rstrip().endswith("last run failed: disk full")
    finally:
        server.close()


@pytest.mark.parametrize(
    ("since_ok", "running_for", "failure", "reason"),
    [
        (10.0, None, None, None),
        (119.9, None, "x", None),
        (120.0, None, None, "no analytics run finished for 120 s (bound 120 s)"),
        (500.0, 30.0, None, None),
        (500.0, 130.0, None, "analytics run in progress for 130 s (bound 120 s)"),
    ],
)
def test_job_verdict(
    since_ok: float, running_for: float | None, failure: str | None, reason: str | None
) -> None:
    assert job_verdict(since_ok, running_for, failure, 120.0) == reason
