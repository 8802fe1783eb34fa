"""The journal against real files: round trips, torn tails, rotation, compression, retention,
write errors, and a writer SIGKILLed mid-stream."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lake.clock import ManualClock
from recorder.journal import (
    FsyncPolicy,
    Journal,
    JournalConfig,
    JournalCorruptError,
    JournalError,
    JournalLockedError,
    JournalRecord,
    JournalRepair,
    JournalWriteError,
)
from recorder.segment import FOOTER, HEADER, RECORD_OVERHEAD, list_segments
from tests.kit.times import JOURNAL_T0_US as T0

REPO = Path(__file__).resolve().parents[2]


def frame(seq: int) -> str:
    return f'{{"type":"pricing","message":"frame-{seq:08d}-CAESBEFBUEwVAAA"}}'


def read_all(journal: Journal, start: int = 1, end: int | None = None) -> list[JournalRecord]:
    return [record for batch in journal.iter_records(start, end) for record in batch]


def write(directory: Path, count: int, config: JournalConfig | None = None) -> None:
    with Journal.open(directory, config) as journal:
        for seq in range(1, count + 1):
            journal.append(frame(seq), T0 + seq)


def segments(directory: Path) -> list[Path]:
    return [ref.path for ref in list_segments(directory)]


def test_round_trip_of_odd_frames(tmp_path: Path) -> None:
    frames = ["", "é€𝄞 株価 ⚡", "x" * 1_000_000, '{"type":"heartbeat"}', "\x00\n\r"]
    with Journal.open(tmp_path) as journal:
        seqs = [journal.append(f, T0 + i) for i, f in enumerate(frames)]
        batch = journal.append_many(["a", "b", "c"], T0 + 99)
    assert seqs == [1, 2, 3, 4, 5]
    assert batch == range(6, 9)
    with Journal.open_reader(tmp_path) as reader:
        records = read_all(reader)
        assert [r.frame for r in records] == [*frames, "a", "b", "c"]
        assert [r.seq for r in records] == list(range(1, 9))
        assert [r.received_at_us for r in records][-4:] == [T0 + 4, T0 + 99, T0 + 99, T0 + 99]
        assert [r.seq for r in read_all(reader, 3, 7)] == [3, 4, 5, 6]
        assert [len(b) for b in reader.iter_records(batch_size=3)] == [3, 3, 2]


def test_seq_continues_across_reopen_in_a_new_segment(tmp_path: Path) -> None:
    write(tmp_path, 3)
    with Journal.open(tmp_path) as journal:
        assert journal.next_seq == 4
        assert journal.durable_seq == 3
        assert [journal.append(frame(s), T0) for s in (4, 5)] == [4, 5]
    with Journal.open(tmp_path) as journal:  # opened and closed without appending
        assert journal.next_seq == 6
    names = [p.name for p in segments(tmp_path)]
    assert names == ["00000000000000000001.seg", "00000000000000000004.seg"]
    with Journal.open_reader(tmp_path) as reader:
        assert [r.seq for r in read_all(reader)] == [1, 2, 3, 4, 5]


def unfooted_segment(directory: Path, count: int) -> tuple[Path, bytes, int]:
    """A segment as a SIGKILL leaves it (no footer), and where its last record starts."""
    with Journal.open(directory) as journal:
        for seq in range(1, count + 1):
            journal.append(frame(seq), T0 + seq)
        journal.flush()
        (path,) = segments(directory)
        raw = path.read_bytes()
    last_start = len(raw) - (RECORD_OVERHEAD + len(frame(count).encode()))
    return path, raw, last_start


def test_torn_tail_is_cut_at_every_byte_of_the_last_record(tmp_path: Path) -> None:
    path, raw, last_start = unfooted_segment(tmp_path, 5)
    for kept in range(len(raw) - last_start + 1):
        path.write_bytes(raw[: last_start + kept])
        with Journal.open(tmp_path) as journal:
            survivors = [r.seq for r in read_all(journal)]
            if kept in (0, len(raw) - last_start):
                assert journal.repairs == ()
            else:
                assert journal.repairs == (
                    JournalRepair(path, last_start, kept, journal.repairs[0].reason),
                )
                assert journal.repairs[0].reason in (
                    "incomplete record header",
                    "incomplete record",
                )
        full = kept == len(raw) - last_start
        assert survivors == ([1, 2, 3, 4, 5] if full else [1, 2, 3, 4])
        assert journal.next_seq == survivors[-1] + 1
        assert path.stat().st_size == (len(raw) if full else last_start) + FOOTER.size
        with Journal.open(tmp_path) as again:
            assert again.repairs == ()


@pytest.mark.parametrize("where", ["length", "seq", "received_at", "payload", "crc"])
def test_flipped_bit_in_the_last_record_is_cut_and_reported(tmp_path: Path, where: str) -> None:
    path, raw, start = unfooted_segment(tmp_path, 4)
    offset = start + {"length": 0, "seq": 5, "received_at": 13, "payload": 30, "crc": -1}[where]
    if where == "crc":
        offset = len(raw) - 1
    damaged = bytearray(raw)
    damaged[offset] ^= 0x10
    path.write_bytes(bytes(damaged))
    with Journal.open(tmp_path) as journal:
        assert [r.seq for r in read_all(journal)] == [1, 2, 3]
        (repair,) = journal.repairs
        assert (repair.segment, repair.offset, repair.bytes_cut) == (path, start, len(raw) - start)
        assert journal.next_seq == 4


def test_damage_in_an_older_segment_is_skipped_and_reported_or_raised_when_strict(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = JournalConfig(segment_bytes=4096)
    write(tmp_path, 200, config)
    first, second, *_ = segments(tmp_path)
    damaged = bytearray(first.read_bytes())
    third_at = HEADER.size + 2 * (RECORD_OVERHEAD + len(frame(1)))
    damaged[third_at + 30] ^= 0x01  # inside the third record's payload
    first.write_bytes(bytes(damaged))
    with Journal.open(tmp_path, config) as journal:  # open checks only the newest segment
        assert journal.repairs == () and journal.quarantined == ()
        assert journal.next_seq == 201
        with caplog.at_level(logging.WARNING):
            assert [r.seq for r in read_all(journal)] == [1, 2, *range(4, 201)]
        (skipped,) = journal.skipped
        assert skipped.segment == first
        assert (skipped.offset, skipped.size) == (third_at, RECORD_OVERHEAD + len(frame(3)))
        assert (skipped.after_seq, skipped.resume_seq, skipped.seqs_missing) == (2, 4, 1)
        lines = [r.message for r in caplog.records if "journal_damage_skipped" in r.message]
        assert len(lines) == 1 and "ranges=1 " in lines[0] and "seqs_missing=1 " in lines[0]
        got: list[int] = []
        with pytest.raises(JournalCorruptError) as caught:
            for batch in journal.iter_records(strict=True):
                got += [r.seq for r in batch]
        assert got == [1, 2]
        assert caught.value.segment == first and caught.value.offset == third_at
        assert str(first) in str(caught.value) and "checksum mismatch" in str(caught.value)
    assert first.read_bytes() == bytes(damaged), "reading never repairs"
    second_first = int(second.name[:20])
    third = segments(tmp_path)[2]
    third_first, fourth_first = int(third.name[:20]), int(segments(tmp_path)[3].name[:20])
    third.unlink()
    with Journal.open_reader(tmp_path) as reader:
        kept = [r.seq for r in read_all(reader, second_first)]
        assert kept == [*range(second_first, third_first), *range(fourth_first, 201)]
        (gap,) = reader.skipped
        assert (gap.size, gap.seqs_missing) == (0, fourth_first - third_first)
    with Journal.open_reader(tmp_path) as reader, pytest.raises(JournalCorruptError) as missing:
        [r for b in reader.iter_records(second_first, strict=True) for r in b]
    assert missing.value.segment == segments(tmp_path)[2]
    assert f"seqs after {third_first - 1} are missing" in str(missing.value)


def test_rotation_by_size_keeps_every_segment_under_the_limit(tmp_path: Path) -> None:
    config = JournalConfig(segment_bytes=4096)
    write(tmp_path, 500, config)
    paths = segments(tmp_path)
    assert len(paths) > 5
    assert all(p.stat().st_size <= 4096 for p in paths)
    firsts = [int(p.name[:20]) for p in paths]
    assert firsts[0] == 1 and firsts == sorted(firsts)
    with Journal.open_reader(tmp_path) as reader:
        records = read_all(reader)
    assert [r.seq for r in records] == list(range(1, 501))
    assert records[-1].frame == frame(500)


def test_compressed_segments_read_transparently(tmp_path: Path) -> None:
    config = JournalConfig(segment_bytes=8192)
    with Journal.open(tmp_path, config) as journal:
        for seq in range(1, 401):
            journal.append(frame(seq), T0 + seq)
        journal.flush()
        pending = Journal.open_reader(tmp_path).iter_records()  # lists the .seg files now
        made = journal.compress_closed()
        assert [r.seq for b in pending for r in b] == list(range(1, 401))  # follows the renames
        assert made and all(p.name.endswith(".seg.zst") for p in made)
        assert not segments(tmp_path)[-1].name.endswith(".zst")  # the open one stays
        assert [r.seq for r in read_all(journal)] == list(range(1, 401))
    size = sum(p.stat().st_size for p in made)
    assert size < len(made) * 8192 / 3  # repetitive frames compress well
    with Journal.open(tmp_path, config) as journal:
        assert journal.next_seq == 401
        journal.compress_closed()  # now the newest (closed) segment too
    assert all(p.name.endswith(".zst") for p in segments(tmp_path))
    with Journal.open(tmp_path, config) as journal:  # the newest segment is compressed
        assert journal.next_seq == 401
        assert [r.frame for r in read_all(journal, 399)] == [frame(399), frame(400)]


def test_a_crash_during_compression_leaves_a_readable_journal(tmp_path: Path) -> None:
    config = JournalConfig(segment_bytes=4096)
    write(tmp_path, 120, config)
    first = segments(tmp_path)[0]
    original = first.read_bytes()
    with Journal.open(tmp_path, config) as journal:
        (zst, *_) = journal.compress_closed()
    first.write_bytes(original)  # as if the crash came between rename and delete
    Path(f"{zst}.tmp").write_bytes(b"half a file")
    with Journal.open(tmp_path, config) as journal:
        assert not zst.exists() and not Path(f"{zst}.tmp").exists()
        assert first.exists()
        assert [r.seq for r in read_all(journal)] == list(range(1, 121))


def test_iter_records_between_skips_segments_by_receive_time(tmp_path: Path) -> None:
    config = JournalConfig(segment_bytes=4096)
    with Journal.open(tmp_path, config) as journal:
        for seq in range(1, 301):
            journal.append(frame(seq), T0 + seq * 1_000)
    paths = segments(tmp_path)
    damaged = bytearray(paths[0].read_bytes())  # outside the window: must not be read
    damaged[HEADER.size + 30] ^= 0x01
    paths[0].write_bytes(bytes(damaged))
    start, end = T0 + 150_000, T0 + 160_000
    with Journal.open_reader(tmp_path) as reader:
        records = [r for b in reader.iter_records_between(start, end) for r in b]
    assert [r.seq for r in records] == list(range(150, 160))
    assert all(start <= r.received_at_us < end for r in records)


def test_prune_never_deletes_unapplied_open_or_newest_closed_segments(tmp_path: Path) -> None:
    config = JournalConfig(segment_bytes=4096)
    write(tmp_path, 300, config)
    with Journal.open(tmp_path, config) as journal:
        journal.append(frame(301), T0 + 301)
        before = segments(tmp_path)
        assert journal.prune(older_than_us=T0, keep_after_seq=300) == []  # too recent
        removed = journal.prune(older_than_us=T0 + 10**9, keep_after_seq=100)
        assert removed and all(int(p.name[:20]) <= 100 for p in removed)
        left = segments(tmp_path)
        assert int(left[0].name[:20]) <= 101  # seq 101 is still there
        removed = journal.prune(older_than_us=T0 + 10**9, keep_after_seq=10**9)
        assert segments(tmp_path) == before[-2:]  # newest closed + open
        assert read_all(journal, 101)[0].seq == int(before[-2].name[:20])
    with Journal.open(tmp_path, config) as journal:
        assert journal.next_seq == 302


def test_reader_never_modifies_files_and_reads_a_valid_prefix(tmp_path: Path) -> None:
    path, raw, last_start = unfooted_segment(tmp_path, 6)
    path.write_bytes(raw[: last_start + 7])  # torn
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    reader = Journal.open_reader(tmp_path)
    assert [r.seq for r in read_all(reader)] == [1, 2, 3, 4, 5]
    assert reader.repairs == ()
    with pytest.raises(JournalError, match="read-only"):
        reader.append("x", T0)
    with pytest.raises(JournalError, match="read-only"):
        reader.prune(T0, 10)
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    assert after == before


def test_reader_follows_a_live_writer(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as writer:
        writer.append_many([frame(s) for s in range(1, 11)], T0)
        reader = Journal.open_reader(tmp_path)
        assert read_all(reader) == []  # still in the writer's buffer
        writer.flush()
        assert [r.seq for r in read_all(reader)] == list(range(1, 11))
        writer.append(frame(11), T0)
        writer.flush()
        assert [r.seq for r in read_all(reader, 11)] == [11]


def test_second_writer_is_refused(tmp_path: Path) -> None:
    with Journal.open(tmp_path), pytest.raises(JournalLockedError, match=str(os.getpid())):
        Journal.open(tmp_path)
    Journal.open(tmp_path).close()  # the lock went with the first writer


def test_policies_advance_written_and_durable_seq(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "g") as group:
        group.append("a", T0)
        assert (group.written_seq, group.durable_seq) == (0, 0)
        group.flush()
        assert (group.written_seq, group.durable_seq) == (1, 0)
        group.sync()
        assert (group.written_seq, group.durable_seq) == (1, 1)
    with Journal.open(tmp_path / "a", JournalConfig(fsync=FsyncPolicy.ALWAYS)) as always:
        always.append_many(["a", "b"], T0)
        assert (always.written_seq, always.durable_seq) == (2, 2)
    with Journal.open(tmp_path / "o", JournalConfig(fsync=FsyncPolicy.OS)) as os_policy:
        os_policy.append("a", T0)
        os_policy.sync()
        assert (os_policy.written_seq, os_policy.durable_seq) == (1, 0)
        (seg,) = segments(tmp_path / "o")
        assert seg.stat().st_size > HEADER.size  # already in the OS
    with Journal.open(tmp_path / "o") as reopened:
        assert reopened.durable_seq == 1


def test_group_commit_runs_on_the_injected_clock(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int]:
        clock = ManualClock()
        with Journal.open(tmp_path) as journal:
            task = asyncio.create_task(journal.run_group_commit(clock))
            journal.append("a", T0)
            await asyncio.sleep(0)
            before = journal.durable_seq
            clock.advance(0.2)
            for _ in range(200):  # the fsync runs in a worker thread
                await asyncio.sleep(0.005)
                if journal.durable_seq == 1:
                    break
            task.cancel()
            return before, journal.durable_seq

    assert asyncio.run(scenario()) == (0, 1)


class FillingDisk:
    """A real segment file whose disk is full after ``budget`` more bytes (None: never)."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "xb", buffering=0)  # noqa: SIM115
        self.budget: int | None = None

    def write(self, data: bytes | bytearray, /) -> int:
        if self.budget is not None and len(data) > self.budget:
            if self.budget == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            data, self.budget = data[: self.budget], 0
            return self.file.write(data)
        if self.budget is not None:
            self.budget -= len(data)
        return self.file.write(data)

    def truncate(self, size: int, /) -> int:
        return self.file.truncate(size)

    def seek(self, offset: int, whence: int = 0, /) -> int:
        return self.file.seek(offset, whence)

    def fileno(self) -> int:
        return self.file.fileno()

    def close(self) -> None:
        self.file.close()


