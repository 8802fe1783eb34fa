"""``ticklake demo``: the whole pipeline offline, printing each window as it seals.

The built-in simulator stands in for Yahoo; the recorder journals its frames into a fresh
data directory and keeps the lake; each time the seal watermark passes a minute, the
analytics job (the one ``ticklake record`` schedules every minute) materializes that
minute's features into DuckDB, and the new rows are read back from the database and printed
as ``ticklake tail`` prints them (:class:`ticklake.tail_cmd.Tail`), like the seed article's
console output. The log goes to ``demo.log`` in the data directory
(errors still reach the console), so the windows are all the console shows.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from analytics.database import database_path
from analytics.job import AnalyticsJob, JobConfig
from lake.clock import SystemClock
from lake.utc import MINUTE_MS, floor_minute_ms
from recorder.feed import FeedConfig
from recorder.recorder import Recorder, RecorderConfig
from ticklake.commands import Command, usage_error
from ticklake.config import positive_float, positive_int
from ticklake.logs import logging_to_file
from ticklake.simulator import Simulator, SimulatorConfig
from ticklake.tail_cmd import Tail, render

__all__ = ["COMMAND", "run", "run_demo"]

NAME: Final = "demo"
LOG_FILE: Final = "demo.log"
DEMO_TICKERS = ("AMZN", "MSFT", "^GSPC", "EURUSD=X", "BTC-USD", "ETH-USD")


def add_arguments(parser: argparse.ArgumentParser, file_values: Mapping[str, Any]) -> None:
    parser.add_argument(
        "--minutes", type=positive_int, default=2, help="sealed minutes to wait for (default: 2)"
    )
    parser.add_argument(
        "--rate", type=positive_float, default=2.0, help="simulated msg/s per symbol (default: 2)"
    )
    parser.add_argument("--data", type=Path, help="fresh data directory (default: a temporary one)")


def materialize(job: AnalyticsJob, tail: Tail) -> list[str]:
    """Run the job once; the lines ``ticklake tail`` prints for the rows it wrote."""
    job.run_once()
    return render(*tail.poll(), "table")


async def run_demo(
    data: Path, minutes: int, rate: float, out: Callable[[str], None] = print
) -> int:
    """Run until ``minutes`` windows have sealed; returns how many window rows were printed."""
    printed = 0
    async with Simulator(SimulatorConfig(rate=rate, seed=7)) as sim:
        config = RecorderConfig(
            data=data, tickers=DEMO_TICKERS, flush_interval=1.0, feed=FeedConfig(url=sim.url)
        )
        recorder = Recorder(config)
        task = asyncio.create_task(recorder.run())
        out(f"recording {', '.join(DEMO_TICKERS)} from the simulator at {sim.url}")
        out(f"data directory: {data}; a window prints 10 s after its minute ends")
        job = AnalyticsJob(data, JobConfig(lateness=config.lateness), SystemClock())
        tail = Tail(data, database_path(data))  # a fresh database: every row is new
        start_ms = floor_minute_ms(int(SystemClock().now() * 1000))  # the first window ours
        sealed = 0
        try:
            while sealed < minutes and not task.done():
                await asyncio.sleep(0.5)
                watermark = recorder.seal.watermark_ms
                if watermark <= start_ms:
                    continue
                for line in await asyncio.to_thread(materialize, job, tail):
                    out(line)
                    printed += 1
                sealed += (watermark - start_ms) // MINUTE_MS
                start_ms = watermark
        finally:
            recorder.stop()
            await task
    return printed


def run(ns: argparse.Namespace) -> int:
    """Run the demo in ``ns.data`` (a new temporary directory when None), which must be empty."""
    data: Path = ns.data or Path(tempfile.mkdtemp(prefix="ticklake-demo-")) / "data"
    if data.exists() and any(data.iterdir()):
        return usage_error(NAME, f"{data} is not empty; the demo wants a fresh directory")
    data.mkdir(parents=True, exist_ok=True)
    with logging_to_file(data / LOG_FILE) as log_file:
        printed = asyncio.run(run_demo(data, ns.minutes, ns.rate))
    print(f"\n{printed} windows printed. The data is in {data}, the log in {log_file}. Try:")
    cli = _cli()
    print(f'  {cli} sql --data {data} "FROM seed_features ORDER BY open_time"')
    print(f'  {cli} sql --data {data} "FROM bars_5m"')
    print(f"  {cli} status --data {data}")
    return 0


COMMAND: Final = Command(
    name=NAME,
    help="simulator + recorder + features in a fresh data directory, offline",
    description="Run the whole pipeline against the built-in simulator, printing each "
    "window's features as it seals (the first within about 75 s).",
    add_arguments=add_arguments,
    run=run,
)


def _cli() -> str:
    """How to run ``ticklake`` again: this interpreter's script, relative to the working
    directory when inside it (``.venv/bin/ticklake`` after ``make demo``), else its name."""
    script = Path(sys.executable).with_name("ticklake")
    if not script.is_file():
        return "ticklake"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script) if shutil.which("ticklake") != str(script) else "ticklake"
