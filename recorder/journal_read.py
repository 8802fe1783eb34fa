"""Reading journal records across segments: in seq order, past damage, never modifying a byte.

A read walks the wanted segments oldest first (``read_batches``). By default it is
*resilient*: damaged bytes inside a segment are skipped (the scan resynchronises to the next
valid record, see ``segment.SegmentScan``), a segment that cannot be read at all (a ``.zst``
that does not decompress) is skipped whole, and seqs missing between two segments are noted;
every such range is handed to the caller's ``report`` list and the whole read logs one line,
``event=journal_damage_skipped``, when it ends. So a damaged older segment costs the frames
in its damaged bytes, never the rest of the journal nor the process. A *strict* read
(``ReadOptions.strict``) raises JournalCorruptError at the first damage instead, once the
records before it are yielded.

The newest segment of a journal another process writes (``open_tail``) may end in a record
being written right now: a torn end there, without a footer, ends the read quietly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from recorder.segment import (
    DamagedRange,
    JournalCorruptError,
    JournalRecord,
    SegmentRef,
    SegmentScan,
    load_segment,
    read_summary,
)

__all__ = ["ReadOptions", "RecordRange", "damage_text", "read_batches"]

log = logging.getLogger(__name__)
_SHOWN = 5  # damaged ranges named in the log line; the rest are counted


@dataclass(frozen=True, slots=True)
class RecordRange:
    """Which records a read yields: ``start_seq <= seq < stop_seq``, and received in
    ``[window[0], window[1])`` (epoch microseconds) if ``window`` is given."""

    start_seq: int = 0
    stop_seq: int = 1 << 64
    window: tuple[int, int] | None = None

    def touches(self, damage: DamagedRange) -> bool:
        """Whether the seqs around ``damage`` overlap the range (a window cannot tell)."""
        return damage.resume_seq > self.start_seq and damage.after_seq + 1 < self.stop_seq


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """How a read goes: ``batch_size`` records per batch; ``strict`` raises at the first
    damage instead of skipping it; with ``open_tail`` the newest segment may be growing in
    another process."""

    batch_size: int = 10_000
    strict: bool = False
    open_tail: bool = False


def read_batches(
    refs: list[SegmentRef],
    wanted: list[int],
    selected: RecordRange,
    options: ReadOptions,
    report: list[DamagedRange] | None = None,
) -> Iterator[list[JournalRecord]]:
    """Batches of the valid records of ``refs[i]`` for i in ``wanted`` (ascending) that
    ``selected`` takes; the damage skipped on the way is appended to ``report``."""
    found: list[DamagedRange] = []
    try:
        yield from _read(refs, wanted, selected, options, found)
    finally:
        if found:
            log.warning(
                "event=journal_damage_skipped dir=%s %s",
                found[0].segment.parent,
                damage_text(found),
            )
            if report is not None:
                report.extend(found)


def damage_text(found: list[DamagedRange]) -> str:
    """``ranges=.. bytes=.. seqs_missing=.. at=<segment>@<offset>+<bytes>,...`` in one line."""
    shown = ",".join(f"{d.segment.name}@{d.offset}+{d.size}" for d in found[:_SHOWN])
    more = f",+{len(found) - _SHOWN}_more" if len(found) > _SHOWN else ""
    return (
        f"ranges={len(found)} bytes={sum(d.size for d in found)} "
        f"seqs_missing={sum(d.seqs_missing for d in found)} at={shown}{more}"
    )


def _read(
    refs: list[SegmentRef],
    wanted: list[int],
    selected: RecordRange,
    options: ReadOptions,
    found: list[DamagedRange],
) -> Iterator[list[JournalRecord]]:
    start_seq, stop_seq, window = selected.start_seq, selected.stop_seq, selected.window
    batch: list[JournalRecord] = []
    previous: tuple[int, int] | None = None  # (index, last seq) of the last segment read
    for index in wanted:
        ref = refs[index]
        try:
            _note(_gap_before(previous, index, ref), selected, options, found)
            scan = SegmentScan(
                ref.path, load_segment(ref), ref.first_seq, resync=not options.strict
            )
            for record in scan.records(start_seq):
                if record.seq >= stop_seq:
                    break
                if window is None or window[0] <= record.received_at_us < window[1]:
                    batch.append(record)
                    if len(batch) >= options.batch_size:
                        yield batch
                        batch = []
            growing = options.open_tail and index + 1 == len(refs)
            for damage in [*scan.damage, *_torn_end(scan, growing)]:
                _note(damage, selected, options, found)
        except JournalCorruptError as exc:
            if options.strict:
                if batch:
                    yield batch
                raise
            found.append(_unreadable(refs, index, exc))
            previous = None  # the seqs after an unreadable segment are accounted for
            continue
        previous = (index, scan.last_seq)
        if scan.last_seq + 1 >= stop_seq:
            break
    if batch:
        yield batch


def _note(
    damage: DamagedRange | None,
    selected: RecordRange,
    options: ReadOptions,
    found: list[DamagedRange],
) -> None:
    """Skip ``damage`` (counted in ``found`` if it touches the read), or raise if strict."""
    if damage is None:
        return
    if options.strict:
        raise JournalCorruptError(damage.segment, damage.offset, damage.reason)
    if selected.window is not None or selected.touches(damage):
        found.append(damage)


def _gap_before(
    previous: tuple[int, int] | None, index: int, ref: SegmentRef
) -> DamagedRange | None:
    """The seqs missing between the segment just read (``previous``: its index and last
    seq) and ``ref`` (at ``index``), if it was the one before and they do not follow on."""
    if previous and previous[0] + 1 == index and previous[1] + 1 != ref.first_seq:
        reason = f"seqs after {previous[1]} are missing"
        return DamagedRange(ref.path, 0, 0, previous[1], ref.first_seq, reason)
    return None


def _torn_end(scan: SegmentScan, growing: bool) -> list[DamagedRange]:
    """The scan's bad end as damage, unless another process may be writing it right now."""
    if scan.problem is None:
        return []
    if growing:
        log.info("event=journal_read_stop segment=%s offset=%d", scan.path, scan.end)
        return []
    size = len(scan.data) - scan.end
    return [DamagedRange(scan.path, scan.end, size, scan.last_seq, scan.last_seq + 1, scan.problem)]


def _unreadable(refs: list[SegmentRef], index: int, exc: JournalCorruptError) -> DamagedRange:
    """A segment that cannot be read at all, as one damaged range over the whole file."""
    ref = refs[index]
    summary = read_summary(ref)
    if index + 1 < len(refs):
        resume = refs[index + 1].first_seq
    else:
        resume = summary.last_seq + 1 if summary is not None else ref.first_seq + 1
    try:
        size = Path(exc.segment).stat().st_size
    except OSError:
        size = 0
    return DamagedRange(exc.segment, 0, size, ref.first_seq - 1, resume, exc.reason)
