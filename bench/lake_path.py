"""The recorder's lake path: CPU per tick, lag, memory, exit time and replay, beside baselines.

    python -m bench.lake_path [--symbols 500] [--seconds 80] [--many 5000]
                              [--many-seconds 120] [--burst-symbols 100] [--burst-seconds 5]
                              [--only paced|many|burst|sigterm]

1. ``--symbols`` at Yahoo's rate (simulator ``--rate 1``), ``record --no-analytics``: CPU
   of the recorder as a share of one core from second 20 to the end (by default 60 s: one
   minute seals inside, whatever the start's second), beside a bare loop that
   receives the same feed and decodes it into columns every second (the seed's work,
   without storage), measured in the same run.
2. ``--many`` symbols at 1 msg/s: how far the lake lags the feed (now minus the newest
   ``received_at`` a reader sees, sampled every second after the first 20 s) and peak
   memory: the PSS of both processes (the recorder and its forked lake writer share pages,
   which their RSS counts twice), and each one's RSS.
3. ``--burst-symbols`` in burst for ``--burst-seconds``, then the simulator goes away: end
   to end, from the first journaled frame until a reader sees every tick in the lake,
   against a bare receive loop (same run); then ``ticklake replay --into`` of that journal.
4. The same burst, SIGTERM after ``--burst-seconds``: seconds to exit.
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

from bench.ingest import (
    CLI,
    Simulator,
    bare,
    cpu_seconds,
    peak_rss_mb,
    pss_mb,
    status_kb,
    stop,
    symbols,
    tree,
)
from lake.deltas import list_deltas
from lake.layout import duckdb_read_sql
from recorder.journal import Journal
from recorder.segment import list_segments

WARM_UP_S = 20.0


def start_record(data: Path, url: str, names: list[str], log: Path) -> subprocess.Popen[Any]:
    command = [*CLI, "record", "--data", str(data), "--url", url, "--tickers", ",".join(names),
               "--no-analytics"]  # fmt: skip
    with log.open("w") as err:
        return subprocess.Popen(command, stderr=err)


def visible(data: Path) -> tuple[int, float]:
    """(rows, newest received_at in epoch s) a reader of the lake sees now."""
    with duckdb.connect() as con:
        query = f"SELECT count(*), epoch_us(max(received_at)) FROM {duckdb_read_sql(data)}"
        rows, newest = con.execute(query).fetchall()[0]
    return int(rows), (newest or 0) / 1e6


def journaled(data: Path) -> int:
    """Frames in a fresh journal (seqs 1 to n): its last seq, read in its last segment."""
    refs = list_segments(data / "journal")
    if not refs:
        return 0
    with Journal.open_reader(data / "journal") as journal:
        batches = journal.iter_records(refs[-1].first_seq)
        return max((batch[-1].seq for batch in batches), default=refs[-1].first_seq - 1)


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
        own: dict[int, float] = {}  # peak RSS of each process (the recorder, its writer)
        pss = 0.0  # peak of their PSS sum, sampled each second
        while time.perf_counter() - started < seconds:
            time.sleep(1.0)
            rss = max(rss, peak_rss_mb(process.pid))
            if time.perf_counter() - started > WARM_UP_S and data.exists():
                asked = time.time()  # the query's own time is not the lake's lag
                lags.append(asked - visible(data)[1])
            for pid in tree(process.pid):
                own[pid] = max(own.get(pid, 0.0), status_kb(pid, "VmHWM:") / 1024)
            pss = max(pss, pss_mb(process.pid))
        stopped = stop(process, 30)
    lags.sort()
    print(f"  lag of the lake behind the feed: median {lags[len(lags) // 2]:.1f} s, "
          f"max {lags[-1]:.1f} s (target <= flush interval 5 s + 2 s); SIGTERM to exit "
          f"{stopped.seconds:.1f} s")  # fmt: skip
    print(
        f"  memory: peak PSS of both processes {pss:.0f} MB (sampled each second, shared "
        "pages counted once; target < 300 MB); peak RSS by process: "
        + ", ".join(f"{mb:.0f} MB" for mb in own.values())
        + f" (their sum, shared pages twice: {max(rss, stopped.rss_mb):.0f} MB)"
    )


def _journal_started(data: Path) -> None:
    while not any(p.stat().st_size for p in (data / "journal").glob("*.seg*")):
        time.sleep(0.005)


def visible_rows(data: Path) -> int:
    """Rows a reader of the lake sees now (from the files' metadata: cheap to poll)."""
    with duckdb.connect() as con:
        return int(con.execute(f"SELECT count(*) FROM {duckdb_read_sql(data)}").fetchall()[0][0])


def _settled(data: Path, quiet_s: float = 10.0) -> tuple[int, float]:
    """(rows, epoch s when the lake first held them) once it holds a row for every frame
    journaled (call it after the simulator stops: the journal stops too) or stops growing
    for ``quiet_s`` (longer than the flush interval). The lake is not polled while it
    fills (a poll costs the recorder CPU): every frame lands in a delta first, so the
    newest delta's mtime is when the lake first held them all."""
    time.sleep(0.5)  # the journal's last group commit
    frames = journaled(data)
    rows, grew = visible_rows(data), time.perf_counter()
    while time.perf_counter() - grew < quiet_s and rows < frames:
        time.sleep(0.5)
        if (now := visible_rows(data)) != rows:
            rows, grew = now, time.perf_counter()
    return rows, max(delta.path.stat().st_mtime for delta in list_deltas(data))


def burst(names: list[str], seconds: float) -> None:
    """End to end: the simulator bursts for ``seconds`` and then goes away; the time from
    the first journaled frame until the lake holds every frame (sealed or in a delta)."""
    print(f"3. burst, {len(names)} symbols, {seconds:g} s")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp, "data")
        with Simulator("--burst") as sim:
            baseline = bare(sim.url, names, seconds)
            process = start_record(data, sim.url, names, Path(tmp, "log"))
            _journal_started(data)
            first = time.time()
            time.sleep(seconds)
        rows, last = _settled(data)
        stopped = stop(process, 60)
        frames = journaled(data)
        into = Path(tmp, "rebuilt")
        replay_started = time.perf_counter()
        command = [*CLI, "replay", "--data", str(data), "--into", str(into)]
        subprocess.run(command, check=True, capture_output=True)
        replay_s = time.perf_counter() - replay_started
    elapsed = last - first
    print(f"  bare websockets loop {baseline.rate:,.0f} msg/s; the recorder journaled "
          f"{frames:,} frames in {seconds:g} s ({frames / seconds:,.0f}/s)")  # fmt: skip
    print(
        f"  end to end: the lake held {rows:,} ticks ({rows / frames:.0%} of the frames) "
        f"{elapsed:.1f} s after the first frame = {rows / elapsed:,.0f} ticks/s, ratio "
        f"{rows / elapsed / baseline.rate:.2f} (target >= 0.5)"
    )
    print(f"  peak RSS {stopped.rss_mb:.0f} MB (recorder + lake writer)")
    print(
        f"  replay --into: {frames:,} frames in {replay_s:.1f} s = "
        f"{frames / replay_s:,.0f} frames/s (target >= 100 k/s)"
    )


