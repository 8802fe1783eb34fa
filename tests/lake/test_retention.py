"""Tick retention, ``ticklake status`` and ``ticklake compact``."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lake.compact import compact_eligible
from lake.layout import date_dir, history_file, history_placeholder
from lake.retention import (
    RetentionConfig,
    RetentionError,
    apply_tick_retention,
    check_retention,
    first_kept_date,
)
from lake.seal import SealState, save_seal
from lake.status import lake_status
from lake.utc import DAY_MS
from recorder.journal import Journal
from recorder.journal_status import journal_status
from tests.lake.test_history import DAY1, OPEN_MS, count, write_days
from ticklake import compact_cmd

DAY2, DAY3 = DAY1 + dt.timedelta(days=1), DAY1 + dt.timedelta(days=2)
LATER = (OPEN_MS + 10 * DAY_MS) / 1000


def three_days(root: Path) -> int:
    """AAPL and MSFT on three days; the first two compacted (minute files deleted)."""
    written = write_days(root, ["AAPL", "MSFT"], days=3, minutes=4)
    compact_eligible(root, LATER, before=DAY3, grace=0)
    return int(written.num_rows)


# --- retention ----------------------------------------------------------------------------------


def test_first_kept_date_counts_whole_days() -> None:
    now = dt.datetime(2024, 1, 12, 6, 0, tzinfo=dt.UTC).timestamp()
    assert first_kept_date(now, 10) == dt.date(2024, 1, 2)  # Jan 1 ended 10 days before 00:00
    assert first_kept_date(now, 10.5) == dt.date(2024, 1, 1)


def test_retention_deletes_whole_old_days_from_both_tiers(tmp_path: Path) -> None:
    rows = three_days(tmp_path)
    per_day = rows // 3
    day2_end = (OPEN_MS + 2 * DAY_MS) / 1000 - (14.5 * 3600)  # 2024-01-04 00:00 UTC
    config = RetentionConfig(tick_retention_days=1)
    kept = apply_tick_retention(tmp_path, day2_end + 86_400 - 1, config)  # DAY2 ended < 1 day
    assert kept.history_files == 2 and kept.minute_days == 0  # DAY1 of AAPL and MSFT
    assert count(tmp_path) == (2 * per_day, 2 * per_day)
    gone = apply_tick_retention(tmp_path, day2_end + 2 * 86_400, config)
    assert (gone.history_files, gone.minute_days, gone.minute_files) == (2, 2, 8)
    assert gone.bytes > 0
    assert count(tmp_path) == (0, 0)
    assert not (tmp_path / "history/ticker=AAPL").exists()
    assert not date_dir(tmp_path, "AAPL", DAY3).exists()
    assert history_placeholder(tmp_path).is_file()  # the SQL keeps working on an empty lake


def test_ticks_are_kept_forever_by_default(tmp_path: Path) -> None:
    rows = three_days(tmp_path)
    result = apply_tick_retention(tmp_path, LATER + 1e9, RetentionConfig())
    assert result.history_files == result.minute_days == 0
    assert count(tmp_path) == (rows, rows)


def test_retention_shorter_than_the_recompute_horizon_is_refused() -> None:
    check_retention(RetentionConfig(tick_retention_days=2), 86_400)
    with pytest.raises(RetentionError, match="recompute horizon"):
        check_retention(RetentionConfig(tick_retention_days=1.5), 86_400)
    with pytest.raises(RetentionError, match="positive"):
        RetentionConfig(tick_retention_days=0)


# --- status ---------------------------------------------------------------------------------


def test_status_counts_each_tier_from_metadata(tmp_path: Path) -> None:
    rows = three_days(tmp_path)
    with Journal.open(tmp_path / "journal") as closed:
        for i in range(5):
            closed.append(f"frame {i}", 1_704_205_800_000_000 + i * 1_000_000)
    recording = Journal.open(tmp_path / "journal")  # a new writer: a new, open segment
    recording.append("last", 1_704_205_900_000_000)
    recording.flush()
    save_seal(tmp_path, SealState(applied_seq=6))
    try:
        minute, history = lake_status(tmp_path, LATER, RetentionConfig(30, 30))
        frames = journal_status(tmp_path, LATER, 30)
    finally:
        recording.close()
    assert (minute.tier, minute.files, minute.rows) == ("minute", 8, rows // 3)
    assert (history.tier, history.files, history.rows) == ("history", 4, 2 * rows // 3)
    day_file = history_file(tmp_path, "AAPL", DAY1)
    assert history.bytes >= day_file.stat().st_size * 2
    assert history.oldest_ms == OPEN_MS
    assert minute.newest_ms is not None and minute.newest_ms < OPEN_MS + 2 * DAY_MS + 4 * 60_000
    assert history.removes_next == "2 files (" + history.removes_next.split("(")[1]
    assert history.removes_at_ms == OPEN_MS - 14.5 * 3_600_000 + DAY_MS + 30 * DAY_MS
    assert (frames.tier, frames.files, frames.rows_exact) == ("journal", 2, False)
    assert frames.rows == 5 and frames.removes_next == "nothing"  # the newest closed one stays
    assert pq.read_metadata(day_file).num_rows == rows // 6


def test_status_and_compact_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_days(tmp_path, ["AAPL"], days=2, minutes=3)

    def run(add: object, handler: object, *argv: str) -> int:
        parser = argparse.ArgumentParser()
        add(parser, {})  # type: ignore[operator]
        return handler(parser.parse_args(["--data", str(tmp_path), *argv]))  # type: ignore[operator,no-any-return]

    assert (
        run(compact_cmd.add_compact_arguments, compact_cmd.compact, "--before", "2024-01-03") == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("compacted 1 days (3 minute files, 18 ticks")
    assert "keep their minute files for the grace period (600 s)" in out
    assert run(compact_cmd.add_status_arguments, compact_cmd.status) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["tier", "files", "rows", "bytes"]
    assert [line.split()[0] for line in table[1:]] == ["minute", "history", "journal"]
    assert len({line.index("rows") for line in table[:1]}) == 1
    assert table[1].split()[1:3] == ["6", "36"]  # minute files of both days (one hidden)
    assert "kept forever" in table[2]
    run(compact_cmd.add_status_arguments, compact_cmd.status, "--format", "json")
    tiers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [t["tier"] for t in tiers] == ["minute", "history", "journal"]
    assert tiers[1]["rows"] == 18 and tiers[1]["oldest"] == "2024-01-02T14:30:00.000Z"
    bad = run(compact_cmd.add_status_arguments, compact_cmd.status, "--tick-retention-days", "1")
    assert bad == 2 and "recompute horizon" in capsys.readouterr().err
