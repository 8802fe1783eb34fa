"""Ingest: the simulator at full speed into ``ticklake record``, beside a bare receive loop.

    python -m bench.ingest [--seconds 15] [--symbols 100] [--rate 3000] [--rss-symbols 500]

Three processes on one machine: the simulator (``ticklake simulate``), and in turn (a) a bare
``websockets`` client that subscribes and only counts frames, and (b) ``ticklake record``
(journal with group commit + decode + Parquet lake + seal). Both are measured against the
same simulator in the same run; the ratio is (b)/(a). Then ``ticklake record`` with
``--rss-symbols`` symbols at Yahoo's realistic 1 msg/s each, and its peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from recorder.journal import Journal
from recorder.layout import duckdb_read_sql


def symbols(count: int) -> list[str]:
    return [f"C{i:03d}-USD" for i in range(count)]  # crypto-shaped: they stream 24/7


def start_simulator(rate: float) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "ticklake.cli", "--log-level", "WARNING", "simulate",
               "--rate", str(rate), "--seed", "1", "--port", "0"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    url = line.split("(v2: ")[1].rstrip(")\n")
    return process, url


async def _bare(url: str, names: list[str], seconds: float) -> float:
    from websockets.asyncio.client import connect

    async def one(group: list[str], counts: list[int]) -> None:
        async with connect(url, compression=None, max_queue=None) as ws:
            await ws.send(json.dumps({"subscribe": group}))
            await ws.recv()
            started = time.perf_counter()
            while time.perf_counter() - started < seconds:
                await ws.recv()
                counts[0] += 1

    counts = [0]
    groups = [names[i : i + 100] for i in range(0, len(names), 100)]
    started = time.perf_counter()
    await asyncio.gather(*(one(g, counts) for g in groups))
    return counts[0] / (time.perf_counter() - started)


def bare_rate(url: str, names: list[str], seconds: float) -> float:
    command = [sys.executable, "-m", "bench.ingest", "--bare", url, "--symbols", str(len(names)),
               "--seconds", str(seconds)]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return float(out.strip())


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def record(url: str, names: list[str], seconds: float, data: Path) -> tuple[float, int, float]:
    """(journaled frames/s while connected, lake rows, peak RSS MB) of one recorder run."""
    command = [sys.executable, "-m", "ticklake.cli", "--log-level", "WARNING", "record",
               "--data", str(data), "--url", url, "--tickers", ",".join(names)]  # fmt: skip
    process = subprocess.Popen(command)
    time.sleep(seconds)
    rss = peak_rss_mb(process.pid)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    received: list[int] = []
    with Journal.open_reader(data / "journal") as journal:
        for batch in journal.iter_records():
            received += [r.received_at_us for r in batch]
    span = (received[-1] - received[0]) / 1e6 if len(received) > 1 else float("nan")
    rows = duckdb.execute(f"SELECT count(*) FROM {duckdb_read_sql(data)}").fetchall()[0][0]
    return len(received) / span, int(rows), rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--rate", type=float, default=3000.0, help="msg/s per symbol asked")
    parser.add_argument("--rss-symbols", type=int, default=500)
    parser.add_argument("--rss-seconds", type=float, default=60.0)
    parser.add_argument("--bare", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = symbols(args.symbols)
    if args.bare:
        print(asyncio.run(_bare(args.bare, names, args.seconds)))
        return
    asked = args.symbols * args.rate
    print(f"machine: {os.cpu_count()} cores; simulator asked for {asked:,.0f} msg/s")
    sim, url = start_simulator(args.rate)
    try:
        bare = bare_rate(url, names, args.seconds)
        with tempfile.TemporaryDirectory() as tmp:
            ours, rows, rss = record(url, names, args.seconds, Path(tmp))
        print(f"baseline  bare websockets receive loop: {bare:10,.0f} msg/s")
        print(
            f"ticklake  record (journal+decode+lake):  {ours:10,.0f} msg/s  "
            f"({ours / bare:.2f}x baseline; target >= 0.6)  lake rows {rows:,}"
        )
        print(f"          peak RSS at full speed, {args.symbols} symbols: {rss:.0f} MB")
    finally:
        sim.terminate()
        sim.wait()
    sim, url = start_simulator(1.0)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ours, rows, rss = record(url, symbols(args.rss_symbols), args.rss_seconds, Path(tmp))
        print(
            f"ticklake  record, {args.rss_symbols} symbols x 1 msg/s for "
            f"{args.rss_seconds:.0f} s: peak RSS {rss:.0f} MB (target < 200 MB), "
            f"{ours:,.0f} msg/s, lake rows {rows:,}"
        )
    finally:
        sim.terminate()
        sim.wait()


if __name__ == "__main__":
    main()
