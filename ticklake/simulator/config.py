"""What the simulator serves and which faults it injects: a frozen dataclass and its CLI flags.

Every flag falls back to an environment variable (``TICKLAKE_SIM_<FLAG>``, named in
``--help``); a flag given on the command line wins over the environment.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields
from pathlib import Path

from ticklake.config import boolean

__all__ = ["SimulatorConfig", "SimulatorConfigError", "add_arguments", "config_from_args"]

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


def _env(name: str) -> str:
    return f"TICKLAKE_SIM_{name.upper()}"


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
_TYPES: dict[str, type] = {"host": str, "port": int, "seed": int, "max_symbols": int}
_METAVARS = {"drop_every": "SECONDS", "stall_after": "SECONDS", "max_symbols": "N"}
_METAVARS |= {"rate": "PER_SECOND", "sent_log": "FILE"} | {name: "FRACTION" for name in _RATES}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per ``SimulatorConfig`` field, each defaulting to its environment variable."""
    defaults = SimulatorConfig()
    for field in fields(SimulatorConfig):
        name = field.name
        if name == "burst":
            _add_switch(parser, name, defaults.burst)
            continue
        kind = Path if name == "sent_log" else _TYPES.get(name, float)
        default = getattr(defaults, name)
        shown = "unset" if default is None else default
        parser.add_argument(
            f"--{_flag(name)}",
            dest=name,
            type=kind,
            # argparse converts a string default with ``type``, so a bad variable is reported
            # like a bad flag.
            default=os.environ.get(_env(name), default),
            metavar=_METAVARS.get(name, name.split("_")[-1].upper()),
            help=f"{_HELP[name]} (env {_env(name)}, default {shown})",
        )


def _add_switch(parser: argparse.ArgumentParser, name: str, default: bool) -> None:
    """An on/off flag (``--burst``/``--no-burst``); its variable takes true/false, 1/0,
    yes/no or on/off, checked by :func:`config_from_args` like any other value."""
    parser.add_argument(
        f"--{_flag(name)}",
        dest=name,
        action=argparse.BooleanOptionalAction,
        default=os.environ.get(_env(name), default),
        help=f"{_HELP[name]} (env {_env(name)}, default {default})",
    )


def config_from_args(ns: argparse.Namespace) -> SimulatorConfig:
    """The config from parsed flags; raises SimulatorConfigError for out-of-range values."""
    values = {field.name: getattr(ns, field.name) for field in fields(SimulatorConfig)}
    if isinstance(values["burst"], str):  # from the environment, not yet parsed
        try:
            values["burst"] = boolean(values["burst"])
        except ValueError as exc:
            raise SimulatorConfigError(f"{_env('burst')}: {exc}") from None
    return SimulatorConfig(**values)
