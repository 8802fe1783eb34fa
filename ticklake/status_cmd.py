"""``ticklake status``: per tier (minute files, history files, journal) the files, rows,
bytes, oldest and newest tick (journal: frames and receive times) and what retention removes
next, as an aligned table or ``--format json`` (one object per tier); then maintenance: when
it last ran and what it did (``state/maintenance.json``), when it runs next (``maintain``,
``maintain_at``) and what it would do (JSON: ``{"maintenance": ...}``); last, whether it is
working (``ticklake.status_live``: the recorder, its connections' last frames, seal and
features lag; JSON: a last object, ``{"live": ...}``). It removes nothing.

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
from lake.maintenance import (
    MaintenanceRecord,
    MaintenanceStateError,
    load_record,
    next_daily_run_ms,
    plan_maintenance,
)
from lake.remote import RemoteError
from lake.retention import RetentionConfig, RetentionError, check_retention
from lake.seal import SealError, load_seal
from lake.status import TierStatus, lake_status
from lake.utc import iso_utc
from recorder.journal_status import journal_status
from ticklake.commands import Command, usage_error
from ticklake.config import add_options
from ticklake.options import (
    COMPACTION_GRACE,
    DATA,
    JOURNAL_RETENTION_DAYS,
    LAKE_URL,
    MAINTAIN,
    MAINTAIN_AT,
    RECOMPUTE_HORIZON,
    TICK_RETENTION_DAYS,
    retention_days,
    use_lake_url,
)
from ticklake.status_live import live_json, live_lines

__all__ = [
    "COMMAND",
    "STATUS_OPTIONS",
    "TICK_RETENTION_DAYS",
    "add_arguments",
    "format_status",
    "maintenance_json",
    "maintenance_lines",
    "retention_days",
    "run",
    "status_tiers",
    "tier_json",
    "unreadable_lines",
]

NAME: Final = "status"


STATUS_OPTIONS: Final = (
    DATA,
    TICK_RETENTION_DAYS,
    JOURNAL_RETENTION_DAYS,
    RECOMPUTE_HORIZON,
    COMPACTION_GRACE,
    MAINTAIN,
    MAINTAIN_AT,
    LAKE_URL,
)
"""``status`` shows what the retention settings would remove and when maintenance runs
next; it removes nothing."""


def add_arguments(parser: argparse.ArgumentParser, file_values: Mapping[str, Any]) -> None:
    add_options(parser, STATUS_OPTIONS, file_values)
    parser.add_argument(
        "--format", choices=("table", "json"), default="table", help="output (default: table)"
    )


def run(ns: argparse.Namespace) -> int:
    """Print the tiers; 1 when some files are unreadable; 2 without a data directory, with
    inconsistent retention settings or a damaged seal file."""
    data: Path = ns.data
    problem = use_lake_url(data, ns.lake_url)
    if problem is not None:
        return usage_error(NAME, problem)
    if not data.is_dir():
        return usage_error(NAME, f"no data directory {data}")
    try:
        config = RetentionConfig(ns.tick_retention_days, ns.journal_retention_days)
        tiers = status_tiers(data, config, ns.recompute_horizon)
    except (RetentionError, SealError, RemoteError) as exc:
        return usage_error(NAME, exc)
    now = SystemClock().now()
    maintenance = maintenance_json(data, ns, now)
    live = live_json(data, load_seal(data), now)
    if ns.format == "json":
        for tier in tiers:
            print(json.dumps(tier_json(tier)))
        print(json.dumps({"maintenance": maintenance}))
        print(json.dumps({"live": live}))
    else:
        print(format_status(tiers))
        for line in maintenance_lines(maintenance):
            print(line)
        for line in live_lines(live):
            print(line)
        for line in unreadable_lines(tiers):
            print(line)
    return 1 if any(tier.unreadable for tier in tiers) else 0


def maintenance_json(data: Path, ns: argparse.Namespace, now: float) -> dict[str, Any]:
    """Maintenance at ``now``: ``last`` (the last run's record, null before the first;
    ``last_error`` when its file is damaged), ``next_run`` (ISO time, null with ``maintain``
    off) and ``next`` (what a run would do now to the lake)."""
    out: dict[str, Any] = {"last": None}
    try:
        record = load_record(data)
    except MaintenanceStateError as exc:
        out["last_error"] = str(exc)
    else:
        out["last"] = None if record is None else asdict(record)
    next_ms = next_daily_run_ms(int(now * 1000), ns.maintain_at) if ns.maintain else None
    out["next_run"] = None if next_ms is None else iso_utc(next_ms, "minutes")
    plan = plan_maintenance(
        data, now, ns.recompute_horizon, ns.compaction_grace, ns.tick_retention_days
    )
    out["next"] = {**asdict(plan.compaction), "retention_days": plan.retention_days}
    out["next_summary"] = plan.summary()
    return out


def maintenance_lines(maintenance: dict[str, Any]) -> list[str]:
    """Lines after the table: the last run, what it skipped or failed, and the next run."""
    lines = []
    last = maintenance["last"]
    if "last_error" in maintenance:
        lines.append(f"maintenance: {maintenance['last_error']}")
    elif last is None:
        lines.append("maintenance: never ran here")
    else:
        record = MaintenanceRecord(**last)
        took = (record.finished_ms - record.started_ms) / 1000
        when = iso_utc(record.started_ms, "seconds")
        lines.append(
            f"maintenance: last run {when} ({record.trigger}, {took:.1f} s): {record.summary()}"
        )
        lines += [f"maintenance: skipped: {note}" for note in record.notes]
        lines += [f"maintenance: failed: {failure}" for failure in record.failures]
    if maintenance["next_run"] is None:
        lines.append(
            "maintenance: no daily run (maintain = false); `ticklake maintain` now "
            f"{maintenance['next_summary']}"
        )
    else:
        lines.append(
            f"maintenance: next daily run {maintenance['next_run']} inside `record` or "
            f"`analyze` (maintain_at); a run now {maintenance['next_summary']}"
        )
    return lines


def status_tiers(
    data: Path, config: RetentionConfig, recompute_horizon: float, now: float | None = None
) -> list[TierStatus]:
    """The minute and history tiers and the journal of ``data`` at ``now`` (epoch s; default
    the system clock's). RetentionError for retention settings that contradict the recompute
    horizon; SealError for a damaged seal file, whether or not a tier needs it."""
    check_retention(config, recompute_horizon)
    load_seal(data)
    now = SystemClock().now() if now is None else now
    return [
        *lake_status(data, now, config),
        journal_status(data, now, config.journal_retention_days),
    ]


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


def tier_json(tier: TierStatus) -> dict[str, Any]:
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
