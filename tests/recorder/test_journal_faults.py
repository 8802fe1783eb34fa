"""Journal faults under a real recorder and simulator (issue 12, items 1, 2 and 4): a flipped
byte, a damaged older segment and a journal that lost its end each cost only the frames in
the damaged or lost bytes; no seq is reused and every new frame reaches the lake."""

from __future__ import annotations

import shutil
from pathlib import Path

from lake.datadir import journal_dir
from recorder.segment import HEADER, RECORD_OVERHEAD, list_segments
from tests.kit.lake import lake_table
from tests.kit.recorder import CRYPTO, expected_lake, read_journal, record, recorder_config
from ticklake.simulator import SimulatorConfig

SIM = SimulatorConfig(rate=30, seed=12)


def flip_middle_record(data: Path, index: int) -> int:
    """Flip a payload byte of the middle record of segment ``index``; returns its seq."""
    refs = list_segments(journal_dir(data))
    ref, end = refs[index], [*refs, None][index % len(refs) + 1]
    journal = read_journal(data)
    seqs = [s for s in journal.seqs if s >= ref.first_seq and (end is None or s < end.first_seq)]
    victim = seqs[len(seqs) // 2]
    offset = HEADER.size
    for seq, text in zip(journal.seqs, journal.frames, strict=True):
        if ref.first_seq <= seq < victim:
            offset += RECORD_OVERHEAD + len(text.encode())
    raw = bytearray(ref.path.read_bytes())
    raw[offset + RECORD_OVERHEAD] ^= 0x01
    ref.path.write_bytes(bytes(raw))
    return victim


def assert_lake_holds_the_journal(data: Path, besides: set[int]) -> None:
    """Every journaled tick is in the lake once; the lake holds nothing else but ``besides``
    (ticks of frames applied before their journal bytes were damaged)."""
    lake = lake_table(data)["seq"].to_pylist()
    assert len(lake) == len(set(lake)), "a seq is stored twice"
    wanted = set(expected_lake(data)["seq"].to_pylist())
    assert wanted <= set(lake), f"missing from the lake: {sorted(wanted - set(lake))[:10]}"
    assert set(lake) - wanted <= besides


def test_a_flipped_byte_in_the_newest_segment_costs_one_frame_and_reuses_no_seq(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    record(recorder_config(data, CRYPTO), SIM, 1.5)
    first = read_journal(data).seqs
    victim = flip_middle_record(data, -1)
    record(recorder_config(data, CRYPTO), SIM, 1.5)
    seqs = read_journal(data).seqs
    assert seqs[: len(first) - 1] == [s for s in first if s != victim], "every other record kept"
    assert len(seqs) > len(first) and seqs == sorted(set(seqs)), "new seqs, none reused"
    assert seqs[len(first) - 1] == first[-1] + 1
    assert len(list((data / "quarantine").iterdir())) == 1
    assert_lake_holds_the_journal(data, besides={victim})


def test_a_damaged_older_segment_costs_its_record_and_not_the_catch_up(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = recorder_config(data, CRYPTO, compress_journal=False)
    for _ in range(3):  # a segment per run
        record(config, SIM, 1.0)
    assert len(list_segments(journal_dir(data))) == 3
    victim = flip_middle_record(data, 0)
    for folder in data.iterdir():  # the lake is lost: the next start replays all the journal
        if folder.name != "journal":
            shutil.rmtree(folder) if folder.is_dir() else folder.unlink()
    record(config, SIM, 1.0)
    assert victim not in read_journal(data).seqs
    assert_lake_holds_the_journal(data, besides=set())


def test_a_journal_behind_the_lake_loses_no_new_frame(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for _ in range(2):
        record(recorder_config(data, CRYPTO), SIM, 1.5)
    before = set(lake_table(data)["seq"].to_pylist())
    seen = max(before)
    newest = list_segments(journal_dir(data))[-1]
    newest.path.unlink()  # the journal's end is lost (power loss under --fsync os)
    record(recorder_config(data, CRYPTO), SIM, 1.5)
    third = list_segments(journal_dir(data))[-1].first_seq
    assert third > seen, "the new frames' seqs are above every seq the lake has seen"
    new = set(expected_lake(data)["seq"].to_pylist()) - set(range(third))
    lake = lake_table(data)["seq"].to_pylist()
    assert len(lake) == len(set(lake)), "a seq is stored twice"
    assert new and new <= set(lake), "every new frame reaches the lake"
    # The lost segment's ticks were in the lake (files or deltas): they stay there.
    assert before <= set(lake), f"ticks the lake held are gone: {sorted(before - set(lake))[:5]}"
