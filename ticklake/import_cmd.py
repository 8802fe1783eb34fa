"""``ticklake import FILE…``: tick history from Parquet or CSV into the lake, all or nothing.

The rules (columns, time formats, seqs, what a bad row is) live in :mod:`lake.importer`.
This module holds the options, the progress lines on stderr (every ``PROGRESS_EVERY``
seconds: phase, rows, rows/s) and the summary on stdout.

Exit codes: 0 imported (or nothing to import), 1 bad input (bad rows or unusable files:
nothing was written) or a write that stopped part-way (rerun the same command to finish),
2 usage (a missing or unsupported file, a recorder running on the data directory).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TextIO

from lake.clock import Clock, SystemClock
from lake.compact import DEFAULT_HORIZON_S
from lake.datadir import DataLockedError
from lake.importer import (
    ImportOptions,
    ImportProgress,
    ImportRejectedError,
    ImportStats,
    ImportUsageError,
    ImportWriteError,
    import_files,
)
from lake.utc import MINUTE_MS, iso_utc
from ticklake.commands import Command, report_error, usage_error
from ticklake.config import Option, add_options, bad_setting, positive_int
from ticklake.logs import configure, progress_stream
from ticklake.options import DATA

__all__ = [
    "COMMAND",
    "DESCRIPTION",
    "IMPORT_OPTIONS",
    "ProgressLines",
    "add_arguments",
    "main",
    "run",
    "summary",
]

NAME: Final = "import"
PROGRESS_EVERY = 3.0
IMPORT_OPTIONS = (
    DATA,
    Option("import_threads", positive_int, 4, "threads writing lake files during an import"),
)
DESCRIPTION = (
    "Load ticks from Parquet or CSV files (columns ticker, time, price, and any other tick "
    "field by its proto name) into the lake through the recorder's writer. Every row is "
    "checked before anything is written: one bad row and nothing is imported. A file's row "
    "order is arrival order. Stop the recorder first."
)


def add_arguments(
    parser: argparse.ArgumentParser,
    file_values: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
) -> None:
    """The command's arguments: FILE…, ``--ignore-unknown`` and ``IMPORT_OPTIONS``."""
    parser.add_argument(
        "files", nargs="+", type=Path, metavar="FILE", help=".parquet, .csv or .csv.gz files"
    )
    parser.add_argument(
        "--ignore-unknown",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="skip columns that are not tick fields (default: refuse the file)",
    )
    add_options(parser, IMPORT_OPTIONS, file_values, env)


class ProgressLines:
    """Prints a progress line at most every ``every`` seconds of ``clock`` time."""

    def __init__(self, out: TextIO, clock: Clock, every: float = PROGRESS_EVERY) -> None:
        self.out, self.clock, self.every = out, clock, every
        self.phase, self.started = "", clock.now()
        self.last = self.started

    def __call__(self, progress: ImportProgress) -> None:
        now = self.clock.now()
        if progress.phase != self.phase:
            self.phase, self.started, self.last = progress.phase, now, now
        if now - self.last < self.every:
            return
        self.last = now
        rate = progress.rows / max(now - self.started, 1e-9)
        line = f"import: {progress.phase} {progress.rows:,} rows"
        if progress.total:
            eta = (progress.total - progress.rows) / max(rate, 1e-9)
            line += (
                f" of {progress.total:,} ({progress.rows / progress.total:.0%}, ETA {eta:.0f} s)"
            )
        print(f"{line}, {rate:,.0f} rows/s", file=self.out, flush=True)


def history_before(now: float, horizon: float = DEFAULT_HORIZON_S) -> dt.date:
    """The first UTC date an import keeps in minute files: every earlier day has ended more
    than the recompute horizon ago, so compaction would move it to the history tier anyway;
    the import writes it there at once (one file per ticker-day, ~100x fewer files)."""
    return dt.datetime.fromtimestamp(now - horizon, dt.UTC).date()


def run(ns: argparse.Namespace, clock: Clock | None = None) -> int:
    """Import ``ns.files`` into ``ns.data``; returns the exit code (see the module docstring)."""
    clock = clock or SystemClock()
    started = clock.now()
    options = ImportOptions(
        ignore_unknown=ns.ignore_unknown,
        threads=ns.import_threads,
        history_before=history_before(started),
    )
    try:
        progress = ProgressLines(progress_stream(ns, sys.stderr), clock)
        stats = import_files(ns.data, ns.files, int(started * 1e6), options, progress)
    except DataLockedError as exc:
        return usage_error(NAME, f"a recorder is running on {ns.data}: {exc}")
    except ImportUsageError as exc:
        return usage_error(NAME, exc)
    except ImportRejectedError as exc:
        _print_rejection(exc, sys.stderr)
        return 1
    except ImportWriteError as exc:
        report_error(NAME, exc)
        return 1
    print(summary(stats, clock.now() - started))
    if stats.first_ms is not None and stats.last_ms is not None:
        start = iso_utc(stats.first_ms, "minutes")
        end = iso_utc(stats.last_ms + MINUTE_MS, "minutes")
        print(f"features for these ticks: ticklake backfill --start {start} --end {end}")
    return 0


def summary(stats: ImportStats, seconds: float) -> str:
    """The one-line result: files, rows, ticks added, duplicates, files written, seconds."""
    rate = stats.rows / max(seconds, 1e-9)
    files = f"{stats.files} file{'' if stats.files == 1 else 's'}"
    number = "" if stats.import_number is None else f" (import {stats.import_number})"
    return (
        f"imported {files}{number}: {stats.rows:,} rows, "
        f"{stats.ticks_added:,} ticks added, {stats.duplicates:,} duplicates, "
        f"{stats.minute_files:,} minute files and {stats.day_files:,} day files written, "
        f"{len(stats.tickers)} tickers "
        f"in {seconds:.1f} s ({rate:,.0f} rows/s)"
    )


def _print_rejection(exc: ImportRejectedError, out: TextIO) -> None:
    report_error(NAME, exc, out)
    for problem in exc.problems:
        print(f"  {problem}", file=out)
    for bad in exc.bad_rows:
        print(f"  {bad.path} row {bad.row}: {bad.reason}", file=out)
    more = exc.bad_row_count - len(exc.bad_rows)
    if more > 0:
        print(f"  ... and {more:,} more bad rows", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ticklake.import_cmd FILE…``: ``ticklake import`` alone, logging at INFO
    (the tests run it as a process of its own)."""
    parser = argparse.ArgumentParser(prog="ticklake import", description=DESCRIPTION)
    add_arguments(parser, {})
    ns = parser.parse_args(argv)
    error = bad_setting(ns)
    if error is not None:
        return usage_error(NAME, error)
    configure("INFO")
    return run(ns)


COMMAND: Final = Command(
    name=NAME,
    help="load ticks from Parquet or CSV files into the lake (all rows checked first)",
    description=DESCRIPTION,
    add_arguments=add_arguments,
    run=run,
    settings=IMPORT_OPTIONS,
)


if __name__ == "__main__":
    sys.exit(main())
