"""``ticklake status``, through its argument parser and handler: the table, the JSON lines
(times in ISO-8601 milliseconds), retention settings checked against the horizon."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from analytics.job import run_once
from lake.clock import ManualClock
from lake.datadir import WriterLock, journal_dir
from lake.status import TierStatus
from lake.utc import MINUTE_MS, iso_utc
from recorder.feed import ConnectionState, ConnectionStatus
from recorder.state import RecorderStateFile
from tests.kit.lake import seal, write_days, write_lake
from tests.kit.ticks import Feed
from tests.kit.times import T0
from ticklake import compact_cmd, status_cmd
from ticklake.commands import Command


def command(cmd: Command, data: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser, {})
    return cmd.run(parser.parse_args(["--data", str(data), *argv]))


def test_status_shows_each_tier(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_days(tmp_path, ["AAPL"], days=2, minutes=3)
    assert command(compact_cmd.COMMAND, tmp_path, "--before", "2024-01-03") == 0
    capsys.readouterr()
    assert command(status_cmd.COMMAND, tmp_path) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["tier", "files", "rows", "bytes"]
    assert [line.split()[0] for line in table[1:4]] == ["minute", "history", "journal"]
    assert table[-3:] == [
        "recorder: not running",
        "seal: none yet",
        "features: no features database yet",
    ]
    assert all(line.startswith("maintenance: ") for line in table[4:-3])
    assert len({line.index("rows") for line in table[:1]}) == 1
    assert table[1].split()[1:3] == ["6", "36"]  # minute files of both days (one hidden)
    assert "kept forever" in table[2]
    command(status_cmd.COMMAND, tmp_path, "--format", "json")
    *tiers, maintenance, live = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [t["tier"] for t in tiers] == ["minute", "history", "journal"]
    assert list(maintenance) == ["maintenance"] and list(live) == ["live"]
    assert tiers[1]["rows"] == 18 and tiers[1]["oldest"] == "2024-01-02T14:30:00.000Z"
    bad = command(status_cmd.COMMAND, tmp_path, "--tick-retention-days", "1")
    assert bad == 2 and "recompute horizon" in capsys.readouterr().err


def test_times_in_the_table_are_iso_utc_seconds() -> None:
    tier = TierStatus("history", 2, 1000, True, 123_456, 1704205800123, 1704292200999, "x", None)
    table = status_cmd.format_status([tier]).splitlines()
    assert table[1].split() == [
        "history", "2", "1,000", "123,456", "2024-01-02T14:30:00Z", "2024-01-03T14:30:00Z", "x",
    ]  # fmt: skip


def test_no_data_directory_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert command(status_cmd.COMMAND, tmp_path / "none") == 2
    assert capsys.readouterr().err == f"ticklake status: no data directory {tmp_path / 'none'}\n"


def test_unreadable_files_are_reported_and_the_status_is_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_days(tmp_path, ["AAPL"], days=1, minutes=3)
    damaged = sorted(tmp_path.glob("ticks/ticker=AAPL/*/*/part.parquet"))[0]
    damaged.write_bytes(damaged.read_bytes()[:-20])  # the footer's end cut off
    assert command(status_cmd.COMMAND, tmp_path) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:2] == ["minute", "2"]
    assert out[-1] == f"minute: 1 unreadable file, not counted above: {damaged}"
    assert command(status_cmd.COMMAND, tmp_path, "--format", "json") == 1
    tiers = [json.loads(line) for line in capsys.readouterr().out.splitlines()][:-2]
    assert [(t["tier"], t["unreadable"], t["unreadable_paths"]) for t in tiers] == [
        ("minute", 1, [str(damaged)]),
        ("history", 0, []),
        ("journal", 0, []),
    ]


def test_the_unreadable_line_counts_the_files_it_does_not_name() -> None:
    tier = TierStatus("history", 0, 0, True, 0, None, None, "x", None, 7, ("a", "b"))
    assert status_cmd.unreadable_lines([tier]) == [
        "history: 7 unreadable files, not counted above: a, b and 5 more"
    ]


def live(data: Path, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], list[str]]:
    """``status``'s ``live`` object (JSON) and its text lines."""
    assert command(status_cmd.COMMAND, data, "--format", "json") == 0
    last = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert list(last) == ["live"]
    assert command(status_cmd.COMMAND, data) == 0
    text = capsys.readouterr().out.splitlines()
    first = next(i for i, line in enumerate(text) if line.startswith("recorder: "))
    return last["live"], text[first:]


def test_status_says_whether_the_recorder_runs_and_how_far_seal_and_features_lag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    feed = Feed(1)
    write_lake(tmp_path, [feed.ticks("AMZN", T0 + k * MINUTE_MS, 2) for k in range(5)])
    seal(tmp_path, T0 + 3 * MINUTE_MS)
    run_once(tmp_path, ManualClock(T0 / 1000 + 200))  # features of windows 0..2
    seal(tmp_path, T0 + 5 * MINUTE_MS)  # windows 3 and 4 sealed, not computed yet
    status = ConnectionStatus(1, ("AMZN",), ConnectionState.OPEN, frames_received=7)
    status.last_frame_at = time.time() - 3.0
    RecorderStateFile(tmp_path, started=time.time() - 60).save([status], time.time())

    stale, lines = live(tmp_path, capsys)  # a state file, but nobody holds the lock
    assert stale["recorder"]["running"] is False and stale["recorder"]["pid"] is None
    assert stale["recorder"]["stale_pid"] == os.getpid() and stale["connections"] == []
    assert lines[0].startswith("recorder: not running (state/recorder.json is stale: pid ")
    assert stale["seal"]["watermark"] == iso_utc(T0 + 5 * MINUTE_MS)
    assert stale["seal"]["lag_s"] == pytest.approx(time.time() - (T0 / 1000 + 300), abs=5)
    assert stale["features"] == {
        "newest_window": iso_utc(T0 + 2 * MINUTE_MS),
        "newest_sealed_window": iso_utc(T0 + 4 * MINUTE_MS),
        "lag_s": 120.0,
    }
    assert lines[-1].startswith("features: newest window ") and "120 s behind" in lines[-1]

    journal_dir(tmp_path).mkdir()
    with WriterLock.acquire(journal_dir(tmp_path)):
        running, lines = live(tmp_path, capsys)
    rec = running["recorder"]
    assert rec["running"] is True and rec["pid"] == os.getpid()
    assert rec["since"].endswith("Z") and len(rec["since"]) == len("2024-01-02T14:30:00.000Z")
    [conn] = running["connections"]
    assert conn["connection"] == 1 and conn["state"] == "open" and conn["frames_received"] == 7
    assert 2.0 < conn["last_frame_age_s"] < 30.0
    assert lines[0] == f"recorder: running, pid {os.getpid()}, since {rec['since']}"
    assert lines[1].startswith("connection 1: open, 7 frames, last frame ")


def test_a_lock_held_by_another_writer_is_not_a_running_recorder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal_dir(tmp_path).mkdir()
    with WriterLock.acquire(journal_dir(tmp_path)):  # a replay: no state/recorder.json
        out, lines = live(tmp_path, capsys)
    assert out["recorder"]["running"] is False and out["recorder"]["lock_holder"] == os.getpid()
    assert "held by pid" in lines[0]
    assert out["seal"] == {"watermark": None, "lag_s": None}
    assert out["features"]["error"] == "no features database yet"
