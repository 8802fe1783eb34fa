"""The settings several commands share, each defined once, and the job's config built from them.

``record`` runs the recorder and the per-minute job; ``analyze`` runs the job alone;
``backfill``, ``compact``, ``status``, ``sql``, ``import`` and ``replay`` read the same data
directory, seal lateness, recompute horizon or database; ``maintain`` runs maintenance, which
``record`` and ``analyze`` also run daily, and ``status`` shows. Options only one command
reads live in that command's module.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Final

from analytics.database import WRITER_TIMEOUT
from analytics.job import JobConfig
from lake.compact import DEFAULT_GRACE_S
from lake.errors import first_line
from lake.offload import DEFAULT_OFFLOAD_AFTER_DAYS
from lake.remote import RemoteError, RemoteLake, bind_remote
from lake.symbols import SymbolError, parse_symbols
from recorder.maintenance_job import MaintenanceConfig
from ticklake.config import (
    Option,
    boolean,
    finite_float,
    non_negative_float,
    positive_float,
    positive_int,
)

__all__ = [
    "ANALYTICS_OPTIONS",
    "CHUNK_MINUTES",
    "COMPACTION_GRACE",
    "DAILY_MAINTENANCE_OPTIONS",
    "DATA",
    "DATABASE",
    "JOURNAL_RETENTION_DAYS",
    "LAKE_URL",
    "LATENESS",
    "LOCK_TIMEOUT",
    "MAINTAIN",
    "MAINTAIN_AT",
    "OFFLOAD_AFTER_DAYS",
    "RECOMPUTE_HORIZON",
    "TICK_RETENTION_DAYS",
    "job_config",
    "maintenance_config",
    "retention_days",
    "tickers",
    "time_of_day",
    "use_lake_url",
]


def tickers(text: str) -> tuple[str, ...]:
    """Comma-separated symbols, each one that cannot leave the lake's folders."""
    try:
        return tuple(parse_symbols(text))
    except SymbolError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


DATA: Final = Option(
    "data", Path, Path("data"), "data directory: journal, lake, state, DuckDB file"
)
LATENESS: Final = Option(
    "lateness", non_negative_float, 10.0, "seconds after a minute's end before it seals"
)
RECOMPUTE_HORIZON: Final = Option(
    "recompute_horizon", positive_float, 86400.0, "seconds late windows are kept for recompute"
)
JOURNAL_RETENTION_DAYS: Final = Option(
    "journal_retention_days", positive_float, 30.0, "days of journal segments to keep"
)


def retention_days(text: str) -> float | None:
    """A positive, finite number of days, or ``forever`` (also ``none``, empty) for None."""
    if text.strip().lower() in ("", "forever", "none"):
        return None
    if text.strip().lower() in ("inf", "+inf", "infinity", "+infinity"):
        raise argparse.ArgumentTypeError(f"{text!r}: to keep ticks forever, say 'forever'")
    value = finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of days")
    return value


def time_of_day(text: str) -> dt.time:
    """``HH:MM``, a UTC time of day (24-hour clock)."""
    try:
        moment = dt.time.fromisoformat(text.strip())
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is not None or moment.second or moment.microsecond:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time of day (HH:MM, UTC)")
    return moment


TICK_RETENTION_DAYS: Final = Option(
    "tick_retention_days",
    retention_days,
    None,
    "days of ticks to keep (default: forever); whole UTC days, never features",
    "DAYS",
)
COMPACTION_GRACE: Final = Option(
    "compaction_grace",
    non_negative_float,
    DEFAULT_GRACE_S,
    "seconds compacted minute files stay readable (for queries already running) before deletion",
)
MAINTAIN: Final = Option(
    "maintain",
    boolean,
    True,
    "run maintenance once a day (compaction, tick retention, journal pruning, temporaries)",
)
MAINTAIN_AT: Final = Option(
    "maintain_at", time_of_day, "03:30", "UTC time of day of the daily maintenance", "HH:MM"
)


def lake_url(text: str) -> str:
    """An object-store URL the lake can offload to and read (``lake.remote``)."""
    try:
        return RemoteLake.parse(text).url
    except RemoteError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


LAKE_URL: Final = Option(
    "lake_url",
    lake_url,
    None,
    "object store of compacted days: s3://bucket/prefix (endpoint and keys from AWS_*); "
    "maintenance offloads there, readers read it",
    "URL",
)


def use_lake_url(data: Path, url: str | None, *, create: bool = False) -> str | None:
    """Bind the data directory ``data`` (created if missing: a machine that reads only the
    object store has none yet) to the lake URL ``url`` given to a command, so every reader
    of ``data`` reads it too (``lake.remote.bind_remote``; ``create``: a writer's first
    offload). The problem in one line, or None (also without ``url``)."""
    if url is None:
        return None
    try:
        data.mkdir(parents=True, exist_ok=True)
        bind_remote(data, url, create=create)
    except (RemoteError, OSError) as exc:
        return first_line(exc)
    return None


OFFLOAD_AFTER_DAYS: Final = Option(
    "offload_after_days",
    non_negative_float,
    DEFAULT_OFFLOAD_AFTER_DAYS,
    "days after which a compacted day goes to the object store (with --lake-url)",
    "DAYS",
)
DAILY_MAINTENANCE_OPTIONS: Final = (
    MAINTAIN,
    MAINTAIN_AT,
    TICK_RETENTION_DAYS,
    COMPACTION_GRACE,
    LAKE_URL,
    OFFLOAD_AFTER_DAYS,
)
"""The daily maintenance's own settings: for ``record`` and ``analyze``, which run it (with
``recompute_horizon`` and ``journal_retention_days``, which they take anyway)."""

DATABASE: Final = Option(
    "database", Path, None, "DuckDB file (default: DATA/ticklake.duckdb)", "FILE"
)
LOCK_TIMEOUT: Final = Option(
    "lock_timeout",
    positive_float,
    WRITER_TIMEOUT,
    "seconds the job waits for SQL readers to release the database before leaving the "
    "work to its next run",
)
CHUNK_MINUTES: Final = Option(
    "chunk_minutes", positive_int, 60, "minutes of windows per transaction when catching up"
)
ANALYTICS_OPTIONS: Final = (DATABASE, LOCK_TIMEOUT, CHUNK_MINUTES)
"""The job's own settings: for ``analyze``, and for ``record``, which runs the job too."""


def job_config(ns: argparse.Namespace) -> JobConfig:
    """The job's settings from ``analyze``'s (or ``record``'s) parsed options."""
    return JobConfig(
        lateness=ns.lateness,
        recompute_horizon=ns.recompute_horizon,
        chunk_minutes=getattr(ns, "chunk_minutes", CHUNK_MINUTES.default),
        lock_timeout=getattr(ns, "lock_timeout", LOCK_TIMEOUT.default),
        database=getattr(ns, "database", None),
    )


def maintenance_config(ns: argparse.Namespace, *, in_recorder: bool = False) -> MaintenanceConfig:
    """Maintenance's settings from ``maintain``'s (or ``record``'s, ``analyze``'s) parsed
    options; ``in_recorder``: the recorder of this process prunes its own journal."""
    return MaintenanceConfig(
        recompute_horizon=ns.recompute_horizon,
        compaction_grace=ns.compaction_grace,
        tick_retention_days=ns.tick_retention_days,
        journal_retention_days=ns.journal_retention_days,
        journal_pruned_by_recorder=in_recorder,
        lake_url=getattr(ns, "lake_url", None),
        offload_after_days=getattr(ns, "offload_after_days", DEFAULT_OFFLOAD_AFTER_DAYS),
    )
