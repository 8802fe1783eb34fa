"""Where a command's log goes: one event per line on stderr, at the level asked for.

A text line is ``<time> <LEVEL> <logger> event=<name> key=value ...``; values are quoted as
:mod:`lake.logfmt` says. With ``--log-format json`` each line is one JSON object instead:
``time`` (ISO 8601 UTC with milliseconds and a ``Z``, as :func:`lake.utc.iso_utc` writes
it), ``level``, ``logger``, then the message's own ``key=value`` pairs as keys (``event``
first; bare numbers as numbers, see :func:`lake.logfmt.parse_logfmt`); a message that is not
logfmt goes whole under ``message``, a traceback under ``exception``. A field named like
one of the four keys before it is written with a ``field_`` prefix, so none is lost.

The settings come, like every setting, from a flag (before or after the command), a
``TICKLAKE_*`` variable or ``ticklake.toml``, in any case: ``--log-level`` (unset: WARNING
for the one-shot commands in :data:`ONE_SHOT`, which print their own progress and summary,
INFO for the others), ``--log-format`` and ``-q/--quiet`` (WARNING at most verbose, and no
progress lines: :func:`progress_stream`). Libraries that log their own routine at INFO
(APScheduler's "Adding job tentatively", "Scheduler started"; websockets' "server
listening") are held at WARNING unless the level is DEBUG. ``ticklake demo`` sends its log
to a file (:func:`logging_to_file`), so its console shows the windows.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, TextIO, cast

from lake.logfmt import parse_logfmt
from lake.utc import iso_utc
from ticklake.config import Option, boolean

__all__ = [
    "FORMATS",
    "LEVELS",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "ONE_SHOT",
    "QUIET",
    "QUIETED",
    "JsonFormatter",
    "configure",
    "effective_level",
    "log_format",
    "log_level",
    "logging_to_file",
    "progress_stream",
]

LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS: Final = ("text", "json")
ONE_SHOT: Final = frozenset({"import", "backfill", "replay", "compact", "maintain", "verify"})
"""Commands that do one job and end: their log is WARNING and up unless a level is asked for."""
QUIETED: Final = ("apscheduler", "websockets")
"""Libraries whose INFO lines are routine: their loggers log WARNING and above (at DEBUG: all)."""
FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"
RESERVED: Final = ("time", "level", "logger")


def log_level(text: str) -> str:
    """A level name in any case (``debug``, ``Info``); :data:`LEVELS` holds the valid ones."""
    return text.strip().upper()


def log_format(text: str) -> str:
    """A format name in any case (``JSON``); :data:`FORMATS` holds the valid ones."""
    return text.strip().lower()


LOG_LEVEL: Final = Option(
    "log_level",
    log_level,
    None,
    "log level: debug, info, warning or error (default: warning for import, backfill, "
    "replay, compact, maintain and verify, else info)",
    "LEVEL",
    LEVELS,
)
LOG_FORMAT: Final = Option(
    "log_format", log_format, "text", "log lines as text or json", "FORMAT", FORMATS
)
QUIET: Final = Option(
    "quiet", boolean, False, "log warnings and errors only, print no progress lines"
)


def effective_level(command: str | None, asked: str | None, quiet: bool) -> str:
    """The level a command logs at: ``asked`` (a flag, variable or file value), else WARNING
    for the :data:`ONE_SHOT` commands and INFO for the others; ``quiet`` never lets it go
    below WARNING."""
    level = asked or ("WARNING" if command in ONE_SHOT else "INFO")
    if quiet and LEVELS.index(level) < LEVELS.index("WARNING"):
        return "WARNING"
    return level


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        out: dict[str, Any] = {
            "time": iso_utc(int(record.created * 1000)),
            "level": record.levelname,
            "logger": record.name,
        }
        fields = parse_logfmt(message)
        if fields is None:
            out["message"] = message
        else:
            if "event" in fields:  # first after the record's own keys, for the eye
                out["event"] = fields.pop("event")
            for key, value in fields.items():
                out[f"field_{key}" if key in RESERVED else key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str)  # \u escapes: any handler can write it


def formatter(form: str) -> logging.Formatter:
    """The formatter of ``form`` (``text`` or ``json``)."""
    return JsonFormatter() if form == "json" else logging.Formatter(FORMAT)


def configure(level: str, form: str = "text") -> None:
    """Log ``level`` and above to stderr as ``form``; the :data:`QUIETED` libraries from
    WARNING up. Like ``logging.basicConfig``, leaves a root logger that already has handlers
    (a test's) as it is; the libraries' levels are set either way."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(form))
    logging.basicConfig(level=level, handlers=[handler])
    number = logging.getLevelName(level)
    quiet = number if number == logging.DEBUG else max(number, logging.WARNING)
    for name in QUIETED:
        logging.getLogger(name).setLevel(quiet)


def progress_stream(ns: argparse.Namespace, stream: TextIO) -> TextIO:
    """Where a command's progress lines go: ``stream``, or nowhere under ``--quiet``
    (summaries and results are not progress: they print whatever the flag)."""
    if getattr(ns, QUIET.name, False) is True:
        return cast(TextIO, _Discard())
    return stream


class _Discard(io.TextIOBase):
    """A text stream that keeps nothing (and is no terminal)."""

    def write(self, text: str) -> int:
        return len(text)


@contextlib.contextmanager
def logging_to_file(path: Path, console_level: int = logging.ERROR) -> Iterator[Path]:
    """While the block runs, every record goes to ``path`` too (in the format of the first
    handler already there, else text) and the handlers already there (stderr) show only
    ``console_level`` and above; restored afterwards."""
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    first = next((h.formatter for h in root.handlers if h.formatter is not None), None)
    handler.setFormatter(first if isinstance(first, JsonFormatter) else formatter("text"))
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
