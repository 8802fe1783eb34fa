"""Regenerate the sample charts of ``ticklake plot`` in ``docs/`` (``make plots``).

Two and a half hours of AMZN from the simulator's own price feed (``ticklake.simulator``:
the walk the demo streams, here stepped through a past session at once instead of in real
time), decoded from its frames as the recorder decodes them, written to a fresh lake with a
three-minute connection gap (the session log the recorder keeps) and a few ticks that
arrived late; the features backfilled; then the command itself draws the charts. Seeded:
the same images every run (up to matplotlib's version).

    .venv/bin/python docs/make_plots.py [OUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

from analytics.backfill import BackfillConfig, backfill
from lake.clock import ManualClock
from lake.datadir import sessions_file
from lake.minutes import write_minutes
from lake.seal import SealState, save_seal
from lake.sessions import SessionLog
from lake.utc import MINUTE_MS
from recorder.wire.decode import decode_batch
from ticklake.cli import main
from ticklake.simulator.feed import Feed

TICKER = "AMZN"
START_S = 1_713_274_200  # 2024-04-16 13:30 UTC, the regular session's open (09:30 New York)
HOURS = 2.5
GAP_S = (START_S + 71 * 60 + 20, START_S + 74 * 60 + 40)  # 14:41:20-14:44:40: disconnected
LATE_MINUTES = (50, 95)  # minutes after the open with ticks received 40 s late
CHARTS = (
    ("plot-amzn-5m.png", "5m", None, None),
    ("plot-amzn-1m.png", "1m", "2024-04-16T14:20Z", "2024-04-16T15:10Z"),
    ("plot-amzn-5m.html", "5m", None, None),
)


def simulated_ticks() -> pa.Table:
    """A tick a second (on average) of ``TICKER``, as the lake stores them."""
    feed = Feed(seed=7, rate=1.0)
    frames, received_us = [], []
    for t in range(START_S, START_S + int(HOURS * 3600)):
        if GAP_S[0] <= t < GAP_S[1]:
            continue
        for tick in feed.advance(1.0, float(t), [TICKER]):
            frames.append(tick.b64)
            late = (t - START_S) // 60 in LATE_MINUTES and t % 60 >= 50
            received_us.append((t + (40 if late else 0.3)) * 1_000_000)
    batch = decode_batch(frames)
    assert not batch.errors, batch.errors
    table = batch.ticks
    table = table.append_column("received_at", pa.array(np.array(received_us, np.int64)))
    table = table.append_column("seq", pa.array(np.arange(1, len(frames) + 1, dtype=np.int64)))
    return table


def write_lake(data: Path) -> tuple[int, int]:
    """The lake, its session log and seal, and the features; returns the range (ms)."""
    ticks = simulated_ticks()
    write_minutes(data, ticks.cast(_lake_schema(ticks)))
    end_ms = (START_S + int(HOURS * 3600)) * 1000
    log = SessionLog(sessions_file(data))
    first = log.start(1, "ws://127.0.0.1/", [TICKER], START_S - 60)
    log.end(first, GAP_S[0], "dropped: 1006")
    log.start(1, "ws://127.0.0.1/", [TICKER], GAP_S[1])
    log.close()
    save_seal(data, SealState(watermark_ms=end_ms, applied_seq=ticks.num_rows))
    config = BackfillConfig(START_S * 1000, end_ms)
    backfill(data, config, ManualClock(end_ms / 1000 + 3600))
    return START_S * 1000, end_ms


def _lake_schema(ticks: pa.Table) -> pa.Schema:
    from lake.schema import LAKE_SCHEMA

    return pa.schema([LAKE_SCHEMA.field(name) for name in ticks.column_names])


def run(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ticklake-plots-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        start_ms, end_ms = write_lake(data)
        assert (end_ms - start_ms) % MINUTE_MS == 0
        for name, bar, start, end in CHARTS:
            argv = ["plot", TICKER, "--data", str(data), "--bar", bar, "--out", str(out / name)]
            argv += ["--start", start, "--end", end] if start and end else []
            if main(argv) != 0:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent))
