"""Ingest: ``ticklake record`` against the simulator, beside a bare receive loop, same run.

    python -m bench.ingest [--seconds 10] [--symbols 100] [--runs 3] [--rss-seconds 60]

The simulator runs in its own process (``ticklake simulate --burst``: each connection gets
valid, distinct ticks as fast as it reads them), so both clients are measured at their own
ceiling, not the simulator's. Each run starts in turn (a) a bare ``websockets`` client that
subscribes and only counts frames and (b) ``ticklake record`` (journal with group commit,
decode, Parquet lake, seal; analytics too); the ratio is (b)/(a) of the same run. msg/s of
(b) is journaled frames over the time they arrived in; its CPU is user + system time from
its first frame on, per frame journaled; peak RSS is ``VmHWM`` (``ru_maxrss`` would count
the bench's own RSS: vfork). Writing the lake is far slower than receiving at these rates,
so the runs of step 1 end with SIGKILL (the journal has every frame) and step 2 times a
short burst all the way into the lake and checks it: distinct journaled frames (the
simulator's encoding is canonical, so they are the distinct ticks) = lake rows = distinct
lake ticks. Then the paced simulator at full speed (``--rate``, for reference), and peak RSS
with ``--rss-symbols`` symbols at Yahoo's ~1 msg/s and in burst.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from lake.layout import duckdb_read_sql
from lake.schema import TICK_FIELDS
from recorder.journal import Journal

CLI = [sys.executable, "-m", "ticklake.cli", "--log-level", "WARNING"]
TICKS = ", ".join(f'"{f.name}"' for f in TICK_FIELDS)


def symbols(count: int) -> list[str]:
    return [f"C{i:03d}-USD" for i in range(count)]  # crypto-shaped: they stream 24/7


def stop(process: subprocess.Popen[Any], timeout: float = 60.0) -> Stopped:
    """SIGTERM, then wait up to ``timeout`` s (then SIGKILL; at once when 0), watching RSS."""
    asked = time.perf_counter()
    peak, killed = peak_rss_mb(process.pid), timeout <= 0
    process.send_signal(signal.SIGKILL if killed else signal.SIGTERM)
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - asked > timeout and not killed:
            process.kill()
            killed = True
        peak = max(peak, peak_rss_mb(process.pid))
        time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return Stopped(time.perf_counter() - asked, cpu, peak, not killed)


@dataclass
class Stopped:
    seconds: float  # SIGTERM to exit
    cpu: float  # user + system seconds over the whole life
    rss_mb: float  # peak RSS (VmHWM) seen; ru_maxrss would count the bench's own (vfork)
    clean: bool  # exited by itself within the timeout


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the recorder and its lake writer)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo.extend(int(child) for child in task.read_text().split())
    return out


def status_kb(pid: int, key: str) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


def peak_rss_mb(pid: int) -> float:
    """Peak RSS (VmHWM) of ``pid`` and its descendants, summed: an upper bound of the peak
    of the whole (a forked child shares pages with its parent)."""
    return sum(status_kb(p, "VmHWM:") for p in tree(pid)) / 1024


def pss_mb(pid: int) -> float:
    """Proportional set size of ``pid`` and its descendants now: pages a forked child
    shares with its parent counted once between them."""
    total = 0
    for p in tree(pid):
        try:
            text = Path(f"/proc/{p}/smaps_rollup").read_text()
        except OSError:
            continue
        total += next((int(x.split()[1]) for x in text.splitlines() if x.startswith("Pss:")), 0)
    return total / 1024


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its living descendants."""
    return sum(_cpu(p) for p in tree(pid))


