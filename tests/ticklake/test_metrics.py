"""``/metrics`` and ``/healthz``: a real recorder against the real simulator, scraped over
HTTP on 127.0.0.1 while it records; the health verdict's rules on their own; ``record
--metrics-port`` without the extra."""

from __future__ import annotations

import asyncio
import math
import re
import sys
from itertools import groupby
from operator import itemgetter
from pathlib import Path

import pytest

from lake.clock import SystemClock
from lake.maintenance import MaintenanceBusyError, maintenance_lock
from recorder.durations import Durations
from recorder.maintenance_job import MaintenanceConfig, run_maintenance
from recorder.recorder import Recorder
from tests.kit.metrics import Samples, get, parse, value
from tests.kit.recorder import CRYPTO, record, recorder_config
from ticklake.cli import main
from ticklake.metrics import HealthConfig, MetricsServer, RecorderCollector, health_verdict
from ticklake.simulator import Simulator, SimulatorConfig


def scrape(server: MetricsServer) -> Samples:
    status, text = get(server.url + "/metrics")
    assert status == 200
    return parse(text)


def test_metrics_grow_while_recording_and_match_the_recorder(tmp_path: Path) -> None:
    sim = SimulatorConfig(rate=20, seed=3, duplicate_rate=0.2, garbage_rate=0.1)
    servers: list[MetricsServer] = []
    scrapes: list[Samples] = []
    health: list[tuple[int, str]] = []

    async def probe(recorder: Recorder, _sim: Simulator) -> None:
        server = MetricsServer("127.0.0.1", 0)
        servers.append(server)
        server.serve(RecorderCollector(recorder))
        for _ in range(2):
            await asyncio.sleep(1.0)
            scrapes.append(await asyncio.to_thread(scrape, server))
            health.append(await asyncio.to_thread(get, server.url + "/healthz"))

    try:
        run = record(recorder_config(tmp_path / "data", CRYPTO), sim, 2.5, probe=probe)
        final = scrape(servers[0])  # the recorder stopped; its counters stay readable
        assert get(servers[0].url + "/nothing")[0] == 404
    finally:
        for server in servers:
            server.close()

    first, second = scrapes
    frames = "ticklake_frames_received_total"
    assert 0 < value(first, frames, connection="1") < value(second, frames, connection="1")
    ticks = "ticklake_ticks_stored_total"
    assert 0 < value(first, ticks) < value(second, ticks)
    assert value(first, "ticklake_connections_open") == 1
    assert value(second, "ticklake_seconds_since_last_frame", connection="1") < 1.0
    assert value(second, "ticklake_journal_bytes") > value(first, "ticklake_journal_bytes") > 0
    assert value(second, "ticklake_seal_watermark_lag_seconds") < 2 * 60 + 1.0
    assert value(second, "ticklake_cycle_failures") == 0
    assert value(second, "ticklake_healthy") == 1
    assert health == [(200, "ok\n"), (200, "ok\n")]

    stats, feed = run.recorder.stats, run.recorder.feed
    assert value(final, frames, connection="1") == feed.frames_received == run.frames_sent
    assert value(final, ticks) == stats.ticks_added
    assert value(final, "ticklake_duplicates_dropped_total") == stats.duplicates > 0
    quarantined = "ticklake_quarantined_frames_total"
    assert value(final, quarantined, reason="bad_frame") == stats.bad_frames > 0
    assert value(final, quarantined, reason="bad_symbol") == stats.bad_symbols
    assert value(final, "ticklake_connections_open") == 0
    served = {name for name, _ in final}
    assert contrib_metric_names() <= served, "contrib/ names a metric nobody serves"


def histogram(samples: Samples, name: str) -> tuple[float, float, float]:
    """(count, sum, observations in the +Inf bucket) of a histogram without labels."""
    return (
        value(samples, f"{name}_count"),
        value(samples, f"{name}_sum"),
        value(samples, f"{name}_bucket", le="+Inf"),
    )


def test_fsync_and_lake_write_histograms_and_maintenance_runs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    servers: list[MetricsServer] = []
    scrapes: list[Samples] = []
    records = []

    def maintain(recorder: Recorder) -> None:
        config = MaintenanceConfig(journal_pruned_by_recorder=True)
        records.append(run_maintenance(data, SystemClock(), config, trigger="daily"))
        with maintenance_lock(data), pytest.raises(MaintenanceBusyError):
            run_maintenance(data, SystemClock(), config)  # another run is working: busy

    async def probe(recorder: Recorder, _sim: Simulator) -> None:
        server = MetricsServer("127.0.0.1", 0)
        servers.append(server)
        server.serve(RecorderCollector(recorder))
        await asyncio.sleep(0.8)
        scrapes.append(await asyncio.to_thread(scrape, server))
        await asyncio.to_thread(maintain, recorder)
        await asyncio.sleep(0.8)
        scrapes.append(await asyncio.to_thread(scrape, server))

    try:
        run = record(
            recorder_config(data, CRYPTO), SimulatorConfig(rate=20, seed=5), 2.0, probe=probe
        )
    finally:
        for server in servers:
            server.close()

    first, second = scrapes
    for name in ("ticklake_journal_fsync_seconds", "ticklake_lake_write_seconds"):
        count, total, inf = histogram(first, name)
        later_count, later_total, _ = histogram(second, name)
        assert 0 < count == inf <= later_count and 0 < total <= later_total, name
        buckets = [v for (n, _), v in second.items() if n == f"{name}_bucket"]
        assert buckets == sorted(buckets) and len(buckets) > 5  # cumulative, as Prometheus reads
    fsyncs = run.recorder.journal.fsync_seconds.snapshot()
    assert fsyncs.count >= histogram(second, "ticklake_journal_fsync_seconds")[0]

    runs = "ticklake_maintenance_runs_total"
    grew = {
        outcome: value(second, runs, outcome=outcome) - value(first, runs, outcome=outcome)
        for outcome in ("ok", "failed", "busy", "error")
    }
    assert grew == {"ok": 1, "failed": 0, "busy": 1, "error": 0}
    last = "ticklake_maintenance_last_run_timestamp_seconds"
    assert value(first, last) == 0  # no run yet in this data directory
    assert value(second, last) == records[0].finished_ms / 1000


