"""The lake writer in its own process: lost and replaced, dying with its parent, backing
off on lasting faults. Real recorder, real simulator, real child processes and signals."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import lake.deltas
import recorder.lake_writer
import recorder.recorder
from lake.clock import ManualClock
from lake.layout import minute_file
from lake.utc import MINUTE_MS
from recorder.recorder import Recorder
from recorder.verify import verify
from tests.kit.recorder import (
    CRYPTO,
    assert_files_hold_applied,
    assert_lake_is_journal,
    journal_ticks,
    read_journal,
    record,
    recorder_config,
    sent_frames,
)
from ticklake.simulator import Simulator, SimulatorConfig


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(child) for child in task.read_text().split()]
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_lake_writer_killed_while_recording_is_replaced_and_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    data, sent_log = tmp_path / "data", tmp_path / "sent.jsonl"
    killed: list[int] = []

    async def kill_the_writer(recorder_: Recorder, sim: Simulator) -> None:
        await asyncio.sleep(0.8)
        pid = recorder_.lake.pid
        assert pid is not None and alive(pid)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    sim = SimulatorConfig(rate=30, seed=31, sent_log=sent_log, duplicate_rate=0.05)
    run = record(recorder_config(data, CRYPTO), sim, 2.5, probe=kill_the_writer)

    messages = [r.getMessage() for r in caplog.records]
    lost = [m for m in messages if "event=cycle_failed" in m]
    assert len(lost) == 1 and "lake writer process died (exit code -9)" in lost[0]
    assert any("event=cycle_recovered failures=1" in m for m in messages)
    assert not alive(killed[0]) and run.recorder.lake.pid is None, "closed at stop"
    assert read_journal(data).frames == [e["frame"] for e in sent_frames(sent_log)]
    assert_lake_is_journal(data)
    assert assert_files_hold_applied(data) > 0


@pytest.mark.slow
def test_the_lake_writer_dies_with_a_killed_recorder_and_frees_the_data_directory(
    tmp_path: Path,
) -> None:
    data, log = tmp_path / "data", tmp_path / "log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKLAKE_")}
    with Simulator.in_thread(SimulatorConfig(rate=20, seed=32)) as sim:
        command = [sys.executable, "-m", "ticklake.cli", "record", "--data", str(data),
                   "--url", sim.url, "--tickers", ",".join(CRYPTO), "--flush-interval", "0.2",
                   "--no-analytics"]  # fmt: skip
        with log.open("ab") as out:
            first = subprocess.Popen(command, stdout=out, stderr=out, env=env)
        deadline = time.monotonic() + 20
        while not children(first.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        (writer,) = children(first.pid)
        time.sleep(0.5)
        first.kill()
        first.wait()
        deadline = time.monotonic() + 5
        while alive(writer) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not alive(writer), "the lake writer outlived its recorder"
        with log.open("ab") as out:
            second = subprocess.Popen(command, stdout=out, stderr=out, env=env)
        time.sleep(1.5)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=10) == 0, log.read_text()[-3000:]
    assert "open for writing" not in log.read_text(), "the data directory was still locked"
    assert_lake_is_journal(data)


def test_a_lasting_fault_backs_off_logs_once_and_recovers_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="recorder.recorder")  # the repeated failures
    data = tmp_path / "data"
    real_write = lake.deltas._write_parquet
    full_until = time.monotonic() + 3.0

    def write_parquet(table: pa.Table, path: Path) -> None:
        if time.monotonic() < full_until:  # the disk is full for 3 s
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(table, path)

    monkeypatch.setattr(lake.deltas, "_write_parquet", write_parquet)
    sim = SimulatorConfig(rate=20, seed=33)
    record(recorder_config(data, CRYPTO, flush_interval=0.1, lateness=0.0), sim, 5.0)

    failed = [r for r in caplog.records if "event=cycle_failed" in r.getMessage()]
    errors = [r for r in failed if r.levelno >= logging.ERROR]
    assert len(errors) == 1, "one error line per outage"
    assert "No space left on device" in errors[0].getMessage()
    # Back-off 0.2, 0.4, 0.8, 1.6 s...: a handful of attempts in 3 s, not one per 0.1 s.
    assert 2 <= len(failed) <= 6, [r.getMessage() for r in failed]
    recovered = [
        r.getMessage() for r in caplog.records if "event=cycle_recovered" in r.getMessage()
    ]
    assert len(recovered) == 1 and f"failures={len(failed)}" in recovered[0]
    assert_lake_is_journal(data)


def test_a_damaged_minute_file_is_set_aside_and_rebuilt_from_the_journal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    data = tmp_path / "data"
    sim = SimulatorConfig(rate=15, seed=34)
    config = recorder_config(data, CRYPTO, lateness=0.0)
    record(config, sim, 2.0)
    btc = journal_ticks(data).filter(pc.equal(journal_ticks(data)["id"], "BTC-USD"))
    minute_ms = btc["time"].cast(pa.int64())[0].as_py() // MINUTE_MS * MINUTE_MS
    damaged = minute_file(data, "BTC-USD", minute_ms)
    damaged.parent.mkdir(parents=True, exist_ok=True)
    damaged.write_bytes(b"PAR1 damaged by a disk fault")  # whatever the minute held
    # The seal as a backup restored it: the next start writes every journaled tick into its
    # minute file again, the damaged one included.
    seal = json.loads((data / "state" / "seal.json").read_text())
    (data / "state" / "seal.json").write_text(json.dumps(seal | {"applied_seq": 0}))

    run = record(config, replace(sim, seed=35), 2.0)

    lines = [r.getMessage() for r in caplog.records if "event=lake_file_damaged" in r.getMessage()]
    assert lines and str(damaged) in lines[0] and "ticklake verify --repair" in lines[0]
    assert (data / "quarantine" / damaged.relative_to(data)).is_file(), "kept, never deleted"
    assert not any("event=cycle_failed" in r.getMessage() for r in caplog.records)
    assert run.recorder.stats.ticks_added > 0, "the second run stored its ticks"
    # The start re-applied the whole journal, so the minute written again holds its ticks.
    report = verify(data)
    assert report.clean, report.problems
    assert_lake_is_journal(data)


def frames_taken(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of frames each cycle takes from the backlog, in order (filled as they run)."""
    taken: list[int] = []
    real_take = Recorder._take_backlog

    def take(self: Recorder) -> object:
        head = real_take(self)
        taken.append(len(head))
        return head

    monkeypatch.setattr(Recorder, "_take_backlog", take)
    return taken


