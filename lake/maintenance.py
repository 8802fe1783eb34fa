"""Maintenance as the data directory records it: what the last run did, its lock, and when
the daily run comes next.

A run (``recorder.maintenance_job``) compacts sealed days, applies tick retention, prunes
the journal and removes dead writers' temporaries. When it ends it replaces
``<data>/state/maintenance.json`` atomically with a :class:`MaintenanceRecord`: small,
indented JSON, readable by eye. ``ticklake status`` shows it; ``ticklake verify`` reads
``ticks_kept_from`` to know which journaled ticks retention removed on purpose.

Invariants:
- one run at a time per data directory: :func:`maintenance_lock` (an ``flock`` on
  ``state/maintenance.lock``, holding the holder's PID) is taken without waiting; a run that
  finds it held is skipped, never queued;
- ``ticks_kept_from`` only moves forward: retention removed every tick of a day before it,
  so a later run with a longer retention (or none) cannot bring those days back;
- a damaged record is reported (:class:`MaintenanceStateError`, naming the file) and is
  replaced by the next run: it holds a report, not state anything depends on, except
  ``ticks_kept_from``, which the next retention pass sets again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lake.atomic import atomic_write_bytes, make_dirs_durable
from lake.compact import CompactionPlan, plan_compaction
from lake.datadir import HISTORY_DIR, MAINTENANCE_FILE, MAINTENANCE_LOCK, TICKS_DIR
from lake.errors import LakeReadError, first_line
from lake.layout import lake_days
from lake.retention import first_kept_date
from lake.utc import DAY_MS, day_start_ms

__all__ = [
    "MaintenanceBusyError",
    "MaintenancePlan",
    "MaintenanceRecord",
    "MaintenanceStateError",
    "load_record",
    "maintenance_lock",
    "next_daily_run_ms",
    "plan_maintenance",
    "save_record",
]


class MaintenanceStateError(LakeReadError):
    """``state/maintenance.json`` exists but does not hold a record; the message names it."""


class MaintenanceBusyError(Exception):
    """Another maintenance run holds the data directory's maintenance lock."""


@dataclass
class MaintenanceRecord:
    """What one maintenance run did. Times are epoch ms; counts are of this run only."""

    started_ms: int
    finished_ms: int = 0
    trigger: str = "command"  # command (ticklake maintain), daily, follow-up (after the grace)
    days_compacted: int = 0  # ticker-days hidden behind a new day file
    minute_files_merged: int = 0
    days_finished: int = 0  # compacted days whose minute files were deleted
    minute_files_deleted: int = 0
    days_waiting: int = 0  # compacted days keeping their minute files for the grace period
    retention_days: int = 0  # ticker-days removed by tick retention (both tiers)
    retention_files: int = 0
    retention_bytes: int = 0
    ticks_kept_from: str | None = None  # YYYY-MM-DD: retention removed every earlier day
    journal_segments_pruned: int = 0
    temporaries_removed: int = 0
    days_offloaded: int = 0  # day files uploaded to the object store and verified
    offload_bytes: int = 0
    local_days_removed: int = 0  # offloaded days whose local copy was removed (after grace)
    notes: list[str] = field(default_factory=list)  # steps skipped, and why
    failures: list[str] = field(default_factory=list)  # steps or days that failed, and why

    def summary(self) -> str:
        """One line: what the run did (what it skipped and what failed come after)."""
        parts = [
            f"compacted {self.days_compacted} days ({self.minute_files_merged:,} minute files)",
            f"deleted the minute files of {self.days_finished} compacted days "
            f"({self.minute_files_deleted:,} files)",
            f"retention removed {self.retention_days} days ({self.retention_files:,} files)",
            f"pruned {self.journal_segments_pruned} journal segments",
            f"removed {self.temporaries_removed} temporaries",
        ]
        if self.days_offloaded or self.local_days_removed:
            parts.append(
                f"offloaded {self.days_offloaded} days ({self.offload_bytes:,} bytes), "
                f"removed {self.local_days_removed} local copies"
            )
        text = "; ".join(parts)
        if self.days_waiting:
            text += f"; {self.days_waiting} compacted days wait for the grace period"
        return text

    def kept_from(self) -> dt.date | None:
        return None if self.ticks_kept_from is None else dt.date.fromisoformat(self.ticks_kept_from)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> MaintenanceRecord:
        """The record :meth:`to_json` wrote; ValueError saying what is wrong otherwise."""
        raw: Any = json.loads(data)
        names = {f.name for f in fields(cls)}
        if not isinstance(raw, dict) or not {"started_ms"} <= set(raw) <= names:
            raise ValueError(f"expected a JSON object with the keys {', '.join(sorted(names))}")
        record = cls(**raw)
        for f in fields(cls):
            value = getattr(record, f.name)
            if f.name in ("notes", "failures"):
                ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            elif f.name in ("trigger", "ticks_kept_from"):
                ok = isinstance(value, str) or (value is None and f.name == "ticks_kept_from")
            else:
                ok = isinstance(value, int) and not isinstance(value, bool)
            if not ok:
                raise ValueError(f"{f.name} has a value of the wrong type")
        record.kept_from()  # a date, or ValueError
        return record


