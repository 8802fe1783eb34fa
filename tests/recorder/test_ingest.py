"""Ingest.apply on hand-made batches: quarantine, late windows, idempotence, a failing disk."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lake.minutes
from lake.errors import LakeWriteError
from lake.layout import minute_file, minute_placeholder
from lake.quarantine import Quarantine
from lake.seal import SealState
from lake.utc import MINUTE_MS
from recorder.ingest import Ingest, IngestStats
from tests.kit.frames import HEARTBEAT, pricing, v2
from tests.kit.lake import read_quarantine
from tests.kit.times import WEDNESDAY_15_MS as T0_MS

SEALED = T0_MS - MINUTE_MS  # with the watermark at T0, this window is sealed
OPEN = T0_MS  # and this one is not
NOW_MS = T0_MS + 20_000


# seq -> frame; 1..9, in journal order
BATCH = {
    1: v2(pricing("AMZN", SEALED + 5_000)),  # late: its window is sealed
    2: v2(pricing("AMZN", OPEN + 1_000)),
    3: "not*base64",  # bad frame
    4: HEARTBEAT,  # another v2 type: skipped
    5: v2(pricing("../x", OPEN + 2_000)),  # a symbol that cannot be a folder
    6: v2(pricing("AMZN", None)),  # a tick without time
    7: v2(pricing("EURUSD=X", OPEN + 3_000, 1.1)),
    8: v2(pricing("AMZN", OPEN + 1_000)),  # same content as seq 2: the same tick
    9: '{"type":"pricing"}',  # bad envelope
}
BAD = {3, 5, 6, 9}


def make_ingest(root: Path) -> Ingest:
    return Ingest(root, SealState(watermark_ms=T0_MS), Quarantine(root))


def apply(ingest: Ingest, batch: dict[int, str], now_ms: int = NOW_MS) -> IngestStats:
    seqs = np.array(sorted(batch), dtype=np.int64)
    received = seqs * 1000 + (T0_MS * 1000)
    return ingest.apply([batch[int(s)] for s in seqs], seqs, received, now_ms)


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Content and inode of every minute file: a rewrite changes the inode. The tier's
    zero-row placeholder (``layout.minute_placeholder``) is no tick file: left out."""
    out = {}
    for folder, _dirs, files in os.walk(root / "ticks"):
        for name in files:
            path = Path(folder, name)
            if path == minute_placeholder(root):
                assert pq.read_metadata(path).num_rows == 0
                continue
            out[str(path.relative_to(root))] = (path.read_bytes(), path.stat().st_ino)
    return out


def seqs_in(path: Path) -> list[int]:
    return [int(s) for s in pq.read_table(path, columns=["seq"])["seq"].to_pylist()]


def test_apply_stores_good_ticks_quarantines_bad_ones_and_marks_late_windows(
    tmp_path: Path,
) -> None:
    ingest = make_ingest(tmp_path)
    stats = apply(ingest, BATCH)
    ingest.quarantine.close()

    assert stats.frames == 9
    assert stats.ticks_added == 3  # seqs 1, 2, 7; seq 8 repeats seq 2
    assert stats.duplicates == 1
    assert stats.bad_frames == 3 and stats.bad_symbols == 1
    assert dict(stats.skipped) == {"heartbeat": 1}
    assert seqs_in(minute_file(tmp_path, "AMZN", SEALED)) == [1]
    assert seqs_in(minute_file(tmp_path, "AMZN", OPEN)) == [2]
    assert seqs_in(minute_file(tmp_path, "EURUSD=X", OPEN)) == [7]
    assert ingest.seal.applied_seq == 9

    entries = read_quarantine(tmp_path)
    assert sorted(int(e["seq"]) for e in entries) == sorted(BAD)
    by_seq = {e["seq"]: e for e in entries}
    assert "base64" in str(by_seq[3]["reason"])
    assert "'../x'" in str(by_seq[5]["reason"])
    assert "no time" in str(by_seq[6]["reason"])
    assert "message" in str(by_seq[9]["reason"])
    for seq, entry in by_seq.items():
        assert entry["frame"] == BATCH[int(seq)]
        assert entry["received_at"] == (T0_MS * 1000 + int(seq) * 1000) / 1e6
    assert not (tmp_path / "ticks" / "ticker=..").exists()

    late = ingest.seal.late
    assert [(w.ticker, w.window_start_ms, w.marked_at_ms) for w in late] == [
        ("AMZN", SEALED, NOW_MS)
    ]
    assert stats.late_ticks == 1


def test_reapplying_a_batch_changes_nothing_and_marks_nothing(tmp_path: Path) -> None:
    ingest = make_ingest(tmp_path)
    apply(ingest, BATCH)
    ingest.quarantine.flush()
    files, entries, late = snapshot(tmp_path), read_quarantine(tmp_path), list(ingest.seal.late)

    again = apply(ingest, BATCH, NOW_MS + 60_000)  # a crash replay, or `ticklake replay`
    ingest.quarantine.close()
    assert again.ticks_added == 0 and again.files_written == 0 and again.late_ticks == 0
    assert again.duplicates == 4
    assert snapshot(tmp_path) == files, "no file was rewritten"
    assert ingest.seal.late == late
    assert read_quarantine(tmp_path) == entries, "a bad frame is quarantined once"

    fresh = make_ingest(tmp_path)  # a new process over the same lake and quarantine file
    fresh.seal.applied_seq = ingest.seal.applied_seq
    apply(fresh, BATCH, NOW_MS + 120_000)
    fresh.quarantine.close()
    assert snapshot(tmp_path) == files and fresh.seal.late == []
    assert read_quarantine(tmp_path) == entries


def test_a_new_tick_in_a_sealed_window_marks_it_late_again(tmp_path: Path) -> None:
    ingest = make_ingest(tmp_path)
    apply(ingest, {1: BATCH[1]})
    stats = apply(ingest, {2: v2(pricing("AMZN", SEALED + 6_000))}, NOW_MS + 1)
    assert stats.late_ticks == 1
    assert [(w.id, w.window_start_ms) for w in ingest.seal.late] == [(1, SEALED), (2, SEALED)]
    assert seqs_in(minute_file(tmp_path, "AMZN", SEALED)) == [1, 2]


def test_a_failed_write_leaves_nothing_behind_and_the_retry_applies_everything_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = lake.minutes._write_parquet

    def full_disk(table: pa.Table, path: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    ingest = make_ingest(tmp_path)
    monkeypatch.setattr(lake.minutes, "_write_parquet", full_disk)
    with pytest.raises(LakeWriteError, match="No space left on device"):
        apply(ingest, BATCH)
    ingest.quarantine.flush()
    assert ingest.seal.applied_seq == 0 and ingest.seal.late == []
    assert snapshot(tmp_path) == {}

    monkeypatch.setattr(lake.minutes, "_write_parquet", real_write)
    stats = apply(ingest, BATCH)
    ingest.quarantine.close()
    assert stats.ticks_added == 3 and ingest.seal.applied_seq == 9
    assert sorted(int(e["seq"]) for e in read_quarantine(tmp_path)) == sorted(BAD)
    assert len(ingest.seal.late) == 1
