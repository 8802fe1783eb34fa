"""What a journal's writer does on open: cut a torn tail, move damage to quarantine, keep
every valid record, and find a next seq that was never used.

The newest segment is scanned (older ones are closed and checked when read: see
``journal_read``). What it may hold besides valid records (``segment.SegmentScan``):

- a *torn tail*: bytes after which nothing valid follows, in a segment without a footer (a
  crash mid-write). They are cut (``event=journal_tail_cut``, ``Journal.repairs``).
- *damage*: bad bytes followed by a valid record or by the footer (a segment that ends with
  a valid footer was closed cleanly: it has no torn tail). Every valid record is kept: the
  segment is split so that each run of consecutive valid records is a valid segment of its
  own, and each damaged range is moved to ``<data>/quarantine/<segment name>.<start>-<end>``
  (byte offsets in the segment as it was; never deleted) and logged as one line,
  ``event=journal_damage``. The seqs in those bytes are lost; readers report them missing.

A split survives a crash at any step; the next open finishes or redoes it:

1. each damaged range is written to quarantine (atomically; the same name and bytes again
   on a redo);
2. each run after the first is written, complete with a footer, as ``<first_seq>.seg.split``
   (atomically, so a ``.split`` is always whole);
3. commit: the segment is replaced (atomically) by its first run and a footer, or removed
   when no valid record precedes the first damage;
4. each ``.split`` is renamed to its ``.seg``.

A ``.split`` found on open is renamed (step 4) when the segment before it ends below its first
seq (the commit happened), and removed otherwise (the segment still holds its records: the
split is redone). The next seq is above every seq the journal holds or a footer names, and
the floor the caller passes (the seal's and the lake's seqs: ``lake_seq_floor``).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, NamedTuple

from lake.atomic import atomic_write_bytes, fsync_directory
from lake.deltas import latest_fold, list_deltas
from lake.seal import load_seal
from recorder.segment import (
    FOOTER,
    HEADER,
    TORN_HEADER,
    DamagedRange,
    JournalCorruptError,
    JournalRepair,
    SegmentRef,
    SegmentScan,
    encode_footer,
    encode_header,
    leftover_files,
    list_segments,
    load_segment,
    read_summary,
    received_range,
    segment_name,
)

__all__ = ["QUARANTINE_DIR", "Recovered", "lake_seq_floor", "quarantine_name", "recover_journal"]

QUARANTINE_DIR: Final = "quarantine"
"""``<data>/quarantine/``: damaged bytes, kept. (To be named in ``lake.datadir`` with every
other path; the journal's folder is ``<data>/journal``, so it is the journal's sibling.)"""
SPLIT_SUFFIX: Final = ".split"
_SPLIT = re.compile(r"^(\d{20})\.seg\.split$")
log = logging.getLogger(__name__)


@dataclass
class Recovered:
    """What recovery found: the next seq the journal's records allow, the torn tails cut and
    the damaged ranges moved to quarantine."""

    next_seq: int = 1
    repairs: list[JournalRepair] = field(default_factory=list)
    damage: list[DamagedRange] = field(default_factory=list)


class _Run(NamedTuple):
    """Consecutive valid records: bytes ``[start, end)`` of a segment, seqs ``first..last``."""

    start: int
    end: int
    first: int
    last: int


def quarantine_name(segment: Path, damage: DamagedRange) -> str:
    """``<segment name>.<first byte>-<byte after the last>``."""
    return f"{segment.name}.{damage.offset}-{damage.end}"


def lake_seq_floor(data: Path) -> int:
    """The lowest seq a new frame may take in the data directory ``data``: above the seal's
    ``applied_seq``, the newest fold marker's seq and every delta's seqs, so that a journal
    that lost its end (power loss under ``--fsync os``, a restored backup) reuses no seq the
    lake has seen."""
    fold = latest_fold(data)
    seen = [load_seal(data).applied_seq, fold.seq if fold else 0]
    seen += [delta.last_seq for delta in list_deltas(data)]
    return max(seen) + 1


def recover_journal(directory: Path, quarantine: Path) -> Recovered:
    """Make the journal in ``directory`` ready for a writer; see the module docstring."""
    for path in leftover_files(directory):
        path.unlink()
        log.warning("event=journal_leftover_removed path=%s", path)
    _finish_splits(directory)
    out = Recovered()
    refs = list_segments(directory)
    while refs:  # the newest segment; an older one if it kept no record
        ref = refs.pop()
        out.next_seq = max(out.next_seq, ref.first_seq)
        if ref.compressed:
            kept = _recover_compressed(ref, quarantine, out)
        else:
            kept = _recover_segment(ref, quarantine, out)
        if kept:
            break
    return out


def _recover_segment(ref: SegmentRef, quarantine: Path, out: Recovered) -> bool:
    """Cut a torn tail, split off damage, close the segment; whether a record is left."""
    scan = SegmentScan(ref.path, ref.path.read_bytes(), ref.first_seq).validate()
    if not scan.header_ok and scan.problem not in (None, TORN_HEADER):
        _quarantine_file(ref, quarantine, scan.problem)  # no valid byte at all: not ours to cut
        out.next_seq = max(out.next_seq, ref.first_seq + 1)  # it held at least one record
        return False
    if scan.footer is not None:
        out.next_seq = max(out.next_seq, scan.footer.last_seq + 1)
    out.next_seq = max(out.next_seq, scan.last_seq + 1)
    if scan.problem is not None:
        repair = JournalRepair(ref.path, scan.end, len(scan.data) - scan.end, scan.problem)
        out.repairs.append(repair)
        log.warning("event=journal_tail_cut segment=%s offset=%d bytes_cut=%d reason=%r", *repair)
    runs = _runs(scan)
    if scan.damage:
        _split(ref, scan, runs, quarantine)
        out.damage += scan.damage
    elif scan.problem is not None or scan.footer is None:
        _close_in_place(ref, scan)
    if not runs:
        log.warning("event=journal_empty_segment_removed segment=%s", ref.path)
    return bool(runs)


def _close_in_place(ref: SegmentRef, scan: SegmentScan) -> None:
    """Cut the torn tail, add the missing footer, fsync; delete the file if no record is left."""
    if scan.last_seq < ref.first_seq:
        ref.path.unlink()
        fsync_directory(ref.path.parent)
        return
    with ref.path.open("r+b") as file:
        file.truncate(scan.end)
        file.seek(scan.end)
        file.write(encode_footer(scan.last_seq, *received_range(scan.data, HEADER.size, scan.end)))
        file.flush()
        os.fsync(file.fileno())


def _runs(scan: SegmentScan) -> list[_Run]:
    """The scanned segment's valid records as runs of consecutive seqs (empty ones left out)."""
    start, first = (HEADER.size, scan.first_seq) if scan.header_ok else (0, scan.first_seq)
    runs = []
    for damage in scan.damage:
        runs.append(_Run(start, damage.offset, first, damage.after_seq))
        start, first = damage.end, damage.resume_seq
    runs.append(_Run(start, _records_end(scan), first, scan.last_seq))
    return [run for run in runs if run.last >= run.first]


