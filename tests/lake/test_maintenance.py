"""The maintenance record (``state/maintenance.json``), its lock, the daily run's next time,
and what the next run would do (the run itself: ``tests/recorder/test_maintenance_job.py``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from lake.compact import CompactionPlan, compact_eligible
from lake.datadir import MAINTENANCE_FILE
from lake.maintenance import (
    MaintenanceBusyError,
    MaintenanceRecord,
    MaintenanceStateError,
    load_record,
    maintenance_lock,
    next_daily_run_ms,
    plan_maintenance,
    save_record,
)
from lake.seal import SealState, save_seal
from lake.utc import DAY_MS, DAY_S, MINUTE_MS, day_start_ms
from tests.kit.lake import write_days
from tests.kit.times import DAY1, DAY3, LATER


def test_a_record_round_trips_and_reads_by_eye(tmp_path: Path) -> None:
    record = MaintenanceRecord(started_ms=1, finished_ms=2, days_compacted=3)
    record.notes.append("journal: not pruned here")
    record.ticks_kept_from = "2024-01-03"
    save_record(tmp_path, record)
    assert load_record(tmp_path) == record
    text = (tmp_path / MAINTENANCE_FILE).read_text()
    assert '\n "days_compacted": 3,\n' in text, "one key a line"
    assert load_record(tmp_path / "none") is None


@pytest.mark.parametrize(
    "content",
    [b'{"started_ms": 1, "finished', b'{"finished_ms": 2}', b'{"started_ms": "1"}', b"[]"],
    ids=["torn", "no start", "a string", "not an object"],
)
def test_a_damaged_record_names_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / MAINTENANCE_FILE
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(MaintenanceStateError, match=f"{path} is damaged"):
        load_record(tmp_path)


def test_the_summary_says_what_a_run_did() -> None:
    record = MaintenanceRecord(0, days_compacted=2, minute_files_merged=40, days_waiting=2)
    assert record.summary() == (
        "compacted 2 days (40 minute files); deleted the minute files of 0 compacted days "
        "(0 files); retention removed 0 days (0 files); pruned 0 journal segments; "
        "removed 0 temporaries; 2 compacted days wait for the grace period"
    )


def test_one_run_at_a_time(tmp_path: Path) -> None:
    busy = pytest.raises(MaintenanceBusyError, match=r"\(process \d+\) is working")
    with maintenance_lock(tmp_path), busy, maintenance_lock(tmp_path):
        pass
    with maintenance_lock(tmp_path):  # released
        pass


def test_the_next_daily_run_is_the_next_time_of_day_utc() -> None:
    noon = day_start_ms(DAY1) + 12 * 3600 * 1000
    assert next_daily_run_ms(noon, dt.time(3, 30)) == day_start_ms(DAY1) + DAY_MS + 210 * MINUTE_MS
    assert next_daily_run_ms(noon, dt.time(13, 0)) == noon + 3600 * 1000
    assert next_daily_run_ms(noon, dt.time(12, 0)) == noon + DAY_MS, "strictly after now"


def test_the_plan_counts_what_a_run_would_do(tmp_path: Path) -> None:
    write_days(tmp_path, ["AAPL", "MSFT"], days=3, minutes=2)
    save_seal(tmp_path, SealState(watermark_ms=day_start_ms(DAY3) + DAY_MS))  # DAY1, DAY2 due
    plan = plan_maintenance(tmp_path, LATER, DAY_S, 600.0, None)
    assert plan == type(plan)(CompactionPlan(4, 0, 0), 0)
    compact_eligible(tmp_path, LATER, DAY_S, max_days=1)  # AAPL DAY1 hidden, in its grace
    plan = plan_maintenance(tmp_path, LATER, DAY_S, 600.0, 9)
    assert plan.compaction == CompactionPlan(3, 0, 1)
    assert plan.retention_days == 3, "DAY1 of both tickers, AAPL's in both tiers"
    assert plan_maintenance(tmp_path, LATER + 601, DAY_S, 600.0, None).compaction == (
        CompactionPlan(3, 1, 0)
    )
    assert plan.summary() == (
        "compacts 3 days, deletes the minute files of 0 compacted days, retention removes "
        "3 days (1 compacted days still inside the grace period)"
    )
