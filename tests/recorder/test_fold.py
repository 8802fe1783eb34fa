"""The recorder's lake path: one delta per flush, one fold per seal, and readers during both.

A reader querying in a loop while deltas are written and folded never sees a tick twice and
never loses one it saw; a recorder SIGKILLed at each step of a fold or of its start-up
replay loses nothing and doubles nothing once restarted.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from lake.deltas import designated_to_files, latest_fold, list_deltas
from lake.failpoints import ENV, NAMES
from lake.layout import duckdb_read_sql
from lake.seal import load_seal
from lake.utc import MINUTE_MS
from recorder import lake_writer
from recorder.recorder import Recorder
from recorder.replay import replay
from tests.kit.features import columns_of, lake_features
from tests.kit.lake import lake_table
from tests.kit.recorder import (
    CRYPTO,
    assert_files_hold_applied,
    assert_lake_is_journal,
    read_journal,
    record,
    recorder_config,
)
from ticklake.simulator import Simulator, SimulatorConfig


def visible_seqs(data: Path) -> list[int]:
    with duckdb.connect() as con:
        return [s for (s,) in con.execute(f"SELECT seq FROM {duckdb_read_sql(data)}").fetchall()]


@pytest.mark.parametrize("fold_rows", [lake_writer.FOLD_ROWS, 7])
def test_a_reader_in_a_loop_never_sees_a_tick_twice_or_loses_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fold_rows: int
) -> None:
    """Also with folds a few tickers at a time (``FOLD_ROWS`` tiny: every fold in ranges)."""
    monkeypatch.setattr(lake_writer, "FOLD_ROWS", fold_rows)  # the forked writer inherits it
    data = tmp_path / "data"
    seen: list[list[int]] = []

    async def read_in_a_loop(recorder: Recorder, sim: Simulator) -> None:
        while True:
            if (data / "ticks").exists():
                seen.append(await asyncio.to_thread(visible_seqs, data))
            await asyncio.sleep(0.01)

    # Late ticks (20-120 s old) make every cycle fold: deltas and folds interleave all along.
    sim = SimulatorConfig(rate=30, seed=21, late_rate=0.3, duplicate_rate=0.1)
    run = record(recorder_config(data, CRYPTO, flush_interval=0.1), sim, 3.0, probe=read_in_a_loop)

    fold = latest_fold(data)
    assert fold is not None and fold.generation >= 5, "folds ran while the reader read"
    assert run.recorder.stats.files_written > 0 and list_deltas(data)
    assert len(seen) >= 20
    assert all(len(seqs) == len(set(seqs)) for seqs in seen), "a tick seen twice"
    for before, after in itertools.pairwise(seen):
        assert set(before) <= set(after), f"ticks lost: {sorted(set(before) - set(after))[:5]}"
    lake = assert_lake_is_journal(data)
    assert sorted(visible_seqs(data)) == lake["seq"].to_pylist()


def start(data: Path, url: str, log: Path, failpoint: str | None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKLAKE_")}
    if failpoint:
        env[ENV] = failpoint
    command = [
        sys.executable, "-m", "ticklake.cli", "record", "--data", str(data), "--url", url,
        "--tickers", ",".join(CRYPTO), "--flush-interval", "0.2", "--lateness", "1",
        "--no-analytics",
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=out, env=env)


@pytest.mark.slow
def test_sigkill_at_each_step_of_a_fold_and_a_replay_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    data, log = tmp_path / "data", tmp_path / "recorder.log"
    config = SimulatorConfig(rate=40, seed=23, late_rate=0.3, duplicate_rate=0.05)
    steps = ["delta_written", "fold_files_written", "fold_published", "replay_files_written"]
    offload = {"offload_uploaded", "offload_verified"}  # tests/lake/test_remote.py
    assert set(steps) == set(NAMES) - offload
    with Simulator.in_thread(config) as sim:
        for step in steps:
            if step == "replay_files_written":  # only a start with frames past the seal
                _kill_leaving_frames_to_replay(data, sim, log)
            process = start(data, sim.url, log, step)
            try:
                code = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()  # never leave a recorder running behind the test
                process.wait()
                tail = log.read_text()[-2000:]
                raise AssertionError(f"{step}: not reached in 30 s\n{tail}") from None
            assert code == -signal.SIGKILL, f"{step}: exited {code}\n{log.read_text()[-2000:]}"
            while sim.connections:
                time.sleep(0.01)
        process = start(data, sim.url, log, None)
        time.sleep(2.0)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0, log.read_text()[-3000:]
    journal = read_journal(data)
    assert journal.seqs == list(range(1, len(journal.seqs) + 1))
    lake = assert_lake_is_journal(data)
    assert sorted(visible_seqs(data)) == lake["seq"].to_pylist(), "SQL readers agree"
    assert assert_files_hold_applied(data) > 0


def _kill_leaving_frames_to_replay(data: Path, sim: Simulator, log: Path) -> None:
    """SIGKILL a recorder while its journal holds frames the seal has not applied (a fold
    right at a start can apply all there is, and a replay step then has nothing to do)."""
    for _ in range(10):
        process = start(data, sim.url, log, None)
        time.sleep(1.5)
        process.kill()
        process.wait()
        while sim.connections:
            time.sleep(0.01)
        if read_journal(data).seqs[-1] > load_seal(data).applied_seq:
            return
    raise AssertionError("no SIGKILL left frames past the seal in 10 tries")


def test_features_of_the_live_lake_equal_those_of_a_replayed_one(tmp_path: Path) -> None:
    """The live path (deltas, then folds) and replay (straight into minute files) store the
    same ticks, so every sealed window the live lake has folded gets identical features."""
    data, rebuilt = tmp_path / "data", tmp_path / "rebuilt"
    sim = SimulatorConfig(rate=30, seed=24, late_rate=0.3, duplicate_rate=0.1)
    record(recorder_config(data, CRYPTO, flush_interval=0.1), sim, 2.5)
    fold = latest_fold(data)
    assert fold is not None
    replay(data, int(time.time() * 1000), into=rebuilt)

    seen = lake_table(data)  # what readers see: files, and the deltas not yet folded
    seqs = np.asarray(seen["seq"].to_numpy(), dtype=np.int64)
    times = np.asarray(seen["time"].cast(pa.int64()).to_numpy(), dtype=np.int64)
    unfolded = ~designated_to_files(fold, seqs, times)
    skip = {
        (t, m - m % MINUTE_MS)
        for t, m, u in zip(seen["id"].to_pylist(), times.tolist(), unfolded.tolist(), strict=True)
        if u
    }
    live = sealed_features(data, fold.watermark_ms, skip)
    replayed = sealed_features(rebuilt, fold.watermark_ms, skip)
    assert live.num_rows > 0, "sealed windows with ticks (the late ones) were folded"
    assert columns_of(live) == columns_of(replayed)


def sealed_features(root: Path, below_ms: int, skip: set[tuple[str, int]]) -> pa.Table:
    """Features of every window before ``below_ms`` from the minute files, but ``skip``."""
    table = lake_features(root, below_ms)
    starts = table["window_start"].cast(pa.int64()).to_pylist()
    keys = zip(table["ticker"].to_pylist(), starts, strict=True)
    return table.filter(pa.array([k not in skip for k in keys], pa.bool_()))
