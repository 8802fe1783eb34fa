"""``ticklake backfill``: recompute features over stored ticks, with a progress bar.

The work is :func:`analytics.backfill.backfill`; this module holds the options, the
progress bar on stderr (a line redrawn in place on a terminal; elsewhere a plain line
every ``PROGRESS_EVERY`` seconds) and the one-line summary on stdout. With ``--cluster``
the chunks are computed on a Dask cluster (:mod:`analytics.cluster`, the ``dask`` extra,
imported only then) and written here, as without it.

Exit status: 0 done (also when the range held no ticks); 2 when the request cannot be
served (start not before end, an unknown ticker, no data directory, an unreadable lake
file), another process held the database longer than ``--lock-timeout`` (rows written
until then are kept: rerun the same command to finish), or ``--cluster`` is not a cluster
that can be used (a bad value, no scheduler there, the dask extra not installed).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, TextIO

from analytics.backfill import (
    BackfillConfig,
    BackfillError,
    BackfillProgress,
    BackfillResult,
    ChunkPool,
)
from analytics.backfill import backfill as run_backfill
from analytics.cluster import ClusterError, DaskMissingError, cluster_pool, parse_cluster
from analytics.database import DatabaseError
from lake.clock import Clock, SystemClock
from lake.errors import LakeError
from lake.utc import iso_utc
from ticklake.commands import USAGE_ERROR, Command, first_line, usage_error
from ticklake.config import Option, add_options, positive_int, utc_time
from ticklake.logs import progress_stream
from ticklake.options import DATA, DATABASE, LAKE_URL, LATENESS, tickers, use_lake_url
from ticklake.options import LOCK_TIMEOUT as JOB_LOCK_TIMEOUT

__all__ = [
    "BACKFILL_OPTIONS",
    "COMMAND",
    "DESCRIPTION",
    "ProgressBar",
    "add_arguments",
    "progress_text",
    "run",
    "summary",
]

NAME: Final = "backfill"

PROGRESS_EVERY: Final = 10.0  # seconds between plain progress lines when not on a terminal
REDRAW_EVERY: Final = 0.1  # seconds between redraws on a terminal
BAR_WIDTH: Final = 24
WORKERS = Option(
    "workers",
    positive_int,
    os.cpu_count() or 1,
    "backfill threads computing chunks at once (plus one writing to the database)",
)
LOCK_TIMEOUT = Option(  # the same setting as the job's, described for this command
    JOB_LOCK_TIMEOUT.name,
    JOB_LOCK_TIMEOUT.parse,
    JOB_LOCK_TIMEOUT.default,
    "seconds to wait while another process holds the database before giving up "
    "(rows written until then are kept; rerun to finish)",
)
CLUSTER = Option(  # checked by run(), so that a bad value is one line, from anywhere
    "cluster",
    str.strip,
    None,
    "compute the chunks on a Dask cluster, this process writing the rows: local:N (N "
    "worker processes here) or tcp://HOST:PORT (a running scheduler whose workers see "
    "--data at the same path); needs the dask extra (default: --workers threads here)",
    metavar="local:N|tcp://HOST:PORT",
)
BACKFILL_OPTIONS: Final = (DATA, LATENESS, DATABASE, LOCK_TIMEOUT, WORKERS, CLUSTER, LAKE_URL)
DESCRIPTION: Final = (
    "Recompute the features of every sealed window in [--start, --end) from the ticks "
    "stored in the lake (minute files and compacted history), exactly as the per-minute "
    "job computes them, and upsert them into DuckDB in small transactions: safe beside a "
    "running recorder, idempotent, interruptible (rerun to finish)."
)


def add_arguments(parser: argparse.ArgumentParser, file_values: Mapping[str, Any]) -> None:
    """``--start``, ``--end``, ``--tickers`` and ``BACKFILL_OPTIONS``."""
    parser.add_argument(
        "--start",
        type=utc_time,
        required=True,
        help="first window, ISO-8601 UTC (2024-04-15 or 2024-04-15T13:30Z); a window "
        "containing it is included",
    )
    parser.add_argument(
        "--end", type=utc_time, required=True, help="end of the range, exclusive (ISO-8601 UTC)"
    )
    parser.add_argument(
        "--tickers",
        type=tickers,
        metavar="SYMBOLS",
        help="comma-separated symbols (default: every ticker in the lake)",
    )
    add_options(parser, BACKFILL_OPTIONS, file_values)


def run(ns: argparse.Namespace, clock: Clock | None = None, err: TextIO | None = None) -> int:
    """Backfill as ``ns`` asks; returns the exit status (see the module docstring)."""
    err = err or sys.stderr
    config = BackfillConfig(
        start_ms=round(ns.start * 1000),
        end_ms=round(ns.end * 1000),
        tickers=tuple(ns.tickers) if ns.tickers else None,
        workers=ns.workers,
        lateness=ns.lateness,
        database=ns.database,
        lock_timeout=ns.lock_timeout,
    )
    problem = use_lake_url(ns.data, ns.lake_url)
    if problem is not None:
        return usage_error(NAME, problem, err)
    bar = ProgressBar(progress_stream(ns, err))  # --quiet: none
    try:
        with _pool(ns.cluster) as pool:
            result = run_backfill(ns.data, config, clock or SystemClock(), bar, pool)
    except DaskMissingError as exc:
        print(exc, file=err, flush=True)  # the whole line names the command
        return USAGE_ERROR
    except (BackfillError, ClusterError) as exc:
        bar.close()
        return usage_error(NAME, exc, err)
    except DatabaseError as exc:
        bar.close()
        written = f"{bar.rows_written:,} rows written so far are kept; " if bar.rows_written else ""
        message = f"{first_line(exc)}; {written}rerun the same command to finish"
        return usage_error(NAME, message, err)
    except (LakeError, OSError) as exc:
        bar.close()
        return usage_error(NAME, exc, err)
    bar.close()
    print(summary(result))
    return 0


def _pool(cluster: str | None) -> contextlib.AbstractContextManager[ChunkPool | None]:
    """The cluster ``--cluster`` names, for the backfill's block; none without it."""
    if cluster is None:
        return contextlib.nullcontext()
    return cluster_pool(parse_cluster(cluster))


