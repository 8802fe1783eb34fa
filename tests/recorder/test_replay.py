"""``replay`` over a damaged journal: the source journal is only read (not one byte changes,
with ``--into`` or without), every valid frame reaches the lake, and the skipped damage is
reported with exit status 1."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lake.datadir import journal_dir
from recorder.journal import Journal, JournalConfig
from recorder.segment import HEADER, RECORD_OVERHEAD, list_segments
from tests.kit.frames import pricing, v2
from tests.kit.lake import lake_table
from tests.kit.times import OPEN_MS
from ticklake.cli import main

COUNT = 400


def frame(seq: int) -> str:
    return v2(pricing("AAPL", OPEN_MS + seq * 250, price=100 + seq / 100))


def damaged_journal(data: Path) -> set[int]:
    """A journal of COUNT frames in several segments, the newest still open (as a SIGKILL
    leaves it); one byte flipped in an older segment and one in the newest. Returns the
    seqs of the two damaged records."""
    with Journal.open(journal_dir(data), JournalConfig(segment_bytes=8192)) as journal:
        for seq in range(1, COUNT + 1):
            journal.append(frame(seq), OPEN_MS * 1000 + seq * 250_000)
        journal.flush()
        refs = list_segments(journal_dir(data))
        newest = refs[-1].path.read_bytes()  # before its footer
    refs[-1].path.write_bytes(newest)
    lost = set()
    for ref, nth in ((refs[1], 3), (refs[-1], 2)):
        raw = bytearray(ref.path.read_bytes())
        offset = HEADER.size + sum(
            RECORD_OVERHEAD + len(frame(ref.first_seq + i)) for i in range(nth)
        )
        raw[offset + 30] ^= 0x01
        ref.path.write_bytes(bytes(raw))
        lost.add(ref.first_seq + nth)
    return lost


def fingerprint(data: Path) -> dict[Path, tuple[str, int | None]]:
    """Every file under ``data``: its content hash and, for segments, its mtime (the
    lock file holds the last holder's PID: only its content counts)."""
    return {
        path.relative_to(data): (
            hashlib.sha256(path.read_bytes()).hexdigest(),
            None if path.name == "journal.lock" else path.stat().st_mtime_ns,
        )
        for path in data.rglob("*")
        if path.is_file()
    }


@pytest.mark.parametrize("into", [True, False], ids=["into", "own-lake"])
def test_replay_never_changes_a_byte_of_a_damaged_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], into: bool
) -> None:
    data, rebuilt = tmp_path / "data", tmp_path / "rebuilt"
    lost = damaged_journal(data)
    segments = fingerprint(journal_dir(data))
    before = fingerprint(data)
    args = ["replay", "--data", str(data)] + (["--into", str(rebuilt)] if into else [])
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert f"replayed {COUNT - 2} frames" in out
    assert "damaged journal bytes skipped (ranges=2 " in err and "seqs_missing=2 " in err
    assert fingerprint(journal_dir(data)) == segments, "the journal is only read"
    if into:
        assert fingerprint(data) == before, "nothing else in the source changes either"
    else:
        assert not (data / "quarantine").exists(), "a reader moves nothing to quarantine"
    lake = lake_table(rebuilt if into else data)
    assert lake["seq"].to_pylist() == [s for s in range(1, COUNT + 1) if s not in lost]


def test_a_clean_journal_replays_with_exit_status_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    with Journal.open(journal_dir(data)) as journal:
        for seq in range(1, 11):
            journal.append(frame(seq), OPEN_MS * 1000 + seq)
    assert main(["replay", "--data", str(data), "--into", str(tmp_path / "x")]) == 0
    assert capsys.readouterr().err == ""
