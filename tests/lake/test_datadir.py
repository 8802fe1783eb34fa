"""lake.datadir: the names under ``--data`` (existing data directories depend on them) and the
writer's lock, held by one process at a time, naming its holder, released when the holder
releases it or dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lake import datadir
from lake.datadir import (
    DataLockedError,
    WriterLock,
    database_file,
    journal_dir,
    seal_file,
    sessions_file,
    writer_lock_holder,
)
from lake.seal import SealState, save_seal
from recorder.journal import Journal

HOLDER = """
import sys
from pathlib import Path
from lake.datadir import WriterLock

lock = WriterLock.acquire(Path(sys.argv[1]))
print("locked", flush=True)
for line in sys.stdin:
    if line.strip() == "release":
        lock.release()
        print("released", flush=True)
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the writer lock of ``tmp_path``; it releases on "release" and
    exits when its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def command(proc: subprocess.Popen[str], line: str) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


def lock_text(folder: Path) -> str:
    return (folder / datadir.JOURNAL_LOCK).read_text()


def test_another_process_holding_the_lock_is_named_until_it_releases(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    assert lock_text(tmp_path) == f"{holder.pid}\n"
    with pytest.raises(DataLockedError, match=rf"open for writing by process {holder.pid};"):
        WriterLock.acquire(tmp_path)
    assert lock_text(tmp_path) == f"{holder.pid}\n", "a refused acquire changes nothing"
    assert command(holder, "release") == "released"
    assert holder.poll() is None  # still running, no longer holding
    with WriterLock.acquire(tmp_path) as lock:
        assert lock.held and lock_text(tmp_path) == f"{os.getpid()}\n"


def test_a_holder_that_dies_releases_the_lock(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(DataLockedError):
        WriterLock.acquire(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    assert holder.wait(timeout=30) == -signal.SIGKILL
    with WriterLock.acquire(tmp_path) as lock:
        assert lock.held and lock_text(tmp_path) == f"{os.getpid()}\n"


def test_a_second_acquire_in_the_same_process_is_refused_too(tmp_path: Path) -> None:
    (tmp_path / datadir.JOURNAL_LOCK).write_text("1234567890123\n")  # a stale, longer PID
    first = WriterLock.acquire(tmp_path)
    assert lock_text(tmp_path) == f"{os.getpid()}\n"
    with pytest.raises(DataLockedError, match=rf"by process {os.getpid()};"):
        WriterLock.acquire(tmp_path)
    first.release()
    first.release()  # idempotent
    assert not first.held
    with WriterLock.acquire(tmp_path) as second:
        assert second.held
    assert not second.held, "leaving the block releases it"
    WriterLock.acquire(tmp_path).release()


def test_the_lock_needs_its_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        WriterLock.acquire(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


def test_a_journal_writer_holds_the_writer_lock(tmp_path: Path) -> None:
    refused = pytest.raises(DataLockedError, match=rf"by process {os.getpid()};")
    with Journal.open(journal_dir(tmp_path)), refused:
        WriterLock.acquire(journal_dir(tmp_path))
    WriterLock.acquire(journal_dir(tmp_path)).release()


def test_the_names_under_the_data_directory_never_change() -> None:
    names = {
        "JOURNAL_DIR": "journal",
        "JOURNAL_LOCK": "journal.lock",
        "TICKS_DIR": "ticks",
        "HISTORY_DIR": "history",
        "TRASH_DIR": ".deleting",
        "HISTORY_LOCK": ".lock",
        "STATE_DIR": "state",
        "SEAL_FILE": Path("state/seal.json"),
        "SESSIONS_FILE": Path("state/sessions.jsonl"),
        "IMPORTS_FILE": Path("state/imports.json"),
        "ANALYTICS_STATE_FILE": Path("state/analytics.json"),
        "ANALYTICS_LOCK_FILE": Path("state/analytics.lock"),
        "RECORDER_STATE_FILE": Path("state/recorder.json"),
        "QUARANTINE_FILE": "quarantine.jsonl",
        "DATABASE_FILE": "ticklake.duckdb",
    }
    assert {name: getattr(datadir, name) for name in names} == names


@pytest.mark.parametrize("data", [Path("/srv/data"), "/srv/data", Path("relative/data")])
def test_path_helpers_join_the_data_directory(data: Path | str) -> None:
    root = Path(data)
    assert journal_dir(data) == root / "journal"
    assert seal_file(data) == root / "state" / "seal.json"
    assert sessions_file(data) == root / "state" / "sessions.jsonl"
    assert database_file(data) == root / "ticklake.duckdb"


def test_writers_use_the_named_paths(tmp_path: Path) -> None:
    save_seal(tmp_path, SealState(watermark_ms=60_000))
    assert seal_file(tmp_path).is_file()
    with Journal.open(journal_dir(tmp_path)):
        assert (journal_dir(tmp_path) / datadir.JOURNAL_LOCK).is_file()


def test_the_lock_holder_is_named_while_held_and_none_once_free(tmp_path: Path) -> None:
    folder = journal_dir(tmp_path)
    assert writer_lock_holder(tmp_path) is None  # no lock file: nobody, and nothing created
    assert not folder.exists()
    folder.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        assert writer_lock_holder(tmp_path) == proc.pid
        assert writer_lock_holder(tmp_path) == proc.pid, "probing takes nothing away"
        assert command(proc, "release") == "released"
        assert writer_lock_holder(tmp_path) is None  # the file still names the old PID
        assert lock_text(folder) == f"{proc.pid}\n"
        with WriterLock.acquire(folder):  # the probe left the lock free for a writer
            assert writer_lock_holder(tmp_path) == os.getpid()
    finally:
        proc.kill()
        proc.wait(timeout=30)
