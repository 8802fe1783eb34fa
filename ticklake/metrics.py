"""``record --metrics-port``: the recorder's Prometheus metrics and its health over HTTP.

The server (:class:`MetricsServer`) serves any :class:`HealthCollector`; ``analyze
--metrics-port`` serves the job's (``ticklake.analyze_metrics``).

``GET /metrics`` answers ``ticklake_*`` metrics in Prometheus' text format; ``GET /healthz``
answers 200 ``ok`` while the recorder is healthy, else 503 with a one-line reason.

Healthy means both of:
- frames arrive: every connection whose symbols' markets are open (and were open
  ``stale_after`` seconds ago) heard a frame less than ``stale_after`` seconds ago, counting
  from the server's start for a connection that never did;
- the seal keeps up: now - watermark is under ``max_seal_lag`` (by default three times a
  minute plus the lateness: two missed seals).

Invariants: nothing is counted twice. :class:`RecorderCollector` reads the Recorder's own
counters (the feed's per connection, the lake writer's reports accumulated in
``Recorder.stats``, the seal mirror, the backlog, the histograms of the journal's fsyncs and
of the lake writer's cycles, the maintenance runs of this process) at scrape time, from the
server's thread, and never writes to them. The last maintenance run is read from
``state/maintenance.json`` (by whichever process ran it; 0 before the first run).
The server binds 127.0.0.1 unless told otherwise.

Needs the ``metrics`` extra (``pip install 'ticklake[metrics]'``): importing this module
without prometheus-client raises ImportError, which ``record`` turns into a usage error.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from abc import abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from lake.datadir import journal_dir
from lake.logfmt import logfmt
from lake.maintenance import MaintenanceStateError, load_record
from recorder.durations import DurationsSnapshot
from recorder.feed import ConnectionState, ConnectionStatus
from recorder.maintenance_job import outcome_counts
from recorder.recorder import Recorder, RecorderConfig
from recorder.wire.markets import is_open

__all__ = [
    "HealthCollector",
    "HealthConfig",
    "MetricsServer",
    "RecorderCollector",
    "health_verdict",
]

log = logging.getLogger(__name__)
SEALS_MISSED: Final = 3  # the default seal-lag bound, in seal periods (a minute + lateness)


@dataclass(frozen=True)
class HealthConfig:
    stale_after: float  # seconds without a frame (market open) before /healthz says 503
    max_seal_lag: float  # seconds the seal watermark may trail the clock

    @classmethod
    def of(cls, config: RecorderConfig) -> HealthConfig:
        """The feed's own staleness, and three seal periods."""
        return cls(config.feed.stale_after, SEALS_MISSED * (60.0 + config.lateness))


def health_verdict(
    silences: Iterable[tuple[int, float]], seal_lag: float, config: HealthConfig
) -> str | None:
    """Why the recorder is unhealthy, in one line; None when it is healthy. ``silences`` are
    (connection, seconds since its last frame) of the connections expected to stream;
    ``seal_lag`` is infinite before the first seal."""
    silent = [(c, s) for c, s in silences if s >= config.stale_after]
    if silent:
        conn, seconds = max(silent, key=lambda item: item[1])
        bound = config.stale_after
        return f"no frame for {seconds:.1f} s on connection {conn} (stale after {bound:g} s)"
    if math.isinf(seal_lag):
        return "no seal yet: the recorder's first cycle has not finished"
    if seal_lag >= config.max_seal_lag:
        return f"seal watermark {seal_lag:.0f} s behind (bound {config.max_seal_lag:g} s)"
    return None


class HealthCollector(Collector):
    """Metrics, and a health verdict for ``/healthz``: what :class:`MetricsServer` serves
    (the recorder's here, ``analyze``'s in ``ticklake.analyze_metrics``)."""

    @abstractmethod
    def verdict(self) -> str | None:
        """Why the process is unhealthy, in one line; None when it is healthy."""


