"""The recorder's lake path: CPU per tick, lag, memory, exit time and replay, beside baselines.

    python -m bench.lake_path [--symbols 500] [--seconds 60] [--many 5000]
                              [--many-seconds 120] [--burst-symbols 100] [--burst-seconds 5]

1. ``--symbols`` at Yahoo's rate (simulator ``--rate 1``), ``record --analytics false``: CPU
   of the recorder as a share of one core from second 20 to the end, beside a bare loop that
   receives the same feed and decodes it into columns every second (the seed's work,
   without storage), measured in the same run.
2. ``--many`` symbols at 1 msg/s: how far the lake lags the feed (now minus the newest
   ``received_at`` a reader sees, sampled every second after the first 20 s) and peak RSS.
3. ``--burst-symbols`` in burst for ``--burst-seconds``: frames journaled per second against
   a bare receive loop (same run), frames a reader sees in the lake at that moment (end to
   end), seconds from SIGTERM to exit; then ``ticklake replay --into`` of that journal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb

from bench.ingest import CLI, Simulator, bare, cpu_seconds, peak_rss_mb, stop, symbols
from lake.layout import duckdb_read_sql
from recorder.journal import Journal

WARM_UP_S = 20.0


def start_record(data: Path, url: str, names: list[str], log: Path) -> subprocess.Popen[Any]:
    command = [*CLI, "record", "--data", str(data), "--url", url, "--tickers", ",".join(names),
               "--analytics", "false"]  # fmt: skip
    with log.open("w") as err:
        return subprocess.Popen(command, stderr=err)


def visible(data: Path) -> tuple[int, float]:
    """(rows, newest received_at in epoch s) a reader of the lake sees now."""
    with duckdb.connect() as con:
        query = f"SELECT count(*), epoch_us(max(received_at)) FROM {duckdb_read_sql(data)}"
        rows, newest = con.execute(query).fetchall()[0]
    return int(rows), (newest or 0) / 1e6


def journaled(data: Path) -> int:
    with Journal.open_reader(data / "journal") as journal:
        return sum(len(batch) for batch in journal.iter_records())


async def _bare_decode(url: str, names: list[str], seconds: float) -> tuple[int, float]:
    """(frames, CPU seconds after warm-up) of a loop that receives and decodes each second."""
    from websockets.asyncio.client import connect

    from recorder.wire.decode import decode_batch

    pending: list[str | bytes] = []
    counts = [0]
    deadline = time.perf_counter() + seconds

    async def one(group: list[str]) -> None:
        async with connect(url, compression=None, max_queue=1024) as ws:
            await ws.send(json.dumps({"subscribe": group}))
            while time.perf_counter() < deadline:
                try:
                    pending.append(await asyncio.wait_for(ws.recv(), 1.0))
                except TimeoutError:
                    continue
                counts[0] += 1

    async def decode_every_second() -> None:
        while time.perf_counter() < deadline:
            await asyncio.sleep(1.0)
            batch = pending[:]
            pending.clear()
            decode_batch(batch)

    groups = [names[i : i + 100] for i in range(0, len(names), 100)]
    tasks = [asyncio.create_task(one(g)) for g in groups]
    await asyncio.sleep(WARM_UP_S)
    cpu, frames = time.process_time(), counts[0]
    await asyncio.gather(*tasks, decode_every_second())
    return counts[0] - frames, time.process_time() - cpu


def paced(names: list[str], seconds: float) -> None:
    print(f"1. {len(names)} symbols x 1 msg/s, {seconds:g} s (CPU counted after {WARM_UP_S:g} s)")
    with Simulator("--rate", "1") as sim, tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "bench.lake_path", "--bare-decode", sim.url,
                   "--symbols", str(len(names)), "--seconds", str(seconds)]  # fmt: skip
        baseline = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        process = start_record(Path(tmp, "data"), sim.url, names, Path(tmp, "log"))
        time.sleep(WARM_UP_S)
        cpu0, t0 = cpu_seconds(process.pid), time.perf_counter()
        time.sleep(seconds - WARM_UP_S)
        share = (cpu_seconds(process.pid) - cpu0) / (time.perf_counter() - t0)
        stopped = stop(process, 30)
        out, _ = baseline.communicate()
    frames, bare_cpu = (float(x) for x in out.split())
    bare_share = bare_cpu / (seconds - WARM_UP_S)
    print(f"  record: {share:.1%} of one core; peak RSS {stopped.rss_mb:.0f} MB;"
          f" SIGTERM to exit {stopped.seconds:.1f} s")  # fmt: skip
    print(
        f"  bare receive + decode every second: {bare_share:.1%} of one core"
        f" ({frames / (seconds - WARM_UP_S):,.0f} msg/s); ratio {share / bare_share:.1f}x"
    )


def many(names: list[str], seconds: float) -> None:
    print(f"2. {len(names)} symbols x 1 msg/s for {seconds:g} s: lake lag and memory")
    with Simulator("--rate", "1", "--max-symbols", "100") as sim, tempfile.TemporaryDirectory(
    ) as tmp:  # fmt: skip
        data = Path(tmp, "data")
        process = start_record(data, sim.url, names, Path(tmp, "log"))
        started, lags, rss = time.perf_counter(), [], 0.0
        while time.perf_counter() - started < seconds:
            time.sleep(1.0)
            rss = max(rss, peak_rss_mb(process.pid))
            if time.perf_counter() - started > WARM_UP_S and data.exists():
                lags.append(time.time() - visible(data)[1])
        stopped = stop(process, 30)
    lags.sort()
    print(f"  lag of the lake behind the feed: median {lags[len(lags) // 2]:.1f} s, "
          f"max {lags[-1]:.1f} s (target <= flush interval 5 s + 2 s); peak RSS "
          f"{max(rss, stopped.rss_mb):.0f} MB (target < 300 MB); SIGTERM to exit "
          f"{stopped.seconds:.1f} s")  # fmt: skip


def burst(names: list[str], seconds: float) -> None:
    print(f"3. burst, {len(names)} symbols, {seconds:g} s")
    with Simulator("--burst") as sim, tempfile.TemporaryDirectory() as tmp:
        baseline = bare(sim.url, names, seconds)
        data = Path(tmp, "data")
        process = start_record(data, sim.url, names, Path(tmp, "log"))
        while not (data / "deltas").exists():
            time.sleep(0.01)
        first = time.perf_counter()
        time.sleep(seconds)
        rows, _ = visible(data)
        elapsed = time.perf_counter() - first
        stopped = stop(process, 60)
        frames = journaled(data)
        into = Path(tmp, "rebuilt")
        replay_started = time.perf_counter()
        command = [*CLI, "replay", "--data", str(data), "--into", str(into)]
        subprocess.run(command, check=True, capture_output=True)
        replay_s = time.perf_counter() - replay_started
    print(f"  bare websockets loop {baseline.rate:,.0f} msg/s; record journaled "
          f"{frames / (elapsed + stopped.seconds):,.0f} frames/s")  # fmt: skip
    print(
        f"  end to end: {rows:,} ticks visible after {elapsed:.1f} s = {rows / elapsed:,.0f}"
        f" ticks/s, ratio {rows / elapsed / baseline.rate:.2f} (target >= 0.5)"
    )
    print(f"  SIGTERM to exit {stopped.seconds:.1f} s (target <= 5 s); peak RSS "
          f"{stopped.rss_mb:.0f} MB")  # fmt: skip
    print(
        f"  replay --into: {frames:,} frames in {replay_s:.1f} s = "
        f"{frames / replay_s:,.0f} frames/s (target >= 100 k/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--many", type=int, default=5000)
    parser.add_argument("--many-seconds", type=float, default=120.0)
    parser.add_argument("--burst-symbols", type=int, default=100)
    parser.add_argument("--burst-seconds", type=float, default=5.0)
    parser.add_argument("--only", choices=("paced", "many", "burst"))
    parser.add_argument("--bare-decode", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_decode:
        print(*asyncio.run(_bare_decode(args.bare_decode, symbols(args.symbols), args.seconds)))
        return
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    if args.only in (None, "paced"):
        paced(symbols(args.symbols), args.seconds)
    if args.only in (None, "many"):
        many(symbols(args.many), args.many_seconds)
    if args.only in (None, "burst"):
        burst(symbols(args.burst_symbols), args.burst_seconds)
    print(f"(load average {os.getloadavg()[0]:.2f} at end)")


if __name__ == "__main__":
    main()
