"""The session log on real files (durable lines, torn tails, numbering across restarts) and
the coverage gaps computed from it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lake.sessions import Session, SessionLog, SessionLogError, gaps, read_sessions


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_start_and_end_lines_are_on_disk_before_the_call_returns(tmp_path: Path) -> None:
    path = tmp_path / "state" / "sessions.jsonl"
    log = SessionLog(path)
    number = log.start(1, "ws://x/?version=2", ["AMZN", "^GSPC"], 100.0)
    assert lines(path) == [  # readable while the log is still open: flushed
        {
            "connection": 1,
            "session": number,
            "url": "ws://x/?version=2",
            "symbols": ["AMZN", "^GSPC"],
            "start": 100.0,
            "end": None,
            "reason": None,
        }
    ]
    log.end(number, 161.5, "stale: no data for 61 s")
    assert lines(path)[1]["end"] == 161.5
    assert lines(path)[1]["reason"] == "stale: no data for 61 s"
    assert lines(path)[1]["symbols"] == ["AMZN", "^GSPC"]
    log.close()


def test_read_sessions_merges_start_and_end_lines(tmp_path: Path) -> None:
    path = tmp_path / "sessions.jsonl"
    log = SessionLog(path)
    a = log.start(1, "u", ["A"], 10.0)
    b = log.start(2, "u", ["B"], 11.0)
    log.end(a, 20.0, "dropped: no close frame received or sent")
    c = log.start(1, "u", ["A"], 21.0)
    log.end(c, 30.0, "stopped")
    log.close()
    assert read_sessions(path) == [
        Session(1, a, "u", ("A",), 10.0, 20.0, "dropped: no close frame received or sent"),
        Session(2, b, "u", ("B",), 11.0, None, None),  # the process died: end unknown
        Session(1, c, "u", ("A",), 21.0, 30.0, "stopped"),
    ]


def test_numbers_continue_across_restarts_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "sessions.jsonl"
    log = SessionLog(path)
    first = log.start(1, "u", ["A"], 10.0)
    log.close()
    with path.open("a") as file:
        file.write('{"connection": 1, "session": 1, "url": "u", "sym')  # torn by a crash
    log = SessionLog(path)
    second = log.start(1, "u", ["A"], 50.0)
    log.end(second, 60.0, "stopped")
    log.close()
    assert second > first
    sessions = read_sessions(path)
    assert [(s.session, s.start, s.end) for s in sessions] == [
        (first, 10.0, None),
        (second, 50.0, 60.0),
    ]
    assert path.read_text().count("\n") == 4  # the torn line got its own line ending


def test_missing_log_has_no_sessions(tmp_path: Path) -> None:
    assert read_sessions(tmp_path / "nope.jsonl") == []


def s(start: float, end: float | None, symbols: tuple[str, ...] = ("A",), n: int = 1) -> Session:
    return Session(1, n, "u", symbols, start, end, None if end is None else "dropped: x")


def test_no_session_means_the_whole_range_is_a_gap() -> None:
    assert gaps([], "A", 0.0, 60.0) == [(0.0, 60.0)]
    assert gaps([s(0.0, 100.0, ("B",))], "A", 0.0, 60.0) == [(0.0, 60.0)]


def test_gaps_between_and_around_sessions() -> None:
    sessions = [s(10.0, 20.0, n=1), s(25.0, 40.0, n=2)]
    assert gaps(sessions, "A", 0.0, 60.0) == [(0.0, 10.0), (20.0, 25.0), (40.0, 60.0)]
    assert gaps(sessions, "A", 12.0, 18.0) == []
    assert gaps(sessions, "A", 15.0, 30.0) == [(20.0, 25.0)]
    assert gaps(sessions, "A", 40.0, 40.0) == []


def test_adjacent_and_overlapping_sessions_leave_no_gap() -> None:
    sessions = [s(0.0, 30.0, n=1), s(30.0, 45.0, n=2), s(40.0, 70.0, n=3)]
    assert gaps(sessions, "A", 0.0, 60.0) == []


def test_a_session_of_unknown_end_lasts_until_the_next_one_or_open_until() -> None:
    sessions = [s(0.0, None, n=1), s(50.0, None, n=2)]
    assert gaps(sessions, "A", 0.0, 100.0) == []  # newest still open: covers to the end
    assert gaps(sessions, "A", 0.0, 100.0, open_until=80.0) == [(80.0, 100.0)]
    crashed = [s(0.0, None, n=1)]
    assert gaps(crashed, "A", 0.0, 100.0, open_until=30.0) == [(30.0, 100.0)]
    assert gaps(crashed, "A", 0.0, 100.0, open_until=math.inf) == []


def test_only_sessions_carrying_the_symbol_count() -> None:
    sessions = [s(0.0, 50.0, ("A", "B"), n=1), s(50.0, 100.0, ("B",), n=2)]
    assert gaps(sessions, "A", 0.0, 100.0) == [(50.0, 100.0)]
    assert gaps(sessions, "B", 0.0, 100.0) == []


def test_gaps_refuses_a_reversed_range() -> None:
    with pytest.raises(ValueError, match="before start"):
        gaps([], "A", 10.0, 0.0)


def test_gaps_from_a_log_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "sessions.jsonl"
    log = SessionLog(path)
    first = log.start(1, "u", ["BTC-USD"], 1000.0)
    log.end(first, 1030.0, "dropped: no close frame received or sent")
    log.start(1, "u", ["BTC-USD"], 1032.5)
    log.close()
    assert gaps(read_sessions(path), "BTC-USD", 960.0, 1080.0) == [
        (960.0, 1000.0),
        (1030.0, 1032.5),
    ]


def test_a_failed_write_is_counted_and_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = SessionLog(tmp_path / "sessions.jsonl")
    log.close()  # every further write fails
    number = log.start(1, "u", ["A"], 1.0)
    log.end(number, 2.0, "stopped")
    assert log.write_errors == 2
    assert "event=session_log_failed" in caplog.text


def test_an_unopenable_log_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SessionLogError, match="cannot open session log"):
        SessionLog(tmp_path / "file" / "sessions.jsonl")
