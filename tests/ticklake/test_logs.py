"""ticklake.logs: third-party INFO chatter held at WARNING, the demo's log in a file, JSON
lines, the level each command logs at, --quiet."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ticklake.logs import (
    QUIETED,
    JsonFormatter,
    configure,
    effective_level,
    log_level,
    logging_to_file,
    progress_stream,
)


@pytest.fixture
def quieted_levels() -> Iterator[None]:
    saved = {name: logging.getLogger(name).level for name in QUIETED}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def test_libraries_log_warnings_and_up_unless_the_level_is_debug(quieted_levels: None) -> None:
    configure("INFO")
    scheduler = logging.getLogger("apscheduler.scheduler")
    assert not scheduler.isEnabledFor(logging.INFO)  # "Adding job tentatively"
    assert scheduler.isEnabledFor(logging.WARNING)
    assert not logging.getLogger("websockets.server").isEnabledFor(logging.INFO)
    configure("ERROR")
    assert not scheduler.isEnabledFor(logging.WARNING)  # never below the level asked for
    configure("DEBUG")
    assert scheduler.isEnabledFor(logging.DEBUG)


def test_a_level_in_any_case() -> None:
    assert [log_level(t) for t in ("debug", "Info", " WARNING ")] == ["DEBUG", "INFO", "WARNING"]


def test_logging_to_file_keeps_only_errors_on_the_console(tmp_path: Path) -> None:
    root = logging.getLogger()
    console = logging.StreamHandler()
    console.setLevel(logging.NOTSET)
    root.addHandler(console)
    old_level = root.level
    root.setLevel(logging.INFO)
    log = logging.getLogger("ticklake.test_logs")
    try:
        with logging_to_file(tmp_path / "demo.log") as path:
            assert console.level == logging.ERROR
            log.info("event=sim_connect connection=1 version=2")
        assert console.level == logging.NOTSET  # restored
        log.info("event=after")
    finally:
        root.removeHandler(console)
        root.setLevel(old_level)
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and lines[0].endswith(
        "INFO ticklake.test_logs event=sim_connect connection=1 version=2"
    )


def _record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord(
        "recorder.feed", logging.WARNING, __file__, 1, message, args, exc_info
    )
    record.created = 1_713_276_945.123456  # 2024-04-16T14:15:45.123Z
    return record


def test_json_lines_carry_the_events_fields_with_numbers_as_numbers() -> None:
    line = JsonFormatter().format(
        _record("event=reconnect conn=%d wait_s=%.2f reason=%s", 3, 1.5, '"closed: bye"')
    )
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "2024-04-16T14:15:45.123Z",
        "level": "WARNING",
        "logger": "recorder.feed",
        "event": "reconnect",
        "conn": 3,
        "wait_s": 1.5,
        "reason": "closed: bye",
    }
    assert line.startswith(
        '{"time": "2024-04-16T14:15:45.123Z", "level": "WARNING", '
        '"logger": "recorder.feed", "event": "reconnect"'
    )


def test_json_lines_keep_a_plain_message_a_clashing_field_and_a_traceback() -> None:
    plain = json.loads(JsonFormatter().format(_record("Scheduler started")))
    assert plain["message"] == "Scheduler started" and "event" not in plain
    clash = json.loads(JsonFormatter().format(_record("event=x level=3 time=now")))
    assert (clash["level"], clash["field_level"], clash["field_time"]) == ("WARNING", 3, "now")
    failed = JsonFormatter().format(_record("event=maintenance_failed", exc=True))
    assert "\n" not in failed
    exception = json.loads(failed)["exception"]
    assert exception.startswith("Traceback") and exception.endswith("ValueError: boom")


@pytest.mark.parametrize(
    ("command", "asked", "quiet", "level"),
    [
        ("backfill", None, False, "WARNING"),  # a one-shot command: its own progress is enough
        ("verify", None, False, "WARNING"),
        ("record", None, False, "INFO"),
        ("tail", None, False, "INFO"),
        ("import", "INFO", False, "INFO"),  # asked for: wins
        ("record", "DEBUG", False, "DEBUG"),
        ("record", None, True, "WARNING"),  # quiet: never below WARNING
        ("record", "DEBUG", True, "WARNING"),
        ("compact", "ERROR", True, "ERROR"),
    ],
)
def test_the_level_a_command_logs_at(
    command: str, asked: str | None, quiet: bool, level: str
) -> None:
    assert effective_level(command, asked, quiet) == level


def test_quiet_sends_progress_nowhere() -> None:
    err = io.StringIO()
    assert progress_stream(argparse.Namespace(quiet=False), err) is err
    assert progress_stream(argparse.Namespace(), err) is err  # a test's own Namespace
    sink = progress_stream(argparse.Namespace(quiet=True), err)
    assert sink is not err and not sink.isatty()
    print("[#####-----]  50%", file=sink)
    assert err.getvalue() == ""


def _ticklake(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TICKLAKE_")}
    return subprocess.run(
        [sys.executable, "-m", "ticklake.cli", *args],
        cwd=cwd,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_one_shot_command_logs_json_lines_only_when_asked_for_info(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    loud = _ticklake(
        "maintain",
        "--data",
        "data",
        "--log-level",
        "info",
        cwd=tmp_path,
        TICKLAKE_LOG_FORMAT="JSON",
    )
    assert loud.returncode == 0, loud.stderr
    assert loud.stdout.startswith("compacted 0 days")  # the summary, on stdout as before
    events = [json.loads(line) for line in loud.stderr.splitlines()]  # every line is JSON
    done = next(e for e in events if e.get("event") == "maintenance_done")
    assert done["logger"] == "recorder.maintenance_job" and done["failures"] == 0
    assert done["time"].endswith("Z")
    quiet = _ticklake("--log-format", "json", "maintain", "--data", "data", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == ""  # WARNING by default: nothing to say
    assert quiet.stdout == loud.stdout
