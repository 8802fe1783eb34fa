"""``ticklake replay``: the journal applied to the lake again, into a fresh directory or into
the live lake after losing files, exactly as live recording wrote it."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lake.layout import parse_minute_dir
from lake.seal import SealState
from tests.kit.lake import lake_files, read_quarantine
from tests.kit.recorder import CRYPTO, assert_lake_is_journal, record, recorder_config
from ticklake.cli import main
from ticklake.simulator import SimulatorConfig


def test_replay_rebuilds_the_live_lake_exactly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, rebuilt = tmp_path / "data", tmp_path / "rebuilt"
    sim = SimulatorConfig(rate=20, seed=22, duplicate_rate=0.1, garbage_rate=0.05, late_rate=0.3)
    record(recorder_config(data, CRYPTO), sim, 2.0)
    live = lake_files(data)
    assert len(live) >= 6 and read_quarantine(data)

    # 1. Into a new directory: the same files, each identical in every column.
    assert main(["replay", "--data", str(data), "--into", str(rebuilt)]) == 0
    assert f"into {rebuilt}" in capsys.readouterr().out
    assert set(lake_files(rebuilt)) == set(live)
    for name, path in live.items():
        assert pq.read_table(rebuilt / name).equals(pq.read_table(path)), name
    assert read_quarantine(rebuilt) == read_quarantine(data)

    # 2. Into the live lake after losing some files: exactly those come back.
    tables = {name: pq.read_table(path) for name, path in live.items()}
    lost = sorted(live)[::2]
    kept = {name: os.stat(live[name]).st_ino for name in live if name not in lost}
    for name in lost:
        live[name].unlink()
    seal = SealState.from_json((data / "state" / "seal.json").read_bytes())
    quarantine = read_quarantine(data)
    assert main(["replay", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert f"{sum(tables[name].num_rows for name in lost)} ticks added" in out
    assert set(lake_files(data)) == set(live)
    for name, path in lake_files(data).items():
        assert pq.read_table(path).equals(tables[name]), name
        if name in kept:
            assert os.stat(path).st_ino == kept[name], f"{name} was rewritten"
    assert read_quarantine(data) == quarantine, "replay quarantines nothing twice"
    assert_lake_is_journal(data)

    # Restored windows that were already sealed are late again: analytics recomputes them.
    after = SealState.from_json((data / "state" / "seal.json").read_bytes())
    new_late = {(w.ticker, w.window_start_ms) for w in after.late_since(seal.next_late_id - 1)}
    restored = {parse_minute_dir(live[name]) for name in lost}
    assert new_late == {w for w in restored if seal.is_sealed(w[1])}
    assert new_late, "some restored windows were sealed"
