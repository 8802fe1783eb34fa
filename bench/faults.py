"""Faults as an operator meets them, against a real ``ticklake record --no-analytics``.

    python -m bench.faults [--only N] [--seconds 15] [--outage 60]

Each fault runs in a fresh data directory beside the paced simulator (``--rate 5``, 12
symbols; for fault 6 a few late ticks too) and prints one row:

- journaled: frames the journal holds at the end (``Journal.open_reader``), plus those it
  held before the fault and lost with the damaged bytes;
- in lake: distinct seqs a reader of the lake sees at the end;
- lost: journaled frames (before or after the fault) that are not in the lake, beside the
  frames inside the damaged bytes (``seqs_missing`` of the damage the journal logged);
- seqs reused: a seq that names two different frames (journal before the fault against the
  journal after it) plus lake rows sharing a seq; must be 0;
- CPU and log lines during the outage: the recorder's process tree (CPU as a share of one
  core) and its log (default level INFO), over the time it runs with the fault in place;
- recover: from the moment the fault is removed (restart, free space, command run) until the
  lake holds every surviving frame journaled before the fault and a frame journaled after it.

Faults: 1 a flipped byte in the newest journal segment, then restart; 2 the newest segment
deleted (the journal behind the seal), then restart; 3 ``replay --into`` of a damaged journal
(the source hashed before and after); 4 a corrupt older segment needed for the catch-up at
start (the lake lost and rebuilt from the journal); 5 disk full (the data directory on a
tmpfs, filled up, then a filler file deleted); 6 one truncated AAPL minute file while
recording; 7 ``ticklake maintain`` beside a recorder, then ``ticklake status``.
Needs root for fault 5 (``mount -t tmpfs``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from bench.ingest import Simulator, cpu_seconds, stop
from lake.layout import duckdb_read_sql
from recorder.journal import Journal

CLI = [sys.executable, "-m", "ticklake.cli"]  # INFO: the log an operator reads
NAMES = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "JPM", "BTC-USD", "ETH-USD",
         "SOL-USD", "XRP-USD"]  # fmt: skip
NOISE = b"event=late_ticks"  # a healthy recorder notes late ticks (the simulator sends some)
SKIP_S = 5.0  # a restarted recorder's first seconds (interpreter start) are not counted


@dataclass
class Row:
    fault: str
    journaled: int = 0
    lake: int = 0
    lost: int = 0
    damaged: int = 0  # frames inside the damaged bytes (the journal's own count)
    reused: int = 0
    cpu: float | None = None  # share of one core during the outage
    lines_per_min: float | None = None
    recover_s: float | None = None
    notes: list[str] = field(default_factory=list)


class Recorder:
    """``ticklake record`` in a subprocess, its log in ``log`` (appended across restarts)."""

    def __init__(self, data: Path, url: str, log: Path, *flags: str) -> None:
        self.log = log
        command = [*CLI, "record", "--data", str(data), "--url", url, "--tickers",
                   ",".join(NAMES), "--no-analytics", *flags]  # fmt: skip
        with log.open("a") as err:
            self.process = subprocess.Popen(command, stderr=err)
        self.started = time.perf_counter()

    def lines(self) -> int:
        with self.log.open("rb") as f:
            return sum(1 for line in f if NOISE not in line)

    def stop(self) -> int:
        """SIGTERM; the exit code (-9: it did not exit within 30 s and was killed)."""
        stopped = stop(self.process, 30)
        return (self.process.returncode or 0) if stopped.clean else -9


@contextlib.contextmanager
def outage(recorder: Recorder, row: Row) -> Iterator[None]:
    """Measure CPU and log lines of ``recorder`` over the block."""
    cpu0, lines0, t0 = cpu_seconds(recorder.process.pid), recorder.lines(), time.perf_counter()
    yield
    elapsed = time.perf_counter() - t0
    row.cpu = (cpu_seconds(recorder.process.pid) - cpu0) / elapsed
    row.lines_per_min = (recorder.lines() - lines0) / elapsed * 60


def journal_map(data: Path) -> dict[int, tuple[int, str]]:
    """seq -> (received_at, frame) of every record the journal's valid bytes hold."""
    if not (data / "journal").exists():
        return {}
    with Journal.open_reader(data / "journal") as journal:
        return {r.seq: (r.received_at_us, r.frame) for b in journal.iter_records() for r in b}