def test_durations_land_in_one_bucket_each() -> None:
    durations = Durations(bounds=(0.01, 0.1))
    for seconds in (0.005, 0.01, 0.05, 3.0):
        durations.observe(seconds)
    snap = durations.snapshot()
    assert snap.counts == (2, 1, 1) and snap.count == 4  # a bound's own value is in its bucket
    assert snap.cumulative() == [("0.01", 2), ("0.1", 3), ("+Inf", 4)]
    assert snap.sum == pytest.approx(3.065)


def contrib_metric_names() -> set[str]:
    """Every ticklake_* name the sample dashboard and alert rules use."""
    contrib = Path(__file__).parents[2] / "contrib"
    files = [
        contrib / "grafana/ticklake-dashboard.json",
        contrib / "prometheus/ticklake-alerts.yml",
    ]
    names = {name for f in files for name in re.findall(r"ticklake_\w+", f.read_text())}
    assert len(names) > 10
    return names


def test_healthz_turns_503_when_frames_stop_and_200_after_the_reconnect(tmp_path: Path) -> None:
    # The simulator goes silent on each connection after 1 s; the feed's watchdog reconnects
    # after 1.5 s of silence; /healthz calls 0.5 s of silence stale.
    sim = SimulatorConfig(rate=20, seed=4, stall_after=1.0)
    config = recorder_config(tmp_path / "data", CRYPTO[:2], feed_stale_after=1.5)
    seen: list[tuple[int, str]] = []
    servers: list[MetricsServer] = []

    async def probe(recorder: Recorder, _sim: Simulator) -> None:
        server = MetricsServer("127.0.0.1", 0)
        servers.append(server)
        server.serve(RecorderCollector(recorder, HealthConfig(stale_after=0.5, max_seal_lag=300)))
        while True:
            seen.append(await asyncio.to_thread(get, server.url + "/healthz"))
            await asyncio.sleep(0.05)

    try:
        record(config, sim, 4.0, probe=probe)
    finally:
        for server in servers:
            server.close()

    while seen and seen[0][1].startswith("no seal yet"):  # before the first cycle's seal
        del seen[0]
    runs = [(status, [body for _, body in group]) for status, group in groupby(seen, itemgetter(0))]
    # (the second session may stall too before the recording ends)
    assert [status for status, _ in runs][:3] == [200, 503, 200], runs
    assert set(runs[0][1]) == set(runs[2][1]) == {"ok\n"}
    for reason in runs[1][1]:
        assert reason.startswith("no frame for ") and reason.endswith(
            " s on connection 1 (stale after 0.5 s)\n"
        )


HEALTH = HealthConfig(stale_after=60.0, max_seal_lag=210.0)


@pytest.mark.parametrize(
    ("silences", "seal_lag", "reason"),
    [
        ([(1, 3.0), (2, 59.9)], 100.0, None),
        ([], 100.0, None),  # every market closed: silence is expected
        ([(1, 3.0), (2, 75.0), (3, 61.0)], 0.0, "no frame for 75.0 s on connection 2"),
        ([(1, 3.0)], 210.0, "seal watermark 210 s behind (bound 210 s)"),
        ([(1, 3.0)], math.inf, "no seal yet"),
    ],
    ids=["healthy", "markets-closed", "stale-connection", "seal-lag", "no-seal"],
)
def test_health_verdict(
    silences: list[tuple[int, float]], seal_lag: float, reason: str | None
) -> None:
    verdict = health_verdict(silences, seal_lag, HEALTH)
    if reason is None:
        assert verdict is None
    else:
        assert verdict is not None and verdict.startswith(reason)


def test_metrics_port_without_the_extra_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no ticklake.toml
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    monkeypatch.delitem(sys.modules, "ticklake.metrics")
    args = ["record", "--data", str(tmp_path / "data"), "--tickers", "BTC-USD"]
    status = main([*args, "--metrics-port", "9108"])

    err = capsys.readouterr().err
    assert status == 2
    assert err == (
        "ticklake record: --metrics-port needs prometheus-client: pip install 'ticklake[metrics]'\n"
    )
    assert not (tmp_path / "data").exists(), "refused before opening the data directory"
