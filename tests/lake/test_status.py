"""lake.status: each tier's files, rows, bytes and times from Parquet footers, unreadable
files counted and named, and what tick retention removes next (the journal's tier is in
tests/recorder/test_journal_status.py)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lake.layout import history_file
from lake.retention import RetentionConfig
from lake.status import UNREADABLE_SHOWN, byte_text, lake_status
from lake.utc import DAY_MS, MINUTE_MS
from tests.kit.lake import three_days, write_days
from tests.kit.times import DAY1, DAY3, LATER, OPEN_MS


def test_status_counts_each_tier_from_metadata(tmp_path: Path) -> None:
    rows = three_days(tmp_path)
    minute, history = lake_status(tmp_path, LATER, RetentionConfig(30, 30))
    assert (minute.tier, minute.files, minute.rows) == ("minute", 8, rows // 3)
    assert (history.tier, history.files, history.rows) == ("history", 4, 2 * rows // 3)
    day_file = history_file(tmp_path, "AAPL", DAY1)
    assert history.bytes >= day_file.stat().st_size * 2
    assert history.oldest_ms == OPEN_MS
    assert minute.newest_ms is not None and minute.newest_ms < OPEN_MS + 2 * DAY_MS + 4 * MINUTE_MS
    assert history.removes_next == "2 files (" + history.removes_next.split("(")[1]
    assert history.removes_at_ms == OPEN_MS - 14.5 * 3_600_000 + DAY_MS + 30 * DAY_MS
    assert pq.read_metadata(day_file).num_rows == rows // 6


def test_what_retention_removes_next(tmp_path: Path) -> None:
    three_days(tmp_path)
    minute, history = lake_status(tmp_path, LATER, RetentionConfig())
    assert history.removes_next == minute.removes_next == "nothing: ticks are kept forever"
    assert history.removes_at_ms is None and minute.removes_at_ms is None
    minute, history = lake_status(tmp_path, LATER, RetentionConfig(tick_retention_days=30))
    assert history.removes_next.endswith(f"of {DAY1}") and history.removes_at_ms is not None
    assert minute.removes_next.endswith(f"of {DAY3}")
    minute, history = lake_status(tmp_path, LATER, RetentionConfig(tick_retention_days=7))
    assert history.removes_next.startswith("4 files (")  # DAY1 and DAY2 ended > 7 days ago
    assert history.removes_next.endswith(": due now") and history.removes_at_ms is None
    assert minute.removes_next.startswith("8 files (") and minute.removes_at_ms is None


def test_an_empty_data_directory_has_empty_tiers(tmp_path: Path) -> None:
    for tier in lake_status(tmp_path, LATER, RetentionConfig(tick_retention_days=30)):
        assert (tier.files, tier.rows, tier.bytes, tier.oldest_ms, tier.newest_ms) == (
            0,
            0,
            0,
            None,
            None,
        )
        assert (tier.removes_next, tier.removes_at_ms) == ("nothing", None)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (3_482, "3.4 KiB"),
        (5 * 2**20, "5.0 MiB"),
        (int(1.25 * 2**30), "1.2 GiB"),
        (3 * 2**40, "3072.0 GiB"),
    ],
)
def test_byte_text(size: int, text: str) -> None:
    assert byte_text(size) == text


def test_unreadable_files_are_counted_and_named_not_skipped(tmp_path: Path) -> None:
    rows = three_days(tmp_path)
    minutes = sorted(tmp_path.glob("ticks/ticker=AAPL/date=*/minute=*/part.parquet"))
    history = history_file(tmp_path, "MSFT", DAY1)
    minutes[0].write_bytes(minutes[0].read_bytes()[:100])  # truncated
    pq.write_table(pa.table({"a": [1]}), minutes[1])  # Parquet, but not a lake file
    history.write_bytes(b"not parquet at all")
    minute, hist = lake_status(tmp_path, LATER, RetentionConfig())
    assert (minute.files, minute.unreadable, minute.unreadable_paths) == (
        6,
        2,
        (str(minutes[0]), str(minutes[1])),
    )
    assert (hist.files, hist.unreadable, hist.unreadable_paths) == (3, 1, (str(history),))
    assert minute.rows + hist.rows < rows  # the unreadable files' rows are not counted


def test_only_the_first_few_unreadable_files_are_named(tmp_path: Path) -> None:
    write_days(tmp_path, ["AAPL"], days=1, minutes=UNREADABLE_SHOWN + 2)
    files = sorted(tmp_path.glob("ticks/ticker=AAPL/*/*/part.parquet"))
    for path in files:
        path.write_bytes(b"")
    minute, _ = lake_status(tmp_path, LATER, RetentionConfig())
    assert (minute.files, minute.rows, minute.bytes) == (0, 0, 0)
    assert minute.unreadable == len(files) == UNREADABLE_SHOWN + 2
    assert minute.unreadable_paths == tuple(str(p) for p in files[:UNREADABLE_SHOWN])
