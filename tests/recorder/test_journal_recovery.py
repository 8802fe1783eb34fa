"""The journal's writer on open, against real files with real flipped bytes, zeroed blocks and
lost ends: a torn tail is cut, damage is moved to quarantine and every valid record is kept,
a crash at any step of that is finished or redone, and no seq is ever handed out twice."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lake.datadir import journal_dir
from lake.deltas import Fold, publish_fold, write_delta
from lake.seal import SealState, save_seal
from recorder.journal import DamagedRange, Journal, JournalConfig
from recorder.journal_recovery import QUARANTINE_DIR, lake_seq_floor
from recorder.segment import (
    FOOTER,
    HEADER,
    RECORD_OVERHEAD,
    SegmentScan,
    list_segments,
    segment_name,
)
from tests.kit.ticks import ticks
from tests.kit.times import JOURNAL_T0_US as T0
from tests.kit.times import OPEN_MS


def frame(seq: int) -> str:
    return f'{{"type":"pricing","message":"frame-{seq:08d}-CAESBEFBUEwVAAA"}}'


RECORD = RECORD_OVERHEAD + len(frame(1))  # every test frame has this size on disk
FIELD = {"length": 0, "seq": 4, "received_at": 12, "payload": 40, "crc": RECORD - 1}


def at(seq: int) -> int:
    """Where record ``seq`` starts in the journal's first segment."""
    return HEADER.size + (seq - 1) * RECORD


def write_segment(data: Path, count: int, closed: bool = True) -> Path:
    """One segment of ``count`` records; without a footer (as SIGKILL leaves it) if not
    ``closed``."""
    with Journal.open(journal_dir(data)) as journal:
        for seq in range(1, count + 1):
            journal.append(frame(seq), T0 + seq)
        journal.flush()
        (ref,) = list_segments(journal_dir(data))
        unclosed = ref.path.read_bytes()
    if not closed:
        ref.path.write_bytes(unclosed)
    return ref.path


def damage(path: Path, offset: int, mask: int = 0x10) -> bytes:
    """Flip bits of one byte in place; returns the damaged file's bytes."""
    raw = bytearray(path.read_bytes())
    raw[offset] ^= mask
    path.write_bytes(bytes(raw))
    return bytes(raw)


def seqs_and_frames(data: Path) -> list[int]:
    """Every seq a reader yields, each frame checked against what was appended."""
    with Journal.open_reader(journal_dir(data)) as reader:
        records = [record for batch in reader.iter_records() for record in batch]
    assert all(record.frame == frame(record.seq) for record in records)
    assert all(record.received_at_us == T0 + record.seq for record in records)
    return [record.seq for record in records]


def assert_segments_valid(data: Path) -> list[int]:
    """Every segment passes a strict scan and has its footer; returns their first seqs."""
    firsts = []
    for ref in list_segments(journal_dir(data)):
        scan = SegmentScan(ref.path, ref.path.read_bytes(), ref.first_seq, resync=False)
        scan.validate()
        assert scan.problem is None and scan.footer is not None, ref.path
        firsts.append(ref.first_seq)
    return firsts


def quarantined(data: Path) -> dict[str, bytes]:
    folder = data / QUARANTINE_DIR
    if not folder.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")}


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"event={name} " in r.getMessage()]


