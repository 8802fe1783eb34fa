"""recorder.journal_status: the journal as a tier of ``ticklake status``, from segment footers,
and what pruning removes next (by the rule ``Journal.prune`` applies)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lake.datadir import journal_dir
from lake.seal import SealState, save_seal
from lake.status import byte_text
from lake.utc import DAY_MS
from recorder.journal import Journal
from recorder.journal_status import journal_status
from recorder.segment import list_segments
from tests.kit.times import LATER, OPEN_MS

RECEIVED_US = OPEN_MS * 1000  # the first frame's receive time


def closed_segments(data: Path, *sizes: int) -> None:
    """One closed segment per size, ``size`` frames each, received a second apart."""
    seq = 0
    for size in sizes:
        with Journal.open(journal_dir(data)) as journal:
            for _ in range(size):
                journal.append(f"frame {seq}", RECEIVED_US + seq * 1_000_000)
                seq += 1


def test_the_open_segment_is_not_counted_and_the_newest_closed_one_stays(tmp_path: Path) -> None:
    closed_segments(tmp_path, 5)
    recording = Journal.open(journal_dir(tmp_path))  # a new writer: a new, open segment
    recording.append("last", RECEIVED_US + 100_000_000)
    recording.flush()
    save_seal(tmp_path, SealState(applied_seq=6))
    try:
        frames = journal_status(tmp_path, LATER, 30)
        sizes = [ref.path.stat().st_size for ref in list_segments(journal_dir(tmp_path))]
    finally:
        recording.close()
    assert (frames.tier, frames.files, frames.rows_exact) == ("journal", 2, False)
    assert frames.rows == 5 and frames.removes_next == "nothing"  # the newest closed one stays
    assert frames.removes_at_ms is None and frames.bytes == sum(sizes)
    assert frames.oldest_ms == OPEN_MS
    assert frames.newest_ms is not None and frames.newest_ms > OPEN_MS + 100_000  # its mtime


def test_a_missing_journal_is_an_empty_tier(tmp_path: Path) -> None:
    status = journal_status(tmp_path, LATER, 30)
    assert (status.tier, status.files, status.rows, status.rows_exact, status.bytes) == (
        "journal",
        0,
        0,
        True,
        0,
    )
    assert (status.oldest_ms, status.newest_ms) == (None, None)
    assert (status.removes_next, status.removes_at_ms) == ("nothing", None)


@pytest.mark.parametrize(
    ("applied_seq", "days", "suffix", "scheduled"),
    [
        (4, 30.0, " once the lake has applied it", True),  # seq 5 not applied yet
        (5, 30.0, "", True),  # applied, received less than 30 days before LATER
        (5, 5.0, ": due now", False),  # applied and older than 5 days
    ],
)
def test_what_pruning_removes_next_is_what_prune_removes(
    tmp_path: Path, applied_seq: int, days: float, suffix: str, scheduled: bool
) -> None:
    closed_segments(tmp_path, 5, 2, 1)
    save_seal(tmp_path, SealState(applied_seq=applied_seq))
    first = list_segments(journal_dir(tmp_path))[0].path
    status = journal_status(tmp_path, LATER, days)
    assert (status.files, status.rows, status.rows_exact) == (3, 8, True)
    assert (status.oldest_ms, status.newest_ms) == (OPEN_MS, OPEN_MS + 7_000)
    size = byte_text(first.stat().st_size)
    assert status.removes_next == f"segment {first.name} (5 frames, {size}){suffix}"
    at = OPEN_MS + 4_000 + int(days * DAY_MS)  # the segment's newest frame + retention
    assert status.removes_at_ms == (at if scheduled else None)
    with Journal.open(journal_dir(tmp_path)) as journal:
        removed = journal.prune(int((LATER - days * 86_400) * 1e6), applied_seq)
    assert removed == ([] if scheduled else [first])