def _records_end(scan: SegmentScan) -> int:
    """Where the last valid record ends: before the footer, or where a torn tail starts."""
    return len(scan.data) - FOOTER.size if scan.footer is not None else scan.end


def _split(ref: SegmentRef, scan: SegmentScan, runs: list[_Run], quarantine: Path) -> None:
    """Steps 1-4 of the module docstring, then one ``event=journal_damage`` line per range."""
    data, directory = scan.data, ref.path.parent
    for damage in scan.damage:
        if damage.size:
            chunk = bytes(data[damage.offset : damage.end])
            atomic_write_bytes(quarantine / quarantine_name(ref.path, damage), chunk)
    head = runs[0] if runs and scan.header_ok and runs[0].start == HEADER.size else None
    later = runs[1:] if head is not None else runs
    for run in later:
        split = directory / (segment_name(run.first) + SPLIT_SUFFIX)
        atomic_write_bytes(split, _segment_bytes(data, run))
    if head is not None:
        atomic_write_bytes(ref.path, _segment_bytes(data, head))
    else:
        ref.path.unlink()
        fsync_directory(directory)
    for run in later:
        name = segment_name(run.first)
        os.replace(directory / (name + SPLIT_SUFFIX), directory / name)
    fsync_directory(directory)
    for damage in scan.damage:
        kept = sum(run.last - run.first + 1 for run in runs if run.start >= damage.end)
        log.error(
            "event=journal_damage segment=%s offset=%d bytes=%d records_kept_after=%d "
            "seqs_missing=%d reason=%r quarantined=%s",
            ref.path,
            damage.offset,
            damage.size,
            kept,
            damage.seqs_missing,
            damage.reason,
            quarantine / quarantine_name(ref.path, damage) if damage.size else "-",
        )


def _segment_bytes(data: memoryview, run: _Run) -> bytes:
    """A complete segment holding ``run``: header, its records as they are, a footer."""
    footer = encode_footer(run.last, *received_range(data, run.start, run.end))
    return encode_header(run.first) + bytes(data[run.start : run.end]) + footer


def _finish_splits(directory: Path) -> None:
    """Rename the ``.split`` files of a committed split; remove those of one that was not."""
    splits = sorted(p for p in directory.iterdir() if _SPLIT.match(p.name))
    for split in splits:
        first = int(split.name[:20])
        before = [ref for ref in list_segments(directory) if ref.first_seq <= first]
        summary = read_summary(before[-1]) if before else None
        committed = not before or (
            before[-1].first_seq < first and summary is not None and summary.last_seq < first
        )
        if committed:
            os.replace(split, directory / segment_name(first))
            log.warning("event=journal_split_finished segment=%s", split.name)
        else:
            split.unlink()
            log.warning("event=journal_split_undone segment=%s", split.name)
    if splits:
        fsync_directory(directory)


def _recover_compressed(ref: SegmentRef, quarantine: Path, out: Recovered) -> bool:
    """A compressed newest segment is closed: its footer copy gives the next seq. If that is
    damaged, its records do; if they cannot be read, the file is moved to quarantine."""
    summary = read_summary(ref)
    if summary is None:
        try:
            scan = SegmentScan(ref.path, load_segment(ref), ref.first_seq).validate()
        except JournalCorruptError as exc:
            _quarantine_file(ref, quarantine, exc.reason)
            out.next_seq = max(out.next_seq, ref.first_seq + 1)  # it held at least one
            return False
        summary = scan.footer
        out.next_seq = max(out.next_seq, scan.last_seq + 1)
    if summary is not None:
        out.next_seq = max(out.next_seq, summary.last_seq + 1)
    return True


def _quarantine_file(ref: SegmentRef, quarantine: Path, reason: str) -> None:
    size = ref.path.stat().st_size
    damage = DamagedRange(ref.path, 0, size, ref.first_seq - 1, ref.first_seq, reason)
    target = quarantine / quarantine_name(ref.path, damage)
    atomic_write_bytes(target, ref.path.read_bytes())
    ref.path.unlink()
    fsync_directory(ref.path.parent)
    log.error(
        "event=journal_damage segment=%s offset=0 bytes=%d records_kept_after=0 "
        "seqs_missing=unknown reason=%r quarantined=%s",
        ref.path,
        size,
        reason,
        target,
    )
