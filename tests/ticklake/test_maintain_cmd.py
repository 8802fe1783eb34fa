"""``ticklake maintain`` through its parser and handler, and what ``ticklake status`` shows
of it: the last run, what it skipped, the next daily run and what a run would do now."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from lake.datadir import MAINTENANCE_FILE, WriterLock, journal_dir
from lake.layout import history_file
from lake.maintenance import load_record, maintenance_lock
from lake.seal import SealState, save_seal
from lake.utc import DAY_MS, day_start_ms
from recorder import maintenance_schedule
from recorder.recorder import Recorder
from tests.kit.lake import write_days
from tests.kit.times import DAY1, DAY2
from ticklake import maintain_cmd, record_cmd, status_cmd
from ticklake.cli import main
from ticklake.commands import Command
from ticklake.simulator import Simulator, SimulatorConfig


def command(cmd: Command, data: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser, {})
    return cmd.run(parser.parse_args(["--data", str(data), *argv]))


def sealed_days(data: Path) -> None:
    """AAPL on DAY1 and DAY2, both sealed past a one-day horizon."""
    write_days(data, ["AAPL"], days=2, minutes=3)
    save_seal(data, SealState(watermark_ms=day_start_ms(DAY2) + 2 * DAY_MS))


def test_maintain_compacts_and_says_what_it_did_and_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed_days(tmp_path)
    journal_dir(tmp_path).mkdir()
    with WriterLock.acquire(journal_dir(tmp_path)):  # a recorder is running
        assert command(maintain_cmd.COMMAND, tmp_path) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("compacted 2 days (6 minute files); deleted the minute files of 0")
    assert out[1] == (
        "2 compacted days keep their minute files for the grace period (600 s): "
        "a later run deletes them"
    )
    assert out[2] == (
        f"skipped: journal: not pruned here: process {os.getpid()} holds the writer's lock "
        "(a recorder prunes its own journal every hour)"
    )
    assert history_file(tmp_path, "AAPL", DAY1).is_file()
    record = load_record(tmp_path)
    assert record is not None and record.trigger == "command" and record.days_compacted == 2


def test_maintain_refuses_what_it_cannot_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert command(maintain_cmd.COMMAND, tmp_path / "none") == 2
    assert capsys.readouterr().err == f"ticklake maintain: no data directory {tmp_path / 'none'}\n"
    assert command(maintain_cmd.COMMAND, tmp_path, "--tick-retention-days", "1") == 2
    assert "recompute horizon" in capsys.readouterr().err
    with maintenance_lock(tmp_path):
        assert command(maintain_cmd.COMMAND, tmp_path) == 2
    assert "another maintenance run" in capsys.readouterr().err
    assert not (tmp_path / MAINTENANCE_FILE).exists()


def test_a_failed_day_exits_1_after_the_rest_is_done(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed_days(tmp_path)
    marker = tmp_path / "ticks/ticker=AAPL/date=2024-01-02/.compacted.json"
    marker.write_text("{")
    assert command(maintain_cmd.COMMAND, tmp_path) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("compacted 1 days")
    assert captured.err.startswith("ticklake maintain: failed: compaction: AAPL 2024-01-02: ")


def test_status_shows_the_last_run_the_next_and_what_it_would_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed_days(tmp_path)
    assert command(status_cmd.COMMAND, tmp_path, "--maintain-at", "05:00") == 0
    lines = capsys.readouterr().out.splitlines()[4:]
    assert lines[0] == "maintenance: never ran here"
    assert lines[1].startswith("maintenance: next daily run ")
    assert lines[1].endswith(
        "T05:00Z inside `record` or `analyze` (maintain_at); a run now compacts 2 days, "
        "deletes the minute files of 0 compacted days, retention removes 0 days"
    )
    command(maintain_cmd.COMMAND, tmp_path)
    capsys.readouterr()
    assert command(status_cmd.COMMAND, tmp_path, "--no-maintain") == 0
    lines = capsys.readouterr().out.splitlines()[4:]
    assert lines[0].startswith("maintenance: last run ")
    assert " (command, " in lines[0] and lines[0].endswith(
        "compacted 2 days (6 minute files); deleted the minute files of 0 compacted days "
        "(0 files); retention removed 0 days (0 files); pruned 0 journal segments; "
        "removed 0 temporaries; 2 compacted days wait for the grace period"
    )
    maintenance_lines = [line for line in lines if line.startswith("maintenance:")]
    assert maintenance_lines[-1] == (  # the live lines (recorder, lags) follow them
        "maintenance: no daily run (maintain = false); `ticklake maintain` now compacts 0 "
        "days, deletes the minute files of 0 compacted days, retention removes 0 days "
        "(2 compacted days still inside the grace period)"
    )
    assert command(status_cmd.COMMAND, tmp_path, "--format", "json") == 0
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (maintenance,) = [o["maintenance"] for o in objects if "maintenance" in o]
    assert maintenance["last"]["days_compacted"] == 2
    assert maintenance["next_run"].endswith("T03:30Z")
    assert maintenance["next"] == {
        "days_due": 0,
        "days_finishing": 0,
        "days_waiting": 2,
        "retention_days": 0,
    }


def test_status_reports_a_damaged_record_and_still_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / MAINTENANCE_FILE
    path.parent.mkdir()
    path.write_text("{")
    assert command(status_cmd.COMMAND, tmp_path) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"maintenance: {path} is damaged (" in lines[4]
    assert lines[4].endswith("the next maintenance run replaces it")


@pytest.mark.parametrize("name", ["record", "analyze"])
def test_record_and_analyze_take_and_check_the_maintenance_settings(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./ticklake.toml of the checkout
    (tmp_path / "data").mkdir()
    args = ["--tickers", "AMZN", "--url", "ws://127.0.0.1:9/"] if name == "record" else []
    code = main([name, "--data", "data", *args, "--tick-retention-days", "1"])
    assert code == 2
    assert "tick_retention_days=1 keeps ticks for less than the recompute horizon" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "data/journal").exists(), "refused before anything started"
    assert {"maintain", "maintain_at", "tick_retention_days", "compaction_grace"} <= {
        option.name for option in record_cmd.SETTINGS
    }


def test_record_runs_maintenance_in_a_thread_while_it_keeps_receiving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maintenance_schedule, "CATCH_UP_DELAY_S", 0.3)  # never ran: catch up
    data = tmp_path / "data"
    write_days(data, ["AAPL"], days=2, minutes=3)  # 2024: long sealed once the recorder runs
    parser = argparse.ArgumentParser()
    record_cmd.add_arguments(parser, {})

    async def main(recorder: Recorder, ns: argparse.Namespace) -> int:
        task = asyncio.create_task(record_cmd._record_with_analytics(recorder, ns))
        deadline = time.monotonic() + 20
        while load_record(data) is None:
            assert time.monotonic() < deadline, "no maintenance run"
            await asyncio.sleep(0.05)
        received = recorder.feed.frames_received
        await asyncio.sleep(0.5)
        recorder.stop()
        await asyncio.wait_for(task, 10)
        return recorder.feed.frames_received - received

    with Simulator.in_thread(SimulatorConfig(rate=30, seed=3)) as sim:
        feed = ["--tickers", "BTC-USD,ETH-USD", "--url", sim.url, "--no-analytics"]
        cycles = ["--flush-interval", "0.2", "--lateness", "1"]
        ns = parser.parse_args(["--data", str(data), *feed, *cycles])
        recorder = Recorder(record_cmd.recorder_config(ns))
        assert asyncio.run(main(recorder, ns)) > 0, "frames kept arriving"
    record = load_record(data)
    assert record is not None and record.trigger == "catch-up"
    assert record.days_compacted == 2 and history_file(data, "AAPL", DAY1).is_file()
    assert record.notes == ["journal: pruned every hour by the recorder of this process"]
