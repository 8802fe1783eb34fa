"""The settings several commands share, each defined once, and the job's config built from them.

``record`` runs the recorder and the per-minute job; ``analyze`` runs the job alone;
``backfill``, ``compact``, ``status``, ``sql``, ``import`` and ``replay`` read the same data
directory, seal lateness, recompute horizon or database. Options only one command reads
live in that command's module.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Final

from analytics.database import WRITER_TIMEOUT
from analytics.job import JobConfig
from lake.symbols import SymbolError, parse_symbols
from ticklake.config import Option, non_negative_float, positive_float, positive_int

__all__ = [
    "ANALYTICS_OPTIONS",
    "CHUNK_MINUTES",
    "DATA",
    "DATABASE",
    "JOURNAL_RETENTION_DAYS",
    "LATENESS",
    "LOCK_TIMEOUT",
    "RECOMPUTE_HORIZON",
    "job_config",
    "tickers",
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
