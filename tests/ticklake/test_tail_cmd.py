"""``ticklake tail`` on a real lake and database written by the job: new windows printed
once, late recomputations and rewrites marked, nothing held between polls, a missing
database waited for, and the command itself (another process) stopped by SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from analytics.backfill import BackfillConfig, backfill
from analytics.database import DatabaseMissingError, database_path
from analytics.job import JobConfig, run_once
from lake.clock import ManualClock
from lake.utc import MINUTE_MS as MIN
from tests.kit.lake import seal, write_lake
from tests.kit.ticks import Feed
from tests.kit.times import T0
from ticklake.tail_cmd import Tail, follow, render

TICKERS = ("AMZN", "EURUSD=X")


def minute(data: Path, feed: Feed, k: int) -> None:
    """Ticks of both tickers in minute ``k`` after T0, sealed and computed by the job."""
    start = T0 + k * MIN
    write_lake(data, [feed.ticks("AMZN", start, 1, 4), feed.ticks("EURUSD=X", start, 1, 4)])
    seal(data, start + MIN)
    assert run_once(data, ManualClock(start / 1000 + 72), JobConfig()).done


def keys(table: pa.Table) -> list[tuple[str, int]]:
    starts = table["window_start"].cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())
    return list(zip(table["ticker"].to_pylist(), starts.to_pylist(), strict=True))


@pytest.fixture
def feed() -> Feed:
    return Feed(5)


def test_new_windows_once_then_late_and_rewritten_ones_marked(tmp_path: Path, feed: Feed) -> None:
    minute(tmp_path, feed, 0)
    tail = Tail(tmp_path, database_path(tmp_path))
    tail.start()
    assert tail.poll()[0].num_rows == 0  # what was there before the tail started
    minute(tmp_path, feed, 1)
    table, again = tail.poll()
    assert keys(table) == [("AMZN", T0 + MIN), ("EURUSD=X", T0 + MIN)] and again == [False] * 2
    assert tail.poll()[0].num_rows == 0  # read back, not printed again
    duckdb.connect(str(database_path(tmp_path))).close()  # nothing held between polls

    write_lake(tmp_path, [feed.ticks("AMZN", T0, 1, 1, delay_s=90)])  # a late tick, minute 0
    seal(tmp_path, T0 + 3 * MIN, late=[("AMZN", T0)])
    assert run_once(tmp_path, ManualClock(T0 / 1000 + 192), JobConfig()).done
    table, again = tail.poll()
    # minute 0 recomputed (late), and minute 1, whose volume chains from minute 0's last
    # reading: marked as late, and as printed before
    assert keys(table) == [("AMZN", T0), ("AMZN", T0 + MIN)] and again == [True, True]
    assert table["late"].to_pylist() == [True, False]

    backfill(tmp_path, BackfillConfig(T0 + MIN, T0 + 2 * MIN), ManualClock(T0 / 1000 + 300))
    table, again = tail.poll()  # the same windows, written again: marked
    assert keys(table) == [("AMZN", T0 + MIN), ("EURUSD=X", T0 + MIN)] and again == [True] * 2
    assert not any(table["late"].to_pylist())


def test_only_the_tickers_asked_for(tmp_path: Path, feed: Feed) -> None:
    minute(tmp_path, feed, 0)
    tail = Tail(tmp_path, database_path(tmp_path), tickers=("EURUSD=X",))
    tail.start()
    minute(tmp_path, feed, 1)
    minute(tmp_path, feed, 2)
    assert keys(tail.poll()[0]) == [("EURUSD=X", T0 + MIN), ("EURUSD=X", T0 + 2 * MIN)]


def test_a_missing_database_is_waited_for_and_then_read_whole(tmp_path: Path, feed: Feed) -> None:
    write_lake(tmp_path, [feed.ticks("AMZN", T0, 1, 4)])
    tail = Tail(tmp_path, database_path(tmp_path))
    tail.start()
    with pytest.raises(DatabaseMissingError):
        tail.poll()
    minute(tmp_path, feed, 1)  # the job creates the database: minutes 0 and 1
    table, again = tail.poll()
    assert keys(table) == [("AMZN", T0), ("AMZN", T0 + MIN), ("EURUSD=X", T0 + MIN)]
    assert again == [False] * 3


def test_lines_as_demo_prints_them_or_json(tmp_path: Path, feed: Feed) -> None:
    minute(tmp_path, feed, 0)
    table, again = Tail(tmp_path, database_path(tmp_path)).poll()  # not started: every row
    lines = render(table, [False, True], "table")
    assert lines[0].startswith("14:00-14:01 UTC  AMZN") and not lines[0].endswith("late")
    assert lines[1].startswith("14:00-14:01 UTC  EURUSD=X") and lines[1].endswith("  late")
    rows = [json.loads(line) for line in render(table, again, "json")]
    assert [r["ticker"] for r in rows] == list(TICKERS)
    assert rows[0]["window_start"] == "2024-04-16T14:00:00.000Z" and rows[0]["recomputed"] is False
    assert rows[0]["close"] == table["close"][0].as_py()


def test_follow_writes_until_stopped(tmp_path: Path, feed: Feed) -> None:
    minute(tmp_path, feed, 0)
    tail = Tail(tmp_path, database_path(tmp_path))
    tail.start()
    lines: list[str] = []
    stop = threading.Event()
    thread = threading.Thread(target=follow, args=(tail, "json", 0.05, stop, lines.append))
    thread.start()
    try:
        minute(tmp_path, feed, 1)  # the job gets in while the tail polls
        deadline = time.monotonic() + 20
        while len(lines) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert [json.loads(line)["ticker"] for line in lines] == list(TICKERS)


TAIL = """
import argparse, sys
from ticklake import tail_cmd
parser = argparse.ArgumentParser()
tail_cmd.add_arguments(parser, {})
sys.exit(tail_cmd.run(parser.parse_args(sys.argv[1:])))
"""


def test_the_command_in_another_process(tmp_path: Path, feed: Feed) -> None:
    minute(tmp_path, feed, 0)
    args = ["--data", str(tmp_path), "--format", "json", "--interval", "0.1"]
    proc = subprocess.Popen(
        [sys.executable, "-c", TAIL, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)  # started: what is there now is not printed
        minute(tmp_path, feed, 1)
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        second = json.loads(proc.stdout.readline())
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert [first["ticker"], second["ticker"]] == list(TICKERS) and out == ""
    assert first["window_start"] == "2024-04-16T14:01:00.000Z"
