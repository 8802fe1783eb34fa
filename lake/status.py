"""What the lake holds, per tier, and what retention removes next.

Two tiers: ``minute`` (one file per ticker-minute) and ``history`` (one per ticker-day), and
the object store of offloaded days when the data directory has one (``lake.remote``); the
journal reports itself in the same shape (``recorder.journal_status``). Counts come from
metadata only, never from scanning rows: Parquet footers (row counts, ``time`` statistics).
A file whose footer cannot be read, or that has no ``time`` timestamps, is not counted but
reported (``unreadable``, the first ``UNREADABLE_SHOWN`` paths); one that vanished while
listed (a compaction finishing) is simply gone.
"""

from __future__ import annotations

import datetime as dt
import enum
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq

from lake.atomic import list_names
from lake.datadir import HISTORY_DIR, TICKS_DIR
from lake.layout import PART_NAME, lake_days
from lake.remote import RemoteLake, remote_of
from lake.retention import RetentionConfig, first_kept_date
from lake.utc import DAY_MS, DAY_S, day_start_ms

__all__ = ["UNREADABLE_SHOWN", "TierStatus", "byte_text", "lake_status"]

UNREADABLE_SHOWN: Final = 5
"""How many unreadable files a tier names (it counts them all)."""
_TIME: Final = "time"  # LAKE_SCHEMA's event time
REMOTE_FOOTERS: Final = 2000
"""How many objects of the object store ``status`` reads the footer of (rows, times)."""


@dataclass(frozen=True)
class TierStatus:
    """One tier's totals; times are epoch ms (None when the tier is empty)."""

    tier: str
    files: int
    rows: int
    rows_exact: bool
    bytes: int
    oldest_ms: int | None
    newest_ms: int | None
    removes_next: str
    removes_at_ms: int | None  # None: nothing scheduled (or due now, see removes_next)
    unreadable: int = 0  # files not counted above: damaged, unreadable, not a lake file
    unreadable_paths: tuple[str, ...] = ()  # the first UNREADABLE_SHOWN of them


def lake_status(
    data: Path, now: float, retention: RetentionConfig | None = None, *, threads: int = 8
) -> list[TierStatus]:
    """The minute and history tiers of the data directory at ``now`` (epoch s)."""
    retention = retention or RetentionConfig()
    root = Path(data)
    minute = [
        (date, folder / name / PART_NAME)
        for _, date, folder in lake_days(root, TICKS_DIR)
        for name in sorted(list_names(folder))
        if name.startswith("minute=")
    ]
    history = [(date, folder / PART_NAME) for _, date, folder in lake_days(root, HISTORY_DIR)]
    tiers = [
        _parquet_tier("minute", minute, now, retention, threads),
        _parquet_tier("history", history, now, retention, threads),
    ]
    remote = remote_of(root)
    if remote is not None:
        tiers.append(_remote_tier(remote, threads))
    return tiers


def _remote_tier(remote: RemoteLake, threads: int) -> TierStatus:
    """The object store (``lake.remote``): one listing, then the footers of up to
    ``REMOTE_FOOTERS`` objects (two ranged reads each); above that, rows are a lower bound.
    Retention does not reach it: the bucket's own lifecycle rules remove objects."""
    days = list(remote.days())
    read = days[:REMOTE_FOOTERS]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        footers = list(pool.map(lambda d: _remote_footer(remote, d[2].key), read))
    found = [f for f in footers if not isinstance(f, _NoFooter)]
    bad = [d[2] for d, f in zip(read, footers, strict=True) if f is _NoFooter.UNREADABLE]
    return TierStatus(
        f"object store {remote.url}",
        len(days) - len(bad),
        sum(f[0] for f in found),
        len(read) == len(days),
        sum(d[2].size for d in days) - sum(d.size for d in bad),
        min((f[2] for f in found if f[2] is not None), default=None),
        max((f[3] for f in found if f[3] is not None), default=None),
        "nothing: the bucket's lifecycle rules decide",
        None,
        len(bad),
        tuple(str(d) for d in bad[:UNREADABLE_SHOWN]),
    )


