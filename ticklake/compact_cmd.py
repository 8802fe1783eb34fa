"""``ticklake compact``: one compaction pass now (safe beside a running recorder).

Sealed days older than the recompute horizon, and with ``--before DATE`` every ended day
before DATE, move to the history tier; minute files hidden for longer than the grace period
are deleted. Exit status 0, or 1 when a day failed (the others are done; the log says why),
2 without a data directory.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from lake.clock import SystemClock
from lake.compact import compact_eligible
from lake.seal import SealError
from ticklake.commands import Command, data_problem, report_error, usage_error
from ticklake.config import add_options
from ticklake.options import COMPACTION_GRACE, DATA, RECOMPUTE_HORIZON

__all__ = ["COMMAND", "COMPACT_OPTIONS", "GRACE", "add_arguments", "iso_date", "run"]

NAME: Final = "compact"


def iso_date(text: str) -> dt.date:
    """A ``YYYY-MM-DD`` date (a UTC day)."""
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


GRACE: Final = COMPACTION_GRACE
COMPACT_OPTIONS: Final = (DATA, RECOMPUTE_HORIZON, GRACE)


def add_arguments(parser: argparse.ArgumentParser, file_values: Mapping[str, Any]) -> None:
    add_options(parser, COMPACT_OPTIONS, file_values)
    parser.add_argument(
        "--before",
        type=iso_date,
        metavar="DATE",
        help="also compact every ended day before DATE (YYYY-MM-DD, UTC), whatever the horizon",
    )


def run(ns: argparse.Namespace) -> int:
    """Compact, print what was done; see the module docstring for the exit status."""
    data: Path = ns.data
    problem = data_problem(data)
    if problem is not None:
        return usage_error(NAME, problem)
    now = SystemClock().now()
    try:
        result = compact_eligible(
            data, now, ns.recompute_horizon, grace=ns.compaction_grace, before=ns.before
        )
    except SealError as exc:  # names the file and what to do
        return usage_error(NAME, exc)
    print(
        f"compacted {result.days_compacted} days ({result.files_merged} minute files, "
        f"{result.rows:,} ticks, {result.bytes_written:,} bytes); deleted the minute files "
        f"of {result.days_finished} days ({result.files_deleted} files)"
    )
    if result.days_waiting:
        print(
            f"{result.days_waiting} compacted days keep their minute files for the grace "
            f"period ({ns.compaction_grace:g} s): a later pass deletes them"
        )
    for failure in result.failed:
        report_error(NAME, f"failed: {failure}")
    return 1 if result.failed else 0


COMMAND: Final = Command(
    name=NAME,
    help="compact sealed days into one Parquet file per ticker and day",
    description="Merge each sealed day's minute files into one time-sorted file per "
    "(ticker, date) under DATA/history, invisibly to readers; --before DATE compacts "
    "every ended day before DATE regardless of the recompute horizon.",
    add_arguments=add_arguments,
    run=run,
    settings=COMPACT_OPTIONS,
)
