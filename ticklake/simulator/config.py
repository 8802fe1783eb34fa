"""What the simulator serves and which faults it injects: a frozen dataclass and its CLI flags.

Each field is an option like any command's (:mod:`ticklake.config`): the flag ``--<field>``,
the variable ``TICKLAKE_SIM_<FIELD>`` and the ``ticklake.toml`` key ``sim_<field>`` (so a
simulator setting cannot be mistaken for a recorder's), named in ``--help``; a flag wins
over the environment, which wins over the file.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, Final

from ticklake.config import (
    BadSetting,
    Option,
    add_options,
    boolean,
    finite_float,
    integer,
)

__all__ = [
    "SIMULATOR_OPTIONS",
    "SimulatorConfig",
    "SimulatorConfigError",
    "add_arguments",
    "config_from_args",
]

_RATES = ("garbage_rate", "duplicate_rate", "disorder_rate", "late_rate", "other_type_rate")


class SimulatorConfigError(ValueError):
    """A simulator setting is out of range; the message names the flag and the valid range."""


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Simulator settings. Times are real seconds (the event loop's), rates are fractions of
    frames per connection, each fault drawn independently per frame."""

    host: str = "127.0.0.1"
    port: int = 0  # 0 = let the OS pick a free port (read it back from Simulator.port)
    rate: float = 1.0  # messages per second per subscribed symbol
    seed: int = 0
    max_symbols: int = 100  # per connection; further subscriptions are ignored
    drop_every: float | None = None  # abort each connection (no close frame) after N s
    stall_after: float | None = None  # after N s send no more data frames on a connection
    garbage_rate: float = 0.0  # frames replaced by undecodable garbage
    duplicate_rate: float = 0.0  # frames sent twice
    disorder_rate: float = 0.0  # event time 1-5 s older than the previous message's
    late_rate: float = 0.0  # event time 20-120 s in the past
    other_type_rate: float = 0.0  # extra v2 frames of a non-pricing type
    sent_log: Path | None = None  # JSON lines, one per frame sent
    burst: bool = False  # stream as fast as each socket accepts, ignoring rate (see burst.py)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SimulatorConfigError(
                f"--port must be 0-65535 (0 = any free port), not {self.port}"
            )
        if not self.rate > 0:
            raise SimulatorConfigError(f"--rate must be > 0 messages per second, not {self.rate}")
        if self.max_symbols < 1:
            raise SimulatorConfigError(f"--max-symbols must be >= 1, not {self.max_symbols}")
        for name in ("drop_every", "stall_after"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise SimulatorConfigError(f"--{_flag(name)} must be > 0 seconds, not {value}")
        for name in _RATES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise SimulatorConfigError(f"--{_flag(name)} must be within 0-1, not {value}")
        if self.burst:
            unsupported = [f"--{_flag(name)}" for name in _RATES if getattr(self, name)]
            unsupported += ["--sent-log"] if self.sent_log is not None else []
            if unsupported:
                raise SimulatorConfigError(
                    f"--burst sends only valid ticks and keeps no sent log; "
                    f"drop {', '.join(unsupported)} or --burst"
                )


def _flag(name: str) -> str:
    return name.replace("_", "-")


_HELP = {
    "host": "interface to listen on",
    "port": "TCP port; 0 picks a free one",
    "rate": "messages per second per subscribed symbol",
    "seed": "seed of the deterministic price walks and fault draws",
    "max_symbols": "subscribed symbols per connection; more are ignored",
    "drop_every": "abort every connection (no close frame) after this many seconds",
    "stall_after": "after this many seconds a connection stays open but sends no data",
    "garbage_rate": "fraction of frames replaced by undecodable garbage",
    "duplicate_rate": "fraction of frames sent twice",
    "disorder_rate": "fraction of ticks 1-5 s older than the previous one",
    "late_rate": "fraction of ticks 20-120 s in the past",
    "other_type_rate": "fraction of extra v2 frames of a non-pricing type",
    "sent_log": "append one JSON line per frame sent to this file",
    "burst": "ignore --rate: stream valid ticks as fast as each client reads (benchmarks)",
}
_PARSE: dict[str, Any] = {"host": str, "port": integer, "seed": integer, "max_symbols": integer}
_PARSE |= {"sent_log": Path, "burst": boolean}
_METAVARS = {"drop_every": "SECONDS", "stall_after": "SECONDS", "max_symbols": "N"}
_METAVARS |= {"rate": "PER_SECOND", "sent_log": "FILE"} | {name: "FRACTION" for name in _RATES}
PREFIX: Final = "sim_"

SIMULATOR_OPTIONS: Final = tuple(
    Option(
        PREFIX + field.name,
        _PARSE.get(field.name, finite_float),  # ranges: SimulatorConfig checks them
        None if field.default is MISSING else field.default,
        _HELP[field.name],
        _METAVARS.get(field.name, field.name.split("_")[-1].upper()),
        flag_name=field.name,
    )
    for field in fields(SimulatorConfig)
)
"""One option per ``SimulatorConfig`` field: ``sim_rate`` is ``--rate``, ``TICKLAKE_SIM_RATE``."""


def add_arguments(
    parser: argparse.ArgumentParser,
    file_values: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Add one flag per ``SimulatorConfig`` field, defaulting to its variable, else to its
    ``ticklake.toml`` key in ``file_values``."""
    add_options(parser, SIMULATOR_OPTIONS, file_values or {}, env)


def config_from_args(ns: argparse.Namespace) -> SimulatorConfig:
    """The config from parsed flags; raises SimulatorConfigError for a value out of range or
    a variable (or file value) that does not parse."""
    values = {}
    for option in SIMULATOR_OPTIONS:
        value = getattr(ns, option.name)
        if isinstance(value, BadSetting):
            raise SimulatorConfigError(str(value.error))
        values[option.name.removeprefix(PREFIX)] = value
    return SimulatorConfig(**values)
