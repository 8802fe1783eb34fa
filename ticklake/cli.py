"""The ``ticklake`` command: one entry point, one subcommand per ``ticklake/<name>_cmd.py``.

Settings come from ``ticklake.toml``, ``TICKLAKE_*`` variables and flags (see
:mod:`ticklake.config`); ``ticklake COMMAND --help`` lists each with its variable. This
module owns the flags every command has (``--config``, ``--log-level``, ``--log-format``,
``-q/--quiet``, accepted before the command and after it; ``--version``), the order of the
commands in ``--help``, their "examples:" epilogs (:mod:`ticklake.examples`), logging
(:mod:`ticklake.logs`) and the exit status of a command that is interrupted (130) or stops
with a message (a usage error, 2).

The settings of every command are checked for unknown names before parsing; their values
only once the command is known, so a bad ``TICKLAKE_*`` value breaks only the commands that
take that option.
"""

from __future__ import annotations

import argparse
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
    maintain_cmd,
    plot_cmd,
    record_cmd,
    replay_cmd,
    simulate_cmd,
    sql_cmd,
    status_cmd,
    tail_cmd,
    verify_cmd,
)
from ticklake.commands import USAGE_ERROR, Command, usage_error
from ticklake.config import (
    BadSetting,
    ConfigError,
    bad_setting,
    check_known,
    load_file,
    setting_default,
)
from ticklake.examples import epilog
from ticklake.logs import LOG_FORMAT, LOG_LEVEL, QUIET, configure, effective_level

__all__ = ["COMMANDS", "build_parser", "command_parsers", "main"]

COMMANDS: Final[tuple[Command, ...]] = tuple(
    module.COMMAND
    for module in (
        decode_cmd,
        record_cmd,
        analyze_cmd,
        sql_cmd,
        tail_cmd,
        plot_cmd,
        backfill_cmd,
        compact_cmd,
        maintain_cmd,
        status_cmd,
        verify_cmd,
        import_cmd,
        replay_cmd,
        simulate_cmd,
        demo_cmd,
    )
)
"""Every subcommand, in ``ticklake --help`` order."""
INTERRUPTED: Final = 130
LOGGING: Final = (LOG_LEVEL, LOG_FORMAT, QUIET)
"""The settings of every command, before or after its name."""


def _config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="settings file (default: ./ticklake.toml)"
    )


def _logging_flags(parser: argparse.ArgumentParser, file_values: Mapping[str, Any] | None) -> None:
    """``--log-level``, ``--log-format``, ``-q/--quiet``. Before the command (``file_values``
    given) their defaults fold in the file and the environment; after it (None) they are set
    only when given, so the value before the command stands otherwise."""
    for option in LOGGING:
        default: Any = argparse.SUPPRESS
        if file_values is not None:
            try:
                default = setting_default(option, file_values, os.environ)
            except ConfigError as exc:
                default = BadSetting(exc)
        shown = "" if option.default in (None, False) else f" (default: {option.default})"
        help_text = f"{option.help}{shown}; env {option.env}"
        if option is QUIET:
            action = parser.add_argument(
                "-q", QUIET.flag, dest=QUIET.name, action=argparse.BooleanOptionalAction
            )
            action.default, action.help = default, help_text  # argparse would add its own
            continue
        parser.add_argument(
            option.flag,
            dest=option.name,
            type=option.parse,
            choices=option.choices,
            metavar=option.metavar,
            default=default,
            help=help_text,
        )


class _HelpFormatter(argparse.HelpFormatter):
    """Argparse's own, but an "examples:" epilog keeps its lines as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "\n".join(indent + line for line in text.splitlines())
        return super()._fill_text(text, width, indent)


def build_parser(file_values: Mapping[str, Any]) -> argparse.ArgumentParser:
    """The parser of every command, defaults folding in ``file_values`` and the environment;
    raises ConfigError for a setting no command knows (a value that does not parse is left
    for :func:`ticklake.config.bad_setting`)."""
    check_known(
        [*LOGGING, *(option for command in COMMANDS for option in command.settings)],
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
    _logging_flags(parser, file_values)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # --config is read before parsing (it decides the defaults); each command accepts it too,
    # and the logging flags.
    common = argparse.ArgumentParser(add_help=False)
    _config_flag(common)
    _logging_flags(common, None)
    for command in COMMANDS:
        command_parser = sub.add_parser(
            command.name,
            parents=[common],
            help=command.help,
            description=command.description,
            epilog=epilog(command.name),
            formatter_class=_HelpFormatter,
        )
        command.add_arguments(command_parser, file_values)
        command_parser.set_defaults(handler=command.run)
    return parser


def command_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each command's own parser within ``parser`` (from :func:`build_parser`), by name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


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
    error = bad_setting(ns)
    if error is not None:
        return usage_error(ns.command, error)
    configure(effective_level(ns.command, ns.log_level, ns.quiet), ns.log_format)
    try:
        code: int = ns.handler(ns)
    except KeyboardInterrupt:
        return INTERRUPTED
    except SystemExit as exc:
        if not isinstance(exc.code, str):
            raise
        print(exc.code, file=sys.stderr, flush=True)  # stopped with a message: a usage error
        return USAGE_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
