"""``ticklake record`` and ``ticklake replay``: options, wiring, signals."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from lake.symbols import SymbolError, parse_symbols
from recorder.feed import DEFAULT_URL, FeedConfig, FeedError
from recorder.journal import FsyncPolicy, JournalError, JournalLockedError
from recorder.recorder import Recorder, RecorderConfig
from recorder.replay import replay
from ticklake.config import (
    Option,
    boolean,
    non_negative_float,
    positive_float,
    positive_int,
)

log = logging.getLogger(__name__)


def tickers(text: str) -> tuple[str, ...]:
    try:
        return tuple(parse_symbols(text))
    except SymbolError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


DATA = Option("data", Path, Path("data"), "data directory: journal, lake, state, DuckDB file")
RECORD_OPTIONS = (
    Option("tickers", tickers, (), "symbols to record, comma separated (e.g. AMZN,^GSPC,BTC-USD)"),
    Option("url", str, DEFAULT_URL, "streamer URL (the simulator's for offline use)"),
    Option(
        "fsync",
        str,
        "group",
        "journal fsync policy: group (every group-commit-ms), always (every frame), os",
        choices=("group", "always", "os"),
    ),
    Option("group_commit_ms", positive_int, 200, "journal group-commit interval, ms"),
    Option("flush_interval", positive_float, 5.0, "seconds between flushes of the open minute"),
    Option("lateness", non_negative_float, 10.0, "seconds after a minute's end before it seals"),
    Option(
        "recompute_horizon", positive_float, 86400.0, "seconds late windows are kept for recompute"
    ),
    Option("journal_retention_days", positive_float, 30.0, "days of journal segments to keep"),
    Option("compress_journal", boolean, True, "zstd-compress rotated journal segments"),
    Option("max_backlog", positive_int, 500_000, "frames held in memory before reading back"),
    Option("symbols_per_connection", positive_int, 100, "symbols per WebSocket connection"),
    Option("resubscribe_every", positive_float, 15.0, "seconds between re-sent subscriptions"),
    Option("stale_after", positive_float, 60.0, "seconds of silence (open market) -> reconnect"),
)


ANALYTICS = Option(
    "analytics", boolean, True, "run the per-minute features job inside the recorder"
)


def recorder_config(ns: argparse.Namespace) -> RecorderConfig:
    if not ns.tickers:
        raise SystemExit("ticklake record: no tickers: pass --tickers AMZN,MSFT (or set them)")
    feed = FeedConfig(
        url=ns.url,
        symbols_per_connection=ns.symbols_per_connection,
        resubscribe_every=ns.resubscribe_every,
        stale_after=ns.stale_after,
    )
    return RecorderConfig(
        data=ns.data,
        tickers=ns.tickers,
        fsync=FsyncPolicy(ns.fsync),
        group_commit_ms=ns.group_commit_ms,
        flush_interval=ns.flush_interval,
        lateness=ns.lateness,
        recompute_horizon=ns.recompute_horizon,
        journal_retention_days=ns.journal_retention_days,
        compress_journal=ns.compress_journal,
        max_backlog=ns.max_backlog,
        feed=feed,
    )


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


def record(ns: argparse.Namespace) -> int:
    try:
        config = recorder_config(ns)
        recorder = Recorder(config)
    except FeedError as exc:
        print(f"ticklake record: {exc}", file=sys.stderr)
        return 2
    except JournalLockedError as exc:
        print(f"ticklake record: {exc}", file=sys.stderr)
        return 2
    except (JournalError, OSError) as exc:
        print(f"ticklake record: cannot open {ns.data}: {exc}", file=sys.stderr)
        return 2
    run_until_signal(lambda: _record_with_analytics(recorder, ns), recorder.stop)
    return 0


async def _record_with_analytics(recorder: Recorder, ns: argparse.Namespace) -> None:
    """The recorder, and (unless --analytics false) the per-minute job in the same loop."""
    if not ns.analytics:
        await recorder.run()
        return
    from analytics.scheduler import start_scheduler
    from ticklake.analyze_cmd import job_config

    scheduler = start_scheduler(recorder.config.data, job_config(ns), recorder.clock)
    try:
        await recorder.run()
    finally:
        await scheduler.stop()


def replay_cmd(ns: argparse.Namespace) -> int:
    start = None if ns.start is None else int(ns.start * 1e6)
    end = None if ns.end is None else int(ns.end * 1e6)
    try:
        stats = replay(ns.data, int(time.time() * 1000), start, end, ns.into)
    except JournalLockedError as exc:
        print(f"ticklake replay: {exc}", file=sys.stderr)
        return 2
    except (JournalError, OSError) as exc:
        print(f"ticklake replay: {exc}", file=sys.stderr)
        return 2
    print(
        f"replayed {stats.frames} frames into {ns.into or ns.data}: "
        f"{stats.ticks_added} ticks added, {stats.duplicates} already there, "
        f"{stats.bad_frames + stats.bad_symbols} quarantined"
    )
    return 0
