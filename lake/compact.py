"""Compaction: sealed days move from the minute tier into the history tier (contract 3).

A (ticker, date) passes through three states; readers see every tick exactly once in each,
and at every step between them:

1. *minute*: only minute files (the live edge).
2. *hidden*: its day file exists, holding every row of its minute files merged under the
   dedupe rules; it was written to a temporary, fsynced, renamed into place and its folder
   fsynced. Readers serve a day from its day file whenever it exists, so the minute files,
   still in place, are unused; ``.compacted.json`` in the minute date folder records when
   the day was hidden (by the caller's clock) and a digest of its minute files.
3. *history*: once the grace period has passed (queries that listed the minute files have
   finished), the minute date folder leaves the minute glob in one rename (to
   ``ticks/.deleting/``) and is deleted.

The swap (rename and marker) happens under the tier lock held exclusively (``history.py``):
minute writers hold it shared, so no minute file of the day changes while it is swapped, and
once the day file exists every writer sends the day's rows to it. The day's rows are read
and written before the lock is taken; if the minute files changed meanwhile (their digest
differs), the work is redone under the lock.

A pass killed at any point loses nothing and leaves a state the next pass finishes: a dead
process's temporary is removed (the day is still *minute*); a day file without a marker gets
its minute files merged again (a no-op) and its marker; a marker whose digest no longer
matches its minute files sends the day through compaction again; whatever is under
``ticks/.deleting`` was hidden past its grace and is deleted.

Which days: automatically, a day whose end has been sealed for ``horizon`` seconds
(``seal.watermark_ms >= day_end + horizon``); on demand, days before ``before`` whose end
has passed. A pass only lists the minute tier's date folders (tickers x live days).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq

from lake.atomic import (
    atomic_write_bytes,
    fsync_directory,
    list_names,
    make_dirs_durable,
    pid_running,
    temporary_pid,
)
from lake.datadir import TICKS_DIR, TRASH_DIR
from lake.dedupe import merge_ticks
from lake.errors import first_line
from lake.history import ensure_placeholder, read_day, tier_lock, write_day
from lake.layout import (
    HIDDEN_MARKER,
    PART_NAME,
    date_dir,
    history_file,
    lake_days,
    minute_placeholder,
)
from lake.logfmt import logfmt
from lake.schema import upgrade
from lake.seal import load_seal
from lake.utc import DAY_MS, DAY_S, day_start_ms

__all__ = [
    "DEFAULT_GRACE_S",
    "DEFAULT_HORIZON_S",
    "CompactionError",
    "CompactionPass",
    "CompactionPlan",
    "compact_day",
    "compact_eligible",
    "plan_compaction",
    "remove_tree",
    "retire_minute_folder",
]

log = logging.getLogger(__name__)

DEFAULT_HORIZON_S: Final = DAY_S
DEFAULT_GRACE_S: Final = 600.0

_after_step: Callable[[str], None] | None = None
"""Test hook: called after each step (``written``, ``published``, ``marked``, ``moved``,
``deleting``); the crash tests make it SIGKILL the process."""


class CompactionError(Exception):
    """A day could not be compacted (an unreadable minute file, ...); it stays as it was."""


@dataclass
class CompactionPass:
    """What one pass did."""

    days_compacted: int = 0
    files_merged: int = 0
    rows: int = 0
    bytes_written: int = 0
    days_finished: int = 0
    files_deleted: int = 0
    days_waiting: int = 0  # hidden, inside the grace period
    failed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Marker:
    hidden_at_ms: int
    digest: str
    files: int


def compact_eligible(
    data: Path,
    now: float,
    horizon: float = DEFAULT_HORIZON_S,
    *,
    grace: float = DEFAULT_GRACE_S,
    before: dt.date | None = None,
    max_days: int | None = None,
) -> CompactionPass:
    """One pass over the minute tier of the lake at ``data`` (epoch seconds ``now``).

    Compacts every eligible day (see the module docstring; at most ``max_days``, in ticker
    then date order, to bound a pass, whose time grows with the minute files it merges),
    finishes days hidden for at least ``grace`` seconds (with ``grace`` 0, in the same pass),
    and completes whatever a killed pass left. A day that fails is logged and listed in
    ``failed``; the others go on.
    """
    root = Path(data)
    rules = _PassRules(
        root,
        now_ms=int(now * 1000),
        watermark_ms=load_seal(root).watermark_ms,
        horizon_ms=int(horizon * 1000),
        grace_ms=int(grace * 1000),
        before=before,
    )
    result = CompactionPass()
    result.files_deleted += _empty_trash(root)
    for ticker, date, folder in list(lake_days(root, TICKS_DIR)):
        if max_days is not None and result.days_compacted >= max_days:
            break
        try:
            _visit(rules, ticker, date, folder, result)
        except (OSError, pa.ArrowException, CompactionError) as exc:
            reason = first_line(exc)
            log.error(
                "event=compaction_failed ticker=%s date=%s reason=%s",
                logfmt(ticker),
                date,
                logfmt(reason),
            )
            result.failed.append(f"{ticker} {date}: {reason}")
    if result.days_compacted or result.days_finished or result.failed:
        log.info(
            "event=compaction_pass days=%d files=%d rows=%d finished=%d deleted=%d waiting=%d "
            "failed=%d",
            result.days_compacted,
            result.files_merged,
            result.rows,
            result.days_finished,
            result.files_deleted,
            result.days_waiting,
            len(result.failed),
        )
    return result


@dataclass(frozen=True)
class CompactionPlan:
    """What a pass would do now: compact ``days_due`` days, delete the minute files of
    ``days_finishing`` hidden days; ``days_waiting`` hidden days are inside their grace."""

    days_due: int = 0
    days_finishing: int = 0
    days_waiting: int = 0


def plan_compaction(
    data: Path, now: float, horizon: float = DEFAULT_HORIZON_S, *, grace: float = DEFAULT_GRACE_S
) -> CompactionPlan:
    """What :func:`compact_eligible` would do at ``now`` (by the same rules), read only
    from the minute tier's listing, its markers and the seal; nothing is written."""
    root = Path(data)
    rules = _PassRules(
        root, int(now * 1000), load_seal(root).watermark_ms, int(horizon * 1000), 0, None
    )
    due = finishing = waiting = 0
    for _ticker, date, folder in lake_days(root, TICKS_DIR):
        try:
            marker = _read_marker(folder)
        except CompactionError:
            continue  # a damaged marker: the pass reports it
        if marker is None:
            due += rules.due(date)
        elif rules.now_ms >= marker.hidden_at_ms + int(grace * 1000):
            finishing += 1
        else:
            waiting += 1
    return CompactionPlan(due, finishing, waiting)