def sigterm(names: list[str], seconds: float) -> None:
    """SIGTERM in the middle of a burst: seconds to exit, and what the next start replays."""
    print(f"4. SIGTERM during a burst of {len(names)} symbols, after {seconds:g} s")
    with Simulator("--burst") as sim, tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp, "data")
        process = start_record(data, sim.url, names, Path(tmp, "log"))
        _journal_started(data)
        time.sleep(seconds)
        stopped = stop(process, 60)
        rows, frames = visible_rows(data), journaled(data)
    print(f"  SIGTERM to exit {stopped.seconds:.1f} s (target <= 5 s); {frames:,} frames "
          f"journaled, {rows:,} in the lake, the rest replayed at the next start")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=80.0)  # 60 s measured: one fold
    parser.add_argument("--many", type=int, default=5000)
    parser.add_argument("--many-seconds", type=float, default=120.0)
    parser.add_argument("--burst-symbols", type=int, default=100)
    parser.add_argument("--burst-seconds", type=float, default=5.0)
    parser.add_argument("--only", choices=("paced", "many", "burst", "sigterm"))
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
    if args.only in (None, "sigterm"):
        sigterm(symbols(args.burst_symbols), args.burst_seconds)
    print(f"(load average {os.getloadavg()[0]:.2f} at end)")


if __name__ == "__main__":
    main()
