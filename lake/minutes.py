"""The Parquet lake: one file per (ticker, UTC minute), merged and replaced atomically.

Paths come from ``layout.py``; this module reads, merges and writes minute files, and sends
rows of a day already compacted into the history tier (``history.py``) to that day's file,
so readers and writers never need to know which tier holds a day.

Invariants of every ``part.parquet`` (contract 2):
- it holds exactly ``LAKE_SCHEMA``, LZ4-compressed (earlier versions wrote zstd: both
  are read), rows of one ticker (``id``) whose ``time`` lies in
  ``[minute_start, minute_start + 60 s)``, sorted by (``time``, ``seq``);
- no two rows share a ``seq`` and no two rows carry the same tick content (the dedupe rule,
  ``dedupe.py``); rows that share a ``time`` but differ in any field are all kept;
- it is only ever replaced whole (``atomic.replace_file``): a reader sees the minute before
  or after a write, never a partial or doubled one. Merging is idempotent, so replaying the
  journal over an existing lake changes nothing;
- it is never created for a (ticker, date) that has a history day file: such rows are
  merged into the day file under the same rules (checked and written under the tier lock,
  held shared, so compaction never swaps a day in under a writer).

One writer per lake: writes to the same minute are serialised inside a process; two
processes writing the same minute at once could lose one's rows (the journal's lock makes
the recorder the only writer). Compaction, another process, is ordered against it by the
tier lock.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lake.atomic import pid_running, replace_file_stat, temporary_pid
from lake.datadir import HISTORY_DIR, TICKS_DIR
from lake.dedupe import conform, merge_ticks
from lake.errors import LakeReadError, LakeStopped, LakeWriteError
from lake.history import (
    day_minutes,
    ensure_placeholder,
    merge_into_day,
    read_day_minutes,
    tier_lock,
    write_day_atomically,
)
from lake.layout import (
    PART_NAME,
    PLACEHOLDER_VALUE,
    date_dir,
    decode_ticker,
    history_file,
    history_placeholder,
    minute_file,
    minute_placeholder,
    parse_minute_dir,
)
from lake.logfmt import logfmt
from lake.offload import check_writable, day_source, readable
from lake.recent import RECENT, file_key, key_of
from lake.remote import RemoteLake
from lake.schema import LAKE_SCHEMA, empty_lake_table, stored_columns, upgrade
from lake.symbols import SymbolError, valid_symbol_mask, validate_symbol
from lake.utc import MINUTE_MS, utc_date
from lake.verify_files import quarantine_lake_files

__all__ = [
    "MinuteWrite",
    "MinutesWrite",
    "clean_temporaries",
    "list_minutes",
    "list_tickers",
    "minute_source",
    "read_minutes",
    "write_minute",
    "write_minutes",
]

log = logging.getLogger(__name__)

# LZ4, as the history tier: a minute file lives until its day is compacted, and with 47
# columns zstd's per-column cost made each small file 2.3x slower to write (issue 11:
# 2.5 -> 1.0 ms a 60-row file, 500 of them a minute at 500 symbols).
COMPRESSION: Final = "lz4"
WRITE_BUFFER: Final = 1 << 20  # the Parquet writer's ~4 small writes a column, coalesced
BATCH_ROWS: Final = 8_192  # rows ``write_minutes`` sorts into place at once, per thread
_LOCKS: Final = tuple(threading.Lock() for _ in range(64))
_READY: set[str] = set()  # roots whose placeholders this process has made sure of


@dataclass(frozen=True)
class MinuteWrite:
    """What a write did to one (ticker, minute); ``bytes_written`` is 0 when nothing changed.

    ``path`` is the minute file, or the history day file when the day is compacted (then
    the row counts are the minute's rows inside it, and ``bytes_written`` the file's size).
    """

    path: Path
    rows_before: int
    rows_in: int
    rows_after: int
    duplicates_dropped: int
    bytes_written: int
    ticker: str
    minute_start_ms: int

    @property
    def written(self) -> bool:
        return self.bytes_written > 0


@dataclass(frozen=True)
class MinutesWrite:
    """What ``write_minutes`` did: one MinuteWrite per minute touched, and rows refused."""

    writes: list[MinuteWrite]
    rejected: pa.Table

    @property
    def rejected_rows(self) -> int:
        return int(self.rejected.num_rows)


def write_minute(root: Path, ticker: str, minute_start_ms: int, rows: pa.Table) -> MinuteWrite:
    """Merge ``rows`` into the (ticker, minute) file and replace it atomically.

    ``rows`` must have LAKE_SCHEMA's columns (they are cast to it), ``id == ticker``, a
    ``seq`` and a ``time`` inside the minute; anything else is a programming error
    (ValueError). If the merge adds nothing, the file is left as it was. OS errors raise
    LakeWriteError after the temporary is removed; the previous file is then intact.
    When the minute's day is in the history tier, the rows go into its day file instead.
    """
    minute_file(Path(root), ticker, minute_start_ms)  # validates the symbol and the minute
    incoming = conform(rows)
    _check_rows(incoming, ticker, minute_start_ms)
    with _writing(Path(root)):
        return _write_rows(Path(root), ticker, [minute_start_ms], [incoming])[0]


def _write_rows(
    root: Path,
    ticker: str,
    minutes: list[int],
    parts: list[pa.Table],
    history_before: dt.date | None = None,
    unique: bool = False,
) -> list[MinuteWrite]:
    """Write one table per minute of one ticker; the tier lock is held by the caller."""
    out: list[MinuteWrite] = []
    days: dict[dt.date, list[int]] = {}
    for i, start in enumerate(minutes):
        days.setdefault(utc_date(start), []).append(i)
    for date, indices in days.items():
        check_writable(root, ticker, date)
        day_file = history_file(root, ticker, date)
        straight = (  # a past day the minute tier has never held: its history file directly
            history_before is not None
            and date < history_before
            and not date_dir(root, ticker, date).exists()
        )
        if straight or day_file.is_file():
            rows = pa.concat_tables([parts[i] for i in indices])
            out.extend(_merge_into_day(day_file, ticker, [minutes[i] for i in indices], rows))
        else:
            out.extend(
                _write_minute_file(root, ticker, minutes[i], parts[i], unique) for i in indices
            )
    return out


def _write_minute_file(
    root: Path, ticker: str, minute_start_ms: int, rows: pa.Table, unique: bool = False
) -> MinuteWrite:
    path = minute_file(root, ticker, minute_start_ms)
    with _LOCKS[hash(path) % len(_LOCKS)]:
        try:
            existing = _read_existing(path)
        except LakeReadError as exc:
            existing = _set_aside(root, path, exc)
        if unique and existing.num_rows == 0:  # nothing to merge with: sorted as it came
            merged, kept_new = rows, rows.num_rows
        else:
            merged, kept_new = merge_ticks(existing, rows)
        dropped = existing.num_rows + rows.num_rows - merged.num_rows
        size = _replace(path, merged) if kept_new else 0
    result = MinuteWrite(
        path,
        existing.num_rows,
        rows.num_rows,
        merged.num_rows,
        dropped,
        size,
        ticker,
        minute_start_ms,
    )
    log.debug(
        "event=lake_minute_written path=%s rows_before=%d rows_in=%d rows_after=%d "
        "duplicates=%d bytes=%d",
        logfmt(path),
        result.rows_before,
        result.rows_in,
        result.rows_after,
        dropped,
        size,
    )
    return result


def _set_aside(root: Path, path: Path, exc: LakeReadError) -> pa.Table:
    """A damaged minute file goes to ``quarantine/`` (never deleted) and the minute is
    written again from what comes in, so one bad file stops no other write; the journal
    still holds the ticks it had (``ticklake verify --repair`` puts them back)."""
    log.error(
        "event=lake_file_damaged path=%s reason=%s action=quarantined_and_rewritten repair=%s",
        logfmt(path),
        logfmt(str(exc).splitlines()[0]),
        logfmt("ticklake verify --repair"),
    )
    quarantine_lake_files(root, [path])
    return empty_lake_table()


def _merge_into_day(
    path: Path, ticker: str, minutes: list[int], rows: pa.Table
) -> list[MinuteWrite]:
    """Merge rows of some minutes into a day file (a late tick, a replay, an import of a
    past day), creating it if missing."""
    with _LOCKS[hash(path) % len(_LOCKS)]:
        try:
            merge = merge_into_day(path, minutes, rows, lambda t: _replace(path, t, day=True))
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise LakeReadError(f"cannot read {path}: {exc}; move it aside to rewrite") from exc
    log.info(
        "event=lake_history_merged path=%s minutes=%d rows_in=%d added=%d",
        logfmt(path),
        len(minutes),
        rows.num_rows,
        sum(merge.added),
    )
    counts = zip(minutes, merge.before, merge.incoming, merge.after, merge.added, strict=True)
    return [
        MinuteWrite(path, b, i, a, b + i - a, merge.bytes_written if n else 0, ticker, m)
        for m, b, i, a, n in counts
    ]


def _replace(path: Path, table: pa.Table, *, day: bool = False) -> int:
    try:
        if day:
            return write_day_atomically(table, path)
        stat = replace_file_stat(path, lambda tmp: _write_parquet(table, tmp))
        RECENT.remember(path, key_of(stat), table)  # this process reads it from memory
        return stat.st_size
    except OSError as exc:
        reason = str(exc.strerror or exc).replace("\n", " ")
        raise LakeWriteError(f"cannot write {path}: {reason}") from exc


@contextlib.contextmanager
def _writing(root: Path) -> Iterator[None]:
    """The tier lock, shared; on this process's first write to ``root``, the placeholders
    of both tiers, which keep ``layout.duckdb_read_sql`` in one shape and let
    ``layout.duckdb_ticker_sql`` read a ticker with no file in a tier."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(tier_lock(root, exclusive=False))
            if os.fspath(root) not in _READY:
                ensure_placeholder(history_placeholder(root))
                ensure_placeholder(minute_placeholder(root))
                _READY.add(os.fspath(root))
        except OSError as exc:
            reason = str(exc.strerror or exc).replace("\n", " ")
            raise LakeWriteError(f"cannot prepare {root / HISTORY_DIR}: {reason}") from exc
        yield