def _remote_footer(
    remote: RemoteLake, key: str
) -> tuple[int, int, int | None, int | None] | _NoFooter:
    try:
        meta = pq.read_metadata(key, filesystem=remote.filesystem)
    except FileNotFoundError:
        return _NoFooter.GONE
    except (OSError, pa.ArrowException):
        return _NoFooter.UNREADABLE
    return _footer_values(meta, 0)


def _parquet_tier(
    tier: str,
    files: list[tuple[dt.date, Path]],
    now: float,
    retention: RetentionConfig,
    threads: int,
) -> TierStatus:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        footers = list(pool.map(_footer, [path for _, path in files]))
    read = list(zip(files, footers, strict=True))
    found = [(date, f) for (date, _), f in read if not isinstance(f, _NoFooter)]
    bad = [str(path) for (_, path), f in read if f is _NoFooter.UNREADABLE]
    dates, sizes = [date for date, _ in found], [f[1] for _, f in found]
    oldest = min((f[2] for _, f in found if f[2] is not None), default=None)
    newest = max((f[3] for _, f in found if f[3] is not None), default=None)
    removes, at = _tick_removal(dates, sizes, now, retention)
    rows = sum(f[0] for _, f in found)
    return TierStatus(
        tier,
        len(found),
        rows,
        True,
        sum(sizes),
        oldest,
        newest,
        removes,
        at,
        len(bad),
        tuple(bad[:UNREADABLE_SHOWN]),
    )


class _NoFooter(enum.Enum):
    GONE = "gone"  # deleted while listed
    UNREADABLE = "unreadable"  # damaged, not readable, or not a lake file


def _footer(path: Path) -> tuple[int, int, int | None, int | None] | _NoFooter:
    """(rows, bytes, oldest time ms, newest time ms) of a Parquet file, from its footer."""
    try:
        size = os.stat(path).st_size
        meta = pq.read_metadata(path)
    except FileNotFoundError:
        return _NoFooter.GONE
    except (OSError, pa.ArrowException):
        return _NoFooter.UNREADABLE
    return _footer_values(meta, size)


def _footer_values(
    meta: pq.FileMetaData, size: int
) -> tuple[int, int, int | None, int | None] | _NoFooter:
    schema = meta.schema.to_arrow_schema()
    index = schema.get_field_index(_TIME)
    if index < 0 or not pa.types.is_timestamp(schema.field(index).type):
        return _NoFooter.UNREADABLE  # not a lake file
    column = meta.schema.names.index(_TIME)
    lows, highs = [], []
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(column).statistics
        if meta.row_group(g).num_rows and stats is not None and stats.has_min_max:
            lows.append(_ms(stats.min))
            highs.append(_ms(stats.max))
    return meta.num_rows, size, min(lows, default=None), max(highs, default=None)


def _tick_removal(
    dates: list[dt.date], sizes: list[int], now: float, retention: RetentionConfig
) -> tuple[str, int | None]:
    days = retention.tick_retention_days
    if days is None:
        return "nothing: ticks are kept forever", None
    if not dates:
        return "nothing", None
    keep_from = first_kept_date(now, days)
    due = [(d, s) for d, s in zip(dates, sizes, strict=True) if d < keep_from]
    if due:
        size = sum(s for _, s in due)
        return f"{len(due)} files ({byte_text(size)}) dated before {keep_from}: due now", None
    oldest = min(dates)
    at = day_start_ms(oldest) + DAY_MS + int(days * DAY_S * 1000)
    same = [s for d, s in zip(dates, sizes, strict=True) if d == oldest]
    return f"{len(same)} files ({byte_text(sum(same))}) of {oldest}", at


def _ms(value: object) -> int:
    if isinstance(value, dt.datetime):
        return (value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)
    assert isinstance(value, int)
    return value


def byte_text(size: int) -> str:
    """``512 B``, ``3.4 KiB``, ``1.2 GiB``."""
    value, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
