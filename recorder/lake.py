"""The Parquet lake: one file per (ticker, UTC minute), merged and replaced atomically.

Paths come from ``layout.py``; this module reads, merges and writes minute files.

Invariants of every ``part.parquet`` (contract 2):
- it holds exactly ``LAKE_SCHEMA``, zstd-compressed, rows of one ticker (``id``) whose
  ``time`` lies in ``[minute_start, minute_start + 60 s)``, sorted by (``time``, ``seq``);
- no two rows share a ``seq`` and no two rows carry the same tick content (the dedupe rule,
  ``dedupe.py``); rows that share a ``time`` but differ in any field are all kept;
- it is only ever replaced whole (``atomic.replace_file``): a reader sees the minute before
  or after a write, never a partial or doubled one. Merging is idempotent, so replaying the
  journal over an existing lake changes nothing.

One writer per lake: writes to the same minute are serialised inside a process; two
processes writing the same minute at once could lose one's rows (the journal's lock makes
the recorder the only writer).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.atomic import replace_file, temporary_pid
from recorder.dedupe import conform, merge_ticks
from recorder.layout import (
    MINUTE_MS,
    PART_NAME,
    TICKS_DIR,
    date_dir,
    decode_ticker,
    minute_file,
    parse_minute_dir,
)
from recorder.schema import LAKE_SCHEMA
from recorder.symbols import SymbolError, valid_symbol_mask, validate_symbol

__all__ = [
    "LakeError",
    "LakeReadError",
    "LakeWriteError",
    "MinuteWrite",
    "MinutesWrite",
    "clean_temporaries",
    "list_minutes",
    "list_tickers",
    "read_minutes",
    "write_minute",
    "write_minutes",
]

log = logging.getLogger(__name__)

COMPRESSION: Final = "zstd"
_LOCKS: Final = tuple(threading.Lock() for _ in range(64))


class LakeError(Exception):
    """Base of the lake's errors."""


class LakeWriteError(LakeError):
    """A minute file could not be written (disk full, permissions, ...); the old one stands."""


class LakeReadError(LakeError):
    """An existing minute file could not be read or does not hold ``LAKE_SCHEMA``."""