class ProgressBar:
    """Shows ``BackfillProgress`` on ``out``: redrawn in place (``\\r``) on a terminal at
    most every ``REDRAW_EVERY`` seconds, else a plain line every ``PROGRESS_EVERY``."""

    def __init__(
        self,
        out: TextIO,
        *,
        tty: bool | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out, self.now = out, now
        self.tty = out.isatty() if tty is None else tty
        self.every = REDRAW_EVERY if self.tty else PROGRESS_EVERY
        self.last = now()
        self.width = 0
        self.rows_written = 0

    def __call__(self, progress: BackfillProgress) -> None:
        self.rows_written = progress.rows_written
        moment = self.now()
        final = progress.chunks_done == progress.chunks_total
        if moment - self.last < self.every and not (final and self.tty):
            return
        self.last = moment
        text = progress_text(progress)
        if self.tty:
            self.out.write("\r" + text.ljust(self.width))
            self.width = len(text)
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        """End the redrawn line, so what follows starts on a new one."""
        if self.tty and self.width:
            self.out.write("\n")
            self.out.flush()
            self.width = 0


def progress_text(p: BackfillProgress) -> str:
    """``[#####-----]  42%  357/850 ticker-days  16,001/~38,100 windows  9.81 M ticks/s
    ETA 0:00:12`` (``~``: an estimate until every chunk is done)."""
    fraction = p.ticker_days_done / p.ticker_days_total if p.ticker_days_total else 1.0
    filled = round(fraction * BAR_WIDTH)
    about = "" if p.chunks_done == p.chunks_total else "~"
    eta = p.eta_seconds
    return (
        f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {fraction:4.0%}  "
        f"{p.ticker_days_done:,}/{p.ticker_days_total:,} ticker-days  "
        f"{p.windows:,}/{about}{p.windows_total:,} windows  "
        f"{p.ticks_per_second / 1e6:.2f} M ticks/s  "
        f"ETA {'?' if eta is None else _duration(eta)}"
    )


def summary(r: BackfillResult) -> str:
    """The one-line result: windows, rows, ticks, seconds, ticks/s, and the range."""
    return (
        f"backfilled {_count(r.windows, 'window')} of {_count(r.tickers, 'ticker')} "
        f"({iso_utc(r.start_ms, 'minutes')} to {iso_utc(r.end_ms, 'minutes')}): "
        f"{_count(r.rows, 'row')} written in "
        f"{_count(r.transactions, 'transaction')}, {_count(r.ticks, 'tick')} in "
        f"{r.seconds:.1f} s ({r.ticks_per_second / 1e6:.2f} M ticks/s)"
    )


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _duration(seconds: float) -> str:
    whole = int(seconds + 0.5)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


COMMAND: Final = Command(
    name=NAME,
    help="recompute features from stored ticks over a time range (idempotent)",
    description=DESCRIPTION,
    add_arguments=add_arguments,
    run=run,
    settings=BACKFILL_OPTIONS,
)
