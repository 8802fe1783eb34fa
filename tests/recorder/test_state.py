"""recorder.state: ``state/recorder.json`` written by a real recorder at every cycle against
the real simulator; read back while it runs and after it stops; a damaged file refused."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from lake.datadir import RECORDER_STATE_FILE, writer_lock_holder
from recorder.feed import ConnectionState, ConnectionStatus
from recorder.recorder import Recorder
from recorder.state import (
    RecorderState,
    RecorderStateError,
    RecorderStateFile,
    load_recorder_state,
)
from tests.kit.recorder import CRYPTO, record, recorder_config
from ticklake.simulator import Simulator, SimulatorConfig


def test_a_running_recorder_writes_its_state_every_cycle(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seen: list[tuple[RecorderState, int | None]] = []

    async def probe(recorder: Recorder, _sim: Simulator) -> None:
        for _ in range(2):
            await asyncio.sleep(0.8)
            state = load_recorder_state(data)
            assert state is not None
            seen.append((state, writer_lock_holder(data)))

    run = record(recorder_config(data, CRYPTO), SimulatorConfig(rate=20, seed=5), 2.0, probe=probe)

    (first, first_holder), (second, _) = seen
    assert first.pid == os.getpid() == first_holder  # the recorder holds the writer's lock
    assert first.started_ms == second.started_ms
    assert first.written_ms < second.written_ms  # rewritten at each cycle
    [conn] = second.connections
    assert conn.id == 1 and conn.state == "open"
    assert 0 < first.connections[0].frames_received < conn.frames_received
    assert conn.last_frame_ms is not None
    assert second.written_ms - 1000 <= conn.last_frame_ms <= second.written_ms
    assert run.recorder.feed.frames_received >= conn.frames_received
    # Stopped: the file stays (stale) and the lock is free.
    assert load_recorder_state(data) is not None
    assert writer_lock_holder(data) is None


def test_last_frame_survives_a_reconnect_and_json_is_plain(tmp_path: Path) -> None:
    file = RecorderStateFile(tmp_path, started=100.0, pid=42)
    status = ConnectionStatus(1, ("BTC-USD",), ConnectionState.OPEN, frames_received=3)
    status.last_frame_at = 105.25
    file.save([status], now=106.0)
    status.state, status.last_frame_at = ConnectionState.CONNECTING, None  # a new session
    file.save([status], now=110.0)
    raw = json.loads((tmp_path / RECORDER_STATE_FILE).read_text())
    assert raw == {
        "pid": 42,
        "started_ms": 100_000,
        "written_ms": 110_000,
        "connections": [
            {"id": 1, "state": "connecting", "frames_received": 3, "last_frame_ms": 105_250}
        ],
    }


def test_a_damaged_state_file_is_refused_with_its_name(tmp_path: Path) -> None:
    assert load_recorder_state(tmp_path) is None
    path = tmp_path / RECORDER_STATE_FILE
    path.parent.mkdir(parents=True)
    path.write_text('{"pid": 1}')
    with pytest.raises(RecorderStateError, match=r"recorder\.json is not a recorder's state"):
        load_recorder_state(tmp_path)


def test_a_state_file_that_cannot_be_written_never_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "state").write_text("a file where the folder should be")
    file = RecorderStateFile(tmp_path, started=0.0)
    with caplog.at_level("WARNING", logger="recorder.state"):
        file.save([], now=1.0)  # logged, not raised
        file.save([], now=2.0)  # the same outage: not logged again
    assert [r.getMessage().split()[0] for r in caplog.records] == ["event=recorder_state_failed"]
    assert (tmp_path / "state").read_text().startswith("a file")