async def _bare(url: str, names: list[str], seconds: float) -> tuple[int, float, float]:
    """(frames, wall seconds, CPU seconds) of a loop that only counts frames."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async def one(group: list[str], counts: list[int]) -> None:
        async with connect(url, compression=None, max_queue=1024) as ws:
            await ws.send(json.dumps({"subscribe": group}))
            await ws.recv()
            while time.perf_counter() < deadline:
                await ws.recv()
                counts[0] += 1
            closing = asyncio.create_task(ws.close())
            with contextlib.suppress(ConnectionClosed):
                while True:  # as the recorder does: read what is in flight up to the close
                    await ws.recv()
            await closing

    counts = [0]
    started, cpu = time.perf_counter(), time.process_time()
    deadline = started + seconds
    groups = [names[i : i + 100] for i in range(0, len(names), 100)]
    await asyncio.gather(*(one(g, counts) for g in groups))
    return counts[0], time.perf_counter() - started, time.process_time() - cpu


@dataclass
class Bare:
    rate: float
    cpu_us: float  # CPU per frame, µs


def bare(url: str, names: list[str], seconds: float) -> Bare:
    command = [sys.executable, "-m", "bench.ingest", "--bare", url, "--symbols", str(len(names)),
               "--seconds", str(seconds)]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    frames, wall, cpu = (float(x) for x in out.split())
    return Bare(frames / wall, cpu / frames * 1e6)


@dataclass
class Recording:
    rate: float  # journaled frames per second while they arrived
    frames: int
    window_cpu_us: float  # CPU per frame from the first frame to the end of the window, µs
    window_rss_mb: float  # peak RSS at the end of the window
    stopped: Stopped
    cpu_us: float  # CPU per frame from the first frame to the exit (flush included), µs
    end_to_end: float  # frames per second from the first frame to the exit (all in the lake)
    lag: int  # frames journaled but not yet applied to the lake at the end of the window
    distinct: int  # distinct journaled frames
    rows: int  # lake rows
    lake_distinct: int
    overflows: int  # backlog overflows (frames dropped from memory, read back from the journal)

    @property
    def lake_ok(self) -> bool:
        return self.stopped.clean and self.distinct == self.rows == self.lake_distinct


def record(url: str, names: list[str], seconds: float, flush_timeout: float) -> Recording:
    """One ``ticklake record`` run in a fresh data directory (removed afterwards): receive
    for ``seconds``, then SIGTERM and let it flush for up to ``flush_timeout`` s (0: SIGKILL
    at once: the journal is checked, not the lake)."""
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        return _record(url, names, seconds, flush_timeout, Path(tmp))


def _record(url: str, names: list[str], seconds: float, timeout: float, tmp: Path) -> Recording:
    data, log = tmp / "data", tmp / "record.log"
    command = [*CLI, "record", "--data", str(data), "--url", url, "--tickers", ",".join(names)]
    with log.open("w") as err:
        process = subprocess.Popen(command, stderr=err)
        samples: list[tuple[float, float]] = []  # (epoch s, CPU s)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            samples.append((time.time(), cpu_seconds(process.pid)))
            time.sleep(0.05)
        window_rss = peak_rss_mb(process.pid)
        seal = data / "state" / "seal.json"
        applied = json.loads(seal.read_text())["applied_seq"] if seal.exists() else 0
        stopped = stop(process, timeout)
        exited = time.time()
    assert not stopped.clean or process.returncode == 0, log.read_text()[-2000:]
    received: list[npt.NDArray[np.int64]] = []
    hashes: list[npt.NDArray[np.uint64]] = []
    with Journal.open_reader(data / "journal") as journal:
        for batch in journal.iter_records():
            received.append(np.array([r.received_at_us for r in batch], dtype=np.int64))
            hashes.append(np.array([_hash(r.frame) for r in batch], dtype=np.uint64))
    times = np.concatenate(received) / 1e6
    count, first, (end, cpu_end) = len(times), float(times[0]), samples[-1]
    cpu_first = max((cpu for t, cpu in samples if t <= first), default=0.0)
    rows = lake_distinct = -1
    if stopped.clean:
        lake = duckdb_read_sql(data)
        rows = duckdb.execute(f"SELECT count(*) FROM {lake}").fetchall()[0][0]
        query = f"SELECT count(*) FROM (SELECT DISTINCT {TICKS} FROM {lake})"
        lake_distinct = duckdb.execute(query).fetchall()[0][0]
    return Recording(
        rate=count / (times[-1] - first),
        frames=count,
        window_cpu_us=(cpu_end - cpu_first) / np.count_nonzero(times <= end) * 1e6,
        window_rss_mb=window_rss,
        stopped=stopped,
        cpu_us=(stopped.cpu - cpu_first) / count * 1e6,
        end_to_end=count / (exited - first),
        lag=int(np.count_nonzero(times <= end)) - applied,
        distinct=len(np.unique(np.concatenate(hashes))),
        rows=int(rows),
        lake_distinct=int(lake_distinct),
        overflows=log.read_text().count("event=backlog_overflow"),
    )


def _hash(frame: str | bytes) -> int:
    data = frame.encode() if isinstance(frame, str) else frame
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def spread(values: list[float], digits: int = 0) -> str:
    median, low, high = statistics.median(values), min(values), max(values)
    return (
        f"median {median:,.{digits}f} (min {low:,.{digits}f}, max {high:,.{digits}f}: "
        f"±{(high - low) / 2 / median:.0%} around the median)"
    )


def describe(r: Recording) -> str:
    out = f"{r.frames:,} frames; {r.window_cpu_us:.1f} µs CPU/frame while receiving; "
    out += f"RSS {r.window_rss_mb:.0f} MB after receiving; not yet in the lake then {r.lag:,}"
    if r.stopped.clean:
        out += (
            f"; lake {'ok' if r.lake_ok else 'MISMATCH'}: {r.distinct:,} distinct journaled ="
            f" {r.rows:,} rows = {r.lake_distinct:,} distinct ticks; SIGTERM to exit"
            f" {r.stopped.seconds:.1f} s; first frame to exit {r.end_to_end:,.0f} frames/s and"
            f" {r.cpu_us:.1f} µs CPU/frame"
        )
    elif r.stopped.seconds > 0.5:
        out += f"; flush unfinished {r.stopped.seconds:.0f} s after SIGTERM: killed"
    return f"{out}; peak RSS {r.stopped.rss_mb:.0f} MB; backlog overflows {r.overflows}"


class Simulator:
    """``ticklake simulate`` in its own process, its log in a file."""

    def __init__(self, *flags: str) -> None:
        self._log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed in __exit__)
        command = [*CLI, "simulate", "--seed", "1", "--port", "0", *flags]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self._log, text=True
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().split("(v2: ")[1].rstrip(")\n")

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *_: object) -> None:
        stop(self.process)
        self._log.seek(0)
        warnings = [line for line in self._log if " WARNING " in line or " ERROR " in line]
        self._log.close()
        if warnings:
            print(f"  (simulator logged {len(warnings)} warnings, e.g. {warnings[0].strip()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measurement")
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3, help="burst runs (medians are reported)")
    parser.add_argument("--lake-seconds", type=float, default=3.0, help="burst into the lake")
    parser.add_argument("--rate", type=float, default=3000.0, help="paced msg/s per symbol")
    parser.add_argument("--rss-symbols", type=int, default=500)
    parser.add_argument("--rss-seconds", type=float, default=60.0, help="at 1 msg/s per symbol")
    parser.add_argument("--flush-timeout", type=float, default=600.0, help="then SIGKILL")
    parser.add_argument("--bare", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    names, timeout = symbols(args.symbols), args.flush_timeout
    if args.bare:
        print(*asyncio.run(_bare(args.bare, names, args.seconds)))
        return
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    print(f"\n1. burst simulator, {args.symbols} symbols, {args.runs} runs of {args.seconds:g} s "
          "each (recorder killed after receiving: its journal is counted)")  # fmt: skip
    bares: list[Bare] = []
    recordings: list[Recording] = []
    with Simulator("--burst") as sim:
        for run in range(args.runs):
            bares.append(bare(sim.url, names, args.seconds))
            recordings.append(record(sim.url, names, args.seconds, 0))
            b, r = bares[-1], recordings[-1]
            print(
                f"  run {run + 1}: bare {b.rate:,.0f} msg/s ({b.cpu_us:.1f} µs CPU/msg); record "
                f"{r.rate:,.0f} msg/s, ratio {r.rate / b.rate:.2f}; {describe(r)}",
                flush=True,
            )
    ratios = [r.rate / b.rate for b, r in zip(bares, recordings, strict=True)]
    print(f"  bare websockets loop msg/s: {spread([b.rate for b in bares])}")
    print(f"  ticklake record msg/s:      {spread([r.rate for r in recordings])}")
    print(f"  ratio record/bare:          median {statistics.median(ratios):.2f} "
          f"(runs: {', '.join(f'{x:.2f}' for x in ratios)}; target >= 0.6)")  # fmt: skip
    print(f"  CPU µs/msg bare:            {spread([b.cpu_us for b in bares], 1)}")
    print(f"  CPU µs/msg record:          {spread([r.window_cpu_us for r in recordings], 1)}")

    print(f"\n2. burst into the lake: {args.lake_seconds:g} s of burst, then SIGTERM and flush")
    with Simulator("--burst") as sim:
        r = record(sim.url, names, args.lake_seconds, timeout)
    print(f"  record {r.rate:,.0f} msg/s; {describe(r)}")

    print(f"\n3. paced simulator at full speed (asked {args.symbols * args.rate:,.0f} msg/s)")
    with Simulator("--rate", str(args.rate)) as sim:
        b = bare(sim.url, names, args.seconds)
        r = record(sim.url, names, args.seconds, 0)
    print(f"  bare {b.rate:,.0f} msg/s, record {r.rate:,.0f} msg/s, ratio {r.rate / b.rate:.2f};")
    print(f"  {describe(r)}")

    many = symbols(args.rss_symbols)
    print(f"\n4. {args.rss_symbols} symbols x 1 msg/s for {args.rss_seconds:g} s, then flush")
    with Simulator("--rate", "1") as sim:
        r = record(sim.url, many, args.rss_seconds, timeout)
    print(f"  peak RSS {r.stopped.rss_mb:.0f} MB (target < 200 MB); {r.rate:,.0f} msg/s;")
    print(f"  {describe(r)}")
    print(f"\n5. {args.rss_symbols} symbols in burst for {args.seconds:g} s, then 60 s of flush")
    with Simulator("--burst") as sim:
        r = record(sim.url, many, args.seconds, 60.0)
    print(f"  peak RSS {r.stopped.rss_mb:.0f} MB; {r.rate:,.0f} msg/s; {describe(r)}")
    print(f"\n(load average {os.getloadavg()[0]:.2f} at end)")


if __name__ == "__main__":
    main()
