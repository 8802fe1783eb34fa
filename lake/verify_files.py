"""Every Parquet file a reader of the lake opens, read through: minute files, day files and
deltas (with the placeholders), each decoded to its last row.

``recorder.verify`` reads the lake through the readers' SQL first, which decodes every file
it serves; file by file (:func:`check_lake_files`, ~1 ms a minute file on one core) it reads
only what that SQL never opens (:func:`unserved_minute_files`), or everything, to name the
culprits, when the SQL fails.

Invariants:
- the files are the ones the readers' globs match (``lake.layout.TICKS_GLOB``,
  ``HISTORY_GLOB``, ``lake.deltas.DELTA_GLOB``): temporaries and folders a compaction
  retired (``ticks/.deleting``) are not lake files;
- reading never writes; a file that vanishes while listed (a compaction or a fold
  finishing) is simply gone, not unreadable;
- a file is *unreadable* when its footer or any page does not decode, or when it lacks the
  lake's ``time`` or ``seq`` column (the readers' SQL would fail on it);
- :func:`quarantine_lake_files` (``verify --repair``, under the writer's lock) moves such
  files to ``<data>/quarantine/`` under their path in the data directory, never deletes
  one, and puts back a placeholder it moved (the readers' globs need it).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq

from lake.atomic import fsync_directory, make_dirs_durable
from lake.datadir import QUARANTINE_DIR, TICKS_DIR
from lake.deltas import DELTA_GLOB, ensure_deltas_dir
from lake.errors import first_line
from lake.history import ensure_placeholder
from lake.layout import (
    HIDDEN_MARKER,
    HISTORY_GLOB,
    PART_NAME,
    TICKS_GLOB,
    history_file,
    history_placeholder,
    lake_days,
    minute_placeholder,
)
from lake.logfmt import logfmt

__all__ = [
    "TIERS",
    "FileCheck",
    "check_lake_files",
    "lake_file_paths",
    "quarantine_lake_files",
    "unserved_minute_files",
]

log = logging.getLogger(__name__)

TIERS: Final = {"minute": TICKS_GLOB, "history": HISTORY_GLOB, "delta": DELTA_GLOB}
"""Each kind of lake file and the glob (relative to the data directory) that finds it."""
_REQUIRED: Final = ("time", "seq")
_BATCH_ROWS: Final = 65_536


@dataclass
class FileCheck:
    """Files read per kind (``TIERS``), the unreadable ones with the reason, and the
    readers' SQL's error when it failed."""

    read: Counter[str] = field(default_factory=Counter)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    sql_error: str = ""


def lake_file_paths(data: Path) -> list[tuple[str, Path]]:
    """(kind, path) of every lake file, in kind then path order."""
    return [(kind, path) for kind, glob in TIERS.items() for path in sorted(Path(data).glob(glob))]


def unserved_minute_files(data: Path) -> list[tuple[str, Path]]:
    """("minute", path) of the minute files the readers' SQL never opens: those of days
    hidden behind their day file, until compaction deletes them."""
    root = Path(data)
    return [
        ("minute", folder / name / PART_NAME)
        for ticker, date, folder in lake_days(root, TICKS_DIR)
        if (folder / HIDDEN_MARKER).is_file() and history_file(root, ticker, date).is_file()
        for name in sorted(os.listdir(folder))
        if name.startswith("minute=") and (folder / name / PART_NAME).is_file()
    ]


def check_lake_files(
    data: Path, paths: list[tuple[str, Path]] | None = None, *, threads: int = 2
) -> FileCheck:
    """Read every lake file under ``data`` (or the (kind, path) ``paths``) to its last row
    (see the module docstring)."""
    files = lake_file_paths(data) if paths is None else paths
    with ThreadPoolExecutor(max_workers=threads) as pool:
        problems = list(pool.map(_problem, [path for _, path in files]))
    check = FileCheck()
    for (kind, path), problem in zip(files, problems, strict=True):
        if problem is None:
            check.read[kind] += 1
        elif problem:  # "" : vanished while listed
            check.unreadable.append((path, problem))
    return check


def _problem(path: Path) -> str | None:
    """Why ``path`` cannot be read (None: it can; "": it is gone)."""
    try:
        file = pq.ParquetFile(path)
        missing = [name for name in _REQUIRED if name not in file.schema_arrow.names]
        if missing:
            return f"not a lake file (no {', '.join(missing)} column)"
        for _ in file.iter_batches(batch_size=_BATCH_ROWS):
            pass
    except FileNotFoundError:
        return ""
    except (OSError, pa.ArrowException, ValueError) as exc:
        text = first_line(exc)
        return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return None


def quarantine_lake_files(data: Path, paths: list[Path]) -> list[str]:
    """Move each lake file of ``paths`` to ``<data>/quarantine/<its path under data>``
    (``.1``, ``.2``, ... when that name is taken), durably; one line per file moved."""
    root = Path(data)
    done = []
    for path in paths:
        relative = path.relative_to(root)
        target = root / QUARANTINE_DIR / relative
        n = 0
        while target.exists():
            n += 1
            target = root / QUARANTINE_DIR / f"{relative}.{n}"
        make_dirs_durable(target.parent)
        try:
            os.rename(path, target)
        except FileNotFoundError:
            continue
        fsync_directory(path.parent)
        fsync_directory(target.parent)
        log.warning("event=lake_file_quarantined path=%s to=%s", logfmt(path), logfmt(target))
        done.append(f"moved {relative} to {target.relative_to(root)}")
    if done:  # put back a placeholder that was moved (a no-op otherwise)
        ensure_placeholder(minute_placeholder(root))
        ensure_placeholder(history_placeholder(root))
        if (root / DELTA_GLOB.partition("/")[0]).is_dir():
            ensure_deltas_dir(root)
    return done
