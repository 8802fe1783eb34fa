"""A real :class:`~recorder.recorder.Recorder` against a real
:class:`~ticklake.simulator.Simulator`, and the lake its journal implies.

``record(...)`` runs the Recorder (SystemClock, real files) against the Simulator on
127.0.0.1 in its own thread, stops the simulator first (its close frame follows every frame
it sent, so a graceful run loses nothing) and then the recorder.

``expected_lake(data)`` is what the lake must hold, computed without the lake's code: every
journaled frame decoded, ticks with a storable symbol, and of each set of identical tick
contents the row with the lowest seq (DuckDB's GROUP BY does the grouping).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lake.clock import Clock
from lake.datadir import journal_dir
from lake.deltas import latest_fold
from lake.schema import LAKE_SCHEMA, RECEIVED_TYPE, TICK_SCHEMA
from lake.symbols import valid_symbol_mask
from recorder.feed import ConnectionState, FeedConfig
from recorder.journal import Journal
from recorder.recorder import Recorder, RecorderConfig
from recorder.wire.decode import decode_batch
from tests.kit.lake import lake_files, lake_table, read_seal
from ticklake.simulator import Simulator, SimulatorConfig

CRYPTO = ("BTC-USD", "ETH-USD", "SOL-USD")

Probe = Callable[[Recorder, Simulator], Coroutine[Any, Any, None]]


def recorder_config(data: Path, tickers: tuple[str, ...], **changes: Any) -> RecorderConfig:
    """Short intervals for tests; ``feed_*`` keys go to the FeedConfig."""
    feed_changes = {k.removeprefix("feed_"): v for k, v in changes.items() if k.startswith("feed_")}
    rest = {k: v for k, v in changes.items() if not k.startswith("feed_")}
    feed = FeedConfig(url="ws://127.0.0.1:9/", backoff_base=0.05, backoff_cap=0.2, **feed_changes)
    base = RecorderConfig(data=data, tickers=tickers, flush_interval=0.2, lateness=1.0, feed=feed)
    return replace(base, **rest)


TICK_COLUMNS = ", ".join(f'"{name}"' for name in TICK_SCHEMA.names)


def sql(query: str, **tables: pa.Table) -> list[tuple[Any, ...]]:
    """Rows of a DuckDB query over the given Arrow tables (by name) and the lake's files."""
    with duckdb.connect() as con:
        for name, table in tables.items():
            con.register(name, table)
        return con.execute(query).fetchall()


@dataclass
class Recorded:
    recorder: Recorder
    frames_sent: int


async def record_async(
    config: RecorderConfig,
    sim_config: SimulatorConfig,
    seconds: float,
    *,
    sim_clock: Clock | None = None,
    probe: Probe | None = None,
    clock: Clock | None = None,
) -> Recorded:
    """Record ``seconds`` from a fresh simulator, then stop; ``probe`` runs meanwhile;
    ``clock``: the recorder's (default: the system clock)."""
    with contextlib.ExitStack() as stack:
        sim = stack.enter_context(Simulator.in_thread(sim_config, sim_clock))
        feed = replace(config.feed, url=sim.url)
        recorder = Recorder(replace(config, feed=feed), clock)
        task = asyncio.create_task(recorder.run())
        watcher = asyncio.create_task(probe(recorder, sim)) if probe else None
        try:
            await asyncio.sleep(seconds)
        finally:
            if watcher is not None:
                watcher.cancel()
            await asyncio.to_thread(stack.pop_all().close)  # the simulator closes its sockets
        sent = sim.frames_sent
    # Every session ends on the simulator's close frame, after the frames sent before it.
    for _ in range(200):
        if all(c.state is not ConnectionState.OPEN for c in recorder.feed.connections):
            break
        await asyncio.sleep(0.02)
    recorder.stop()
    await asyncio.wait_for(task, 10)
    if watcher is not None:
        with contextlib.suppress(asyncio.CancelledError):
            await watcher  # re-raises a failed probe's exception
    return Recorded(recorder, sent)


def record(
    config: RecorderConfig,
    sim_config: SimulatorConfig,
    seconds: float,
    *,
    sim_clock: Clock | None = None,
    probe: Probe | None = None,
    clock: Clock | None = None,
) -> Recorded:
    return asyncio.run(
        record_async(config, sim_config, seconds, sim_clock=sim_clock, probe=probe, clock=clock)
    )


@dataclass
class Journaled:
    seqs: list[int]
    frames: list[str]
    received_us: list[int]


def read_journal(data: Path) -> Journaled:
    out = Journaled([], [], [])
    with Journal.open_reader(journal_dir(data)) as journal:
        for batch in journal.iter_records():
            out.seqs += [r.seq for r in batch]
            out.frames += [r.frame for r in batch]
            out.received_us += [r.received_at_us for r in batch]
    return out


def sent_frames(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def journal_ticks(data: Path) -> pa.Table:
    """Every tick decodable from the journal with its seq and receive time, in LAKE_SCHEMA."""
    journal = read_journal(data)
    batch = decode_batch(journal.frames)
    rows = batch.frame_index
    seqs = np.asarray(journal.seqs, dtype=np.int64)[rows]
    received = np.asarray(journal.received_us, dtype=np.int64)[rows]
    table = batch.ticks.append_column(
        "received_at", pa.array(received, type=pa.int64()).cast(RECEIVED_TYPE)
    ).append_column("seq", pa.array(seqs, type=pa.int64()))
    return table.cast(LAKE_SCHEMA)


def expected_lake(data: Path) -> pa.Table:
    """What the lake must hold after applying the whole journal, sorted by seq."""
    ticks = journal_ticks(data)
    ticks = ticks.filter(pc.and_(valid_symbol_mask(ticks["id"]), pc.is_valid(ticks["time"])))
    lowest = sql(f"SELECT min(seq) FROM ticks GROUP BY {TICK_COLUMNS}", ticks=ticks)
    keep = pc.is_in(ticks["seq"], value_set=pa.array([seq for (seq,) in lowest], pa.int64()))
    return ticks.filter(keep).sort_by("seq")


def assert_lake_is_journal(data: Path) -> pa.Table:
    """The lake holds exactly one row per distinct journaled tick, identical in every column."""
    lake, expected = lake_table(data), expected_lake(data)
    seqs = lake["seq"].to_pylist()
    assert len(seqs) == len(set(seqs)), "a journal seq is stored twice"
    missing = set(expected["seq"].to_pylist()) - set(seqs)
    extra = set(seqs) - set(expected["seq"].to_pylist())
    assert not missing and not extra, (
        f"missing seqs {sorted(missing)[:10]}, extra {sorted(extra)[:10]}"
    )
    assert lake.equals(expected), "lake rows differ from the journal's frames"
    return lake


def assert_files_hold_applied(data: Path) -> int:
    """The seal's ``applied_seq`` is the fold marker's ``base_seq``, and every journaled tick
    up to it is in the minute files themselves (not only in a delta); returns it."""
    applied = int(read_seal(data)["applied_seq"])
    fold = latest_fold(data)
    assert fold is not None and fold.base_seq == applied
    expected = expected_lake(data)
    wanted = set(expected.filter(pc.less_equal(expected["seq"], applied))["seq"].to_pylist())
    in_files = set()
    for path in lake_files(data).values():
        in_files.update(pq.read_table(path, columns=["seq"])["seq"].to_pylist())
    assert wanted <= in_files, f"applied seqs missing from files: {sorted(wanted - in_files)[:10]}"
    return applied