@dataclass(frozen=True)
class MinuteWrite:
    """What ``write_minute`` did to one file; ``bytes_written`` is 0 when nothing changed."""

    path: Path
    rows_before: int
    rows_in: int
    rows_after: int
    duplicates_dropped: int
    bytes_written: int

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
    """
    path = minute_file(Path(root), ticker, minute_start_ms)
    incoming = conform(rows)
    _check_rows(incoming, ticker, minute_start_ms)
    with _LOCKS[hash(path) % len(_LOCKS)]:
        existing = _read_existing(path)
        merged, kept_new = merge_ticks(existing, incoming)
        dropped = existing.num_rows + incoming.num_rows - merged.num_rows
        size = 0
        if kept_new:
            try:
                size = replace_file(path, lambda tmp: _write_parquet(merged, tmp))
            except OSError as exc:
                reason = str(exc.strerror or exc).replace("\n", " ")
                raise LakeWriteError(f"cannot write {path}: {reason}") from exc
    result = MinuteWrite(path, existing.num_rows, incoming.num_rows, merged.num_rows, dropped, size)
    log.debug(
        "event=lake_minute_written path=%s rows_before=%d rows_in=%d rows_after=%d "
        "duplicates=%d bytes=%d",
        path,
        result.rows_before,
        result.rows_in,
        result.rows_after,
        dropped,
        size,
    )
    return result


def write_minutes(root: Path, table: pa.Table) -> MinutesWrite:
    """Split a LAKE_SCHEMA table by (``id``, UTC minute of ``time``) and write each minute.

    Rows with a NULL or invalid ``id`` or a NULL ``time`` are not written: they come back in
    ``rejected`` (and are logged), never raised.
    """
    table = conform(table)
    usable = pc.and_(valid_symbol_mask(table["id"]), pc.is_valid(table["time"]))
    rejected = table.filter(pc.invert(usable))
    if rejected.num_rows:
        log.warning(
            "event=lake_rows_rejected rows=%d reason=null_or_invalid_id_or_time", rejected.num_rows
        )
    good = table.filter(usable)
    if good.num_rows == 0:
        return MinutesWrite([], rejected)
    minute = np.floor_divide(good["time"].cast(pa.int64()).to_numpy(), MINUTE_MS)
    encoded = good["id"].combine_chunks().dictionary_encode()
    codes = encoded.indices.to_numpy()
    order = np.lexsort((minute, codes))
    minute, codes = minute[order], codes[order]
    good = good.take(pa.array(order))
    starts = np.flatnonzero(np.r_[True, (np.diff(codes) != 0) | (np.diff(minute) != 0)])
    ends = np.r_[starts[1:], len(order)]
    writes = [
        write_minute(
            root,
            encoded.dictionary[int(codes[s])].as_py(),
            int(minute[s]) * MINUTE_MS,
            good.slice(int(s), int(e - s)),
        )
        for s, e in zip(starts, ends, strict=True)
    ]
    return MinutesWrite(writes, rejected)


def read_minutes(
    root: Path,
    ticker: str,
    minute_starts_ms: Iterable[int],
    columns: list[str] | None = None,
) -> pa.Table:
    """The rows of exactly these minute files (missing ones skipped), in the order given."""
    names = LAKE_SCHEMA.names if columns is None else columns
    unknown = [c for c in names if LAKE_SCHEMA.get_field_index(c) < 0]
    if unknown:
        raise ValueError(f"unknown lake columns {unknown}")
    schema = pa.schema([LAKE_SCHEMA.field(c) for c in names])
    parts = []
    for start in dict.fromkeys(minute_starts_ms):
        path = minute_file(Path(root), ticker, start)
        try:
            parts.append(pq.ParquetFile(path).read(columns=names).select(names))
        except FileNotFoundError:
            continue
    return pa.concat_tables(parts) if parts else schema.empty_table()


def list_tickers(root: Path) -> list[str]:
    """Every ticker that has a folder in the lake, sorted; foreign folders are skipped."""
    tickers = []
    for name in _listdir(Path(root, TICKS_DIR)):
        if not name.startswith("ticker="):
            continue
        try:
            tickers.append(decode_ticker(name.removeprefix("ticker=")))
        except SymbolError as exc:
            log.warning("event=lake_foreign_folder name=%r reason=%r", name, str(exc))
    return sorted(tickers)


def list_minutes(root: Path, ticker: str, date: dt.date) -> list[int]:
    """Start (epoch ms) of every minute of ``ticker`` on UTC ``date`` that has a file."""
    folder = date_dir(Path(root), ticker, date)
    starts = []
    for name in _listdir(folder):
        if (folder / name / PART_NAME).is_file():
            try:
                starts.append(parse_minute_dir(folder / name)[1])
            except ValueError:
                log.warning("event=lake_foreign_folder name=%r", str(folder / name))
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
            if pid is None or (pid != os.getpid() and _running(pid)):
                continue
            try:
                os.unlink(os.path.join(folder, name))
            except FileNotFoundError:
                continue
            removed += 1
            log.warning("event=lake_temporary_removed path=%s", os.path.join(folder, name))
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
    try:
        table = pq.ParquetFile(path).read()
    except FileNotFoundError:
        return LAKE_SCHEMA.empty_table()
    except (OSError, pa.ArrowException) as exc:
        raise LakeReadError(f"cannot read {path}: {exc}; move it aside to rewrite") from exc
    if not table.schema.equals(LAKE_SCHEMA):
        raise LakeReadError(f"{path} does not hold LAKE_SCHEMA; move it aside to rewrite")
    return table


def _write_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression=COMPRESSION)


def _listdir(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