@dataclass(frozen=True)
class _PassRules:
    """What one pass decides every day by: the lake, the pass's time (``now_ms``), the
    seal's watermark, and the caller's ``horizon``, ``grace`` and ``before``."""

    root: Path
    now_ms: int
    watermark_ms: int
    horizon_ms: int
    grace_ms: int
    before: dt.date | None

    def due(self, date: dt.date) -> bool:
        """Whether the day is eligible (see the module docstring, "Which days")."""
        day_end = day_start_ms(date) + DAY_MS
        if day_end + self.horizon_ms <= self.watermark_ms:
            return True
        return self.before is not None and date < self.before and day_end <= self.now_ms


def _visit(
    rules: _PassRules, ticker: str, date: dt.date, folder: Path, result: CompactionPass
) -> None:
    """Take one (ticker, date) as far as it may go in this pass: hide it behind its day
    file when due, then finish it once hidden for the grace period."""
    marker = _read_marker(folder)
    if marker is None:
        marker = _hide_if_due(rules, ticker, date, folder, result)
    if marker is not None:
        _finish_after_grace(rules, ticker, date, marker, result)


def _hide_if_due(
    rules: _PassRules, ticker: str, date: dt.date, folder: Path, result: CompactionPass
) -> _Marker | None:
    """Compact a day that is due (or whose day file a killed pass published); its new
    marker, or None if the day stays in the minute tier."""
    root = rules.root
    if not rules.due(date) and not history_file(root, ticker, date).is_file():
        return None  # the day file exists only if a killed pass published it: finish that
    files, rows, size = compact_day(root, ticker, date, rules.now_ms)
    result.days_compacted += int(files > 0)
    result.files_merged, result.rows = result.files_merged + files, result.rows + rows
    result.bytes_written += size
    return _read_marker(folder)


