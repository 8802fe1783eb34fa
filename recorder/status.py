"""What the data directory holds, per tier, and what retention removes next.

Three tiers: ``minute`` (one file per ticker-minute), ``history`` (one per ticker-day) and
``journal`` (raw frames). Counts come from metadata only, never from scanning rows:
Parquet footers (row counts, ``time`` statistics) and journal segment footers (seq and
receive-time ranges). For the journal, ``rows`` are frames and the times are receive times;
the open segment has no footer yet, so its frames are not counted (``rows_exact`` False)
and its modification time stands for the newest frame.
"""

from __future__ import annotations

import datetime as dt
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq

from recorder.atomic import file_size, list_names
from recorder.layout import DAY_MS, HISTORY_DIR, PART_NAME, TICKS_DIR, day_start_ms, lake_days
from recorder.retention import DAY_S, RetentionConfig, first_kept_date
from recorder.schema import LAKE_SCHEMA
from recorder.seal import load_seal
from recorder.segment import list_segments, read_summary

__all__ = ["TierStatus", "lake_status"]

JOURNAL_DIR: Final = "journal"
_TIME: Final = LAKE_SCHEMA.get_field_index("time")


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


def lake_status(
    data: Path, now: float, retention: RetentionConfig | None = None, *, threads: int = 8
) -> list[TierStatus]:
    """The minute, history and journal tiers of the data directory at ``now`` (epoch s)."""
    retention = retention or RetentionConfig()
    root = Path(data)
    minute = [
        (date, folder / name / PART_NAME)
        for _, date, folder in lake_days(root, TICKS_DIR)
        for name in sorted(list_names(folder))
        if name.startswith("minute=")
    ]
    history = [(date, folder / PART_NAME) for _, date, folder in lake_days(root, HISTORY_DIR)]
    return [
        _parquet_tier("minute", minute, now, retention, threads),
        _parquet_tier("history", history, now, retention, threads),
        _journal_tier(root, now, retention),
    ]


def _parquet_tier(
    tier: str,
    files: list[tuple[dt.date, Path]],
    now: float,
    retention: RetentionConfig,
    threads: int,
) -> TierStatus:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        footers = list(pool.map(_footer, [path for _, path in files]))
    found = [(date, f) for (date, _), f in zip(files, footers, strict=True) if f is not None]
    dates, sizes = [date for date, _ in found], [f[1] for _, f in found]
    oldest = min((f[2] for _, f in found if f[2] is not None), default=None)
    newest = max((f[3] for _, f in found if f[3] is not None), default=None)
    removes, at = _tick_removal(dates, sizes, now, retention)
    rows = sum(f[0] for _, f in found)
    return TierStatus(tier, len(found), rows, True, sum(sizes), oldest, newest, removes, at)


def _footer(path: Path) -> tuple[int, int, int | None, int | None] | None:
    """(rows, bytes, oldest time ms, newest time ms) of a Parquet file, from its footer."""
    try:
        size = os.stat(path).st_size
        meta = pq.read_metadata(path)
    except (FileNotFoundError, pa.ArrowException):
        return None
    lows, highs = [], []
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(_TIME).statistics
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
        return f"{len(due)} files ({_bytes(size)}) dated before {keep_from}: due now", None
    oldest = min(dates)
    at = day_start_ms(oldest) + DAY_MS + int(days * DAY_S * 1000)
    same = [s for d, s in zip(dates, sizes, strict=True) if d == oldest]
    return f"{len(same)} files ({_bytes(sum(same))}) of {oldest}", at


def _journal_tier(root: Path, now: float, retention: RetentionConfig) -> TierStatus:
    folder = root / JOURNAL_DIR
    refs = list_segments(folder) if folder.is_dir() else []
    summaries = [read_summary(ref) for ref in refs]
    sizes = [file_size(ref.path) for ref in refs]
    closed = [s for s in summaries if s is not None]
    rows = sum(s.last_seq - s.first_seq + 1 for s in closed)
    oldest = min((s.min_received_us // 1000 for s in closed), default=None)
    newest = max((s.max_received_us // 1000 for s in closed), default=None)
    if refs and summaries[-1] is None:  # the open segment: its mtime is its newest frame
        mtime = int(refs[-1].path.stat().st_mtime * 1000)
        newest = max(newest or mtime, mtime)
        oldest = oldest if oldest is not None else mtime
    removes, at = "nothing", None
    prunable = len(refs) - (2 if refs and summaries[-1] is None else 1)  # as Journal.prune
    if prunable > 0 and summaries[0] is not None:
        ref, summary, size = refs[0], summaries[0], sizes[0]
        at = summary.max_received_us // 1000 + int(retention.journal_retention_days * DAY_S * 1e3)
        frames = summary.last_seq - summary.first_seq + 1
        removes = f"segment {ref.path.name} ({frames:,} frames, {_bytes(size)})"
        if summary.last_seq > load_seal(root).applied_seq:
            removes += " once the lake has applied it"
        elif at <= now * 1000:
            removes, at = removes + ": due now", None
    return TierStatus(
        "journal",
        len(refs),
        rows,
        all(s is not None for s in summaries),
        sum(sizes),
        oldest,
        newest,
        removes,
        at,
    )


def _ms(value: object) -> int:
    if isinstance(value, dt.datetime):
        return (value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)
    assert isinstance(value, int)
    return value


def _bytes(size: int) -> str:
    value, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