@pytest.mark.parametrize("policy", [FsyncPolicy.GROUP, FsyncPolicy.ALWAYS])
def test_a_full_disk_rejects_frames_cleanly_and_appending_resumes(
    tmp_path: Path, policy: FsyncPolicy
) -> None:
    disks: list[FillingDisk] = []

    def open_file(path: Path) -> FillingDisk:
        disks.append(FillingDisk(path))
        return disks[-1]

    journal = Journal.open(tmp_path, JournalConfig(fsync=policy), open_file=open_file)
    journal.append_many([frame(s) for s in range(1, 4)], T0)
    journal.flush()
    (path,) = segments(tmp_path)
    size = path.stat().st_size
    disks[0].budget = 30  # room for part of one record
    with pytest.raises(JournalWriteError) as caught:
        journal.append(frame(4), T0)
        journal.flush()
    message = str(caught.value)
    assert str(path) in message and "No space left on device" in message and "\n" not in message
    assert path.stat().st_size == size  # the partial write was cut
    disks[0].budget = None  # space returns
    # GROUP kept frame 4 buffered (only the flush failed); ALWAYS rejected it and reuses seq 4
    expected_seq = 5 if policy is FsyncPolicy.GROUP else 4
    assert journal.append(frame(expected_seq), T0) == expected_seq
    journal.close()
    with Journal.open(tmp_path) as reopened:
        assert reopened.repairs == ()
        records = read_all(reopened)
    assert [r.seq for r in records] == list(range(1, expected_seq + 1))


