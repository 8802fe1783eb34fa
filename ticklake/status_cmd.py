"""``ticklake status``: per tier (minute files, history files, journal) the files, rows,
bytes, oldest and newest tick (journal: frames and receive times) and what retention removes
next, as an aligned table or ``--format json`` (one object per tier). It removes nothing.

Files it cannot read are not counted but reported: their number and the first few paths,
on a line after the table (JSON: ``unreadable``, ``unreadable_paths``); the exit status is
then 1.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

from lake.clock import SystemClock
from lake.retention import RetentionConfig, RetentionError, check_retention
from lake.seal import SealError, load_seal
from lake.status import TierStatus, lake_status
from lake.utc import iso_utc
from recorder.journal_status import journal_status
from ticklake.commands import Command, usage_error
from ticklake.config import Option, add_options, finite_float
from ticklake.options import DATA, JOURNAL_RETENTION_DAYS, RECOMPUTE_HORIZON

__all__ = [
    "COMMAND",
    "STATUS_OPTIONS",
    "TICK_RETENTION_DAYS",
    "add_arguments",
    "format_status",
    "retention_days",
    "run",
    "unreadable_lines",
]

NAME: Final = "status"


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


TICK_RETENTION_DAYS: Final = Option(
    "tick_retention_days",
    retention_days,
    None,
    "days of ticks to keep (default: forever); whole UTC days, never features",
    "DAYS",
)
STATUS_OPTIONS: Final = (DATA, TICK_RETENTION_DAYS, JOURNAL_RETENTION_DAYS, RECOMPUTE_HORIZON)
"""``status`` shows what the retention settings would remove; it removes nothing."""


def add_arguments(parser: argparse.ArgumentParser, file_values: Mapping[str, Any]) -> None:
    add_options(parser, STATUS_OPTIONS, file_values)
    parser.add_argument(
        "--format", choices=("table", "json"), default="table", help="output (default: table)"
    )


def run(ns: argparse.Namespace) -> int:
    """Print the tiers; 1 when some files are unreadable; 2 without a data directory, with
    inconsistent retention settings or a damaged seal file."""
    data: Path = ns.data
    if not data.is_dir():
        return usage_error(NAME, f"no data directory {data}")
    try:
        config = RetentionConfig(ns.tick_retention_days, ns.journal_retention_days)
        check_retention(config, ns.recompute_horizon)
    except RetentionError as exc:
        return usage_error(NAME, exc)
    try:
        load_seal(data)  # a damaged seal file is reported whether or not a tier needs it
    except SealError as exc:
        return usage_error(NAME, exc)
    now = SystemClock().now()
    tiers = [
        *lake_status(data, now, config),
        journal_status(data, now, config.journal_retention_days),
    ]
    if ns.format == "json":
        for tier in tiers:
            print(json.dumps(_json(tier)))
    else:
        print(format_status(tiers))
        for line in unreadable_lines(tiers):
            print(line)
    return 1 if any(tier.unreadable for tier in tiers) else 0


def format_status(tiers: list[TierStatus]) -> str:
    """An aligned table: one line per tier; numbers right-aligned, times ISO-8601 UTC."""
    header = ["tier", "files", "rows", "bytes", "oldest", "newest", "retention removes next"]
    lines = [header]
    for t in tiers:
        rows = f"{t.rows:,}" if t.rows_exact else f">={t.rows:,}"
        removes = t.removes_next + (f" at {_time_cell(t.removes_at_ms)}" if t.removes_at_ms else "")
        sizes = [f"{t.files:,}", rows, f"{t.bytes:,}"]
        lines.append([t.tier, *sizes, _time_cell(t.oldest_ms), _time_cell(t.newest_ms), removes])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {1, 2, 3}
    out = []
    for line in lines:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def unreadable_lines(tiers: list[TierStatus]) -> list[str]:
    """One line per tier with unreadable files: how many, and the first few paths."""
    lines = []
    for t in tiers:
        if not t.unreadable:
            continue
        files = "file" if t.unreadable == 1 else "files"
        more = t.unreadable - len(t.unreadable_paths)
        paths = ", ".join(t.unreadable_paths) + (f" and {more:,} more" if more else "")
        lines.append(f"{t.tier}: {t.unreadable:,} unreadable {files}, not counted above: {paths}")
    return lines


def _time_cell(epoch_ms: int | None) -> str:
    return "-" if epoch_ms is None else iso_utc(epoch_ms, "seconds")


def _json(tier: TierStatus) -> dict[str, Any]:
    """The tier as JSON: times (``oldest``, ``newest``, ``removes_at``) in ISO ms or null."""
    out = asdict(tier)
    for key in ("oldest_ms", "newest_ms", "removes_at_ms"):
        value = out.pop(key)
        out[key.removesuffix("_ms")] = None if value is None else iso_utc(value, "milliseconds")
    return out


COMMAND: Final = Command(
    name=NAME,
    help="files, rows, bytes and time range per tier, and what retention removes next",
    add_arguments=add_arguments,
    run=run,
    settings=STATUS_OPTIONS,
)
