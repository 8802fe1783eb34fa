"""``ticklake record``: the recorder's settings, and the recorder (with the per-minute job
unless ``--analytics false``, and daily maintenance unless ``maintain = false``) running
until SIGINT/SIGTERM; with ``--metrics-port``, ``/metrics`` and ``/healthz``
(``ticklake.metrics``) served meanwhile."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Mapping
from typing import Any, Final

from lake.datadir import DataLockedError
from lake.retention import RetentionError
from lake.seal import SealError
from recorder.feed import DEFAULT_URL, FeedConfig, FeedError
from recorder.journal import FsyncPolicy, JournalError
from recorder.maintenance_schedule import start_maintenance
from recorder.recorder import Recorder, RecorderConfig
from ticklake.commands import Command, error_text, usage_error
from ticklake.config import (
    Option,
    add_options,
    boolean,
    positive_float,
    positive_int,
)
from ticklake.options import (
    ANALYTICS_OPTIONS,
    DAILY_MAINTENANCE_OPTIONS,
    DATA,
    JOURNAL_RETENTION_DAYS,
    LATENESS,
    RECOMPUTE_HORIZON,
    job_config,
    maintenance_config,
    tickers,
)
from ticklake.serve_metrics import METRICS_HOST, METRICS_PORT, MetricsUnavailable, bind_metrics
from ticklake.signals import run_until_signal

__all__ = ["ANALYTICS", "COMMAND", "RECORD_OPTIONS", "recorder_config", "run"]

NAME: Final = "record"
RECORD_OPTIONS: Final = (
    Option("tickers", tickers, (), "symbols to record, comma separated (e.g. AMZN,^GSPC,BTC-USD)"),
    Option("url", str, DEFAULT_URL, "streamer URL (the simulator's for offline use)"),
    Option(
        "fsync",
        str,
        "group",
        "journal fsync policy: group (every group-commit-ms), always (every frame), os",
        choices=("group", "always", "os"),
    ),
    Option("group_commit_ms", positive_int, 200, "journal group-commit interval, ms"),
    Option("flush_interval", positive_float, 5.0, "seconds between flushes of the open minute"),
    LATENESS,
    RECOMPUTE_HORIZON,
    JOURNAL_RETENTION_DAYS,
    Option("compress_journal", boolean, True, "zstd-compress rotated journal segments"),
    Option("max_backlog", positive_int, 500_000, "frames held in memory before reading back"),
    Option("max_backlog_mb", positive_float, 256.0, "MB of frames held before reading back"),
    Option("symbols_per_connection", positive_int, 100, "symbols per WebSocket connection"),
    Option("resubscribe_every", positive_float, 15.0, "seconds between re-sent subscriptions"),
    Option("stale_after", positive_float, 60.0, "seconds of silence (open market) -> reconnect"),
    METRICS_PORT,
    METRICS_HOST,
)
"""The recorder's settings (``DATA`` aside), in ``--help`` order."""
ANALYTICS: Final = Option(
    "analytics", boolean, True, "run the per-minute features job inside the recorder"
)
SETTINGS: Final = (DATA, *RECORD_OPTIONS, ANALYTICS, *ANALYTICS_OPTIONS, *DAILY_MAINTENANCE_OPTIONS)


def add_arguments(parser: argparse.ArgumentParser, file_values: Mapping[str, Any]) -> None:
    add_options(parser, SETTINGS, file_values)


def recorder_config(ns: argparse.Namespace) -> RecorderConfig:
    """The recorder's settings from parsed options; exits (status 1) without tickers."""
    if not ns.tickers:
        raise SystemExit(error_text(NAME, "no tickers: pass --tickers AMZN,MSFT (or set them)"))
    feed = FeedConfig(
        url=ns.url,
        symbols_per_connection=ns.symbols_per_connection,
        resubscribe_every=ns.resubscribe_every,
        stale_after=ns.stale_after,
    )
    return RecorderConfig(
        data=ns.data,
        tickers=ns.tickers,
        fsync=FsyncPolicy(ns.fsync),
        group_commit_ms=ns.group_commit_ms,
        flush_interval=ns.flush_interval,
        lateness=ns.lateness,
        recompute_horizon=ns.recompute_horizon,
        journal_retention_days=ns.journal_retention_days,
        compress_journal=ns.compress_journal,
        max_backlog=ns.max_backlog,
        max_backlog_mb=ns.max_backlog_mb,
        feed=feed,
    )


def run(ns: argparse.Namespace) -> int:
    """Record until SIGINT/SIGTERM; 2 when the recorder cannot start."""
    try:
        config = recorder_config(ns)
        maintenance_config(ns, in_recorder=True).check()
        server = bind_metrics(ns)  # a taken port fails before the recorder opens anything
    except (FeedError, RetentionError, MetricsUnavailable) as exc:
        return usage_error(NAME, exc)
    with contextlib.ExitStack() as stack:
        if server is not None:
            stack.callback(server.close)
        recorder = _open_recorder(config, ns)
        if isinstance(recorder, int):
            return recorder
        if server is not None:
            from ticklake.metrics import RecorderCollector

            server.serve(RecorderCollector(recorder))
        run_until_signal(lambda: _record_with_analytics(recorder, ns), recorder.stop)
    return 0


def _open_recorder(config: RecorderConfig, ns: argparse.Namespace) -> Recorder | int:
    """The Recorder, or the exit status of the usage error reported instead."""
    try:
        return Recorder(config)
    except (FeedError, DataLockedError) as exc:  # locked: another recorder is running
        return usage_error(NAME, exc)
    except (JournalError, OSError) as exc:
        return usage_error(NAME, f"cannot open {ns.data}: {exc}")
    except SealError as exc:  # names the file and what to do
        return usage_error(NAME, exc)


async def _record_with_analytics(recorder: Recorder, ns: argparse.Namespace) -> None:
    """The recorder, and (unless switched off) the per-minute job and the daily maintenance
    in the same loop; maintenance runs in a thread of its own, the job in a worker thread."""
    data, clock = recorder.config.data, recorder.clock
    recorder.start_lake_writer()  # forked before the job loads DuckDB: it needs none of it
    scheduler = None
    if ns.analytics:
        from analytics.scheduler import start_scheduler  # DuckDB: only with analytics

        scheduler = start_scheduler(data, job_config(ns), clock)
    maintenance = None
    if ns.maintain:  # the recorder prunes its own journal: maintenance leaves it alone
        config = maintenance_config(ns, in_recorder=True)
        maintenance = start_maintenance(data, config, clock, ns.maintain_at)
    try:
        await recorder.run()
    finally:
        if maintenance is not None:
            await maintenance.stop()
        if scheduler is not None:
            await scheduler.stop()


COMMAND: Final = Command(
    name=NAME,
    help="record the live stream into the journal and the Parquet lake",
    description="Connect to Yahoo's streamer (or --url), journal every frame, keep the "
    "Parquet lake current and publish the seal watermark. SIGINT/SIGTERM stop it cleanly.",
    add_arguments=add_arguments,
    run=run,
    settings=SETTINGS,
)
