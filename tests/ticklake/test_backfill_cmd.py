"""``ticklake backfill``: options, the summary, the progress bar, one-line errors."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import pytest

from analytics.backfill import BackfillProgress
from analytics.cluster import DASK_MISSING
from analytics.database import database_path
from lake.clock import ManualClock, SystemClock
from lake.utc import MINUTE_MS as MIN
from tests.kit.features import db_features, hold_database
from tests.kit.lake import write_lake
from tests.kit.ticks import Feed
from tests.kit.times import T0
from ticklake.backfill_cmd import ProgressBar, add_arguments, progress_text, run
from ticklake.cli import main

START, END = "2024-04-16T14:00Z", "2024-04-16T14:10Z"  # T0 and ten minutes on
CLOCK = ManualClock(T0 / 1000 + 3600)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def parse(*args: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser, {})
    return parser.parse_args(list(args))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    feed = Feed(3)
    write_lake(
        root, [feed.ticks(t, T0 + k * MIN, 1, 5) for t in ("AMZN", "MSFT") for k in range(8)]
    )
    return root


def test_summary_on_stdout_and_quiet_stderr_off_a_terminal(data, tmp_path, capsys) -> None:
    db = tmp_path / "f.duckdb"
    ns = parse("--data", str(data), "--start", START, "--end", END, "--database", str(db))
    err = io.StringIO()
    assert run(ns, CLOCK, err) == 0
    out = capsys.readouterr().out
    assert out.startswith("backfilled 16 windows of 2 tickers (2024-04-16T14:00Z to ")
    assert "16 rows written in 1 transaction, " in out and "M ticks/s)" in out
    assert out.count("\n") == 1 and err.getvalue() == ""
    assert db_features(db).num_rows == 16


def test_progress_bar_on_a_terminal(data, tmp_path, capsys) -> None:
    ns = parse("--data", str(data), "--start", START, "--end", END, "--tickers", "MSFT")
    ns.database = tmp_path / "f.duckdb"
    err = Terminal()
    assert run(ns, CLOCK, err) == 0
    shown = err.getvalue()
    assert shown.startswith("\r[########################] 100%  1/1 ticker-days  8/8 windows  ")
    assert " M ticks/s  ETA 0:00:00\n" in shown
    assert "of 1 ticker (" in capsys.readouterr().out


def test_off_a_terminal_a_line_every_ten_seconds() -> None:
    moments = iter([0.0, 4.0, 10.5, 12.0, 30.0])  # construction, then one per call
    out = io.StringIO()
    bar = ProgressBar(out, now=lambda: next(moments))
    for done in (1, 2, 3, 4):
        bar(BackfillProgress(done, 8, done * 10, 80, done * 5, 40, 0, done * 1000, done * 1.0))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "20/80 ticker-days" in lines[0] and "40/80" in lines[1]
    assert "10/~40 windows" in lines[0] and "0.00 M ticks/s  ETA 0:00:06" in lines[0]
    bar.close()
    assert out.getvalue().count("\n") == 2


def test_progress_text_before_the_first_chunk() -> None:
    text = progress_text(BackfillProgress(0, 4, 0, 40, 0, 0, 0, 0, 0.0))
    assert text.startswith("[------------------------]   0%  0/40 ticker-days  0/~0 windows")
    assert text.endswith("ETA ?")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--start", END, "--end", START), "start 2024-04-16T14:10:00Z is not before end"),
        (("--start", START, "--end", END, "--tickers", "AMZN,NVDA"), "no data for ticker(s) NVDA"),
    ],
)
def test_one_line_errors(data, tmp_path, args, message) -> None:
    ns = parse("--data", str(data), "--database", str(tmp_path / "f.duckdb"), *args)
    err = io.StringIO()
    assert run(ns, CLOCK, err) == 2
    assert err.getvalue().startswith(f"ticklake backfill: {message}")
    assert err.getvalue().count("\n") == 1


def test_missing_data_directory(tmp_path) -> None:
    ns = parse("--data", str(tmp_path / "nope"), "--start", START, "--end", END)
    err = io.StringIO()
    assert run(ns, CLOCK, err) == 2
    assert err.getvalue() == f"ticklake backfill: no data directory {tmp_path / 'nope'}\n"


def test_a_database_held_past_the_timeout(data, tmp_path, capsys) -> None:
    db = database_path(tmp_path)
    args = ("--data", str(data), "--start", START, "--end", END, "--database", str(db))
    assert run(parse(*args), CLOCK, io.StringIO()) == 0
    holder = hold_database(db, 10.0)
    try:
        err = io.StringIO()
        assert run(parse(*args, "--lock-timeout", "0.3"), SystemClock(), err) == 2
    finally:
        holder.kill()
        holder.wait()
    line = err.getvalue()
    assert line.startswith(f"ticklake backfill: {db} is held by process {holder.pid}/")
    assert line.endswith("; rerun the same command to finish\n") and line.count("\n") == 1


def test_options_from_flags_and_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TICKLAKE_WORKERS", "3")
    ns = parse("--start", START, "--end", END, "--tickers", "AMZN,^GSPC", "--lateness", "5")
    assert (ns.workers, ns.lateness, ns.tickers) == (3, 5.0, ("AMZN", "^GSPC"))
    assert ns.start == T0 / 1000 and ns.data == Path("data")
    with pytest.raises(SystemExit):
        parse("--start", START, "--end", END, "--tickers", "../etc")


# --- --cluster (analytics.cluster) ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["local:0", "local", "tcp://scheduler", "http://h:8786"])
def test_a_bad_cluster_is_one_line(data, tmp_path, value) -> None:
    db = tmp_path / "f.duckdb"
    args = ("--data", str(data), "--start", START, "--end", END, "--database", str(db))
    err = io.StringIO()
    assert run(parse(*args, "--cluster", value), CLOCK, err) == 2
    assert err.getvalue().startswith(f"ticklake backfill: cluster {value!r}")
    assert err.getvalue().count("\n") == 1 and not db.exists()


def test_cluster_from_the_environment(data, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TICKLAKE_CLUSTER", "tcp://10.1.2.3:8786")
    assert parse("--start", START, "--end", END).cluster == "tcp://10.1.2.3:8786"
    monkeypatch.setenv("TICKLAKE_CLUSTER", "local:none")
    args = ["backfill", "--data", str(data), "--start", START, "--end", END]
    assert main([*args, "--database", str(tmp_path / "f.duckdb")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ticklake backfill: cluster 'local:none': N of local:N must be a")
    assert err.count("\n") == 1


def test_a_cluster_without_the_dask_extra(data, tmp_path) -> None:
    hide = "import sys; sys.modules['distributed'] = None; sys.modules['dask'] = None; "
    code = hide + "from ticklake.cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["backfill", "--data", str(data), "--start", START, "--end", END, "--cluster", "local:2"]
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == DASK_MISSING + "\n"
    assert DASK_MISSING == (
        "ticklake backfill --cluster needs the dask extra: pip install 'ticklake[dask]'"
    )


@pytest.mark.slow
def test_a_local_cluster_end_to_end(data, tmp_path) -> None:
    """``ticklake backfill --cluster local:2`` as a user runs it: its own LocalCluster,
    the same rows as without it, the usual summary and nothing else."""
    pytest.importorskip("distributed")
    args = ["--data", str(data), "--start", START, "--end", END]
    assert run(parse(*args, "--database", str(tmp_path / "a.duckdb")), CLOCK, io.StringIO()) == 0
    db = tmp_path / "b.duckdb"
    command = [sys.executable, "-m", "ticklake.cli", "backfill", *args, "--database", str(db)]
    done = subprocess.run(
        [*command, "--cluster", "local:2"], capture_output=True, text=True, cwd=tmp_path
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("backfilled 16 windows of 2 tickers (2024-04-16T14:00Z to ")
    assert done.stdout.count("\n") == 1
    theirs, ours = db_features(tmp_path / "a.duckdb"), db_features(db)
    assert ours.drop_columns(["computed_at"]).equals(theirs.drop_columns(["computed_at"]))
