"""``ticklake import`` as users run it: exit codes, the report of bad rows, progress lines."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from lake.clock import ManualClock
from lake.datadir import TICKS_DIR
from lake.importer import ImportProgress, ImportStats
from lake.layout import duckdb_read_sql
from recorder.journal import Journal
from ticklake.import_cmd import ProgressLines, add_arguments, history_before, main, summary

T0 = 1_795_617_000_000  # 2026-11-25T14:30:00Z
ROOT = Path(__file__).resolve().parents[2]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TICKLAKE_")}


def count(data: Path) -> int:
    row = duckdb.connect().execute(f"SELECT count(*) FROM {duckdb_read_sql(data)}").fetchone()
    assert row is not None
    return int(row[0])


def test_subprocess_import_prints_a_summary(tmp_path: Path) -> None:
    source = tmp_path / "t.csv"
    old = T0 - 700 * 86_400_000  # 2024-12-25: past days go straight to day files
    source.write_text(f"ticker,time,price\n^GSPC,{old},5000.5\nEURUSD=X,{old + 1},1.05\n")
    done = subprocess.run(
        [sys.executable, "-m", "ticklake.import_cmd", "--data", str(tmp_path / "d"), str(source)],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("imported 1 file (import 1): 2 rows, 2 ticks added, 0 duplicates")
    assert "0 minute files and 2 day files written" in lines[0]
    assert lines[1] == (
        "features for these ticks: "
        "ticklake backfill --start 2024-12-25T14:30Z --end 2024-12-25T14:31Z"
    )
    assert count(tmp_path / "d") == 2


def test_bad_rows_exit_1_and_are_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "t.csv"
    source.write_text(f"ticker,time,price\nA,{T0},1\n../x,{T0},1\nA,,1\n")
    assert main(["--data", str(tmp_path / "d"), str(source)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "ticklake import: nothing imported: 2 bad rows, 0 unusable files"
    assert err[1] == f"  {source} row 2: symbol '../x' rejected: contains '/'"
    assert err[2] == f"  {source} row 3: time missing"
    assert not (tmp_path / "d" / TICKS_DIR).exists()


def test_more_bad_rows_than_shown_are_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "t.csv"
    source.write_text("ticker,time,price\n" + f"A,{T0},x\n" * 25)
    assert main(["--data", str(tmp_path / "d"), str(source)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 + 20 + 1 and err[-1] == "  ... and 5 more bad rows"


def test_a_running_recorder_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "t.csv"
    source.write_text(f"ticker,time,price\nA,{T0},1\n")
    with Journal.open(tmp_path / "d" / "journal"):
        assert main(["--data", str(tmp_path / "d"), str(source)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "recorder is running" in err[0] and "stop it" in err[0]
    assert not (tmp_path / "d" / TICKS_DIR).exists()


def test_missing_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(tmp_path / "d"), str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv: no such file" in capsys.readouterr().err


def test_progress_lines_are_throttled_and_show_the_rate() -> None:
    clock, out = ManualClock(1000.0), io.StringIO()
    progress = ProgressLines(out, clock, every=3.0)
    progress(ImportProgress("validate", 100, None))
    clock.advance(1.0)
    progress(ImportProgress("validate", 200, None))
    assert out.getvalue() == ""
    clock.advance(3.0)
    progress(ImportProgress("validate", 800, None))
    clock.advance(1.0)
    progress(ImportProgress("write", 0, 1000))  # a new phase restarts the rate
    clock.advance(4.0)
    progress(ImportProgress("write", 400, 1000))
    assert out.getvalue().splitlines() == [
        "import: validate 800 rows, 200 rows/s",
        "import: write 400 rows of 1,000 (40%, ETA 6 s), 100 rows/s",
    ]


def test_summary_line() -> None:
    stats = ImportStats(2, 1000, 990, 10, 40, 3, {"A", "B"})
    assert summary(stats, 2.0) == (
        "imported 2 files (import 3): 1,000 rows, 990 ticks added, 10 duplicates, "
        "40 minute files and 0 day files written, 2 tickers in 2.0 s (500 rows/s)"
    )


def test_days_older_than_the_horizon_go_to_the_history_tier() -> None:
    now = T0 / 1000  # 2026-11-25 14:30 UTC
    assert history_before(now) == dt.date(2026, 11, 24)  # 11-23 ended > 24 h ago
    assert history_before(now, horizon=3600.0) == dt.date(2026, 11, 25)


def test_options_come_from_flags_and_environment(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser, {}, {"TICKLAKE_IMPORT_THREADS": "2"})
    ns = parser.parse_args(["--data", str(tmp_path), "a.csv", "b.parquet"])
    assert (ns.import_threads, ns.ignore_unknown, ns.data) == (2, False, tmp_path)
    assert ns.files == [Path("a.csv"), Path("b.parquet")]
    ns = parser.parse_args(["--ignore-unknown", "--import-threads", "8", "a.csv"])
    assert (ns.import_threads, ns.ignore_unknown, ns.data) == (8, True, Path("data"))


def test_a_bad_variable_is_one_line_before_anything_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TICKLAKE_IMPORT_THREADS", "0")
    assert main(["--data", str(tmp_path / "data"), str(tmp_path / "missing.csv")]) == 2
    assert capsys.readouterr().err == (
        "ticklake import: environment TICKLAKE_IMPORT_THREADS: bad value for import_threads: "
        "'0' is not a positive integer\n"
    )
    assert not (tmp_path / "data").exists()