@pytest.mark.parametrize("closed", [True, False], ids=["closed", "sigkilled"])
@pytest.mark.parametrize("where", list(FIELD))
def test_a_flipped_byte_costs_its_record_only_and_no_seq(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str, closed: bool
) -> None:
    path = write_segment(tmp_path, 146, closed)
    raw = damage(path, at(50) + FIELD[where])
    with caplog.at_level(logging.INFO), Journal.open(journal_dir(tmp_path)) as journal:
        assert journal.repairs == ()
        (moved,) = journal.quarantined
        assert moved == DamagedRange(path, at(50), RECORD, 49, 51, moved.reason)
        assert journal.next_seq == 147
        assert journal.append(frame(147), T0 + 147) == 147
    assert seqs_and_frames(tmp_path) == [*range(1, 50), *range(51, 148)]
    assert assert_segments_valid(tmp_path) == [1, 51, 147]
    name = f"{path.name}.{at(50)}-{at(51)}"
    assert quarantined(tmp_path) == {name: raw[at(50) : at(51)]}
    (line,) = events(caplog, "journal_damage")
    assert f"offset={at(50)} bytes={RECORD} records_kept_after=96 seqs_missing=1 " in line
    with Journal.open(journal_dir(tmp_path)) as again:  # nothing left to recover
        assert again.repairs == () and again.quarantined == ()
        assert again.next_seq == 148
    assert quarantined(tmp_path) == {name: raw[at(50) : at(51)]}, "never deleted"


def test_damage_just_before_the_footer_is_not_a_torn_tail(tmp_path: Path) -> None:
    path = write_segment(tmp_path, 146)
    raw = damage(path, at(146) + FIELD["payload"])
    with Journal.open(journal_dir(tmp_path)) as journal:
        assert journal.repairs == ()  # the footer says the segment was closed: nothing is cut
        (moved,) = journal.quarantined
        assert (moved.offset, moved.size, moved.seqs_missing) == (at(146), RECORD, 1)
        assert journal.next_seq == 147, "seq 146 is in the lake already: never reused"
    assert seqs_and_frames(tmp_path) == list(range(1, 146))
    assert quarantined(tmp_path) == {f"{path.name}.{at(146)}-{at(147)}": raw[at(146) : at(147)]}


def test_a_flipped_byte_in_the_footer_cuts_only_the_footer(tmp_path: Path) -> None:
    path = write_segment(tmp_path, 146)
    size = path.stat().st_size
    damage(path, size - 5)
    with Journal.open(journal_dir(tmp_path)) as journal:
        (repair,) = journal.repairs
        assert (repair.offset, repair.bytes_cut) == (size - FOOTER.size, FOOTER.size)
        assert journal.quarantined == ()
        assert journal.next_seq == 147
    assert seqs_and_frames(tmp_path) == list(range(1, 147))
    assert assert_segments_valid(tmp_path) == [1]
    assert quarantined(tmp_path) == {}


def test_a_zeroed_block_keeps_every_record_outside_it(tmp_path: Path) -> None:
    path = write_segment(tmp_path, 300, closed=False)  # power loss: a block never written
    raw = bytearray(path.read_bytes())
    raw[4096:8192] = bytes(4096)
    path.write_bytes(bytes(raw))
    outside = [s for s in range(1, 301) if at(s + 1) <= 4096 or at(s) >= 8192]
    with Journal.open(journal_dir(tmp_path)) as journal:
        assert journal.repairs == ()
        (moved,) = journal.quarantined
        lost = sorted(set(range(1, 301)) - set(outside))
        assert (moved.after_seq, moved.resume_seq) == (lost[0] - 1, lost[-1] + 1)
        assert (moved.offset, moved.end) == (at(lost[0]), at(lost[-1] + 1))
        assert journal.next_seq == 301
    assert seqs_and_frames(tmp_path) == outside
    assert list(quarantined(tmp_path).values()) == [bytes(raw[at(lost[0]) : at(lost[-1] + 1)])]


def test_a_damaged_header_keeps_the_segment_name_and_every_record(tmp_path: Path) -> None:
    path = write_segment(tmp_path, 146)
    raw = damage(path, 3)  # inside the magic
    with Journal.open(journal_dir(tmp_path)) as journal:
        (moved,) = journal.quarantined
        assert (moved.offset, moved.size, moved.seqs_missing) == (0, HEADER.size, 0)
        assert journal.next_seq == 147
    assert seqs_and_frames(tmp_path) == list(range(1, 147))
    assert assert_segments_valid(tmp_path) == [1]
    assert quarantined(tmp_path) == {f"{path.name}.0-{HEADER.size}": raw[: HEADER.size]}


