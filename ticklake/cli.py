"""The ``ticklake`` command: one entry point, one subcommand per ``ticklake/<name>_cmd.py``.

Settings come from ``ticklake.toml``, ``TICKLAKE_*`` variables and flags (see
:mod:`ticklake.config`); ``ticklake COMMAND --help`` lists each with its variable. This
module owns the top-level flags (``--config``, ``--log-level``, ``--version``), the order
of the commands in ``--help``, logging and the exit status of an interrupted command.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from lake import failpoints
from ticklake import (
    __version__,
    analyze_cmd,
    backfill_cmd,
    compact_cmd,
    decode_cmd,
    demo_cmd,
    import_cmd,
    record_cmd,
    replay_cmd,
    simulate_cmd,
    sql_cmd,
    status_cmd,
)
from ticklake.commands import Command, usage_error
from ticklake.config import ConfigError, Option, add_options, check_known, load_file

__all__ = ["COMMANDS", "build_parser", "main"]

LOG_LEVEL: Final = Option(
    "log_level", str, "INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR")
)
COMMANDS: Final[tuple[Command, ...]] = tuple(
    module.COMMAND
    for module in (
        decode_cmd,
        record_cmd,
        analyze_cmd,
        sql_cmd,
        backfill_cmd,
        compact_cmd,
        status_cmd,
        import_cmd,
        replay_cmd,
        simulate_cmd,
        demo_cmd,
    )
)
"""Every subcommand, in ``ticklake --help`` order."""
INTERRUPTED: Final = 130


def _config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="settings file (default: ./ticklake.toml)"
    )


def build_parser(file_values: Mapping[str, Any]) -> argparse.ArgumentParser:
    """The parser of every command, defaults folding in ``file_values`` and the environment;
    raises ConfigError for a setting no command knows or a value that does not parse."""
    check_known(
        [LOG_LEVEL, *(option for command in COMMANDS for option in command.settings)],
        file_values,
        os.environ,
        [failpoints.ENV, *(name for command in COMMANDS for name in command.other_env)],
    )
    parser = argparse.ArgumentParser(
        prog="ticklake",
        description="Record Yahoo! Finance's live prices into a Parquet lake; "
        "one-minute features in DuckDB.",
    )
    parser.add_argument("--version", action="version", version=f"ticklake {__version__}")
    _config_flag(parser)
    add_options(parser, [LOG_LEVEL], file_values)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # --config is read before parsing (it decides the defaults); each command accepts it too.
    config_flag = argparse.ArgumentParser(add_help=False)
    _config_flag(config_flag)
    for command in COMMANDS:
        command_parser = sub.add_parser(
            command.name,
            parents=[config_flag],
            help=command.help,
            description=command.description,
        )
        command.add_arguments(command_parser, file_values)
        command_parser.set_defaults(handler=command.run)
    return parser


def _config_path(argv: Sequence[str]) -> Path | None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path)
    known, _ = pre.parse_known_args(argv)
    path: Path | None = known.config
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: the process's), run the command; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        file_values = load_file(_config_path(args))
        parser = build_parser(file_values)
    except ConfigError as exc:
        return usage_error(None, exc)
    ns = parser.parse_args(args)
    logging.basicConfig(
        level=ns.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        code: int = ns.handler(ns)
    except KeyboardInterrupt:
        return INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
