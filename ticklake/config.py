"""Options: each defined once, settable from ``ticklake.toml``, ``TICKLAKE_*`` or a flag.

Precedence, lowest to highest: the built-in default, the TOML file (``--config FILE``, else
``./ticklake.toml`` when present), the environment (``TICKLAKE_FLUSH_INTERVAL=2``), the
command-line flag (``--flush-interval 2``). Every ``--help`` line names its variable.

Invariants: an unknown key in the TOML file or a ``TICKLAKE_`` variable that names no option
of any command is an error, never silently ignored (a typo must not read as "unset"); so is
a file with settings both in a ``[ticklake]`` table and at the top level (one of the two
would be ignored). A value that does not parse, or a number that is not finite (``inf``,
``nan``), is a one-line error naming where it came from, raised only for a command that
takes that option (:class:`BadSetting`), so one bad variable never breaks other commands.
Every converter raises ``argparse.ArgumentTypeError`` with its own message, which argparse
prints as is (it would replace a ``ValueError``'s by ``invalid <function> value``). An
on/off option is a ``--x/--no-x`` switch; its file and environment values are true/false
(also 1/0, yes/no, on/off).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "TICKLAKE_"
DEFAULT_FILE = Path("ticklake.toml")


class ConfigError(ValueError):
    """A setting that cannot be used; the message says which and where it came from."""


@dataclass(frozen=True)
class Option:
    """One setting: ``name`` is the TOML key; the flag and variable derive from it."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    flag_name: str | None = None
    """The flag's name when it is not ``name`` (the simulator's ``--rate`` sets ``sim_rate``)."""

    @property
    def flag(self) -> str:
        return "--" + (self.flag_name or self.name).replace("_", "-")

    @property
    def switch(self) -> bool:
        """An on/off option: the flags ``--x`` and ``--no-x``, no value."""
        return self.parse is boolean

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


def finite_float(text: str) -> float:
    """A number; ``inf`` and ``nan`` are refused (no duration or size is infinite here)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def non_negative_float(text: str) -> float:
    value = finite_float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def positive_int(text: str) -> int:
    value = integer(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def non_negative_int(text: str) -> int:
    value = integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def boolean(text: str) -> bool:
    """true/false, 1/0, yes/no or on/off, in any case."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def _parsed(option: Option, raw: Any, where: str) -> Any:
    text = str(raw).lower() if isinstance(raw, bool) else str(raw)
    if isinstance(raw, list):
        text = ",".join(str(item) for item in raw)
    try:
        value = option.parse(text)
    except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
        raise ConfigError(f"{where}: bad value for {option.name}: {exc}") from None
    if option.choices and value not in option.choices:
        raise ConfigError(f"{where}: {option.name} must be one of {', '.join(option.choices)}")
    return value


def load_file(path: Path | None) -> dict[str, Any]:
    """The TOML settings: a ``[ticklake]`` table or top-level keys, never both (ConfigError
    naming the top-level ones); {} without a file."""
    if path is None:
        if not DEFAULT_FILE.is_file():
            return {}
        path = DEFAULT_FILE
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    table = data.get("ticklake", data)
    if not isinstance(table, dict):
        raise ConfigError(f"config {path}: [ticklake] must be a table")
    top = sorted(str(key) for key in data if key != "ticklake")
    if table is not data and top:
        raise ConfigError(
            f"config {path}: settings both in [ticklake] and at the top level "
            f"({', '.join(top)}): put them all in one of the two"
        )
    return {str(k).replace("-", "_"): v for k, v in table.items()}


def check_known(
    options: Iterable[Option],
    file_values: Mapping[str, Any],
    env: Mapping[str, str],
    other_env: Iterable[str] = (),
) -> None:
    """Reject TOML keys and TICKLAKE_ variables that name no option of any command (their
    values are checked later, by the commands that take them: :class:`BadSetting`).

    ``other_env`` lists variables read elsewhere (the failpoints' ``TICKLAKE_FAILPOINT``).
    """
    names = {option.name for option in options}
    known_env = {ENV_PREFIX + name.upper() for name in names} | set(other_env)
    for key in file_values:
        if key not in names:
            raise ConfigError(f"config file: unknown setting {key!r}")
    for key in env:
        if key.startswith(ENV_PREFIX) and key not in known_env:
            raise ConfigError(f"environment: unknown variable {key}")


@dataclass(frozen=True)
class BadSetting:
    """The default of a flag whose file or environment value does not parse.

    A flag given on the command line replaces it; otherwise :func:`bad_setting` finds it once
    the command is known, so only the commands that take the option fail."""

    error: ConfigError


def bad_setting(ns: argparse.Namespace) -> ConfigError | None:
    """The error of the first setting of ``ns`` still holding a :class:`BadSetting`."""
    for value in vars(ns).values():
        if isinstance(value, BadSetting):
            return value.error
    return None


def add_options(
    parser: argparse.ArgumentParser,
    options: Iterable[Option],
    file_values: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
) -> None:
    """Add each option as a flag whose default already folds in the file and environment
    (a :class:`BadSetting` when that value does not parse)."""
    env = os.environ if env is None else env
    for option in options:
        try:
            default = setting_default(option, file_values, env)
        except ConfigError as exc:
            default = BadSetting(exc)
        shown = "" if option.default is None else f" (default: {_shown(option.default)})"
        help_text = f"{option.help}{shown}; env {option.env}"
        if option.switch:
            action = parser.add_argument(
                option.flag,
                dest=option.name,
                action=argparse.BooleanOptionalAction,
                default=default,
            )
            action.help = help_text  # set after: argparse would append its own default
            continue
        parser.add_argument(
            option.flag,
            dest=option.name,
            type=option.parse,
            default=default,
            metavar=option.metavar,
            choices=option.choices,
            help=help_text,
        )


def setting_default(option: Option, file_values: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    """The option's value before flags: the environment's, else the file's, else its default;
    ConfigError when that value does not parse."""
    if option.env in env:
        return _parsed(option, env[option.env], f"environment {option.env}")
    if option.name in file_values:
        return _parsed(option, file_values[option.name], "config file")
    return option.default


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


def utc_time(text: str) -> float:
    """Epoch seconds from ISO-8601 (``2026-11-25``, ``2026-11-25T14:30``, ``...Z``); naive = UTC."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 date or time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()