def test_a_newest_segment_without_one_valid_byte_is_moved_to_quarantine_whole(
    tmp_path: Path,
) -> None:
    write_segment(tmp_path, 146)
    with Journal.open(journal_dir(tmp_path)) as journal:  # a second segment, seqs 147-150
        for seq in range(147, 151):
            journal.append(frame(seq), T0 + seq)
    newest = list_segments(journal_dir(tmp_path))[-1].path
    raw = damage(newest, 0)  # its magic, and no valid record after it
    newest.write_bytes(raw[: HEADER.size + 10])
    with Journal.open(journal_dir(tmp_path)) as journal:
        assert journal.next_seq == 148, "above the one seq the file's name proves"
    assert not newest.exists()
    assert quarantined(tmp_path) == {f"{newest.name}.0-{HEADER.size + 10}": raw[: HEADER.size + 10]}
    assert seqs_and_frames(tmp_path) == list(range(1, 147))


def test_a_torn_tail_is_still_cut_and_not_quarantined(tmp_path: Path) -> None:
    path = write_segment(tmp_path, 20, closed=False)
    path.write_bytes(path.read_bytes()[: at(20) + 30])
    with Journal.open(journal_dir(tmp_path)) as journal:
        (repair,) = journal.repairs
        assert (repair.offset, repair.bytes_cut) == (at(20), 30)
        assert journal.quarantined == ()
        assert journal.next_seq == 20
    assert quarantined(tmp_path) == {}


class Crash(Exception):
    """The process dies here."""


def test_a_crash_at_any_step_of_a_split_is_finished_or_redone_on_the_next_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = tmp_path / "original"
    path = write_segment(original, 146)
    damage(path, at(50) + FIELD["payload"])
    raw = damage(path, at(100) + FIELD["crc"])
    reference = tmp_path / "reference"
    shutil.copytree(original, reference)
    renames = count_renames(monkeypatch, reference)
    assert renames == 7  # 2 quarantined ranges, 2 splits, 1 commit, 2 splits renamed
    want = {f"{path.name}.{at(s)}-{at(s + 1)}": raw[at(s) : at(s + 1)] for s in (50, 100)}
    for step in range(1, renames + 1):
        data = tmp_path / f"crash-{step}"
        shutil.copytree(original, data)
        with monkeypatch.context() as patch, pytest.raises(Crash):
            patch.setattr(os, "replace", crash_before(step, os.replace))
            Journal.open(journal_dir(data))
        with Journal.open(journal_dir(data)) as journal:
            assert journal.next_seq == 147, f"crash before rename {step}"
        assert assert_segments_valid(data) == [1, 51, 101], f"crash before rename {step}"
        assert seqs_and_frames(data) == [*range(1, 50), *range(51, 100), *range(101, 147)]
        assert quarantined(data) == want
        leftovers = [p.name for p in journal_dir(data).iterdir() if p.suffix in (".split", ".tmp")]
        assert leftovers == [], f"crash before rename {step}"


def count_renames(monkeypatch: pytest.MonkeyPatch, data: Path) -> int:
    calls: list[tuple[Any, ...]] = []
    real = os.replace

    def counting(*args: Any) -> None:
        calls.append(args)
        real(*args)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", counting)
        Journal.open(journal_dir(data)).close()
    return len(calls)


def crash_before(step: int, real: Callable[..., None]) -> Callable[..., None]:
    calls = [0]

    def replace(*args: Any) -> None:
        calls[0] += 1
        if calls[0] == step:
            raise Crash
        real(*args)

    return replace