def load_record(data: Path) -> MaintenanceRecord | None:
    """The last run's record, None before the first run; MaintenanceStateError if damaged."""
    path = Path(data, MAINTENANCE_FILE)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return MaintenanceRecord.from_json(raw)
    except (ValueError, TypeError) as exc:  # also JSON's and UTF-8's errors
        reason = first_line(exc)
        raise MaintenanceStateError(
            f"{path} is damaged ({reason}); the next maintenance run replaces it"
        ) from exc


def save_record(data: Path, record: MaintenanceRecord) -> None:
    atomic_write_bytes(Path(data, MAINTENANCE_FILE), record.to_json())


@contextlib.contextmanager
def maintenance_lock(data: Path) -> Iterator[None]:
    """Hold the data directory's maintenance lock; MaintenanceBusyError at once (naming the
    holder's PID) when another run holds it."""
    path = Path(data, MAINTENANCE_LOCK)
    make_dirs_durable(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise MaintenanceBusyError(
                f"another maintenance run (process {holder}) is working on {data}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def next_daily_run_ms(now_ms: int, at: dt.time) -> int:
    """The first instant after ``now_ms`` (epoch ms) at UTC time of day ``at``."""
    day = dt.datetime.fromtimestamp(now_ms // 1000, tz=dt.UTC).date()
    offset = ((at.hour * 60 + at.minute) * 60 + at.second) * 1000
    run = day_start_ms(day) + offset
    return run if run > now_ms else run + DAY_MS


@dataclass(frozen=True)
class MaintenancePlan:
    """What a run would do now to the lake (the journal's part is the journal tier's
    "removes next" in ``ticklake status``)."""

    compaction: CompactionPlan
    retention_days: int  # ticker-day folders of either tier that tick retention removes

    def summary(self) -> str:
        c = self.compaction
        text = (
            f"compacts {c.days_due} days, deletes the minute files of {c.days_finishing} "
            f"compacted days, retention removes {self.retention_days} days"
        )
        if c.days_waiting:
            text += f" ({c.days_waiting} compacted days still inside the grace period)"
        return text


def plan_maintenance(
    data: Path,
    now: float,
    horizon: float,
    grace: float,
    tick_retention_days: float | None,
) -> MaintenancePlan:
    """What a maintenance run at ``now`` would do to the lake, from listings, markers and
    the seal only (SealError for a damaged seal); nothing is written."""
    due = 0
    if tick_retention_days is not None:
        keep_from = first_kept_date(now, tick_retention_days)
        for tier in (HISTORY_DIR, TICKS_DIR):
            due += sum(1 for _t, date, _f in lake_days(Path(data), tier) if date < keep_from)
    return MaintenancePlan(plan_compaction(data, now, horizon, grace=grace), due)