def _finish_after_grace(
    rules: _PassRules, ticker: str, date: dt.date, marker: _Marker, result: CompactionPass
) -> None:
    """Delete a hidden day's minute files once its grace period has passed; hide it again
    if they changed meanwhile."""
    root = rules.root
    if rules.now_ms < marker.hidden_at_ms + rules.grace_ms:
        result.days_waiting += 1
        return
    deleted = _finish_day(root, ticker, date, marker)
    if deleted is None and history_file(root, ticker, date).is_file():
        compact_day(root, ticker, date, rules.now_ms)  # its minute files changed: hide them again
        result.days_compacted += 1
        return
    result.days_finished += int(deleted is not None)
    result.files_deleted += deleted or 0


def compact_day(root: Path, ticker: str, date: dt.date, now_ms: int) -> tuple[int, int, int]:
    """Hide (ticker, date)'s minute files behind its day file; (files, rows, bytes written).

    Idempotent: on a hidden day it only rewrites the marker. Raises CompactionError for a
    minute file that is not a lake file (the day is then left as it was).
    """
    folder, target = date_dir(root, ticker, date), history_file(root, ticker, date)
    _remove_dead_temporaries(target.parent)
    snapshot = _snapshot(folder, target)
    merged, rows = _merged(folder, target)
    tmp = _write_temporary(target, merged) if merged is not None else None
    _step("written")
    try:
        with tier_lock(root, exclusive=True):
            if _snapshot(folder, target) != snapshot:  # a writer slipped in: redo, locked
                _discard(tmp)
                snapshot = _snapshot(folder, target)
                merged, rows = _merged(folder, target)
                tmp = _write_temporary(target, merged) if merged is not None else None
            files = len(snapshot[0])
            if not files:
                remove_tree(folder)  # nothing to hide (a stray empty folder)
                return 0, 0, 0
            ensure_placeholder(minute_placeholder(root))  # see layout: before any deletion
            size = 0
            if tmp is not None:
                size = tmp.stat().st_size
                os.replace(tmp, target)
                tmp = None
                fsync_directory(target.parent)
                _step("published")
            marker = {"hidden_at_ms": now_ms, "digest": _digest(snapshot[0]), "files": files}
            atomic_write_bytes(folder / HIDDEN_MARKER, json.dumps(marker).encode() + b"\n")
            _step("marked")
    finally:
        _discard(tmp)
    log.info(
        "event=day_compacted ticker=%s date=%s files=%d rows=%d bytes=%d",
        logfmt(ticker),
        date,
        files,
        rows,
        size,
    )
    return files, rows, size


def _finish_day(root: Path, ticker: str, date: dt.date, marker: _Marker) -> int | None:
    """Delete a hidden day's minute files and return how many; None if the day had to be
    unhidden instead (its day file is gone, or its minute files changed)."""
    folder = date_dir(root, ticker, date)
    with tier_lock(root, exclusive=True):
        if not history_file(root, ticker, date).is_file():  # deleted by hand: unhide
            log.warning(
                "event=day_file_missing ticker=%s date=%s action=unhide", logfmt(ticker), date
            )
            (folder / HIDDEN_MARKER).unlink()
            return None
        files, _ = _snapshot(folder, None)
        if _digest(files) != marker.digest:
            log.warning("event=minute_files_changed ticker=%s date=%s", logfmt(ticker), date)
            (folder / HIDDEN_MARKER).unlink()
            return None
        trash = retire_minute_folder(root, folder)
        _step("moved")
    deleted = remove_tree(trash)
    log.info("event=day_finished ticker=%s date=%s files_deleted=%d", logfmt(ticker), date, deleted)
    return deleted


def retire_minute_folder(root: Path, folder: Path) -> Path:
    """Move a minute-tier date folder out of the minute glob in one rename, durably, and
    return where it went (delete it with ``remove_tree``). Hold the tier lock exclusively.

    The minute placeholder is made first, so the minute glob never matches nothing.
    """
    ensure_placeholder(minute_placeholder(root))
    trash = Path(root, TICKS_DIR, TRASH_DIR, folder.parent.name, folder.name)
    if trash.exists():
        remove_tree(trash)
    make_dirs_durable(trash.parent)
    os.rename(folder, trash)
    fsync_directory(folder.parent)
    fsync_directory(trash.parent)
    with contextlib.suppress(OSError):  # not empty: the ticker has other days
        folder.parent.rmdir()  # its last day: no writer can be creating one now
    return trash


