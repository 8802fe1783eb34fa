"""ticklake.logs: third-party INFO chatter held at WARNING, the demo's log in a file."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from ticklake.logs import QUIETED, configure, log_level, logging_to_file


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
