"""``ticklake maintain``: one maintenance run now (safe beside a running recorder).

Compaction of sealed days past the recompute horizon, tick retention (``tick_retention_days``;
without it ticks are kept forever), journal pruning (only when no recorder holds the
writer's lock: a running recorder prunes its own journal every hour) and removal of dead
writers' temporaries, and with ``--lake-url`` the offload of compacted days older than
``offload_after_days`` to the object store (``lake.offload``); ``state/maintenance.json``
records what it did, which ``ticklake status`` shows. ``record`` and ``analyze`` run the
same job daily (``maintain_at``).

Exit status 0, 1 when a step or a day failed (the others are done; the output says why), 2
without a data directory, with contradictory retention settings, a damaged seal file, an
object store that cannot be reached or differs from the one the data directory offloads to,
or while another maintenance run works.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from lake.clock import SystemClock
from lake.maintenance import MaintenanceBusyError
from lake.remote import RemoteError, bind_remote
from lake.retention import RetentionError
from lake.seal import SealError, load_seal
from recorder.maintenance_job import run_maintenance
from ticklake.commands import Command, data_problem, report_error, usage_error
from ticklake.config import add_options
from ticklake.options import (
    COMPACTION_GRACE,
    DATA,
    JOURNAL_RETENTION_DAYS,
    LAKE_URL,
    OFFLOAD_AFTER_DAYS,
    RECOMPUTE_HORIZON,
    TICK_RETENTION_DAYS,
    maintenance_config,
)

__all__ = ["COMMAND", "MAINTAIN_OPTIONS", "add_arguments", "run"]

NAME: Final = "maintain"
MAINTAIN_OPTIONS: Final = (
    DATA,
    RECOMPUTE_HORIZON,
    COMPACTION_GRACE,
    TICK_RETENTION_DAYS,
    JOURNAL_RETENTION_DAYS,
    LAKE_URL,
    OFFLOAD_AFTER_DAYS,
)


def add_arguments(parser: argparse.ArgumentParser, file_values: Mapping[str, Any]) -> None:
    add_options(parser, MAINTAIN_OPTIONS, file_values)


def run(ns: argparse.Namespace) -> int:
    """Run maintenance once and print what it did; see the module docstring."""
    data: Path = ns.data
    problem = data_problem(data)
    if problem is not None:
        return usage_error(NAME, problem)
    config = maintenance_config(ns)
    try:
        config.check()
        load_seal(data)  # compaction and pruning go by it: a damaged one stops us here
        if config.lake_url is not None:
            bind_remote(data, config.lake_url).ensure_placeholder()  # reachable, one URL
        record = run_maintenance(data, SystemClock(), config)
    except (RetentionError, SealError, MaintenanceBusyError, RemoteError) as exc:
        return usage_error(NAME, exc)
    print(record.summary())
    if record.days_waiting:
        print(
            f"{record.days_waiting} compacted days keep their minute files for the grace "
            f"period ({config.compaction_grace:g} s): a later run deletes them"
        )
    for note in record.notes:
        print(f"skipped: {note}")
    for failure in record.failures:
        report_error(NAME, f"failed: {failure}")
    return 1 if record.failures else 0


COMMAND: Final = Command(
    name=NAME,
    help="compact, apply tick retention, prune the journal, remove stale temporaries",
    description="One maintenance run now, safe beside a running recorder: sealed days past "
    "the recompute horizon move to the history tier, ticks older than "
    "--tick-retention-days leave the lake, journal segments past --journal-retention-days "
    "that the lake has applied are deleted (unless a recorder holds the journal: it prunes "
    "its own), temporaries of dead writers are removed. What it did goes to "
    "DATA/state/maintenance.json, which `ticklake status` shows.",
    add_arguments=add_arguments,
    run=run,
    settings=MAINTAIN_OPTIONS,
)