def lake_seqs(data: Path) -> tuple[set[int], int]:
    """(distinct seqs, rows sharing a seq with another row) a reader of the lake sees."""
    try:
        with duckdb.connect() as con:
            found = con.execute(f"SELECT seq FROM {duckdb_read_sql(data)}").fetchall()
        seqs = [s for (s,) in found]
    except (duckdb.Error, FileNotFoundError):
        return set(), 0
    distinct = set(seqs)
    return distinct, len(seqs) - len(distinct)


def wait_until(check: Callable[[], bool], timeout: float, every: float = 0.25) -> float | None:
    """Seconds until ``check()`` holds, None after ``timeout``."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if check():
            return time.perf_counter() - t0
        time.sleep(every)
    return None


def recovered(
    data: Path, before: dict[int, tuple[int, str]], damaged: Callable[[], set[int]]
) -> bool:
    """The lake holds every frame journaled before the fault but the damaged ones, and one
    journaled after it."""
    lake, _ = lake_seqs(data)
    top, seen, repeats = max(before, default=0), set[str](), set[int]()
    for seq in sorted(before):  # a snapshot re-sent at a reconnect is stored once: the first
        if before[seq][1] in seen:
            repeats.add(seq)
        seen.add(before[seq][1])
    return set(before) - damaged() - repeats <= lake and any(s > top for s in lake)


def account(row: Row, data: Path, before: dict[int, tuple[int, str]]) -> None:
    """Fill the counts from the journal before and after the fault, the lake and ``verify``."""
    after = journal_map(data)
    lake, shared = lake_seqs(data)
    gone = set(before) - set(after)  # in the damaged (or deleted) bytes
    command = [*CLI, "--log-level", "ERROR", "verify", "--data", str(data), "--format", "json"]
    out = subprocess.run(command, capture_output=True, text=True).stdout
    ticks = json.loads(out)["ticks"] if out.strip() else {}
    row.journaled, row.lake, row.damaged = len(set(before) | set(after)), len(lake), len(gone)
    row.lost = int(ticks.get("missing", 0)) + len(gone - lake)
    row.reused = shared + sum(1 for s, v in after.items() if s in before and before[s] != v)
    for key in ("twice", "differ", "pending"):
        if ticks.get(key):
            row.notes.append(f"verify: {ticks[key]} {key}")
    if not ticks:
        row.notes.append("verify printed nothing")


def flip_byte(path: Path) -> int:
    """Flip one byte in the middle of ``path``; its offset."""
    data = bytearray(path.read_bytes())
    at = len(data) // 2
    data[at] ^= 0x5A
    path.write_bytes(bytes(data))
    return at


def segments(data: Path) -> list[Path]:
    return sorted(p for p in (data / "journal").iterdir() if ".seg" in p.name)


def tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for p in sorted(folder.rglob("*.seg*")):  # journal.lock holds the last locker's pid
        if p.is_file():
            digest.update(p.name.encode() + p.read_bytes())
    return digest.hexdigest()[:12]


def record_for(data: Path, url: str, log: Path, seconds: float) -> None:
    recorder = Recorder(data, url, log)
    time.sleep(seconds)
    recorder.stop()


def restart_after(row: Row, data: Path, url: str, log: Path, before: dict[int, Any],
                  seconds: float) -> None:  # fmt: skip
    """Start the recorder over the fault, measure ``seconds`` of it, stop, account."""
    recorder = Recorder(data, url, log)
    row.recover_s = wait_until(
        lambda: recovered(data, before, lambda: set(before) - set(journal_map(data))),
        seconds + SKIP_S,
    )
    time.sleep(max(0.0, SKIP_S - (time.perf_counter() - recorder.started)))
    with outage(recorder, row):
        time.sleep(seconds)
    code = recorder.stop()
    if code:
        row.notes.append(f"record exit {code}")
    account(row, data, before)


def flipped_newest(tmp: Path, url: str, seconds: float) -> Row:
    row, data, log = Row("1 flipped byte, newest segment, restart"), tmp / "data", tmp / "log"
    record_for(data, url, log, seconds)
    before = journal_map(data)
    newest = segments(data)[-1]
    at = flip_byte(newest)
    row.notes.append(f"{newest.name}@{at}")
    restart_after(row, data, url, log, before, seconds)
    return row


def deleted_newest(tmp: Path, url: str, seconds: float) -> Row:
    row, data, log = Row("2 newest segment deleted, restart"), tmp / "data", tmp / "log"
    record_for(data, url, log, seconds)
    record_for(data, url, log, seconds)
    before = journal_map(data)
    newest = segments(data)[-1]
    newest.unlink()
    row.notes.append(f"deleted {newest.name}: {len(before) - len(journal_map(data))} frames")
    restart_after(row, data, url, log, before, seconds)
    if "journal_behind_seal" in log.read_text():
        row.notes.append("logged journal_behind_seal")
    return row


def replay_damaged(tmp: Path, url: str, seconds: float) -> Row:
    row, data, log = Row("3 replay --into of a damaged journal"), tmp / "data", tmp / "log"
    record_for(data, url, log, seconds)
    before = journal_map(data)
    at = flip_byte(segments(data)[-1])
    hashed = tree_hash(data / "journal")
    into = tmp / "rebuilt"
    t0 = time.perf_counter()
    command = [*CLI, "replay", "--data", str(data), "--into", str(into)]
    with log.open("a") as err:
        code = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=err).returncode
    row.recover_s = time.perf_counter() - t0
    same = tree_hash(data / "journal") == hashed
    row.notes.append(f"byte @{at}; exit {code}; source {'unchanged' if same else 'CHANGED'}")
    after = journal_map(data)
    lake, shared = lake_seqs(into)
    row.journaled, row.lake, row.lost = len(before), len(lake), len(set(before) - lake)
    row.damaged = len(set(before) - set(after))
    row.reused = shared
    return row


def corrupt_older(tmp: Path, url: str, seconds: float) -> Row:
    row, data, log = Row("4 corrupt older segment, catch-up at start"), tmp / "data", tmp / "log"
    record_for(data, url, log, seconds)
    record_for(data, url, log, seconds)
    before = journal_map(data)
    for lake_dir in ("ticks", "deltas", "state"):  # the lake lost: rebuilt from the journal
        shutil.rmtree(data / lake_dir, ignore_errors=True)
    older = segments(data)[0]
    at = flip_byte(older)
    row.notes.append(f"{older.name}@{at} (of {len(segments(data))} segments)")
    restart_after(row, data, url, log, before, seconds)
    return row


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def disk_full(tmp: Path, url: str, seconds: float, outage_s: float) -> Row:
    row, data, log = Row("5 disk full, then space freed"), tmp / "data", tmp / "log"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(data)], check=True)
    try:
        recorder = Recorder(data, url, log)
        time.sleep(seconds)
        filler = data / "filler"
        with filler.open("wb") as f:  # leave ~64 KB: the journal fills it in a second or so
            os.posix_fallocate(f.fileno(), 0, max(0, free_bytes(data) - (64 << 10)))
        wait_until(lambda: free_bytes(data) < 8192, 30)
        before_outage = journal_map(data)
        with outage(recorder, row):
            time.sleep(outage_s)
        during = journal_map(data)
        row.notes.append(f"{len(during) - len(before_outage)} frames journaled in the outage")
        filler.unlink()
        top = max(during, default=0)

        def caught_up() -> bool:
            lake = lake_seqs(data)[0]
            return set(during) <= lake and any(s > top for s in lake)

        row.recover_s = wait_until(caught_up, 180, 1.0)
        code = recorder.stop()
        if code:
            row.notes.append(f"record exit {code}")
        account(row, data, before_outage)
        text = log.read_text(errors="replace")
        row.notes.append(f"log {len(text) // 1024} KB")
        for event in ("journal_write_failed", "cycle_failed", "gap"):
            n = text.count(event)
            if n:
                row.notes.append(f"{event} x{n}")
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)
    return row


def damaged_minute(tmp: Path, url: str, seconds: float) -> Row:
    row, data, log = Row("6 truncated AAPL minute file, recording"), tmp / "data", tmp / "log"
    recorder = Recorder(data, url, log)
    files: list[Path] = []

    def sealed() -> bool:
        files[:] = sorted((data / "ticks").glob("ticker=AAPL/date=*/minute=*/part.parquet"))
        return bool(files)

    if wait_until(sealed, 120, 1.0) is None:
        recorder.stop()
        row.notes.append("no AAPL minute sealed in 120 s")
        return row
    before = journal_map(data)
    target = files[-1]
    with target.open("r+b") as f:
        f.truncate(target.stat().st_size // 2)
    relative = target.relative_to(data)
    lake0, _ = lake_seqs(data)
    with outage(recorder, row):
        moved = wait_until(lambda: any((data / "quarantine").rglob(relative.name)), 90, 1.0)
        time.sleep(max(0.0, seconds - (moved or 0)))
    lake1, _ = lake_seqs(data)
    top = max(lake0, default=0)
    others = sum(1 for s in lake1 - lake0 if s > top)
    row.notes.append(f"{relative.parent} quarantined after {moved:.0f} s" if moved is not None
                     else f"{relative.parent} NOT quarantined")  # fmt: skip
    row.notes.append(f"{others} new frames in the lake meanwhile")
    code = recorder.stop()
    if code:
        row.notes.append(f"record exit {code}")
    t0 = time.perf_counter()
    command = [*CLI, "verify", "--data", str(data), "--repair"]
    with log.open("a") as err:
        result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=err).returncode
    row.recover_s = time.perf_counter() - t0
    row.notes.append(f"verify --repair exit {result}")
    account(row, data, before)
    return row


def maintenance(tmp: Path, url: str, seconds: float) -> Row:
    row, data, log = Row("7 maintain beside a recorder, status"), tmp / "data", tmp / "log"
    recorder = Recorder(data, url, log)
    time.sleep(seconds)
    before = journal_map(data)
    with outage(recorder, row):
        t0 = time.perf_counter()
        done = subprocess.run([*CLI, "maintain", "--data", str(data)], capture_output=True,
                              text=True)  # fmt: skip
        row.recover_s = time.perf_counter() - t0
        time.sleep(5.0)
    status = subprocess.run([*CLI, "status", "--data", str(data)], capture_output=True, text=True)
    shown = [ln for ln in status.stdout.splitlines() if ln.startswith("maintenance:")]
    row.notes.append(f"maintain exit {done.returncode}")
    row.notes.extend(s.strip() for s in shown[:1])
    code = recorder.stop()
    if code:
        row.notes.append(f"record exit {code}")
    account(row, data, before)
    return row


def show(rows: list[Row]) -> None:
    print("| fault | journaled | in lake | lost (in damaged bytes) | seqs reused | CPU, outage "
          "| log lines/min, outage | recover | notes |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        cpu = "-" if r.cpu is None else f"{r.cpu:.1%}"
        lines = "-" if r.lines_per_min is None else f"{r.lines_per_min:.0f}"
        recover = "not in time" if r.recover_s is None else f"{r.recover_s:.1f} s"
        print(f"| {r.fault} | {r.journaled:,} | {r.lake:,} | {r.lost:,} ({r.damaged:,}) | "
              f"{r.reused} | {cpu} | {lines} | {recover} | {'; '.join(r.notes)} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", type=int, action="append", choices=range(1, 8),
                        help="run this fault (repeatable); default: all")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=15.0, help="each recording step")
    parser.add_argument("--outage", type=float, default=60.0, help="disk full, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the data directories")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # this process's journal reads: the recorder's log says it
    wanted = args.only or list(range(1, 8))
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    faults: dict[int, Callable[[Path, str], Row]] = {
        1: lambda t, u: flipped_newest(t, u, args.seconds),
        2: lambda t, u: deleted_newest(t, u, args.seconds),
        3: lambda t, u: replay_damaged(t, u, args.seconds),
        4: lambda t, u: corrupt_older(t, u, args.seconds),
        5: lambda t, u: disk_full(t, u, args.seconds, args.outage),
        6: lambda t, u: damaged_minute(t, u, args.seconds),
        7: lambda t, u: maintenance(t, u, args.seconds),
    }
    rows = []
    for number in wanted:
        tmp = Path(tempfile.mkdtemp(prefix=f"faults{number}-"))
        t0 = time.perf_counter()
        late = ("--late-rate", "0.02") if number == 6 else ()  # rewrites of sealed minutes
        with Simulator("--rate", "5", *late) as sim:
            rows.append(faults[number](tmp, sim.url))
        print(f"  ({rows[-1].fault}: {time.perf_counter() - t0:.0f} s, {tmp})", flush=True)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    show(rows)
    print(f"(load average {os.getloadavg()[0]:.2f} at end)")


if __name__ == "__main__":
    main()
