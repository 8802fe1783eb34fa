"""lake.recent: minute files this process wrote, served from memory only while the
file on disk is still exactly the one written."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from analytics.loader import load_windows
from lake.layout import minute_file
from lake.minutes import write_minutes
from lake.recent import RECENT, RecentFiles, file_key
from lake.utc import MINUTE_MS
from tests.kit.ticks import ticks
from tests.kit.times import OPEN_MS as T0


def test_the_writer_remembers_each_file_under_its_identity(tmp_path: Path) -> None:
    RECENT.clear()
    write_minutes(tmp_path, ticks("AAPL", [T0 + 1, T0 + 2], [1, 2]))
    path = minute_file(tmp_path, "AAPL", T0)
    held = RECENT.get(path, file_key(path))
    assert held is not None and held.equals(pq.read_table(path).cast(held.schema))
    write_minutes(tmp_path, ticks("AAPL", [T0 + 3], [3]))  # merged with the held table
    held = RECENT.get(path, file_key(path))
    assert held is not None and held["seq"].to_pylist() == [1, 2, 3]
    assert pq.read_table(path)["seq"].to_pylist() == [1, 2, 3]


def test_a_file_changed_by_someone_else_is_read_from_disk(tmp_path: Path) -> None:
    RECENT.clear()
    write_minutes(tmp_path, ticks("AAPL", [T0 + 1], [1]))
    path = minute_file(tmp_path, "AAPL", T0)
    other = tmp_path / "other.parquet"  # another process's replace: a new inode
    pq.write_table(pq.read_table(path).slice(0, 0), other)
    os.replace(other, path)
    assert RECENT.get(path, file_key(path)) is None
    write_minutes(tmp_path, ticks("AAPL", [T0 + 2], [2]))  # merges with what is on disk
    assert pq.read_table(path)["seq"].to_pylist() == [2]
    os.remove(path)
    assert RECENT.get(path, file_key(path)) is None


def test_the_loader_gives_the_same_ticks_from_memory_and_from_disk(tmp_path: Path) -> None:
    RECENT.clear()
    for i, name in enumerate(["MSFT", "AAPL"]):
        table = ticks(
            name, [T0 + 5, T0 + 5, T0 + MINUTE_MS + 1], [9 + i, 3 + i, 20], [1.0, 2.0, 3.0]
        )
        write_minutes(tmp_path, table)  # a tie on time: (time, seq) orders it
    windows = {"AAPL": [T0, T0 + MINUTE_MS], "MSFT": [T0, T0 + MINUTE_MS]}
    hits = RECENT.hits
    from_memory = load_windows(tmp_path, windows).ticks
    assert RECENT.hits == hits + 4
    RECENT.clear()
    from_disk = load_windows(tmp_path, windows).ticks
    assert from_memory.equals(from_disk)
    assert from_disk["seq"].to_pylist() == [4, 10, 20, 3, 9, 20]  # by ticker, (time, seq)


def test_memory_is_bounded_oldest_first(tmp_path: Path) -> None:
    table = ticks("AAPL", list(range(T0, T0 + 100)), range(100))
    size = table.to_batches()[0].serialize().size  # held serialized: one buffer
    recent = RecentFiles(max_bytes=3 * size)
    for i in range(5):
        recent.remember(tmp_path / f"{i}", (i, i, i), table)
    assert len(recent) == 3
    assert recent.get(tmp_path / "0", (0, 0, 0)) is None
    held = recent.get(tmp_path / "4", (4, 4, 4))
    assert held is not None and held.equals(table)
    assert recent.get(tmp_path / "4", (4, 4, 5)) is None  # another identity
    recent.remember(tmp_path / "3", (3, 3, 3), table.slice(0, 0))  # empty: not held
    assert recent.get(tmp_path / "3", (3, 3, 3)) is None and len(recent) == 2
    big = pa.concat_tables([table] * 4)
    recent.remember(tmp_path / "4", (9, 9, 9), big)  # larger than the bound: not held
    assert recent.get(tmp_path / "4", (9, 9, 9)) is None and len(recent) == 1


def test_a_copied_back_file_is_not_mistaken_for_the_written_one(tmp_path: Path) -> None:
    RECENT.clear()
    write_minutes(tmp_path, ticks("AAPL", [T0 + 1], [1]))
    path = minute_file(tmp_path, "AAPL", T0)
    saved = tmp_path / "saved.parquet"
    shutil.copy2(path, saved)  # same size and mtime, another inode
    write_minutes(tmp_path, ticks("AAPL", [T0 + 2], [2]))
    shutil.copy2(saved, path)  # a restore over it
    assert RECENT.get(path, file_key(path)) is None
