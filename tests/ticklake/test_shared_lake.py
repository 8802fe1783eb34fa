"""Several recorders, one lake URL: two real recorders on disjoint symbols, each with its own
data directory, publish their compacted days to one object store (moto's S3 server on
127.0.0.1); a machine with only the URL sees every published tick and computes features for
all of them."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ticklake
from lake.compact import compact_eligible
from lake.offload import offload_days
from lake.remote import bind_remote
from tests.kit.lake import lake_files
from tests.kit.recorder import record, recorder_config
from ticklake.cli import main
from ticklake.simulator import SimulatorConfig

PAST_DAYS = 10
SYMBOLS = {"a": ("AAPL", "MSFT"), "b": ("BTC-USD", "ETH-USD")}


class PastClock:
    """The system clock moved to 15:00:59 UTC of a weekday at least ``days`` ago: the
    recorders and the simulator record a day that is long finished (so it can be compacted
    and offloaded today), inside New York's regular session (the simulator sends equities
    then, whatever the hour of the run), and the minute closes and seals while they run."""

    def __init__(self, days: float) -> None:
        day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days)
        while day.weekday() >= 5:  # Saturday, Sunday: no equity trades
            day -= dt.timedelta(days=1)
        start = dt.datetime(day.year, day.month, day.day, 15, 0, 59, tzinfo=dt.UTC)
        self.offset = time.time() - start.timestamp()

    def now(self) -> float:
        return time.time() - self.offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


def publish(data: Path, url: str) -> None:
    """What daily maintenance does for a day of a recorder that has stopped: compact it
    (hide, then delete the minute files: grace 0) and offload it (upload and verify, then
    remove the local copy)."""
    now = time.time()
    for _ in range(2):
        compact_eligible(data, now, before=dt.datetime.fromtimestamp(now, dt.UTC).date(), grace=0)
    remote = bind_remote(data, url)
    for _ in range(2):
        assert offload_days(data, remote, now, after_days=1, grace=0).failed == []


@pytest.mark.slow
def test_two_recorders_on_disjoint_symbols_share_one_lake_url(tmp_path: Path, s3_url: str) -> None:
    stored: set[tuple[str, int]] = set()
    for name, symbols in SYMBOLS.items():
        clock = PastClock(PAST_DAYS)
        data = tmp_path / name
        config = recorder_config(data, symbols)
        record(
            config, SimulatorConfig(rate=20.0, seed=len(stored)), 3.5, sim_clock=clock, clock=clock
        )
        files = [pq.read_table(p, columns=["id", "seq"]) for p in lake_files(data).values()]
        table = pa.concat_tables(files)
        mine = set(zip(table["id"].to_pylist(), table["seq"].to_pylist(), strict=True))
        assert {t for t, _ in mine} == set(symbols)
        stored |= {(t, s) for t, s in mine}
        publish(data, s3_url)
        assert not lake_files(data)  # every minute file is in the object store now

    reader = ticklake.open(tmp_path / "reader", lake_url=s3_url)
    seen: set[tuple[str, int]] = set()
    for symbol in (s for symbols in SYMBOLS.values() for s in symbols):
        ticks = reader.ticks(symbol)
        pairs = list(zip(ticks["id"].to_pylist(), ticks["seq"].to_pylist(), strict=True))
        assert len(pairs) == len(set(pairs))  # each tick once
        seen |= set(pairs)
    assert seen == stored

    day = dt.datetime.fromtimestamp(clock.now(), dt.UTC).date()
    start, end = day.isoformat(), (day + dt.timedelta(days=1)).isoformat()
    args = ["backfill", "--data", str(tmp_path / "reader"), "--start", start, "--end", end]
    assert main([*args, "--lake-url", s3_url]) == 0
    features = reader.features()
    assert set(features["ticker"].to_pylist()) == {s for v in SYMBOLS.values() for s in v}
