"""SIGKILL the real recorder process at random moments; nothing journaled may be lost or doubled.

The simulator logs every frame it sends. After several kills and restarts:
- every journaled frame is in the lake exactly once (or, if it repeats an earlier tick's
  content, that earlier row stands for it), and the lake holds nothing else;
- every frame that was sent but never journaled was sent inside a loss window: from the
  group-commit interval (plus socket slack) before a kill until the restarted recorder
  connected again (frames in flight in the dead process's socket die with it).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import duckdb
import numpy as np
import pytest

from lake.layout import duckdb_read_sql
from lake.schema import TICK_SCHEMA
from recorder.journal import Journal
from recorder.wire.decode import decode_batch
from ticklake.simulator import Simulator, SimulatorConfig

GROUP_COMMIT_S = 0.2
SLACK_S = 0.5  # frames in kernel socket buffers, scheduling jitter
TICKERS = "BTC-USD,ETH-USD,SOL-USD,DOGE-USD"


def start_recorder(data: Path, url: str, log: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "ticklake.cli", "record", "--data", str(data), "--url", url,
        "--tickers", TICKERS, "--flush-interval", "0.3", "--lateness", "1",
        "--group-commit-ms", str(int(GROUP_COMMIT_S * 1000)),
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=out)


def wait_connected(sim: Simulator, timeout: float = 20.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sim.connections > 0:
            return time.time()
        time.sleep(0.01)
    raise AssertionError("the recorder never connected")


def journal_records(data: Path) -> tuple[list[int], list[str]]:
    seqs: list[int] = []
    frames: list[str] = []
    with Journal.open_reader(data / "journal") as journal:
        for batch in journal.iter_records():
            seqs += [r.seq for r in batch]
            frames += [r.frame for r in batch]
    return seqs, frames


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_only_the_documented_window(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "recorder.log"
    sent_log = tmp_path / "sent.jsonl"
    rng = random.Random(int(os.environ.get("CRASH_TEST_SEED", "11")))
    config = SimulatorConfig(rate=40, seed=5, sent_log=sent_log, duplicate_rate=0.05)
    windows: list[tuple[float, float]] = []
    with Simulator.in_thread(config) as sim:
        for _ in range(4):
            process = start_recorder(data, sim.url, log)
            connected = wait_connected(sim)
            if windows:
                windows[-1] = (windows[-1][0], connected)
            time.sleep(rng.uniform(0.3, 2.5))
            killed_at = time.time()
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            windows.append((killed_at - GROUP_COMMIT_S - SLACK_S, float("inf")))
            while sim.connections:
                time.sleep(0.01)
        process = start_recorder(data, sim.url, log)
        windows[-1] = (windows[-1][0], wait_connected(sim))
        time.sleep(1.5)
        asked = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0, log.read_text()[-3000:]
        assert time.monotonic() - asked < 5.0
    seqs, frames = journal_records(data)
    assert seqs == list(range(1, len(seqs) + 1)), "journal seqs must be contiguous"
    assert len(seqs) > 200

    # 1. Every journaled tick is in the lake exactly once; the lake holds nothing else.
    decoded = decode_batch(frames)
    assert decoded.errors == []
    ticks = decoded.ticks.append_column("seq", [np.asarray(seqs)[decoded.frame_index]])
    con = duckdb.connect()
    con.register("ticks", ticks)
    expected = con.execute(
        f"SELECT min(seq) AS seq FROM ticks GROUP BY {', '.join(TICK_SCHEMA.names)}"
    ).fetchall()
    lake = con.execute(f"SELECT seq FROM {duckdb_read_sql(data)}").fetchall()
    assert len(lake) == len({s for (s,) in lake}), "a seq is stored twice"
    assert sorted(s for (s,) in lake) == sorted(s for (s,) in expected)
    assert ticks.num_rows > len(expected)  # duplicates and re-sent snapshots were folded

    # 2. Every frame sent but never journaled was sent inside a loss window. Identical frames
    # (duplicates, re-sent snapshots) are interchangeable: a text sent k times and journaled
    # j times is fine when at most j of its k sendings fall outside every window.
    journaled: dict[str, int] = defaultdict(int)
    for frame in frames:
        journaled[frame] += 1
    sent_times: dict[str, list[float]] = defaultdict(list)
    with sent_log.open() as sent:
        for line in sent:
            entry = json.loads(line)
            sent_times[entry["frame"]].append(entry["sent_at"])
    assert set(journaled) <= set(sent_times), "journaled a frame that was never sent"
    lost = unexplained = 0
    for text, times in sent_times.items():
        assert journaled[text] <= len(times), "journaled a frame more often than it was sent"
        outside = sum(not any(lo <= t <= hi for lo, hi in windows) for t in times)
        lost += len(times) - journaled[text]
        unexplained += max(0, outside - journaled[text])
    assert unexplained == 0, f"{unexplained} of {lost} lost frames fall outside {windows}"
