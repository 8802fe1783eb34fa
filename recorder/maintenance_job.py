"""One maintenance run: the upkeep a data directory needs to run unattended for months.

In order, each step independent of the others (one that fails is listed in the record's
``failures`` and the rest go on):

1. *temporaries*: remove the temporaries of writers no longer running
   (``lake.atomic.dead_temporaries``);
2. *tick retention*: delete whole UTC days older than ``tick_retention_days`` from both tiers
   (``lake.retention``; nothing without the setting: ticks are kept forever);
3. *compaction*: hide sealed days past the recompute horizon behind one day file each and
   delete the minute files of days hidden for longer than the grace period
   (``lake.compact``), ``COMPACT_BATCH`` days at a time so a stop request is heard;
4. *offload* (with a ``lake_url``): upload compacted days older than ``offload_after_days``
   to the object store, verify them, and remove the local copies verified more than the
   grace period ago (``lake.offload``);
5. *journal pruning*: delete the oldest segments older than ``journal_retention_days``
   whose every seq the lake has applied (``seal.applied_seq``), by ``Journal.prune``'s rule.

Invariants (safe beside a running recorder):
- compaction and retention need no writer's lock: they coordinate with the recorder's
  minute writers through the tier lock, and compacted minute files stay readable for the
  grace period (``lake.compact``), exactly as ``ticklake compact`` does;
- the journal belongs to the writer's lock holder: a run takes the lock only if it is free
  and holds it for the prune alone; when a recorder holds it (or the run is inside
  ``ticklake record``, whose recorder prunes its journal every hour) the step is skipped
  with a one-line note; a segment holding a seq above ``applied_seq`` is never pruned;
- one run at a time (``lake.maintenance.maintenance_lock``); each run ends by replacing
  ``state/maintenance.json`` atomically with what it did;
- every call of :func:`run_maintenance` in this process counts once in :data:`OUTCOMES`
  (``ok``, ``failed``: a step failed, ``busy``: another run was working, ``error``: it
  raised), which ``record --metrics-port`` serves.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pyarrow as pa

from lake.atomic import dead_temporaries
from lake.clock import Clock
from lake.compact import DEFAULT_GRACE_S, DEFAULT_HORIZON_S, CompactionError, compact_eligible
from lake.datadir import JOURNAL_LOCK, DataLockedError, WriterLock, journal_dir
from lake.errors import LakeError, first_line
from lake.logfmt import logfmt
from lake.maintenance import (
    MaintenanceBusyError,
    MaintenanceRecord,
    MaintenanceStateError,
    load_record,
    maintenance_lock,
    save_record,
)
from lake.offload import DEFAULT_OFFLOAD_AFTER_DAYS, offload_days
from lake.remote import bind_remote
from lake.retention import (
    RetentionConfig,
    RetentionError,
    apply_tick_retention,
    check_retention,
    first_kept_date,
)
from lake.seal import load_seal
from lake.utc import DAY_S
from recorder.journal import JournalError, prune_segments

__all__ = ["COMPACT_BATCH", "OUTCOMES", "MaintenanceConfig", "outcome_counts", "run_maintenance"]

log = logging.getLogger(__name__)
COMPACT_BATCH: Final = 8  # days compacted between two looks at the stop flag
_STEP_ERRORS: Final = (
    OSError,
    LakeError,  # also lake.remote.RemoteError
    JournalError,
    CompactionError,
    RetentionError,
    pa.ArrowException,
)
Stop = threading.Event | None
OUTCOMES: Final = ("ok", "failed", "busy", "error")
_outcomes: Counter[str] = Counter()
_outcomes_lock = threading.Lock()


def outcome_counts() -> dict[str, int]:
    """How many runs of this process ended in each of :data:`OUTCOMES` (zeros included)."""
    with _outcomes_lock:
        return {outcome: _outcomes[outcome] for outcome in OUTCOMES}


def _count(outcome: str) -> None:
    with _outcomes_lock:
        _outcomes[outcome] += 1


@dataclass(frozen=True)
class MaintenanceConfig:
    """What a run does: the horizon and grace of compaction, the retention of ticks and of
    the journal, and whether the recorder of this process prunes its own journal."""

    recompute_horizon: float = DEFAULT_HORIZON_S
    compaction_grace: float = DEFAULT_GRACE_S
    tick_retention_days: float | None = None
    journal_retention_days: float = 30.0
    journal_pruned_by_recorder: bool = False
    lake_url: str | None = None
    offload_after_days: float = DEFAULT_OFFLOAD_AFTER_DAYS

    @property
    def retention(self) -> RetentionConfig:
        return RetentionConfig(self.tick_retention_days, self.journal_retention_days)

    def check(self) -> None:
        """RetentionError when ticks would not outlive the recompute horizon by a day."""
        check_retention(self.retention, self.recompute_horizon)


def run_maintenance(
    data: Path,
    clock: Clock,
    config: MaintenanceConfig,
    *,
    trigger: str = "command",
    stop: threading.Event | None = None,
) -> MaintenanceRecord:
    """One run over the data directory ``data`` (see the module docstring); its record.

    MaintenanceBusyError when another run holds the maintenance lock (nothing is done).
    ``stop`` set: compaction ends after its current batch (the next run goes on).
    """
    try:
        record = _run(Path(data), clock, config, trigger, stop)
    except MaintenanceBusyError:
        _count("busy")
        raise
    except BaseException:
        _count("error")
        raise
    _count("failed" if record.failures else "ok")
    return record


def _run(
    data: Path, clock: Clock, config: MaintenanceConfig, trigger: str, stop: Stop
) -> MaintenanceRecord:
    with maintenance_lock(data):
        now = clock.now()
        record = MaintenanceRecord(started_ms=int(now * 1000), trigger=trigger)
        try:
            previous = load_record(data)
        except MaintenanceStateError as exc:
            record.notes.append(str(exc))
            previous = None
        record.ticks_kept_from = previous.ticks_kept_from if previous else None
        for name, step in (
            ("temporaries", _remove_temporaries),
            ("retention", _apply_retention),
            ("compaction", _compact),
            ("offload", _offload),
            ("journal", _prune_journal),
        ):
            try:
                step(data, now, config, record, stop)
            except _STEP_ERRORS as exc:
                reason = first_line(exc)
                log.error("event=maintenance_step_failed step=%s reason=%s", name, logfmt(reason))
                record.failures.append(f"{name}: {reason}")
        record.finished_ms = int(clock.now() * 1000)
        save_record(data, record)
    log.info(
        "event=maintenance_done trigger=%s compacted=%d finished=%d retention_days=%d "
        "journal_segments=%d temporaries=%d notes=%d failures=%d",
        record.trigger,
        record.days_compacted,
        record.days_finished,
        record.retention_days,
        record.journal_segments_pruned,
        record.temporaries_removed,
        len(record.notes),
        len(record.failures),
    )
    return record


def _remove_temporaries(
    data: Path, _now: float, _config: MaintenanceConfig, record: MaintenanceRecord, _stop: Stop
) -> None:
    for path in dead_temporaries(data):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            record.temporaries_removed += 1
            log.info("event=temporary_removed path=%s", logfmt(path))


def _apply_retention(
    data: Path, now: float, config: MaintenanceConfig, record: MaintenanceRecord, _stop: Stop
) -> None:
    days = config.tick_retention_days
    if days is None:
        return  # ticks are kept forever
    config.check()
    removed = apply_tick_retention(data, now, config.retention)
    record.retention_days = removed.minute_days + removed.history_files
    record.retention_files = removed.minute_files + removed.history_files
    record.retention_bytes = removed.bytes
    kept = first_kept_date(now, days).isoformat()
    record.ticks_kept_from = max(kept, record.ticks_kept_from or kept)


def _compact(
    data: Path, now: float, config: MaintenanceConfig, record: MaintenanceRecord, stop: Stop
) -> None:
    failed: dict[str, None] = {}  # ordered, each failure once (every batch retries it)
    while True:
        done = compact_eligible(
            data,
            now,
            config.recompute_horizon,
            grace=config.compaction_grace,
            max_days=COMPACT_BATCH,
        )
        record.days_compacted += done.days_compacted
        record.minute_files_merged += done.files_merged
        record.days_finished += done.days_finished
        record.minute_files_deleted += done.files_deleted
        record.days_waiting = done.days_waiting
        failed.update(dict.fromkeys(done.failed))
        if done.days_compacted < COMPACT_BATCH:
            break
        if stop is not None and stop.is_set():
            record.notes.append(
                "compaction: stopped part-way (shutting down); the next run goes on"
            )
            break
    record.failures += [f"compaction: {failure}" for failure in failed]


def _offload(
    data: Path, now: float, config: MaintenanceConfig, record: MaintenanceRecord, stop: Stop
) -> None:
    if config.lake_url is None:
        return
    remote = bind_remote(data, config.lake_url)
    done = offload_days(
        data,
        remote,
        now,
        after_days=config.offload_after_days,
        grace=config.compaction_grace,
        stop=stop,
    )
    record.days_offloaded += done.days_uploaded
    record.offload_bytes += done.bytes_uploaded
    record.local_days_removed += done.days_removed
    record.failures += [f"offload: {failure}" for failure in done.failed]


def _prune_journal(
    data: Path, now: float, config: MaintenanceConfig, record: MaintenanceRecord, _stop: Stop
) -> None:
    folder = journal_dir(data)
    if config.journal_pruned_by_recorder:
        record.notes.append("journal: pruned every hour by the recorder of this process")
        return
    if not folder.is_dir():
        return
    try:
        lock = WriterLock.acquire(folder)
    except DataLockedError:
        holder = (folder / JOURNAL_LOCK).read_text(errors="replace").strip() or "?"
        record.notes.append(
            f"journal: not pruned here: process {holder} holds the writer's lock "
            "(a recorder prunes its own journal every hour)"
        )
        return
    with lock:
        applied = load_seal(data).applied_seq
        older_than_us = int((now - config.journal_retention_days * DAY_S) * 1e6)
        removed = prune_segments(folder, older_than_us, keep_after_seq=applied)
    record.journal_segments_pruned = len(removed)
