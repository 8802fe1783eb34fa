"""Journal append throughput against the raw ``file.write`` of the same frame bytes.

Run: ``.venv/bin/python -m bench.journal [--frames N]``. GROUP syncs every 200 ms of wall time
inline (the recorder does it from a worker thread, so this slightly understates GROUP).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from recorder.journal import FsyncPolicy, Journal, JournalConfig

FRAME_BYTES = 120
T0 = 1_700_000_000_000_000


def make_frames(count: int) -> list[str]:
    """Distinct v2-style frames of exactly FRAME_BYTES bytes."""
    head = '{"type":"pricing","message":"'
    return [(f"{head}{i:010d}" + "A" * FRAME_BYTES)[: FRAME_BYTES - 2] + '"}' for i in range(count)]


def rate(count: int, run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


def raw_write(path: Path, frames: list[str]) -> None:
    with path.open("wb") as file:
        write = file.write
        for frame in frames:
            write(frame.encode())


def journal_append(directory: Path, frames: list[str], policy: FsyncPolicy) -> None:
    with Journal.open(directory, JournalConfig(fsync=policy)) as journal:
        append, last_sync = journal.append, time.perf_counter()
        for start in range(0, len(frames), 10_000):
            for frame in frames[start : start + 10_000]:
                append(frame, T0)
            if time.perf_counter() - last_sync >= 0.2:
                journal.sync()
                last_sync = time.perf_counter()


def journal_append_many(directory: Path, frames: list[str], batch: int) -> None:
    with Journal.open(directory) as journal:
        for start in range(0, len(frames), batch):
            journal.append_many(frames[start : start + batch], T0)


def read_back(directory: Path) -> None:
    with Journal.open_reader(directory) as reader:
        for _batch in reader.iter_records():
            pass


def reopen(directory: Path) -> None:
    Journal.open(directory).close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=500_000)
    parser.add_argument("--always-frames", type=int, default=2_000)
    args = parser.parse_args()
    frames = make_frames(args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        raw = rate(len(frames), lambda: raw_write(root / "raw", frames))
        group = rate(len(frames), lambda: journal_append(root / "g", frames, FsyncPolicy.GROUP))
        many = rate(len(frames), lambda: journal_append_many(root / "m", frames, 100))
        os_rate = rate(len(frames), lambda: journal_append(root / "o", frames, FsyncPolicy.OS))
        read = rate(len(frames), lambda: read_back(root / "g"))
        newest_mb = sorted((root / "m").glob("*.seg"))[-1].stat().st_size / 2**20
        reopen_s = 1 / rate(1, lambda: reopen(root / "m"))  # validates the newest segment
        few = frames[: args.always_frames]
        always = rate(len(few), lambda: journal_append(root / "a", few, FsyncPolicy.ALWAYS))
    print(f"{len(frames)} frames of {FRAME_BYTES} bytes")
    print(f"raw file.write (buffered)     {raw:>12,.0f} /s  (baseline)")
    for name, value in [
        ("journal GROUP append", group),
        ("journal GROUP append_many×100", many),
        ("journal OS append", os_rate),
        ("journal ALWAYS append", always),
    ]:
        print(f"{name:<30}{value:>12,.0f} /s  ratio {value / raw:.2f}")
    print(f"{'journal iter_records (read)':<30}{read:>12,.0f} /s")
    print(f"{'reopen, newest segment':<30}{reopen_s * 1000:>12,.1f} ms  ({newest_mb:.1f} MiB)")


if __name__ == "__main__":
    main()
