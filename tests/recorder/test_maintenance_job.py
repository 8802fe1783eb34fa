"""One maintenance run over a real data directory: compaction past the horizon, tick
retention, journal pruning (never past ``applied_seq``, never under a recorder's lock),
dead writers' temporaries; each step isolated from the others' failures; the record."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from lake.clock import ManualClock
from lake.compact import compact_eligible
from lake.datadir import WriterLock, journal_dir
from lake.layout import HIDDEN_MARKER, date_dir, history_file
from lake.maintenance import MaintenanceBusyError, load_record, maintenance_lock
from lake.seal import SealState, load_seal, save_seal
from lake.utc import DAY_MS, DAY_S, day_start_ms
from recorder.journal import Journal, JournalConfig
from recorder.maintenance_job import COMPACT_BATCH, MaintenanceConfig, run_maintenance
from recorder.segment import list_segments
from tests.kit.frames import pricing, v2
from tests.kit.lake import count, write_days
from tests.kit.times import DAY1, DAY2, DAY3, LATER, OPEN_MS

SEALED = day_start_ms(DAY3) + DAY_MS  # DAY1 and DAY2 are past a one-day horizon


def lake(data: Path, tickers: list[str] | None = None) -> int:
    """Three days of minute files, sealed up to the end of DAY3; returns the rows."""
    rows = write_days(data, tickers or ["AAPL", "MSFT"], days=3, minutes=2).num_rows
    save_seal(data, SealState(watermark_ms=SEALED, applied_seq=0))
    return int(rows)


def old_journal(data: Path, frames: int = 120) -> list[int]:
    """A journal received on DAY1 in several closed segments; their last seqs."""
    with Journal.open(journal_dir(data), JournalConfig(segment_bytes=4096)) as journal:
        for seq in range(1, frames + 1):
            journal.append(v2(pricing("AAPL", OPEN_MS + seq)), (OPEN_MS + seq) * 1000)
    return [ref.first_seq for ref in list_segments(journal_dir(data))]


def applied(data: Path, seq: int) -> None:
    state = load_seal(data)
    state.applied_seq = seq
    save_seal(data, state)


def dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def test_a_run_compacts_applies_retention_prunes_and_cleans(tmp_path: Path) -> None:
    rows = lake(tmp_path)
    firsts = old_journal(tmp_path)
    applied(tmp_path, firsts[2] - 1)  # the first two segments are in the lake
    folder = date_dir(tmp_path, "MSFT", DAY3)
    dead = folder / f".part.parquet.t1.{dead_pid()}.tmp"
    live = folder / f".part.parquet.t1.{os.getpid()}.tmp"
    dead.write_bytes(b"x")
    live.write_bytes(b"x")
    config = MaintenanceConfig(tick_retention_days=9, journal_retention_days=1)
    record = run_maintenance(tmp_path, ManualClock(LATER), config)
    assert record.failures == [] and record.notes == []
    assert (record.retention_days, record.ticks_kept_from) == (2, DAY2.isoformat())
    assert not date_dir(tmp_path, "AAPL", DAY1).exists(), "DAY1 ended over 9 days ago"
    assert record.days_compacted == 2 and history_file(tmp_path, "MSFT", DAY2).is_file()
    assert not history_file(tmp_path, "MSFT", DAY3).exists(), "DAY3 is inside the horizon"
    assert record.days_waiting == 2, "minute files stay for the grace period"
    assert record.journal_segments_pruned == 2
    assert [r.first_seq for r in list_segments(journal_dir(tmp_path))] == firsts[2:]
    assert record.temporaries_removed == 1 and not dead.exists() and live.exists()
    assert count(tmp_path) == (rows * 2 // 3, rows * 2 // 3)
    assert load_record(tmp_path) == record
    later = run_maintenance(tmp_path, ManualClock(LATER + 601), config)
    assert (later.days_compacted, later.days_finished, later.days_waiting) == (0, 2, 0)
    assert not date_dir(tmp_path, "MSFT", DAY2).exists(), "minute files gone after the grace"


def test_the_journal_is_never_pruned_past_what_the_lake_applied(tmp_path: Path) -> None:
    firsts = old_journal(tmp_path)
    save_seal(tmp_path, SealState(applied_seq=0))
    config = MaintenanceConfig(journal_retention_days=1)
    assert run_maintenance(tmp_path, ManualClock(LATER), config).journal_segments_pruned == 0
    applied(tmp_path, firsts[-1] + 1000)  # everything applied: the newest closed one stays
    run_maintenance(tmp_path, ManualClock(LATER), config)
    assert [r.first_seq for r in list_segments(journal_dir(tmp_path))] == firsts[-1:]


def test_a_recorder_holding_the_writer_lock_keeps_its_journal(tmp_path: Path) -> None:
    firsts = old_journal(tmp_path)
    applied(tmp_path, 10_000)
    config = MaintenanceConfig(journal_retention_days=1)
    with WriterLock.acquire(journal_dir(tmp_path)):
        record = run_maintenance(tmp_path, ManualClock(LATER), config)
    assert record.journal_segments_pruned == 0 and record.failures == []
    assert record.notes == [
        f"journal: not pruned here: process {os.getpid()} holds the writer's lock "
        "(a recorder prunes its own journal every hour)"
    ]
    inside = MaintenanceConfig(journal_retention_days=1, journal_pruned_by_recorder=True)
    record = run_maintenance(tmp_path, ManualClock(LATER), inside)
    assert record.notes == ["journal: pruned every hour by the recorder of this process"]
    assert [r.first_seq for r in list_segments(journal_dir(tmp_path))] == firsts


def test_a_failing_day_is_listed_and_every_other_step_runs(tmp_path: Path) -> None:
    lake(tmp_path)
    compact_eligible(tmp_path, LATER, DAY_S, max_days=1)  # AAPL DAY1 hidden
    (date_dir(tmp_path, "AAPL", DAY1) / HIDDEN_MARKER).write_text("{")  # damaged marker
    record = run_maintenance(tmp_path, ManualClock(LATER), MaintenanceConfig())
    assert len(record.failures) == 1, "reported once, though every batch met it"
    assert record.failures[0].startswith("compaction: AAPL 2024-01-02: ")
    assert record.days_compacted == 3, "the other due days"
    assert load_record(tmp_path) == record


def test_retention_setting_a_shorter_keep_is_refused_and_the_rest_runs(tmp_path: Path) -> None:
    lake(tmp_path)
    record = run_maintenance(tmp_path, ManualClock(LATER), MaintenanceConfig(tick_retention_days=1))
    assert record.failures[0].startswith("retention: tick_retention_days=1 keeps ticks for less")
    assert record.days_compacted == 4 and record.retention_days == 0


def test_ticks_kept_from_only_moves_forward(tmp_path: Path) -> None:
    lake(tmp_path)
    run_maintenance(tmp_path, ManualClock(LATER), MaintenanceConfig(tick_retention_days=9))
    record = run_maintenance(tmp_path, ManualClock(LATER), MaintenanceConfig())
    assert record.ticks_kept_from == DAY2.isoformat(), "forever now, but DAY1 is gone"


def test_a_stop_request_ends_compaction_after_a_batch(tmp_path: Path) -> None:
    lake(tmp_path, [f"T{i}" for i in range(COMPACT_BATCH)])  # 2 due days each
    stop = threading.Event()
    stop.set()
    record = run_maintenance(tmp_path, ManualClock(LATER), MaintenanceConfig(), stop=stop)
    assert record.days_compacted == COMPACT_BATCH
    assert record.notes == ["compaction: stopped part-way (shutting down); the next run goes on"]
    assert run_maintenance(tmp_path, ManualClock(LATER), MaintenanceConfig()).days_compacted == (
        COMPACT_BATCH
    )


def test_one_run_at_a_time(tmp_path: Path) -> None:
    with maintenance_lock(tmp_path), pytest.raises(MaintenanceBusyError):
        run_maintenance(tmp_path, ManualClock(LATER), MaintenanceConfig())
    assert load_record(tmp_path) is None


def test_the_record_times_come_from_the_clock(tmp_path: Path) -> None:
    record = run_maintenance(tmp_path, ManualClock(LATER), MaintenanceConfig())
    assert record.started_ms == record.finished_ms == OPEN_MS + 10 * DAY_MS
    assert record.trigger == "command"
