"""``ticklake status``, through its argument parser and handler: the table, the JSON lines
(times in ISO-8601 milliseconds), retention settings checked against the horizon."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from lake.status import TierStatus
from tests.kit.lake import write_days
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
    assert all(line.startswith("maintenance: ") for line in table[4:])
    assert len({line.index("rows") for line in table[:1]}) == 1
    assert table[1].split()[1:3] == ["6", "36"]  # minute files of both days (one hidden)
    assert "kept forever" in table[2]
    command(status_cmd.COMMAND, tmp_path, "--format", "json")
    *tiers, maintenance = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [t["tier"] for t in tiers] == ["minute", "history", "journal"]
    assert list(maintenance) == ["maintenance"]
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
    tiers = [json.loads(line) for line in capsys.readouterr().out.splitlines()][:-1]
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
