"""``ticklake simulate``: the built-in stand-in for Yahoo's streamer, served until
SIGINT/SIGTERM. Its flags, ``TICKLAKE_SIM_*`` variables and ``sim_*`` keys of
``ticklake.toml`` are :mod:`ticklake.simulator.config`'s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Mapping
from typing import Any, Final

from ticklake.commands import Command, usage_error
from ticklake.simulator import SimulatorConfigError, config_from_args, serve_forever
from ticklake.simulator.config import SIMULATOR_OPTIONS
from ticklake.simulator.config import add_arguments as add_simulator_arguments

__all__ = ["COMMAND", "run"]

NAME: Final = "simulate"


def add_arguments(parser: argparse.ArgumentParser, file_values: Mapping[str, Any]) -> None:
    """The simulator's flags, defaulting to ``TICKLAKE_SIM_*`` and ``sim_*`` settings."""
    add_simulator_arguments(parser, file_values)


def run(ns: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM (exit 0); 2 for an out-of-range setting."""
    try:
        config = config_from_args(ns)
    except SimulatorConfigError as exc:
        return usage_error(NAME, exc)

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # SIGTERM shuts down like Ctrl-C
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(config))
    return 0


COMMAND: Final = Command(
    name=NAME,
    help="serve a simulated Yahoo streamer on 127.0.0.1 (offline demo, tests, benchmarks)",
    description="Serve a faithful stand-in for wss://streamer.finance.yahoo.com: v1 at /, "
    "v2 at /?version=2, seeded random walks per symbol, optional fault injection.",
    add_arguments=add_arguments,
    run=run,
    settings=SIMULATOR_OPTIONS,
)