def write_minutes(
    root: Path,
    table: pa.Table,
    *,
    history_before: dt.date | None = None,
    unique: bool = False,
    threads: int = 1,
    stop: Callable[[], bool] | None = None,
) -> MinutesWrite:
    """Split a LAKE_SCHEMA table by (``id``, UTC minute of ``time``) and write each minute.

    Rows with a NULL or invalid ``id`` or a NULL ``time`` are not written: they come back in
    ``rejected`` (and are logged), never raised. Rows of a UTC date before
    ``history_before`` whose (ticker, date) has no minute-tier folder go into that day's
    history file (created or merged), as compaction would put them: an import of past days
    writes one file per ticker-day instead of one per minute. The caller guarantees that
    nothing writes minute files of such days meanwhile (an import holds the journal lock).

    ``unique``: the caller guarantees that no two rows hold the same seq or the same tick
    content (a fold of deduplicated deltas), so a minute without a file is written as it
    comes, sorted, without the merge. ``threads`` write several tickers' files at once.
    ``stop`` is asked before each ticker: True raises LakeStopped (files written so far
    stay; rewriting them is harmless).
    """
    # One chunk (a copy when the rows come in many, as a replay's decoded batches do): the
    # takes below cost 4x as much from many chunks.
    good = conform(table).combine_chunks()
    del table
    usable = pc.and_(valid_symbol_mask(good["id"]), pc.is_valid(good["time"]))
    rejected = good.filter(pc.invert(usable))
    if rejected.num_rows:
        log.warning(
            "event=lake_rows_rejected rows=%d reason=null_or_invalid_id_or_time", rejected.num_rows
        )
        good = good.filter(usable)
    if good.num_rows == 0:
        return MinutesWrite([], rejected)
    minute = np.floor_divide(good["time"].cast(pa.int64()).to_numpy(), MINUTE_MS)
    encoded = good["id"].combine_chunks().dictionary_encode()
    codes = encoded.indices.to_numpy()
    seqs = np.asarray(good["seq"].to_numpy(zero_copy_only=False), dtype=np.int64)
    order = np.lexsort((seqs, good["time"].cast(pa.int64()).to_numpy(), minute, codes))
    minute, codes = minute[order], codes[order]
    starts = np.flatnonzero(np.r_[True, (np.diff(codes) != 0) | (np.diff(minute) != 0)])
    ends = np.r_[starts[1:], len(order)]
    tickers = np.r_[True, np.diff(codes[starts]) != 0]  # first group of each ticker
    cuts = [*np.flatnonzero(tickers).tolist(), len(starts)]
    # Sorted rows are taken a batch of tickers at a time, never all at once: a large write
    # (a fold of 5,000 tickers' minute) holds its rows once, plus a batch per thread.
    per_batch = min(BATCH_ROWS, -(-len(order) // max(1, threads)))
    batches: list[list[tuple[int, int]]] = [[]]
    batch_rows = 0
    for lo, hi in pairwise(cuts):
        if batch_rows >= per_batch:
            batches.append([])
            batch_rows = 0
        batches[-1].append((lo, hi))
        batch_rows += int(ends[hi - 1] - starts[lo])

    def write_batch(groups: list[tuple[int, int]]) -> list[MinuteWrite]:
        first, last = int(starts[groups[0][0]]), int(ends[groups[-1][1] - 1])
        rows = good.take(pa.array(order[first:last]))
        out: list[MinuteWrite] = []
        for lo, hi in groups:
            if stop is not None and stop():
                raise LakeStopped("stopped before every minute file was written")
            ticker = encoded.dictionary[int(codes[starts[lo]])].as_py()
            minutes = [int(minute[s]) * MINUTE_MS for s in starts[lo:hi]]
            spans = zip(starts[lo:hi], ends[lo:hi], strict=True)
            parts = [rows.slice(int(s) - first, int(e - s)) for s, e in spans]
            out += _write_rows(Path(root), ticker, minutes, parts, history_before, unique)
        return out

    context = contextvars.copy_context()  # deferred_sync reaches the pool's threads
    with _writing(Path(root)), ThreadPoolExecutor(max(1, threads)) as pool:
        done = pool.map(lambda groups: context.copy().run(write_batch, groups), batches)
        writes = [write for batch_writes in done for write in batch_writes]
    return MinutesWrite(writes, rejected)


def read_minutes(
    root: Path,
    ticker: str,
    minute_starts_ms: Iterable[int],
    columns: list[str] | None = None,
    remote: RemoteLake | None = None,
) -> pa.Table:
    """The rows of exactly these minutes (missing ones skipped), in the order given.

    A minute of a compacted day is read from its day file (only the row groups that hold
    it); otherwise from its minute file. Each day is read from one tier, the day file
    whenever it exists, so a day being compacted is never read twice or missed. A day
    offloaded to the object store is read from there (``lake.offload.day_source``; given
    ``remote``, any day that object store holds).
    """
    names = LAKE_SCHEMA.names if columns is None else columns
    unknown = [c for c in names if LAKE_SCHEMA.get_field_index(c) < 0]
    if unknown:
        raise ValueError(f"unknown lake columns {unknown}")
    schema = pa.schema([LAKE_SCHEMA.field(c) for c in names])
    starts = list(dict.fromkeys(minute_starts_ms))
    days: dict[dt.date, list[int]] = {}
    for start in starts:
        days.setdefault(utc_date(start), []).append(start)
    parts: list[pa.Table] = []
    keys: list[npt.NDArray[np.int64]] = []
    with_time = list(dict.fromkeys([*names, "time"]))
    for date, minutes in days.items():
        try:
            source = day_source(Path(root), ticker, date, remote)
            if source is None:
                raise FileNotFoundError
            day = read_day_minutes(readable(source), minutes, with_time)
        except FileNotFoundError:
            pass
        else:
            times = np.asarray(day["time"].cast(pa.int64()).to_numpy(), dtype=np.int64)
            parts.append(day.select(names))
            keys.append(times - times % MINUTE_MS)
            continue
        for start in minutes:
            path = minute_file(Path(root), ticker, start)
            try:
                parts.append(_read_columns(path, names))
            except FileNotFoundError:
                continue
            except (OSError, pa.ArrowException, ValueError) as exc:
                raise LakeReadError(f"cannot read {path}: {exc}") from exc
            keys.append(np.full(parts[-1].num_rows, start, dtype=np.int64))
    if not parts:
        return schema.empty_table()
    table = pa.concat_tables(parts)
    rank = {m: i for i, m in enumerate(starts)}
    minute_keys = np.concatenate(keys)
    unique, inverse = np.unique(minute_keys, return_inverse=True)
    order = np.array([rank[int(m)] for m in unique], dtype=np.int64)[inverse]
    if len(order) > 1 and np.any(np.diff(order) < 0):
        table = table.take(pa.array(np.argsort(order, kind="stable")))
    return table


def minute_source(root: Path, ticker: str, minute_start_ms: int) -> Path | None:
    """The file that holds the minute's ticks, if any: its day's history file when the day
    is compacted (whether or not that minute has a tick), else its minute file."""
    day_file = history_file(Path(root), ticker, utc_date(minute_start_ms))
    if day_file.is_file():
        return day_file
    path = minute_file(Path(root), ticker, minute_start_ms)
    return path if path.is_file() else None


def list_tickers(root: Path) -> list[str]:
    """Every ticker with a folder in either tier, sorted; foreign folders are skipped."""
    tickers: set[str] = set()
    for tier in (TICKS_DIR, HISTORY_DIR):
        for name in _listdir(Path(root, tier)):
            if not name.startswith("ticker=") or name == f"ticker={PLACEHOLDER_VALUE}":
                continue
            try:
                tickers.add(decode_ticker(name.removeprefix("ticker=")))
            except SymbolError as exc:
                log.warning(
                    "event=lake_foreign_folder name=%s reason=%s", logfmt(name), logfmt(exc)
                )
    return sorted(tickers)


def list_minutes(
    root: Path, ticker: str, date: dt.date, remote: RemoteLake | None = None
) -> list[int]:
    """Start (epoch ms) of every minute of ``ticker`` on UTC ``date`` that has a tick
    (minute tier: a file; a compacted day: a row in its day file, wherever it is)."""
    try:
        source = day_source(Path(root), ticker, date, remote)
        if source is not None:
            return day_minutes(readable(source))
    except FileNotFoundError:
        pass
    folder = date_dir(Path(root), ticker, date)
    starts = []
    for name in _listdir(folder):
        if (folder / name / PART_NAME).is_file():
            try:
                starts.append(parse_minute_dir(folder / name)[1])
            except ValueError:
                log.warning("event=lake_foreign_folder name=%s", logfmt(folder / name))
    return sorted(starts)


def clean_temporaries(root: Path) -> int:
    """Remove temporaries left by crashed writers (this pid, or one no longer running).

    Call at startup, before this process writes. A temporary of a live other process is
    left alone: it is about to become a file. Returns how many were removed.
    """
    removed = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            pid = temporary_pid(name)
            if pid is None or (pid != os.getpid() and pid_running(pid)):
                continue
            try:
                os.unlink(os.path.join(folder, name))
            except FileNotFoundError:
                continue
            removed += 1
            log.warning("event=lake_temporary_removed path=%s", logfmt(os.path.join(folder, name)))
    return removed


def _check_rows(rows: pa.Table, ticker: str, minute_start_ms: int) -> None:
    if rows.num_rows == 0:
        return
    if rows["seq"].null_count:
        raise ValueError(f"{rows['seq'].null_count} rows for {ticker!r} have no seq")
    same_id = pc.fill_null(pc.equal(rows["id"], validate_symbol(ticker)), False)
    if not pc.all(same_id).as_py():
        raise ValueError(f"rows with an id other than {ticker!r} passed for {ticker!r}")
    times = rows["time"].cast(pa.int64())
    lo, hi = minute_start_ms, minute_start_ms + MINUTE_MS
    inside = pc.and_(pc.greater_equal(times, lo), pc.less(times, hi))
    if not pc.all(pc.fill_null(inside, False)).as_py():
        raise ValueError(f"rows for {ticker!r} have a time outside [{lo}, {hi}) ms or none")


def _read_existing(path: Path) -> pa.Table:
    key = file_key(path)
    if key is None:  # a minute's first write (most of a fold): no reader's exception
        return empty_lake_table()
    known = RECENT.get(path, key)  # written by this process, unchanged since
    if known is not None:
        return known
    try:
        table = _read_columns(path, LAKE_SCHEMA.names)
    except FileNotFoundError:  # removed since the stat
        return empty_lake_table()
    except (OSError, pa.ArrowException) as exc:
        raise LakeReadError(f"cannot read {path}: {exc}; move it aside to rewrite") from exc
    except ValueError as exc:  # columns no version of the lake wrote
        raise LakeReadError(f"{path}: {exc}; move it aside to rewrite") from exc
    if not table.schema.equals(LAKE_SCHEMA):
        raise LakeReadError(f"{path} does not hold LAKE_SCHEMA; move it aside to rewrite")
    return table


def _read_columns(path: Path, names: list[str]) -> pa.Table:
    """The lake columns ``names`` of a minute file, whichever version wrote it (a file from
    before fields 35-45 had names is upgraded, ``lake.schema.upgrade``)."""
    file = pq.ParquetFile(path)
    stored = file.schema_arrow.names
    if set(names) <= set(stored):
        return file.read(columns=names).select(names)
    return upgrade(file.read(columns=stored_columns(names, stored)), names)


def _write_parquet(table: pa.Table, path: Path) -> None:
    with pa.output_stream(path, buffer_size=WRITE_BUFFER) as sink:
        pq.write_table(table, sink, compression=COMPRESSION)


def _listdir(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []
