"""``ticklake compact``, through its argument parser and handler."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tests.kit.lake import write_days
from ticklake import compact_cmd


def compact(data: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    compact_cmd.add_arguments(parser, {})
    return compact_cmd.run(parser.parse_args(["--data", str(data), *argv]))


def test_compact_before_a_date_reports_what_it_did(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_days(tmp_path, ["AAPL"], days=2, minutes=3)
    assert compact(tmp_path, "--before", "2024-01-03") == 0
    out = capsys.readouterr().out
    assert out.startswith("compacted 1 days (3 minute files, 18 ticks")
    assert "keep their minute files for the grace period (600 s)" in out


def test_no_data_directory_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert compact(tmp_path / "none") == 2
    assert capsys.readouterr().err == f"ticklake compact: no data directory {tmp_path / 'none'}\n"