class RecorderCollector(HealthCollector):
    """The Recorder's metrics and health, read from it when asked."""

    def __init__(self, recorder: Recorder, health: HealthConfig | None = None) -> None:
        self.recorder = recorder
        self.health_config = health or HealthConfig.of(recorder.config)
        self._started = recorder.clock.now()
        self._last_frame: dict[int, float] = {}  # across sessions (the feed resets its own)

    def frame_age(self, status: ConnectionStatus, now: float) -> float:
        """Seconds since the connection's last frame (since the server's start if none)."""
        if status.last_frame_at is not None:
            self._last_frame[status.id] = status.last_frame_at
        return now - self._last_frame.get(status.id, self._started)

    def seal_lag(self, now: float) -> float:
        """Seconds the seal watermark trails ``now``; infinite before the first seal."""
        watermark_ms = self.recorder.seal.watermark_ms
        return now - watermark_ms / 1000 if watermark_ms else math.inf

    def verdict(self) -> str | None:
        """:func:`health_verdict` now; see the module doc."""
        now, stale_after = self.recorder.clock.now(), self.health_config.stale_after
        silences = [
            (status.id, self.frame_age(status, now))
            for status in self.recorder.feed.connections
            if status.state is not ConnectionState.STOPPED
            and any(is_open(c, now) and is_open(c, now - stale_after) for c in status.classes)
        ]
        return health_verdict(silences, self.seal_lag(now), self.health_config)

    def collect(self) -> Iterator[Metric]:
        recorder, now = self.recorder, self.recorder.clock.now()
        connections = recorder.feed.connections
        frames = CounterMetricFamily(
            "ticklake_frames_received", "frames received", labels=["connection"]
        )
        reconnects = CounterMetricFamily(
            "ticklake_reconnects", "connection attempts after the first", labels=["connection"]
        )
        ages = GaugeMetricFamily(
            "ticklake_seconds_since_last_frame",
            "seconds since the connection's last frame",
            labels=["connection"],
        )
        for status in connections:
            conn = str(status.id)
            frames.add_metric([conn], status.frames_received)
            reconnects.add_metric([conn], status.reconnects)
            ages.add_metric([conn], self.frame_age(status, now))
        yield from (frames, reconnects, ages)
        is_open_now = [c for c in connections if c.state is ConnectionState.OPEN]
        yield _gauge("ticklake_connections_open", "connections open", len(is_open_now))
        stats = recorder.stats
        yield _counter("ticklake_ticks_stored", "ticks stored in the lake", stats.ticks_added)
        yield _counter(
            "ticklake_duplicates_dropped", "ticks dropped as duplicates", stats.duplicates
        )
        quarantined = CounterMetricFamily(
            "ticklake_quarantined_frames", "frames quarantined, by reason", labels=["reason"]
        )
        quarantined.add_metric(["bad_frame"], stats.bad_frames)
        quarantined.add_metric(["bad_symbol"], stats.bad_symbols)
        yield quarantined
        yield _counter(
            "ticklake_late_ticks", "ticks stored after their minute sealed", stats.late_ticks
        )
        yield _gauge(
            "ticklake_journal_bytes",
            "bytes of journal on disk",
            _tree_bytes(journal_dir(recorder.config.data)),
        )
        yield _gauge(
            "ticklake_journal_frames_dropped",
            "frames the journal rejected (disk full) since it last wrote",
            recorder.frames_dropped,
        )
        yield _gauge(
            "ticklake_seal_watermark_lag_seconds", "now - seal watermark", self.seal_lag(now)
        )
        yield _gauge("ticklake_backlog_frames", "frames waiting in memory", recorder.backlog_frames)
        yield _gauge(
            "ticklake_backlog_bytes", "bytes of frames held in memory", recorder.backlog_bytes
        )
        yield _gauge(
            "ticklake_cycle_failures", "lake cycles failed in a row", recorder.cycle_failures
        )
        yield _histogram(
            "ticklake_journal_fsync_seconds",
            "seconds each fsync of a journal segment took",
            recorder.journal.fsync_seconds.snapshot(),
        )
        yield _histogram(
            "ticklake_lake_write_seconds",
            "seconds each cycle took in the lake writer (its frames appended as a delta)",
            recorder.lake_write_seconds.snapshot(),
        )
        yield from _maintenance(recorder.config.data)
        yield _gauge("ticklake_healthy", "1 when /healthz answers 200", self.verdict() is None)


def _maintenance(data: Path) -> Iterator[Metric]:
    runs = CounterMetricFamily(
        "ticklake_maintenance_runs",
        "maintenance runs of this process, by outcome",
        labels=["outcome"],
    )
    for outcome, count in outcome_counts().items():
        runs.add_metric([outcome], count)
    yield runs
    try:
        record = load_record(data)
    except (MaintenanceStateError, OSError):
        return  # damaged: `ticklake status` says so
    yield _gauge(
        "ticklake_maintenance_last_run_timestamp_seconds",
        "when the last maintenance run (of any process) finished, epoch seconds; 0: never",
        0 if record is None else record.finished_ms / 1000,
    )


def _histogram(name: str, documentation: str, durations: DurationsSnapshot) -> Metric:
    return HistogramMetricFamily(
        name, documentation, buckets=durations.cumulative(), sum_value=durations.sum
    )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _tree_bytes(directory: Path) -> int:
    """Bytes of the files under ``directory``; files removed meanwhile count as 0."""
    total = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # pruned or compressed meanwhile
                total += os.stat(os.path.join(root, name)).st_size
    return total


class MetricsServer:
    """``/metrics`` and ``/healthz`` on ``host:port`` (port 0: any free one), in a daemon
    thread. :meth:`bind` first (so a taken port fails before anything else opens), then
    :meth:`serve` a collector, then :meth:`close`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Binds at once; raises OSError when the address cannot be bound."""
        self.host = host
        self.collector: HealthCollector | None = None
        self._registry = CollectorRegistry(auto_describe=False)
        self._thread: threading.Thread | None = None
        self._httpd = ThreadingHTTPServer((host, port), _handler(self))
        self._httpd.daemon_threads = True

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def serve(self, collector: HealthCollector) -> None:
        self.collector = collector
        self._registry.register(collector)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="ticklake-metrics", daemon=True
        )
        self._thread.start()
        log.info("event=metrics_serving url=%s", logfmt(self.url))

    def render(self) -> bytes:
        return generate_latest(self._registry)

    def close(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()


def _handler(server: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            collector = server.collector
            if collector is None:
                self._answer(503, "text/plain; charset=utf-8", b"starting\n")
            elif path == "/metrics":
                self._answer(200, CONTENT_TYPE_LATEST, server.render())
            elif path == "/healthz":
                reason = collector.verdict()
                body = f"{reason or 'ok'}\n".encode()
                self._answer(200 if reason is None else 503, "text/plain; charset=utf-8", body)
            else:
                self._answer(404, "text/plain; charset=utf-8", b"try /metrics or /healthz\n")

        def _answer(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("event=metrics_request request=%s", logfmt(format % args))

    return Handler
