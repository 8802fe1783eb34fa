"""The recorder end to end: real simulator over real sockets, real journal, real lake.

Each test records a couple of seconds (SystemClock, short flush interval) and then holds the
lake to the journal: ``assert_lake_is_journal`` checks that every journaled tick is in the
lake exactly once, identical in every column, and that the lake holds nothing else.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lake.deltas
import lake.minutes
import recorder.ingest
import recorder.journal
from lake.clock import ManualClock
from lake.layout import duckdb_read_sql, minute_file
from lake.sessions import gaps, read_sessions
from lake.symbols import is_valid_symbol
from lake.utc import MINUTE_MS, floor_minute_ms
from recorder.recorder import Recorder
from tests.kit.lake import lake_files, read_quarantine, read_seal, tree
from tests.kit.recorder import (
    CRYPTO,
    TICK_COLUMNS,
    assert_files_hold_applied,
    assert_lake_is_journal,
    journal_ticks,
    read_journal,
    record,
    recorder_config,
    sent_frames,
    sql,
)
from tests.kit.times import WEDNESDAY_15_UTC
from ticklake.simulator import Simulator, SimulatorConfig


def test_every_sent_frame_is_journaled_and_every_tick_is_in_the_lake_once(tmp_path: Path) -> None:
    data, sent_log = tmp_path / "data", tmp_path / "sent.jsonl"
    sim = SimulatorConfig(rate=20, seed=3, duplicate_rate=0.1, sent_log=sent_log)
    run = record(recorder_config(data, CRYPTO), sim, 2.0)

    journal = read_journal(data)
    sent = [entry["frame"] for entry in sent_frames(sent_log)]
    assert len(sent) == run.frames_sent > 80
    assert journal.frames == sent, "one connection: the journal holds what was sent, in order"
    assert journal.seqs == list(range(1, len(sent) + 1))

    lake = assert_lake_is_journal(data)
    assert 0 < lake.num_rows < len(sent), "the simulator's duplicates were folded"
    stats = run.recorder.stats
    assert stats.ticks_added == lake.num_rows
    assert stats.duplicates == len(sent) - lake.num_rows
    assert assert_files_hold_applied(data) <= journal.seqs[-1]

    rows = sql(
        f"SELECT ticker, count(*), count(DISTINCT seq), count(*) FILTER (WHERE ticker <> id) "
        f"FROM {duckdb_read_sql(data)} GROUP BY ticker ORDER BY ticker"
    )
    assert [r[0] for r in rows] == sorted(CRYPTO)
    assert sum(r[1] for r in rows) == sum(r[2] for r in rows) == lake.num_rows
    assert all(r[3] == 0 for r in rows)
    for path in lake_files(data).values():  # rows sorted by (time, seq) within a file
        table = pq.read_table(path, columns=["time", "seq"])
        assert table.equals(table.sort_by([("time", "ascending"), ("seq", "ascending")]))


def _ended(data: Path, prefix: str) -> list[float]:
    sessions = read_sessions(data / "state" / "sessions.jsonl")
    return [s.end for s in sessions if s.end is not None and (s.reason or "").startswith(prefix)]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"drop_every": 0.6}, "dropped: no close frame"),
        ({"stall_after": 0.5}, "stale: no data for"),
    ],
    ids=["drop", "stall"],
)
def test_recording_continues_across_drops_and_stalls_without_duplicating_snapshots(
    tmp_path: Path, fault: dict[str, float], reason: str
) -> None:
    data, sent_log = tmp_path / "data", tmp_path / "sent.jsonl"
    sim = SimulatorConfig(rate=10, seed=4, sent_log=sent_log, **fault)  # type: ignore[arg-type]
    config = recorder_config(data, CRYPTO[:2], feed_stale_after=0.4)
    record(config, sim, 3.0)

    ends = _ended(data, reason)
    assert len(ends) >= 2, read_sessions(data / "state" / "sessions.jsonl")
    journal = read_journal(data)
    received_s = [us / 1e6 for us in journal.received_us]
    assert sum(t > ends[1] for t in received_s) > 5, "recording went on after the second end"

    sent = Counter(entry["frame"] for entry in sent_frames(sent_log))
    journaled = Counter(journal.frames)
    assert not journaled - sent, "journaled a frame that was never sent"
    if "drop_every" in fault:
        # Each resubscribe re-sent the latest snapshot, already received before the drop (a
        # stalled connection never sent its latest): the journal holds repeated frames ...
        assert sum(n - 1 for n in journaled.values()) >= len(ends) // 2
    # ... that the lake holds once.
    lake = assert_lake_is_journal(data)
    assert sql(f"SELECT 1 FROM lake GROUP BY {TICK_COLUMNS} HAVING count(*) > 1", lake=lake) == []


@pytest.mark.slow  # ~5 s: 250 minute files, each fsynced
def test_symbols_over_the_per_connection_limit_get_connections_of_their_own(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    symbols = tuple(f"C{i:03d}-USD" for i in range(250))
    sim = SimulatorConfig(rate=2, seed=5, max_symbols=100)
    config = recorder_config(data, symbols, flush_interval=5.0, feed_symbols_per_connection=100)
    run = record(config, sim, 1.0)

    assert len(run.recorder.feed.connections) == 3
    sessions = read_sessions(data / "state" / "sessions.jsonl")
    by_connection = {s.connection: s.symbols for s in sessions}
    assert sorted(len(group) for group in by_connection.values()) == [50, 100, 100]
    assert sorted(s for group in by_connection.values() for s in group) == sorted(symbols)
    lake = assert_lake_is_journal(data)
    assert set(lake["id"].to_pylist()) == set(symbols), "every symbol has ticks in the lake"


def test_garbage_is_quarantined_and_other_types_are_skipped(tmp_path: Path) -> None:
    data, sent_log = tmp_path / "data", tmp_path / "sent.jsonl"
    sim = SimulatorConfig(rate=20, seed=6, garbage_rate=0.1, other_type_rate=0.1, sent_log=sent_log)
    run = record(recorder_config(data, CRYPTO), sim, 2.0)

    sent = sent_frames(sent_log)
    journal = read_journal(data)
    assert journal.frames == [entry["frame"] for entry in sent]
    garbage = {seq for seq, e in zip(journal.seqs, sent, strict=True) if e.get("garbage")}
    others = Counter(e["frame"] for e in sent if e["symbol"] is None)
    assert len(garbage) > 5 and sum(others.values()) > 5

    quarantined = read_quarantine(data)
    assert [q["seq"] for q in quarantined] == sorted(garbage), "every bad frame, once, in order"
    frames = dict(zip(journal.seqs, journal.frames, strict=True))
    for entry in quarantined:
        assert entry["frame"] == frames[entry["seq"]][:4096]
        assert entry["frame_chars"] == len(frames[entry["seq"]])
        assert isinstance(entry["reason"], str) and entry["reason"]
        assert "\n" not in entry["reason"]
    stats = run.recorder.stats
    assert stats.bad_frames == len(garbage)
    assert stats.skipped == Counter(json.loads(frame)["type"] for frame in others.elements())
    lake = assert_lake_is_journal(data)
    assert max(lake["seq"].to_pylist()) > max(garbage), "good ticks kept landing"


ODD = ("^GSPC", "EURUSD=X", "ES=F", "BRK-B", "BTC-USD")


def test_odd_symbols_round_trip_through_duckdb(tmp_path: Path) -> None:
    data = tmp_path / "data"
    sim = SimulatorConfig(rate=10, seed=7)
    record(recorder_config(data, ODD), sim, 1.5, sim_clock=ManualClock(WEDNESDAY_15_UTC))

    assert_lake_is_journal(data)
    read = duckdb_read_sql(data)
    tickers = sql(f"SELECT DISTINCT ticker FROM {read} ORDER BY ticker")
    assert [t for (t,) in tickers] == sorted(ODD)
    assert sql(f"SELECT count(*) FROM {read} WHERE ticker <> id") == [(0,)]
    for symbol in ODD:  # a filter on the partition column finds the symbol as subscribed
        quoted = symbol.replace("'", "''")
        assert sql(f"SELECT count(*) FROM {read} WHERE ticker = '{quoted}'")[0][0] > 0, symbol


EVIL = ("../x", "a/b", "..", "/", "x" * 40)


def test_symbols_that_would_leave_the_lake_are_quarantined_and_create_nothing(
    tmp_path: Path,
) -> None:
    data = tmp_path / "inner" / "data"
    data.parent.mkdir()
    before, siblings = tree(tmp_path), set(os.listdir(tmp_path.parent))
    sim = SimulatorConfig(rate=10, seed=8)
    config = recorder_config(data, (*EVIL, "BTC-USD"))
    run = record(config, sim, 1.5, sim_clock=ManualClock(WEDNESDAY_15_UTC))

    new = tree(tmp_path) - before
    assert new and all(path.startswith("inner/data") for path in new), sorted(new)[:10]
    assert set(os.listdir(tmp_path.parent)) == siblings
    assert sorted(os.listdir(data / "ticks")) == ["ticker=!empty", "ticker=BTC-USD"]  # placeholder

    ticks = journal_ticks(data)
    evil_seqs = {s for s, i in zip(ticks["seq"].to_pylist(), ticks["id"].to_pylist(), strict=True)
                 if not is_valid_symbol(i)}  # fmt: skip
    assert set(ticks["id"].to_pylist()) == {*EVIL, "BTC-USD"}, "every evil symbol streamed"
    quarantined = read_quarantine(data)
    assert {q["seq"] for q in quarantined} == evil_seqs
    assert all("cannot be stored" in q["reason"] for q in quarantined)
    assert run.recorder.stats.bad_symbols == len(evil_seqs)
    lake = assert_lake_is_journal(data)
    assert set(lake["id"].to_pylist()) == {"BTC-USD"}


def test_late_ticks_are_stored_and_mark_their_sealed_windows(tmp_path: Path) -> None:
    data = tmp_path / "data"
    mirrored: list[int] = []  # the recorder's view, from its lake writer's reports
    saved: list[int] = []  # seal.json, which the lake writer saves

    async def watch(recorder: Recorder, sim: Simulator) -> None:
        while True:
            await asyncio.sleep(0.05)
            mirrored.append(recorder.seal.watermark_ms)
            if (data / "state" / "seal.json").exists():
                saved.append(read_seal(data)["watermark_ms"])

    sim = SimulatorConfig(rate=10, seed=9, late_rate=0.3)
    record(recorder_config(data, CRYPTO, lateness=0.0), sim, 2.5, probe=watch)
    stopped_at_ms = int(time.time() * 1000)

    seal = read_seal(data)
    assert saved == sorted(saved) and saved[0] > 0, "the watermark only moves on"
    assert mirrored == sorted(mirrored) and mirrored[-1] == saved[-1]
    assert seal["watermark_ms"] == floor_minute_ms(stopped_at_ms) or (
        seal["watermark_ms"] == floor_minute_ms(stopped_at_ms) - MINUTE_MS
    )
    late = seal["late"]
    assert late, "late ticks 20-120 s old touched sealed windows"
    ids = [entry["id"] for entry in late]
    assert ids == sorted(set(ids)) and seal["next_late_id"] > ids[-1]
    for entry in late:
        end = entry["window_start_ms"] + MINUTE_MS
        assert end <= seal["watermark_ms"] and entry["marked_at_ms"] >= end
        assert minute_file(data, entry["ticker"], entry["window_start_ms"]).is_file()
    lake = assert_lake_is_journal(data)
    age = (
        lake["received_at"].cast(pa.int64()).to_numpy() // 1000
        - lake["time"].cast(pa.int64()).to_numpy()
    )
    assert (age >= 20_000).sum() > 0, "the late ticks themselves are in the lake"


def test_backlog_overflow_reads_back_from_the_journal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="recorder.recorder")
    data, sent_log = tmp_path / "data", tmp_path / "sent.jsonl"
    held: list[int] = []

    async def watch(recorder_: Recorder, sim: Simulator) -> None:
        while True:
            held.append(len(recorder_._backlog))
            await asyncio.sleep(0.005)

    sim = SimulatorConfig(rate=30, seed=10, sent_log=sent_log)
    record(recorder_config(data, CRYPTO, max_backlog=5), sim, 2.0, probe=watch)

    assert any("event=backlog_overflow" in r.getMessage() for r in caplog.records)
    assert max(held) <= 5, "memory stays bounded: past max_backlog the frames stay on disk"
    assert read_journal(data).frames == [entry["frame"] for entry in sent_frames(sent_log)]
    assert_lake_is_journal(data)


def test_a_slow_disk_never_slows_the_receive_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, sent_log, slow_log = tmp_path / "data", tmp_path / "sent.jsonl", tmp_path / "slow"
    real_write = lake.deltas.write_delta
    samples: list[tuple[float, int, int]] = []  # (monotonic, sent, journaled), every 10 ms

    def slow_write(root: Path, table: pa.Table) -> lake.deltas.Delta | None:
        # Runs in the lake writer process: the disk takes 0.5 s for each of three flushes.
        done = slow_log.read_text().count("\n") if slow_log.exists() else 0
        if done < 3:
            started = time.monotonic()
            time.sleep(0.5)
            with slow_log.open("a") as out:
                out.write(f"{started} {time.monotonic()}\n")
        return real_write(root, table)

    async def watch(recorder_: Recorder, sim: Simulator) -> None:
        while True:
            samples.append((time.monotonic(), sim.frames_sent, recorder_.journal.next_seq - 1))
            await asyncio.sleep(0.01)

    monkeypatch.setattr(recorder.ingest, "write_delta", slow_write)
    sim = SimulatorConfig(rate=20, seed=11, sent_log=sent_log)
    record(recorder_config(data, CRYPTO), sim, 2.8, probe=watch)

    windows = [tuple(map(float, line.split())) for line in slow_log.read_text().splitlines()]
    assert len(windows) == 3
    for started, ended in windows:
        before = max((s for s in samples if s[0] <= started), default=samples[0])
        after = min((s for s in samples if s[0] >= ended), default=samples[-1])
        sent = after[1] - before[1]
        assert sent >= 20, "the simulator kept sending (60 msg/s) while the disk was slow"
        # Frames the simulator sent during the slow write were journaled meanwhile.
        assert after[2] - before[2] >= sent - 10
    assert read_journal(data).frames == [entry["frame"] for entry in sent_frames(sent_log)]
    assert_lake_is_journal(data)


def test_a_full_disk_is_reported_and_the_lake_catches_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    data, sent_log = tmp_path / "data", tmp_path / "sent.jsonl"
    real_writes = {m: m._write_parquet for m in (lake.minutes, lake.deltas)}
    full = {"until": time.monotonic() + 1.5}
    journaled: list[int] = []

    def full_disk(module: Any) -> Callable[[pa.Table, Path], None]:
        def write_parquet(table: pa.Table, path: Path) -> None:
            if time.monotonic() < full["until"]:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real_writes[module](table, path)

        return write_parquet

    async def watch(recorder_: Recorder, sim: Simulator) -> None:
        while True:
            await asyncio.sleep(0.1)
            if time.monotonic() < full["until"]:
                journaled.append(recorder_.journal.next_seq - 1)

    for module in real_writes:
        monkeypatch.setattr(module, "_write_parquet", full_disk(module))
    sim = SimulatorConfig(rate=20, seed=12, garbage_rate=0.1, sent_log=sent_log)
    record(recorder_config(data, CRYPTO), sim, 2.5, probe=watch)

    failures = [r for r in caplog.records if "No space left on device" in r.getMessage()]
    assert failures, "the full disk was reported"
    for failure in failures:
        message = failure.getMessage()
        assert failure.levelno == logging.ERROR and failure.exc_info is None
        assert message.startswith("event=") and "\n" not in message
    assert journaled[-1] > journaled[0] + 20, "the journal kept growing while the disk was full"
    assert not [p for p in tree(data) if p.endswith(".tmp")], "no temporary left behind"
    sent, journal = sent_frames(sent_log), read_journal(data)
    assert journal.frames == [entry["frame"] for entry in sent]
    assert_lake_is_journal(data)
    garbage = [seq for seq, e in zip(journal.seqs, sent, strict=True) if e.get("garbage")]
    assert garbage[0] < journaled[-1], "bad frames arrived while the disk was full"
    assert [q["seq"] for q in read_quarantine(data)] == garbage, "each bad frame once"


class FullDisk:
    """A journal segment file on a disk that is full between two monotonic instants."""

    def __init__(self, file: Any, full: dict[str, float]) -> None:
        self._file, self._full = file, full

    def write(self, data: bytes | bytearray, /) -> int | None:
        if self._full["from"] <= time.monotonic() < self._full["until"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written: int | None = self._file.write(data)
        return written

    def truncate(self, size: int, /) -> int:
        return int(self._file.truncate(size))

    def seek(self, offset: int, whence: int = 0, /) -> int:
        return int(self._file.seek(offset, whence))

    def fileno(self) -> int:
        return int(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def test_a_full_disk_under_the_journal_drops_frames_and_recording_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    data, sent_log = tmp_path / "data", tmp_path / "sent.jsonl"
    full = {"from": float("inf"), "until": 0.0, "wall": 0.0}
    create = recorder.journal._create_file
    monkeypatch.setattr(recorder.journal, "_create_file", lambda path: FullDisk(create(path), full))
    # An outage longer than the group-commit buffer, which holds frames while writes fail.
    monkeypatch.setattr(recorder.journal, "FLUSH_BYTES", 4096)

    async def outage(recorder_: Recorder, sim: Simulator) -> None:
        await asyncio.sleep(0.5)
        full.update(wall=time.time(), **{"from": time.monotonic()})
        full["until"] = full["from"] + 1.5

    sim = SimulatorConfig(rate=20, seed=13, sent_log=sent_log)
    record(recorder_config(data, CRYPTO), sim, 3.5, probe=outage)

    sessions = read_sessions(data / "state" / "sessions.jsonl")
    assert not [s for s in sessions if (s.reason or "").startswith("error")], sessions
    messages = [r.getMessage() for r in caplog.records]
    failed = [m for m in messages if m.startswith("event=journal_write_failed")]
    assert len(failed) == 1 and "No space left on device" in failed[0] and "\n" not in failed[0]
    commits = [m for m in messages if m.startswith("event=journal_group_commit_")]
    assert len(commits) in (0, 2), "a failing group commit logs once, and once on recovery"
    assert not commits or "recovered" in commits[1]
    resumed = [m for m in messages if m.startswith("event=journal_write_resumed")]
    assert len(resumed) == 1
    fields = dict(pair.split("=", 1) for pair in resumed[0].split())
    dropped = int(fields["frames_dropped"])
    assert dropped > 10 and fields["sessions_cut"] == "1"
    # The lost frames are a coverage gap: the session is cut around them.
    cut = [s for s in sessions if s.reason == "journal_full: frames dropped"]
    assert len(cut) == 1 and cut[0].end is not None
    hole = gaps(sessions, "BTC-USD", cut[0].start, time.time(), open_until=time.time())
    assert hole and hole[0][0] == cut[0].end and 1.0 < hole[0][1] - hole[0][0] < 2.5
    assert abs(hole[0][0] - full["wall"]) < 0.5, "the gap starts when frames were refused"

    journal = read_journal(data)
    assert journal.seqs == list(range(1, len(journal.seqs) + 1))
    assert sum(us / 1e6 > full["wall"] + 1.6 for us in journal.received_us) > 20, "resumed"
    sent = Counter(entry["frame"] for entry in sent_frames(sent_log))
    lost = sent - Counter(journal.frames)
    assert sum(lost.values()) == dropped and not Counter(journal.frames) - sent
    sent_at = {e["frame"]: e["sent_at"] for e in sent_frames(sent_log)}
    assert all(full["wall"] - 0.5 < sent_at[f] < full["wall"] + 2.0 for f in lost)
    assert_lake_is_journal(data)
