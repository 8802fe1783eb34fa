"""Tick retention: which days go, from both tiers (the lake's status is in test_status.py, the
``status`` and ``compact`` commands are tested in ``tests/ticklake``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from lake.layout import date_dir, history_placeholder
from lake.retention import (
    RetentionConfig,
    RetentionError,
    apply_tick_retention,
    check_retention,
    first_kept_date,
)
from lake.utc import DAY_MS
from tests.kit.lake import count, three_days
from tests.kit.times import DAY3, LATER, OPEN_MS

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
