"""How a long-running command (``record``, ``analyze``) stops: SIGINT/SIGTERM ask it to,
a second signal exits at once."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["run_until_signal"]

log = logging.getLogger(__name__)


def run_until_signal(
    main: Callable[[], Coroutine[Any, Any, None]], stop: Callable[[], None]
) -> None:
    """Run ``main()``; SIGINT/SIGTERM call ``stop()`` once, a second signal exits at once."""

    async def runner() -> None:
        loop = asyncio.get_running_loop()
        stopping = False

        def on_signal() -> None:
            nonlocal stopping
            if stopping:
                log.warning("event=second_signal action=exit_now")
                sys.exit(1)
            stopping = True
            log.info("event=signal action=stop")
            stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        await main()

    asyncio.run(runner())