def test_a_burst_backlog_goes_to_the_writer_in_pieces_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, sent_log = tmp_path / "data", tmp_path / "sent.jsonl"
    monkeypatch.setattr(recorder.recorder, "FLUSH_FRAMES", 7)  # a "burst" of a few frames
    monkeypatch.setattr(recorder.lake_writer, "FLUSH_FRAMES", 3)  # deltas of 3 frames at most
    taken = frames_taken(monkeypatch)
    sim = SimulatorConfig(rate=40, seed=37, sent_log=sent_log, duplicate_rate=0.05)
    record(recorder_config(data, CRYPTO, flush_interval=1.0), sim, 2.5)

    assert max(taken) < 7 + 10, "a cycle takes whole batches up to about FLUSH_FRAMES"
    # ~300 frames in 2.5 s with a 1 s interval: cycles ran at once while frames piled up.
    assert len([n for n in taken if n]) >= 20 and sum(taken) >= 200
    deltas = lake.deltas.list_deltas(data)
    assert len(deltas) >= sum(taken) // 3 - 5, "the writer cut its work in pieces of 3"
    assert read_journal(data).frames == [e["frame"] for e in sent_frames(sent_log)]
    assert_lake_is_journal(data)


def test_after_a_burst_cycle_what_arrived_meanwhile_does_not_wait_an_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock never moves, so no interval or seal deadline passes: a cycle starts only
    when the backlog holds FLUSH_FRAMES, or at once in a burst (from a cycle that carried
    BURST_FRAMES until one carries fewer than CALM_FRAMES: a burst's tail)."""
    monkeypatch.setattr(recorder.recorder, "FLUSH_FRAMES", 30)
    monkeypatch.setattr(recorder.recorder, "BURST_FRAMES", 20)
    monkeypatch.setattr(recorder.recorder, "CALM_FRAMES", 3)
    taken = frames_taken(monkeypatch)
    sim = SimulatorConfig(rate=40, seed=38)
    config = recorder_config(tmp_path / "data", CRYPTO, flush_interval=3600.0)
    record(config, sim, 2.5, clock=ManualClock(time.time()))

    cycles = taken[1:]  # the first is the start's
    assert sum(cycles) >= 150, "~300 frames arrived"
    tails = [i for i, n in enumerate(cycles) if i and n < 30]
    assert tails, "no cycle ran on a backlog below FLUSH_FRAMES: the tails waited"
    assert all(cycles[i - 1] >= 3 for i in tails), "a calm cycle ends the burst"
    first = next(i for i, n in enumerate(cycles) if n >= 20)
    assert tails[0] > first, "no cycle runs at once before one carried BURST_FRAMES"


def test_the_lake_writer_never_imports_pandas(tmp_path: Path) -> None:
    """pyarrow imports pandas on its first array when it is installed (~45 MB a process);
    the lake writer refuses it, and stores the frames all the same."""
    pytest.importorskip("pandas")  # not installed: nothing to keep out
    script = f"""
import pathlib, time
from lake.utc import floor_minute_ms
from recorder.lake_process import LakeProcess
from recorder.lake_writer import Work, WriterConfig
from tests.kit.frames import pricing, v2

now_ms = int(time.time() * 1000)
frames = [v2(pricing(s, now_ms - 1000, 10.0 + i)) for i, s in enumerate(("AAPL", "MSFT"))]
writer = LakeProcess(WriterConfig(pathlib.Path({str(tmp_path / "data")!r}), 3_600_000, 10))
writer.start()
report = writer.submit(Work(now_ms, floor_minute_ms(now_ms - 60_000), frames, [range(1, 3)],
                            [now_ms * 1000]))
maps = pathlib.Path(f"/proc/{{writer.pid}}/maps").read_text()
print(report.stats.ticks_added, "pandas/_libs" in maps)
writer.close(5.0)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["2", "False"]
