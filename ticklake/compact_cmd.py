"""``ticklake compact`` and ``ticklake status``: options, wiring, output.

``compact`` runs one compaction pass now (safe beside a running recorder): sealed days older
than the recompute horizon, and with ``--before DATE`` every ended day before DATE, move to
the history tier; minute files hidden for longer than the grace period are deleted. Exit
status 0, or 1 when a day failed (the others are done; the log says why).

``status`` prints, per tier (minute files, history files, journal), the files, rows, bytes,
oldest and newest tick (journal: frames and receive times) and what retention removes next,
as an aligned table or ``--format json`` (one object per tier).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

from lake.clock import SystemClock
from lake.compact import DEFAULT_GRACE_S, compact_eligible
from lake.retention import RetentionConfig, RetentionError, check_retention
from lake.status import TierStatus, lake_status
from recorder.journal_status import journal_status
from ticklake.config import Option, add_options, non_negative_float
from ticklake.record_cmd import DATA, RECORD_OPTIONS

__all__ = [
    "COMPACT_OPTIONS",
    "GRACE",
    "RETENTION_OPTIONS",
    "STATUS_OPTIONS",
    "TICK_RETENTION_DAYS",
    "add_compact_arguments",
    "add_status_arguments",
    "compact",
    "retention_days",
    "status",
]

_SHARED: Final = {option.name: option for option in RECORD_OPTIONS}


def retention_days(text: str) -> float | None:
    """A positive number of days, or ``forever`` (also ``none``, empty) for None."""
    if text.strip().lower() in ("", "forever", "none"):
        return None
    value = float(text)
    if not value > 0:
        raise ValueError(f"{text!r} is not a positive number of days")
    return value


def iso_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


GRACE: Final = Option(
    "compaction_grace",
    non_negative_float,
    DEFAULT_GRACE_S,
    "seconds compacted minute files stay readable (for queries already running) before deletion",
)
TICK_RETENTION_DAYS: Final = Option(
    "tick_retention_days",
    retention_days,
    None,
    "days of ticks to keep (default: forever); whole UTC days, never features",
    "DAYS",
)
RETENTION_OPTIONS: Final = (TICK_RETENTION_DAYS,)
"""For the command that runs the scheduler (``record``/``analyze``): it applies them."""
COMPACT_OPTIONS: Final = (DATA, _SHARED["recompute_horizon"], GRACE)
STATUS_OPTIONS: Final = (
    DATA,
    TICK_RETENTION_DAYS,
    _SHARED["journal_retention_days"],
    _SHARED["recompute_horizon"],
)
"""``status`` shows what the retention settings would remove; it removes nothing."""


def add_compact_arguments(parser: argparse.ArgumentParser, file_values: Mapping[str, Any]) -> None:
    add_options(parser, COMPACT_OPTIONS, file_values)
    parser.add_argument(
        "--before",
        type=iso_date,
        metavar="DATE",
        help="also compact every ended day before DATE (YYYY-MM-DD, UTC), whatever the horizon",
    )


def add_status_arguments(parser: argparse.ArgumentParser, file_values: Mapping[str, Any]) -> None:
    add_options(parser, STATUS_OPTIONS, file_values)
    parser.add_argument(
        "--format", choices=("table", "json"), default="table", help="output (default: table)"
    )


def compact(ns: argparse.Namespace) -> int:
    data: Path = ns.data
    if not data.is_dir():
        print(f"ticklake compact: no data directory {data}", file=sys.stderr)
        return 2
    now = SystemClock().now()
    result = compact_eligible(
        data, now, ns.recompute_horizon, grace=ns.compaction_grace, before=ns.before
    )
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
        print(f"ticklake compact: failed: {failure}", file=sys.stderr)
    return 1 if result.failed else 0


def status(ns: argparse.Namespace) -> int:
    data: Path = ns.data
    if not data.is_dir():
        print(f"ticklake status: no data directory {data}", file=sys.stderr)
        return 2
    try:
        config = RetentionConfig(ns.tick_retention_days, ns.journal_retention_days)
        check_retention(config, ns.recompute_horizon)
    except RetentionError as exc:
        print(f"ticklake status: {exc}", file=sys.stderr)
        return 2
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
    return 0


def format_status(tiers: list[TierStatus]) -> str:
    """An aligned table: one line per tier; numbers right-aligned, times in UTC."""
    header = ["tier", "files", "rows", "bytes", "oldest", "newest", "retention removes next"]
    lines = [header]
    for t in tiers:
        rows = f"{t.rows:,}" if t.rows_exact else f">={t.rows:,}"
        removes = t.removes_next + (f" at {_utc(t.removes_at_ms)}" if t.removes_at_ms else "")
        sizes = [f"{t.files:,}", rows, f"{t.bytes:,}"]
        lines.append([t.tier, *sizes, _utc(t.oldest_ms), _utc(t.newest_ms), removes])
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


def _json(tier: TierStatus) -> dict[str, Any]:
    out = asdict(tier)
    for key in ("oldest_ms", "newest_ms", "removes_at_ms"):
        value = out.pop(key)
        out[key.removesuffix("_ms")] = None if value is None else _iso(value)
    return out


def _utc(epoch_ms: int | None) -> str:
    if epoch_ms is None:
        return "-"
    moment = dt.datetime.fromtimestamp(epoch_ms / 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _iso(epoch_ms: int) -> str:
    moment = dt.datetime.fromtimestamp(epoch_ms / 1000, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
