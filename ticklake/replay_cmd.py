"""``ticklake replay``: journaled frames applied to the lake again, through the path live
recording takes; into the data directory (idempotent) or a fresh lake (``--into DIR``)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from lake.datadir import DataLockedError, journal_dir
from lake.seal import SealError
from recorder.journal import JournalError
from recorder.journal_read import damage_text
from recorder.replay import replay
from ticklake.commands import Command, data_problem, usage_error
from ticklake.config import add_options, utc_time
from ticklake.options import DATA

__all__ = ["COMMAND", "run"]

NAME: Final = "replay"
SETTINGS: Final = (DATA,)


def add_arguments(parser: argparse.ArgumentParser, file_values: Mapping[str, Any]) -> None:
    add_options(parser, SETTINGS, file_values)
    parser.add_argument("--start", type=utc_time, help="first receive time (ISO-8601, UTC)")
    parser.add_argument("--end", type=utc_time, help="receive time to stop before (ISO-8601)")
    parser.add_argument("--into", type=Path, help="build the lake in this directory instead")


def run(ns: argparse.Namespace) -> int:
    """Replay and print what it did; 1 when journal damage was skipped (everything else is
    applied), 2 when the data directory or its journal is missing, or the journal cannot be
    read at all (or is locked)."""
    problem = data_problem(ns.data)
    if problem is None and not journal_dir(ns.data).is_dir():
        problem = f"no journal in {ns.data}: nothing to replay"
    if problem is not None:
        return usage_error(NAME, problem)
    start = None if ns.start is None else int(ns.start * 1e6)
    end = None if ns.end is None else int(ns.end * 1e6)
    try:
        report = replay(ns.data, int(time.time() * 1000), start, end, ns.into)
    except (DataLockedError, JournalError, OSError, SealError) as exc:  # locked: stop the recorder
        return usage_error(NAME, exc)
    stats = report.stats
    print(
        f"replayed {stats.frames} frames into {ns.into or ns.data}: "
        f"{stats.ticks_added} ticks added, {stats.duplicates} already there, "
        f"{stats.bad_frames + stats.bad_symbols} quarantined"
    )
    if not report.damage:
        return 0
    print(
        f"ticklake {NAME}: damaged journal bytes skipped ({damage_text(list(report.damage))}); "
        "the frames in them are not in the lake",
        file=sys.stderr,
    )
    return 1


COMMAND: Final = Command(
    name=NAME,
    help="rebuild the lake's ticks from the journal",
    description="Apply journaled frames to the lake again, through the same path live "
    "recording takes. Into the data directory it is idempotent and restores anything "
    "missing; --into DIR builds a fresh lake there (e.g. after a decoder fix).",
    add_arguments=add_arguments,
    run=run,
    settings=SETTINGS,
)
