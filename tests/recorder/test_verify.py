"""``verify`` over real data directories with real faults (a flipped journal byte, a
truncated, deleted or doubled lake file, frames not yet applied), and ``repair``: what the
journal can rebuild comes back, and the verdict says what cannot."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from lake.clock import ManualClock
from lake.compact import compact_eligible
from lake.datadir import QUARANTINE_DIR, DataLockedError, WriterLock, journal_dir
from lake.layout import minute_placeholder
from lake.maintenance import MaintenanceRecord, save_record
from lake.utc import DAY_MS
from recorder.journal import Journal, JournalConfig
from recorder.recorder import Recorder
from recorder.replay import replay
from recorder.segment import HEADER, RECORD_OVERHEAD, list_segments
from recorder.verify import VerifyReport, repair, verify
from tests.kit.frames import HEARTBEAT, pricing, v2
from tests.kit.lake import lake_files, lake_table
from tests.kit.recorder import (
    CRYPTO,
    assert_lake_is_journal,
    expected_lake,
    record,
    recorder_config,
)
from tests.kit.times import DAY2, LATER, OPEN_MS
from ticklake.simulator import Simulator, SimulatorConfig

COUNT = 300
TICKERS = ("AAPL", "MSFT")


def frame(seq: int) -> str:
    """Two tickers, a tick every 250 ms (three minutes); every 50th frame re-sends the one
    before it (identical content: the lake keeps the first), one a heartbeat, one a symbol
    that cannot be a folder."""
    if seq % 50 == 0:
        seq -= 1
    if seq == 77:
        return HEARTBEAT
    symbol = "../x" if seq == 88 else TICKERS[seq % 2]
    return v2(pricing(symbol, OPEN_MS + seq * 250, price=100 + seq / 100))


def journal(data: Path, count: int = COUNT, first: int = 1) -> None:
    """Frames ``first``..``count`` appended to the journal in segments of 8 KiB."""
    with Journal.open(journal_dir(data), JournalConfig(segment_bytes=8192)) as writer:
        for seq in range(first, count + 1):
            writer.append(frame(seq), (OPEN_MS + seq * 250) * 1000)


def recorded(data: Path) -> Path:
    """A journal and the lake built from it (every tick in minute files)."""
    journal(data)
    replay(data, OPEN_MS + DAY_MS)
    return data


def fingerprint(data: Path) -> dict[str, tuple[str, int]]:
    return {
        str(path.relative_to(data)): (
            hashlib.sha256(path.read_bytes()).hexdigest(),
            path.stat().st_mtime_ns,
        )
        for path in data.rglob("*")
        if path.is_file()
    }


def minute_file(data: Path, ticker: str = "AAPL") -> Path:
    return next(p for k, p in sorted(lake_files(data).items()) if f"ticker={ticker}/" in k)


def test_a_lake_built_from_its_journal_is_clean_and_verify_writes_nothing(tmp_path: Path) -> None:
    data = recorded(tmp_path)
    assert_lake_is_journal(data)  # the kit's rule agrees: the lake is exactly the journal
    before = fingerprint(data)
    report = verify(data)
    assert report.clean, report.problems
    assert report.journal.segments > 2 and report.journal.records == COUNT
    placeholders = int(minute_placeholder(data).is_file())
    assert report.files.read["minute"] == len(lake_files(data)) + placeholders
    t = report.ticks
    assert t.compared and t.applied_seq == COUNT and t.pending == 0
    # 300 frames: 6 re-sent, 1 heartbeat, 1 refused symbol hold no new tick
    assert t.ticks == COUNT - 6 - 2 == lake_table(data).num_rows
    assert fingerprint(data) == before, "verify wrote into the data directory"


def test_a_flipped_journal_byte_is_damage_the_lake_still_holds_its_tick(tmp_path: Path) -> None:
    data = recorded(tmp_path)
    ref = list_segments(journal_dir(data))[1]
    raw = bytearray(ref.path.read_bytes())
    raw[HEADER.size + RECORD_OVERHEAD + 40] ^= 0x01  # the segment's first record's payload
    ref.path.write_bytes(bytes(raw))
    report = verify(data)
    assert [d.segment for d in report.journal.damage] == [ref.path]
    assert report.journal.seqs_lost == 1 and report.journal.records == COUNT - 1
    assert report.ticks.missing == report.ticks.twice == report.ticks.differ == 0
    assert report.problems == ["journal: 1 damaged ranges (1 frames unreadable)"]
    assert not report.clean


def test_a_truncated_minute_file_is_unreadable_and_repair_rebuilds_it(tmp_path: Path) -> None:
    data = recorded(tmp_path)
    damaged = minute_file(data)
    good = pq.read_table(damaged)
    damaged.write_bytes(damaged.read_bytes()[:-30])
    report = verify(data)
    assert [path for path, _ in report.files.unreadable] == [damaged]
    assert not report.ticks.compared, "the readers' SQL cannot read past the damaged file"
    fixed = repair(data, ManualClock(LATER))
    assert fixed.clean, fixed.problems
    relative = damaged.relative_to(data)
    assert fixed.repaired[0] == f"moved {relative} to {Path(QUARANTINE_DIR, relative)}"
    assert (data / QUARANTINE_DIR / relative).read_bytes() != b"", "kept, never deleted"
    assert pq.read_table(damaged).equals(good), "rebuilt from the journal"
    assert_lake_is_journal(data)


def test_a_deleted_minute_file_is_missing_ticks_and_repair_brings_them_back(
    tmp_path: Path,
) -> None:
    data = recorded(tmp_path)
    gone = minute_file(data, "MSFT")
    rows = pq.read_table(gone).num_rows
    gone.unlink()
    report = verify(data)
    assert report.files.unreadable == []
    assert report.ticks.missing == rows > 0
    assert report.ticks.examples["missing"][0].split()[2] == "MSFT"
    assert report.problems == [f"ticks: {rows} missing"]
    fixed = repair(data, ManualClock(LATER))
    assert fixed.clean and gone.is_file()
    assert fixed.repaired[0].startswith(f"re-applied {COUNT} journaled frames ({rows} ticks added")


def test_a_tick_stored_twice_is_reported_and_left_for_the_operator(tmp_path: Path) -> None:
    data = recorded(tmp_path)
    path = minute_file(data)
    table = pq.read_table(path)
    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), path)  # one row twice
    report = verify(data)
    assert report.ticks.twice == 1 and report.ticks.missing == 0
    seq = table["seq"][0].as_py()
    assert report.ticks.examples["twice"][0].startswith(f"seq {seq} AAPL ")
    assert not repair(data, ManualClock(LATER)).clean, "the journal cannot undo a doubled row"


def test_a_row_that_is_not_its_frame_differs(tmp_path: Path) -> None:
    data = recorded(tmp_path)
    path = minute_file(data)
    table = pq.read_table(path)
    prices = pa.array([999.0, *table["price"].to_pylist()[1:]], pa.float32())
    pq.write_table(table.set_column(table.schema.get_field_index("price"), "price", prices), path)
    report = verify(data)
    assert (report.ticks.differ, report.ticks.missing, report.ticks.twice) == (1, 0, 0)


def test_frames_the_lake_has_not_applied_are_pending_not_missing(tmp_path: Path) -> None:
    data = recorded(tmp_path)
    journal(data, COUNT + 40, first=COUNT + 1)  # journaled after the last apply
    report = verify(data)
    assert report.clean and report.ticks.pending == 40 and report.ticks.applied_seq == COUNT
    fixed = repair(data, ManualClock(LATER))
    assert fixed.ticks.pending == 0 and fixed.ticks.applied_seq == COUNT + 40


def test_compacted_days_and_retention_removed_days_are_not_missing(tmp_path: Path) -> None:
    data = recorded(tmp_path)
    compact_eligible(data, LATER, before=DAY2, grace=0)
    assert verify(data).clean, "the day files hold every tick once"
    shutil.rmtree(data / "history" / "ticker=AAPL")  # as retention would
    assert verify(data).ticks.missing > 0
    save_record(data, MaintenanceRecord(started_ms=0, ticks_kept_from=DAY2.isoformat()))
    report = verify(data)
    assert report.clean and report.ticks.retention_skipped > 0


def test_repair_needs_the_writer_lock(tmp_path: Path) -> None:
    data = recorded(tmp_path)
    minute_file(data).unlink()
    with WriterLock.acquire(journal_dir(data)), pytest.raises(DataLockedError):
        repair(data, ManualClock(LATER))
    assert not verify(data).clean, "nothing was repaired"


def test_verify_beside_a_running_recorder_finds_every_applied_tick(tmp_path: Path) -> None:
    data = tmp_path / "data"
    during: list[VerifyReport] = []

    async def probe(_recorder: Recorder, _sim: Simulator) -> None:
        await asyncio.sleep(1.2)  # deltas written, some frames not flushed yet
        during.append(await asyncio.to_thread(verify, data))

    record(recorder_config(data, CRYPTO), SimulatorConfig(rate=40, seed=5), 2.0, probe=probe)
    assert during[0].clean, during[0].problems
    assert during[0].ticks.ticks > 0 and during[0].files.read["delta"] > 0
    after = verify(data)
    assert after.clean and after.ticks.pending == 0
    assert after.ticks.ticks == expected_lake(data).num_rows


def test_a_truncated_day_file_is_rebuilt_from_the_journal(tmp_path: Path) -> None:
    data = recorded(tmp_path)
    compact_eligible(data, LATER, before=DAY2, grace=0)  # minute files gone: the day file only
    day = next((data / "history").glob("ticker=MSFT/date=*/part.parquet"))
    rows = pq.read_table(day).num_rows
    day.write_bytes(day.read_bytes()[: len(day.read_bytes()) // 2])
    report = verify(data)
    assert [path for path, _ in report.files.unreadable] == [day]
    fixed = repair(data, ManualClock(LATER))
    assert fixed.clean, fixed.problems
    assert fixed.ticks.ticks == expected_lake(data).num_rows and not day.exists()
    lake = lake_table(data)  # the minute files: the day goes back there until compacted again
    assert lake.filter(pc.equal(lake["id"], "MSFT")).num_rows == rows, "every MSFT tick is back"


def test_a_damaged_minute_file_of_a_hidden_day_is_found_though_no_reader_opens_it(
    tmp_path: Path,
) -> None:
    data = recorded(tmp_path)
    compact_eligible(data, LATER, before=DAY2)  # hidden: minute files kept for the grace
    damaged = minute_file(data)
    damaged.write_bytes(damaged.read_bytes()[:-30])
    report = verify(data)
    assert [path for path, _ in report.files.unreadable] == [damaged]
    assert report.ticks.compared and report.ticks.missing == 0, "the day file serves them"
    assert report.problems == ["lake: 1 unreadable files"]
