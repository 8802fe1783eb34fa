"""Reading a damaged journal: every valid record comes back, the damage is counted in one log
line, nothing on disk changes, and a strict read still stops at the first bad byte."""

from __future__ import annotations

import hashlib
import logging
import struct
import zlib
from pathlib import Path

import pytest

from recorder.journal import Journal, JournalConfig, JournalCorruptError
from recorder.segment import (
    FOOTER,
    HEADER,
    RECORD_OVERHEAD,
    ZHEADER,
    find_record,
    list_segments,
)
from tests.kit.times import JOURNAL_T0_US as T0


def frame(seq: int) -> str:
    return f'{{"type":"pricing","message":"frame-{seq:08d}-CAESBEFBUEwVAAA"}}'


RECORD = RECORD_OVERHEAD + len(frame(1))
CONFIG = JournalConfig(segment_bytes=4096)


def write(directory: Path, count: int) -> list[Path]:
    with Journal.open(directory, CONFIG) as journal:
        for seq in range(1, count + 1):
            journal.append(frame(seq), T0 + seq)
    return [ref.path for ref in list_segments(directory)]


def flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x04
    path.write_bytes(bytes(raw))


def first_seq(path: Path) -> int:
    return int(path.name[:20])


def fingerprint(directory: Path) -> dict[str, tuple[str, int]]:
    """Every file's content hash and modification time, by name."""
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in directory.iterdir()
    }


def test_a_reader_keeps_every_valid_record_and_changes_no_byte(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal_dir = tmp_path / "journal"
    paths = write(journal_dir, 300)
    newest, older = paths[-1], paths[1]
    flip(older, HEADER.size + 2 * RECORD + 40)  # the third record of the second segment
    flip(newest, HEADER.size + 40)  # the newest segment's first record
    newest.write_bytes(newest.read_bytes()[:-50])  # and a torn end, as a live writer's
    lost = {first_seq(older) + 2, first_seq(newest)}
    before = fingerprint(journal_dir)
    with caplog.at_level(logging.WARNING), Journal.open_reader(journal_dir) as reader:
        seqs = [r.seq for batch in reader.iter_records() for r in batch]
        window = [r.seq for batch in reader.iter_records_between(T0, T0 + 1000) for r in batch]
        skipped = list(reader.skipped)
    tail_lost = {s for s in range(1, 301) if s not in seqs} - lost
    assert len(tail_lost) == 1 and max(tail_lost) == 300  # the torn end held the last record
    assert seqs == window == [s for s in range(1, 301) if s not in lost | tail_lost]
    assert [(d.segment, d.seqs_missing) for d in skipped] == [(older, 1), (newest, 1)] * 2
    lines = [r.getMessage() for r in caplog.records if "journal_damage_skipped" in r.getMessage()]
    assert len(lines) == 2, "one line per read"
    assert f"ranges=2 bytes={2 * RECORD} seqs_missing=2 " in lines[0]
    assert fingerprint(journal_dir) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal"], "no quarantine, no lock"


def test_damage_outside_the_seqs_read_is_not_reported(tmp_path: Path) -> None:
    paths = write(tmp_path, 300)
    flip(paths[0], HEADER.size + 40)  # seq 1
    with Journal.open_reader(tmp_path) as reader:
        assert [r.seq for b in reader.iter_records(100, 110) for r in b] == list(range(100, 110))
        assert reader.skipped == []
        assert [r.seq for b in reader.iter_records(1, 3) for r in b] == [2]
        assert [d.seqs_missing for d in reader.skipped] == [1]


def test_an_unreadable_compressed_segment_is_skipped_whole(tmp_path: Path) -> None:
    write(tmp_path, 300)
    with Journal.open(tmp_path, CONFIG) as journal:
        made = journal.compress_closed()
    broken = made[1]
    raw = bytearray(broken.read_bytes())
    raw[ZHEADER.size + FOOTER.size] ^= 0xFF  # the zstd frame's magic number
    broken.write_bytes(bytes(raw))
    after = first_seq(made[2])
    with Journal.open_reader(tmp_path) as reader:
        seqs = [r.seq for b in reader.iter_records() for r in b]
        (skipped,) = reader.skipped
    assert seqs == [s for s in range(1, 301) if not first_seq(broken) <= s < after]
    assert (skipped.segment, skipped.offset, skipped.size) == (broken, 0, len(raw))
    assert skipped.seqs_missing == after - first_seq(broken)
    with Journal.open_reader(tmp_path) as reader, pytest.raises(JournalCorruptError) as caught:
        [r for b in reader.iter_records(strict=True) for r in b]
    assert caught.value.segment == broken


def test_resynchronising_finds_the_first_valid_record_past_megabytes_of_zeros() -> None:
    head = bytes(3 << 20)
    payload = frame(7).encode()
    body = struct.pack("<IQq", len(payload), 7, T0) + payload
    good = body + struct.pack("<I", zlib.crc32(body))
    fake = struct.pack("<IQq", len(payload), 7, T0) + payload + b"\0\0\0\0"  # bad crc
    data = memoryview(head + fake + good + b"tail")
    found = find_record(data, HEADER.size, len(data), 5)
    assert found == (len(head) + len(fake), 7)
    assert find_record(data, HEADER.size, len(data), 8) is None, "seqs below 8 are not wanted"
    assert find_record(data, HEADER.size, len(head) + len(fake) + len(good) - 1, 5) is None
