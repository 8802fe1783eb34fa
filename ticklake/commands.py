"""What a ``ticklake`` command is, and how a command reports an error.

Each command module (``ticklake/<name>_cmd.py``) exposes one :class:`Command`: its name and
help, the settings it reads from ``ticklake.toml`` / ``TICKLAKE_*``, how it adds its
arguments and how it runs. :mod:`ticklake.cli` builds the parser from the list of them.

Errors go to stderr as one line, ``ticklake <command>: <message>`` (a message whose lines
all matter, like DuckDB's with its hint and caret, whole); a usage error (the request cannot
be served as given: a bad flag, a missing data directory) exits with :data:`USAGE_ERROR`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

from ticklake.config import Option

__all__ = [
    "USAGE_ERROR",
    "AddArguments",
    "Command",
    "Handler",
    "data_problem",
    "error_text",
    "first_line",
    "report_error",
    "usage_error",
]

USAGE_ERROR: Final = 2
"""Exit status of a request that cannot be served as given (argparse's own is 2 too)."""

AddArguments = Callable[[argparse.ArgumentParser, Mapping[str, Any]], None]
"""Adds a command's arguments; the mapping holds the ``ticklake.toml`` values."""
Handler = Callable[[argparse.Namespace], int]
"""Runs a command on its parsed arguments; returns the exit status."""


@dataclass(frozen=True)
class Command:
    """One subcommand of ``ticklake``, as ``ticklake --help`` and ``COMMAND --help`` show it.

    ``settings`` are the options it reads from the file and the environment (an unknown
    key or ``TICKLAKE_`` variable is an error, so every command declares its own);
    ``other_env`` names variables it reads by other means (the simulator's).
    """

    name: str
    help: str
    add_arguments: AddArguments
    run: Handler
    description: str | None = None
    settings: tuple[Option, ...] = ()
    other_env: tuple[str, ...] = ()


def first_line(message: object) -> str:
    """The first line of ``message`` (an exception's type name when its text is empty)."""
    text = str(message).strip()
    if text:
        return text.splitlines()[0]
    return type(message).__name__ if isinstance(message, BaseException) else ""


def error_text(command: str | None, message: object, *, whole: bool = False) -> str:
    """``ticklake <command>: <first line of message>`` (``ticklake: ...`` without one); with
    ``whole``, every line of the message."""
    prefix = "ticklake" if command is None else f"ticklake {command}"
    text = str(message).rstrip() if whole else ""
    return f"{prefix}: {text or first_line(message)}"


def report_error(
    command: str | None, message: object, err: TextIO | None = None, *, whole: bool = False
) -> None:
    """Print :func:`error_text` to ``err`` (stderr by default): one line unless ``whole``."""
    print(error_text(command, message, whole=whole), file=err or sys.stderr, flush=True)


def usage_error(command: str | None, message: object, err: TextIO | None = None) -> int:
    """Report ``message`` like :func:`report_error`; returns :data:`USAGE_ERROR` to exit with."""
    report_error(command, message, err)
    return USAGE_ERROR


def data_problem(data: Path) -> str | None:
    """Why a command cannot read the data directory ``data`` (it is missing, or not a
    directory); None when it can. Commands that only read one never create it."""
    if data.is_dir():
        return None
    return f"{data} is not a directory" if data.exists() else f"no data directory {data}"
