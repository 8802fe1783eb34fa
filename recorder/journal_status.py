"""The journal as a tier of ``ticklake status``: segments, frames, times, what pruning removes next.

Counts come from segment footers only (seq and receive-time ranges), never from reading
records. ``rows`` are frames and the times are receive times; the open segment has no
footer yet, so its frames are not counted (``rows_exact`` False) and its modification time
stands for the newest frame. Pruning follows :func:`recorder.segment.prune_candidates`, the
rule :meth:`recorder.journal.Journal.prune` applies.
"""

from __future__ import annotations

from pathlib import Path

from lake.atomic import file_size
from lake.datadir import journal_dir
from lake.seal import load_seal
from lake.status import TierStatus, byte_text
from lake.utc import DAY_S
from recorder.segment import (
    SegmentRef,
    SegmentSummary,
    list_segments,
    prune_candidates,
    read_summary,
)

__all__ = ["journal_status"]


def journal_status(data: Path, now: float, retention_days: float) -> TierStatus:
    """The journal tier of the data directory at ``now`` (epoch s)."""
    folder = journal_dir(data)
    refs = list_segments(folder) if folder.is_dir() else []
    summaries = [read_summary(ref) for ref in refs]
    sizes = [file_size(ref.path) for ref in refs]
    closed = [s for s in summaries if s is not None]
    oldest = min((s.min_received_us // 1000 for s in closed), default=None)
    newest = max((s.max_received_us // 1000 for s in closed), default=None)
    open_first = refs[-1].first_seq if refs and summaries[-1] is None else None
    if open_first is not None:  # the open segment: its mtime is its newest frame
        mtime = int(refs[-1].path.stat().st_mtime * 1000)
        newest = max(newest or mtime, mtime)
        oldest = oldest if oldest is not None else mtime
    first = summaries[0] if prune_candidates(refs, open_first) else None
    removes, at = ("nothing", None)
    if first is not None:
        removes, at = _next_removal(data, refs[0], first, sizes[0], now, retention_days)
    return TierStatus(
        "journal",
        len(refs),
        sum(s.last_seq - s.first_seq + 1 for s in closed),
        all(s is not None for s in summaries),
        sum(sizes),
        oldest,
        newest,
        removes,
        at,
    )


def _next_removal(
    data: Path, ref: SegmentRef, summary: SegmentSummary, size: int, now: float, days: float
) -> tuple[str, int | None]:
    """What pruning removes next, and when (None: nothing scheduled, or due now)."""
    at = summary.max_received_us // 1000 + int(days * DAY_S * 1e3)
    frames = summary.last_seq - summary.first_seq + 1
    removes = f"segment {ref.path.name} ({frames:,} frames, {byte_text(size)})"
    if summary.last_seq > load_seal(data).applied_seq:
        return removes + " once the lake has applied it", at
    if at <= now * 1000:
        return removes + ": due now", None
    return removes, at