def test_an_unwritable_directory_raises_a_write_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(JournalWriteError, match="not-a-dir"):
        Journal.open(blocker / "journal")
    locked = tmp_path / "locked"
    with Journal.open(locked) as journal:
        journal.append("a", T0)
    locked.chmod(0o500)
    try:
        if os.geteuid() == 0:
            pytest.skip("running as root: chmod 0o500 does not stop root from writing")
        with Journal.open(locked) as journal, pytest.raises(JournalWriteError, match="denied"):
            journal.append("b", T0)
    finally:
        locked.chmod(0o700)


CHILD = """
import sys
from recorder.journal import Journal
journal = Journal.open(sys.argv[1])
seq = 0
while True:
    for _ in range(500):
        seq = journal.append(f"frame-{journal.next_seq:09d}-" + "x" * 100, 1)
    journal.flush()
    if seq % 2000 == 0:
        journal.sync()
        print(journal.durable_seq, flush=True)
"""


def test_sigkill_leaves_a_contiguous_prefix_with_everything_synced(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    synced = [int(child.stdout.readline()) for _ in range(20)]
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    with Journal.open(tmp_path) as journal:
        records = read_all(journal)
    seqs = [r.seq for r in records]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) >= max(synced) > 0
    assert all(r.frame == f"frame-{r.seq:09d}-" + "x" * 100 for r in records)
    assert all(p.stat().st_size >= HEADER.size + FOOTER.size for p in segments(tmp_path))
