"""The "examples:" epilog of each command's ``--help``, all in one place.

Invariant (``tests/ticklake/test_examples.py``): every command :mod:`ticklake.cli` registers
has two or three examples here, and each parses with that command's own parser, so a flag
renamed or removed breaks a test, not a reader's first try.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = ["EXAMPLES", "epilog"]

EXAMPLES: Final[Mapping[str, tuple[str, ...]]] = {
    "decode": (
        "ticklake decode frames.txt",
        "ticklake decode < frames.txt",
    ),
    "record": (
        "ticklake record --tickers AAPL,MSFT,BTC-USD --data data",
        "ticklake record --tickers AAPL --metrics-port 9464 --log-format json",
        "ticklake record --tickers AAPL --no-analytics --fsync always",
    ),
    "analyze": (
        "ticklake analyze --data data",
        "ticklake analyze --once --data data",
        "ticklake analyze --metrics-port 9465 --no-maintain",
    ),
    "sql": (
        "ticklake sql \"FROM bars_5m WHERE ticker = 'AAPL' ORDER BY bar_end DESC LIMIT 10\"",
        "ticklake sql --example moving_average --format csv --output moving_average.csv",
        'ticklake sql --format json "FROM features LIMIT 5"',
    ),
    "tail": (
        "ticklake tail --tickers AAPL,MSFT",
        "ticklake tail --format json --interval 5",
    ),
    "plot": (
        "ticklake plot AAPL --out aapl.html",
        "ticklake plot BTC-USD --bar 1h --start 2026-11-24 --end 2026-11-26 --out btc.png",
    ),
    "backfill": (
        "ticklake backfill --start 2026-11-24 --end 2026-11-25",
        "ticklake backfill --start 2026-11-24T14:30 --end 2026-11-24T21:00 --tickers AAPL",
        "ticklake backfill --start 2026-11-01 --end 2026-12-01 --workers 4 --quiet",
    ),
    "compact": (
        "ticklake compact --data data",
        "ticklake compact --before 2026-11-01",
    ),
    "maintain": (
        "ticklake maintain --data data",
        "ticklake maintain --tick-retention-days 365 --journal-retention-days 14",
    ),
    "status": (
        "ticklake status --data data",
        "ticklake status --format json",
    ),
    "verify": (
        "ticklake verify --data data",
        "ticklake verify --repair --format json",
    ),
    "import": (
        "ticklake import ticks-2026-11.parquet",
        "ticklake import --ignore-unknown --import-threads 4 exports/*.csv",
        "ticklake import --quiet ticks.csv",
    ),
    "replay": (
        "ticklake replay --data data",
        "ticklake replay --start 2026-11-24 --end 2026-11-25 --into rebuilt",
    ),
    "simulate": (
        "ticklake simulate --port 8765 --rate 50",
        "ticklake simulate --port 8765 --stall-after 30 --drop-every 120",
        "ticklake simulate --port 8765 --burst --garbage-rate 0.01",
    ),
    "demo": (
        "ticklake demo",
        "ticklake demo --minutes 3 --rate 200 --data /tmp/ticklake-demo",
    ),
}
"""Per command, a few invocations a reader can paste (``ticklake`` first)."""


def epilog(command: str) -> str | None:
    """The "examples:" text of ``command``'s ``--help``; None when it has none."""
    examples = EXAMPLES.get(command)
    if not examples:
        return None
    return "examples:\n" + "\n".join(f"  {line}" for line in examples)
