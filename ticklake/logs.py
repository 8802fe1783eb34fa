"""Where a command's log goes: one event per line on stderr, at the ``--log-level`` asked for.

A line is ``<time> <LEVEL> <logger> event=<name> key=value ...``; values are quoted as
:mod:`lake.logfmt` says. The level comes, like every setting, from ``--log-level`` (before
or after the command), ``TICKLAKE_LOG_LEVEL`` or ``ticklake.toml``, in any case
(``debug``). Libraries that log their own routine at INFO (APScheduler's "Adding job
tentatively", "Scheduler started"; websockets' "server listening") are held at WARNING
unless the level is DEBUG. ``ticklake demo`` sends its log to a file
(:func:`logging_to_file`), so its console shows the windows.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from ticklake.config import Option

__all__ = ["LEVELS", "LOG_LEVEL", "QUIETED", "configure", "log_level", "logging_to_file"]

LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")
QUIETED: Final = ("apscheduler", "websockets")
"""Libraries whose INFO lines are routine: their loggers log WARNING and above (at DEBUG: all)."""
FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"


def log_level(text: str) -> str:
    """A level name in any case (``debug``, ``Info``); :data:`LEVELS` holds the valid ones."""
    return text.strip().upper()


LOG_LEVEL: Final = Option(
    "log_level", log_level, "INFO", "log level: debug, info, warning or error", "LEVEL", LEVELS
)


def configure(level: str) -> None:
    """Log ``level`` and above to stderr; the :data:`QUIETED` libraries from WARNING up."""
    logging.basicConfig(level=level, stream=sys.stderr, format=FORMAT)
    number = logging.getLevelName(level)
    quiet = number if number == logging.DEBUG else max(number, logging.WARNING)
    for name in QUIETED:
        logging.getLogger(name).setLevel(quiet)


@contextlib.contextmanager
def logging_to_file(path: Path, console_level: int = logging.ERROR) -> Iterator[Path]:
    """While the block runs, every record goes to ``path`` too and the handlers already there
    (stderr) show only ``console_level`` and above; restored afterwards."""
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    saved = [(existing, existing.level) for existing in root.handlers]
    for existing, level in saved:
        existing.setLevel(max(level, console_level))
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()
        for existing, level in saved:
            existing.setLevel(level)