def test_a_damaged_compressed_newest_segment_opens_from_its_footer_copy(tmp_path: Path) -> None:
    config = JournalConfig(segment_bytes=4096)
    with Journal.open(journal_dir(tmp_path), config) as journal:
        for seq in range(1, 121):
            journal.append(frame(seq), T0 + seq)
    with Journal.open(journal_dir(tmp_path), config) as journal:
        journal.compress_closed()
    newest = list_segments(journal_dir(tmp_path))[-1]
    assert newest.compressed
    raw = damage(newest.path, newest.path.stat().st_size - 20, 0xFF)  # inside the zstd body
    with Journal.open(journal_dir(tmp_path), config) as journal:
        assert journal.next_seq == 121
        assert journal.repairs == () and journal.quarantined == ()
    assert newest.path.read_bytes() == raw, "a compressed segment is never rewritten"
    assert seqs_and_frames(tmp_path) == list(range(1, newest.first_seq))
    with Journal.open_reader(journal_dir(tmp_path)) as reader:
        assert [len(batch) for batch in reader.iter_records(newest.first_seq)] == []
        (skipped,) = reader.skipped  # the whole file: its zstd data does not decompress
        assert (skipped.segment, skipped.offset, skipped.size) == (newest.path, 0, len(raw))
        assert skipped.seqs_missing == 121 - newest.first_seq


def test_the_floor_lifts_next_seq_above_a_journal_that_lost_its_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = JournalConfig(segment_bytes=4096)
    with Journal.open(journal_dir(tmp_path), config) as journal:
        for seq in range(1, 147):
            journal.append(frame(seq), T0 + seq)
    lost = list_segments(journal_dir(tmp_path))[-2:]  # power loss under --fsync os
    for ref in lost:
        ref.path.unlink()
    held = lost[0].first_seq - 1
    save_seal(tmp_path, SealState(applied_seq=146))
    floor = lake_seq_floor(tmp_path)
    assert floor == 147
    with caplog.at_level(logging.WARNING):
        opened = Journal.open(journal_dir(tmp_path), config, min_next_seq=floor)
    with opened as journal:
        assert journal.next_seq == 147
        assert journal.append(frame(147), T0 + 147) == 147
    (line,) = events(caplog, "journal_behind_seal")
    assert f"journal_next_seq={held + 1} next_seq=147 seqs_missing={146 - held}" in line
    assert (journal_dir(tmp_path) / segment_name(147)).is_file()
    with Journal.open(journal_dir(tmp_path), config) as journal:  # the journal keeps the floor
        assert journal.next_seq == 148
    assert seqs_and_frames(tmp_path) == [*range(1, held + 1), 147]
    caplog.clear()
    with Journal.open(journal_dir(tmp_path), config, min_next_seq=100) as journal:
        assert journal.next_seq == 148  # a floor below the journal changes nothing
    assert events(caplog, "journal_behind_seal") == []


def test_the_lake_seq_floor_is_above_the_seal_the_fold_and_every_delta(tmp_path: Path) -> None:
    assert lake_seq_floor(tmp_path) == 1  # a new data directory
    save_seal(tmp_path, SealState(applied_seq=100))
    assert lake_seq_floor(tmp_path) == 101
    publish_fold(tmp_path, Fold(1, 100, 120, OPEN_MS, OPEN_MS))
    assert lake_seq_floor(tmp_path) == 121
    write_delta(tmp_path, ticks("AAPL", [OPEN_MS, OPEN_MS + 1], [130, 131]))
    assert lake_seq_floor(tmp_path) == 132


def test_recovery_writes_only_the_journal_and_quarantine(tmp_path: Path) -> None:
    path = write_segment(tmp_path, 146)
    damage(path, at(70) + FIELD["payload"])
    before = {p.relative_to(tmp_path) for p in tmp_path.rglob("*")}
    Journal.open(journal_dir(tmp_path)).close()
    after = {p.relative_to(tmp_path) for p in tmp_path.rglob("*")}
    quarantine = Path(QUARANTINE_DIR)
    assert after - before == {
        Path("journal", segment_name(71)),
        quarantine,
        quarantine / f"{path.name}.{at(70)}-{at(71)}",
    }
