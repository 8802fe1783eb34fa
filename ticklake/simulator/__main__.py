"""``python -m ticklake.simulator [flags]``: run the simulator until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from ticklake.logs import configure
from ticklake.simulator.config import (
    SimulatorConfig,
    SimulatorConfigError,
    add_arguments,
    config_from_args,
)
from ticklake.simulator.server import serve_forever


async def _serve_until_signalled(config: SimulatorConfig) -> None:
    """Serve; SIGINT or SIGTERM cancels serving, which closes connections and the sent log."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await serve_forever(config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ticklake.simulator",
        description="Serve a simulated Yahoo! Finance streamer on ws://HOST:PORT/.",
    )
    add_arguments(parser)
    ns = parser.parse_args(argv)
    try:
        config = config_from_args(ns)
    except SimulatorConfigError as exc:
        parser.error(str(exc))
    configure("INFO")
    asyncio.run(_serve_until_signalled(config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