# -- helpers ----------------------------------------------------------------------------------

Snapshot = tuple[list[tuple[str, int, int, int]], tuple[int, int, int] | None]


def _snapshot(folder: Path, target: Path | None) -> Snapshot:
    """(minute files of a date folder as (name, inode, mtime, size), the day file's key)."""
    files = []
    for name in sorted(list_names(folder)):
        if name.startswith("minute="):
            try:
                st = os.stat(folder / name / PART_NAME)
            except FileNotFoundError:
                continue
            files.append((name, st.st_ino, st.st_mtime_ns, st.st_size))
    key = None
    if target is not None:
        try:
            st = os.stat(target)
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            pass
    return files, key


def _digest(files: list[tuple[str, int, int, int]]) -> str:
    return hashlib.sha256(repr(files).encode()).hexdigest()[:32]


def _merged(folder: Path, target: Path) -> tuple[pa.Table | None, int]:
    """The day's rows to write (None when the day file already holds them all), and the
    number of rows of the minute files."""
    parts = []
    for name in sorted(list_names(folder)):
        path = folder / name / PART_NAME
        if not name.startswith("minute=") or not path.is_file():
            continue
        try:  # a minute file written before fields 35-45 had names gets today's columns
            table = upgrade(pq.ParquetFile(path).read())
        except ValueError as exc:
            reason = f"{path} does not hold LAKE_SCHEMA ({exc}); move it aside"
            raise CompactionError(reason) from exc
        parts.append(table)
    if not parts:
        return None, 0
    minutes = pa.concat_tables(parts).combine_chunks()  # minute order: already (time, seq)
    try:
        existing = read_day(target)
    except FileNotFoundError:
        return minutes, minutes.num_rows  # each minute file obeys the rules; no overlaps
    merged, kept_new = merge_ticks(existing, minutes)
    return (merged if kept_new else None), minutes.num_rows


def _write_temporary(target: Path, table: pa.Table) -> Path:
    make_dirs_durable(target.parent)
    tmp = target.with_name(f".{target.name}.compact.{os.getpid()}.tmp")
    try:
        write_day(table, tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        _discard(tmp)
        raise
    return tmp


def _discard(tmp: Path | None) -> None:
    if tmp is not None:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _remove_dead_temporaries(folder: Path) -> None:
    for name in list_names(folder):
        pid = temporary_pid(name)
        if pid is not None and pid != os.getpid() and not pid_running(pid):
            _discard(folder / name)


def _read_marker(folder: Path) -> _Marker | None:
    try:
        raw = json.loads((folder / HIDDEN_MARKER).read_bytes())
        return _Marker(int(raw["hidden_at_ms"]), str(raw["digest"]), int(raw["files"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise CompactionError(f"{folder / HIDDEN_MARKER} is damaged ({exc}); delete it") from exc


def _empty_trash(root: Path) -> int:
    """Delete what killed passes left in ``ticks/.deleting``; files deleted."""
    trash = Path(root, TICKS_DIR, TRASH_DIR)
    return remove_tree(trash) if trash.is_dir() else 0


def remove_tree(top: Path) -> int:
    """Delete a folder tree file by file (bottom-up), then its parents up to and including
    ``ticks/.deleting`` while they are empty; returns the Parquet files deleted. Entries
    that vanish meanwhile (another process finishing the same trash) are skipped."""
    deleted = 0
    for folder, dirs, files in os.walk(top, topdown=False):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, name))
                if name.endswith(".parquet"):
                    deleted += 1
                    if deleted == 1:
                        _step("deleting")
        for name in dirs:
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(os.path.join(folder, name))
    with contextlib.suppress(FileNotFoundError):
        top.rmdir()
    parent = top.parent
    while TRASH_DIR in parent.parts and parent.name != TICKS_DIR:
        try:
            parent.rmdir()
        except OSError:  # not empty (or gone): stop climbing
            break
        parent = parent.parent
    with contextlib.suppress(FileNotFoundError):
        fsync_directory(parent)
    return deleted


def _step(name: str) -> None:
    if _after_step is not None:
        _after_step(name)
