"""Journal segments on disk: byte format, validation with resynchronisation, naming,
summaries, compression.

A segment ``<first_seq:020d>.seg`` holds frames with consecutive sequence numbers. All
integers are little-endian::

    header  24 bytes    magic b"TLJOURNL" | version u32 (= 1) | flags u32 (= 0) | first_seq u64
    record  24 + n      length u32 (= n) | seq u64 | received_at i64 (epoch microseconds)
                        | payload (n bytes: the frame's UTF-8) | crc u32
    footer  32 bytes    0xFFFFFFFF u32 | last_seq u64 | min received_at i64
                        | max received_at i64 | crc u32          (closed segments only)

``crc`` is ``zlib.crc32`` (CRC-32/ISO-HDLC, the gzip/PNG one) of everything before it in the
record (its 20-byte header and payload) or in the footer (its first 28 bytes).

Invariants of a valid segment: the header's first_seq equals the number in the file name;
record seqs start there and rise by exactly 1; every crc matches; a footer, when present, is
the last 32 bytes and names the last record's seq. A segment is scanned front to back
(``SegmentScan``). Bytes that break an invariant are either a *torn tail* (nothing valid
follows them and no footer ends the segment: a crash mid-write) or *damage* (a valid record
or the footer follows them: a flipped byte, a lost block). The scan resynchronises past
damage to the next record whose checksum verifies and reports each damaged range
(``DamagedRange``); what to do about either is the caller's decision (the writer cuts a torn
tail and moves damage to quarantine, ``journal_recovery``; readers skip and report it,
``journal_read``).

A closed segment may be replaced by ``<first_seq:020d>.seg.zst``: magic b"TLJZSTD1" |
raw size u64 | a copy of the footer (32 bytes) | zstd(the whole raw segment) made with
``pyarrow.Codec("zstd")``. Its footer copy makes the summary readable without decompressing.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from lake.atomic import fsync_directory

MAGIC = b"TLJOURNL"
VERSION = 1
HEADER = struct.Struct("<8sIIQ")
RECORD_HEAD = struct.Struct("<IQq")
CRC = struct.Struct("<I")
FOOTER = struct.Struct("<IQqqI")
FOOTER_MARK = 0xFFFF_FFFF
RECORD_OVERHEAD = RECORD_HEAD.size + CRC.size
ZMAGIC = b"TLJZSTD1"
ZHEADER = struct.Struct("<8sQ")
SUFFIX = ".seg"
ZSUFFIX = ".seg.zst"
_NAME = re.compile(r"^(\d{20})\.seg(\.zst)?$")
_NO_DECODE = 1 << 64  # a start_seq above every seq: validate records without decoding them
TORN_HEADER = "incomplete segment header"  # missing or zeros: a crash right after creation
_MAX_RAW_SIZE = 1 << 36  # no segment is this big: a larger raw size in a .zst is damage
_RESYNC_CHUNK = 1 << 20  # at most this many candidate offsets filtered at once
log = logging.getLogger(__name__)


class JournalError(Exception):
    """Base of every journal error."""


class JournalCorruptError(JournalError):
    """A segment breaks the format somewhere other than a tail the journal may cut."""

    def __init__(self, segment: Path, offset: int, reason: str) -> None:
        super().__init__(f"journal segment {segment} is corrupt at byte {offset}: {reason}")
        self.segment = segment
        self.offset = offset
        self.reason = reason


class JournalRecord(NamedTuple):
    """One journaled frame, exactly as received."""

    seq: int
    received_at_us: int
    frame: str


class SegmentSummary(NamedTuple):
    """What a closed segment's footer says: its seq range and receive-time range."""

    first_seq: int
    last_seq: int
    min_received_us: int
    max_received_us: int


class JournalRepair(NamedTuple):
    """A torn tail that was cut: ``bytes_cut`` bytes from ``offset`` on, after which nothing
    valid followed in a segment without a footer."""

    segment: Path
    offset: int
    bytes_cut: int
    reason: str


class DamagedRange(NamedTuple):
    """Bytes ``[offset, offset + size)`` of ``segment`` that hold no valid record, with valid
    records after them. The valid records before them end at seq ``after_seq``; the next
    valid one is ``resume_seq``: the seqs in between (``seqs_missing``) were in those bytes.
    ``size`` 0: seqs missing where no byte is bad (between two segments)."""

    segment: Path
    offset: int
    size: int
    after_seq: int
    resume_seq: int
    reason: str

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def seqs_missing(self) -> int:
        return max(0, self.resume_seq - self.after_seq - 1)


@dataclass(frozen=True, slots=True)
class SegmentRef:
    """A segment file found in the journal directory."""

    first_seq: int
    path: Path
    compressed: bool


def segment_name(first_seq: int, compressed: bool = False) -> str:
    return f"{first_seq:020d}{ZSUFFIX if compressed else SUFFIX}"


def list_segments(directory: Path) -> list[SegmentRef]:
    """Segments in seq order; where both ``.seg`` and ``.seg.zst`` exist, the ``.seg`` wins."""
    found: dict[int, SegmentRef] = {}
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match is None:
            continue
        ref = SegmentRef(int(match.group(1)), path, match.group(2) is not None)
        if ref.first_seq not in found or not ref.compressed:
            found[ref.first_seq] = ref
    return [found[seq] for seq in sorted(found)]


def prune_candidates(refs: list[SegmentRef], open_first_seq: int | None) -> list[SegmentRef]:
    """The segments pruning may consider, oldest first: every closed one but the newest,
    which carries the seq counter across restarts (``open_first_seq``: the open segment)."""
    closed = [ref for ref in refs if ref.first_seq != open_first_seq]
    return closed[:-1]


def leftover_files(directory: Path) -> list[Path]:
    """What a crash while compressing leaves: ``*.tmp``, a ``.zst`` shadowed by its ``.seg``."""
    kept = {ref.path for ref in list_segments(directory)}
    return sorted(
        path
        for path in directory.iterdir()
        if path.name.endswith(".tmp") or (_NAME.match(path.name) and path not in kept)
    )


def encode_header(first_seq: int) -> bytes:
    return HEADER.pack(MAGIC, VERSION, 0, first_seq)


def encode_footer(last_seq: int, min_received_us: int, max_received_us: int) -> bytes:
    body = FOOTER.pack(FOOTER_MARK, last_seq, min_received_us, max_received_us, 0)[:-4]
    return body + CRC.pack(zlib.crc32(body))


def decode_footer(first_seq: int, footer: bytes) -> SegmentSummary | None:
    """The summary in ``footer``, or None if those bytes are not a valid footer."""
    if len(footer) != FOOTER.size:
        return None
    mark, last_seq, low, high, crc = FOOTER.unpack(footer)
    if mark != FOOTER_MARK or crc != zlib.crc32(footer[:-4]) or last_seq < first_seq:
        return None
    return SegmentSummary(first_seq, last_seq, low, high)


class SegmentScan:
    """Validates one segment's bytes front to back; see the module docstring for the rules.

    With ``resync`` (the default) a record that breaks an invariant does not end the scan:
    it looks for the next offset holding a record whose checksum verifies and whose seq is
    not below the one expected (``find_record``), notes the bytes in between in ``damage``
    and goes on from there. Only bytes after which nothing valid follows, in a segment that
    does not end with a valid footer, end it: that is a torn tail (``problem`` says why). A
    segment that ends with a valid footer was closed cleanly, so it has no torn tail: bad
    bytes before its footer are damage too. Without ``resync`` the first bad byte ends the
    scan (``problem``), as a strict check wants.

    After ``records()`` is exhausted (or abandoned), ``end`` is the offset just past the last
    valid header/record/footer, ``last_seq`` the last valid record's seq (``first_seq - 1``
    if none), ``footer`` the summary if a valid footer ended the data, ``header_ok`` whether
    the 24-byte header is valid, ``damage`` the ranges skipped, in order.
    """

    def __init__(
        self, path: Path, data: bytes | memoryview, first_seq: int, *, resync: bool = True
    ) -> None:
        self.path = path
        self.data = memoryview(data)
        self.first_seq = first_seq
        self.resync = resync
        self.end = 0
        self.last_seq = first_seq - 1
        self.header_ok = False
        self.footer: SegmentSummary | None = None
        self.problem: str | None = None
        self.damage: list[DamagedRange] = []
        self._tail: SegmentSummary | None = None  # a valid footer in the last 32 bytes

    def validate(self) -> SegmentScan:
        """Scan everything without decoding payloads; returns self."""
        for _ in self.records(_NO_DECODE):
            pass
        return self

    def records(self, start_seq: int = 0) -> Iterator[JournalRecord]:
        """Valid records in order; those below ``start_seq`` are checked but not yielded."""
        data, size = self.data, len(self.data)
        limit = self._records_limit()
        pos, expected = HEADER.size, self.first_seq
        reason = self._check_header()
        if reason is not None:
            resumed = self._skip(0, reason, expected, limit)
            if resumed is None:
                return
            pos, expected = resumed
        crc32, unpack_head, unpack_crc = zlib.crc32, RECORD_HEAD.unpack_from, CRC.unpack_from
        while pos < limit:
            if limit - pos < RECORD_HEAD.size:
                reason = "incomplete record header"
            else:
                length, seq, received_us = unpack_head(data, pos)
                stop = pos + RECORD_HEAD.size + length
                if length == FOOTER_MARK:
                    reason = "invalid or incomplete footer"
                elif stop + CRC.size > limit:
                    reason = "incomplete record"
                elif crc32(data[pos:stop]) != unpack_crc(data, stop)[0]:
                    reason = "checksum mismatch"
                elif seq != expected:
                    reason = f"seq {seq} where {expected} was expected"
                else:
                    pos, expected = stop + CRC.size, seq + 1
                    self.end, self.last_seq = pos, seq
                    if seq >= start_seq:
                        # The writer encodes str, so only damage the crc missed could fail.
                        frame = str(data[stop - length : stop], "utf-8", "replace")
                        yield JournalRecord(seq, received_us, frame)
                    continue
            resumed = self._skip(pos, reason, expected, limit)
            if resumed is None:
                return
            pos, expected = resumed
        if limit < size:
            self._accept_footer(limit)

    def _records_limit(self) -> int:
        """Where the records end: before a valid footer that ends the data, else the end."""
        size = len(self.data)
        if size >= HEADER.size + FOOTER.size:
            self._tail = decode_footer(self.first_seq, bytes(self.data[-FOOTER.size :]))
        return size - FOOTER.size if self._tail is not None else size

    def _check_header(self) -> str | None:
        """Why the header is not valid (None if it is); a newer format version raises."""
        head = bytes(self.data[: HEADER.size])
        if len(head) < HEADER.size or head == bytes(HEADER.size):
            return TORN_HEADER
        magic, version, _flags, first_seq = HEADER.unpack(head)
        reason = None
        if magic != MAGIC:
            reason = "not a ticklake journal segment (bad magic)"
        elif version != VERSION:
            raise JournalCorruptError(
                self.path, 0, f"format version {version}, this ticklake reads {VERSION}: upgrade"
            )
        elif first_seq != self.first_seq:
            reason = f"header says first seq {first_seq}, the file name {self.first_seq}"
        if reason is not None and not self.resync:
            raise JournalCorruptError(self.path, 0, reason)
        self.header_ok = reason is None
        self.end = HEADER.size if self.header_ok else 0
        return reason

    def _skip(self, bad: int, reason: str, expected: int, limit: int) -> tuple[int, int] | None:
        """Resynchronise after the bad bytes at ``bad``: (offset, seq) of the next valid
        record, noted in ``damage``; None when the scan ends there (``problem`` set, or the
        footer reached)."""
        if not self.resync:
            self.problem = reason
            return None
        found = find_record(self.data, max(bad, HEADER.size), limit, expected)
        if found is None and self._tail is not None:
            found = (limit, max(self._tail.last_seq + 1, expected))  # damage up to the footer
        if found is None:
            self.problem = reason  # a torn tail: nothing valid after it, no footer
            return None
        at, seq = found
        self.damage.append(DamagedRange(self.path, bad, at - bad, expected - 1, seq, reason))
        if at == limit:
            self._accept_footer(limit)
            return None
        return found

    def _accept_footer(self, at: int) -> None:
        summary = self._tail
        assert summary is not None
        gap = summary.last_seq != self.last_seq
        if summary.last_seq < self.last_seq or (gap and not self.resync):
            self.problem = f"footer names last seq {summary.last_seq}, data ends at {self.last_seq}"
            return
        if gap and not (self.damage and self.damage[-1].end == at):
            reason = f"footer names last seq {summary.last_seq}, data ends at {self.last_seq}"
            self.damage.append(
                DamagedRange(self.path, at, 0, self.last_seq, summary.last_seq + 1, reason)
            )
        self.footer, self.end = summary, len(self.data)


def find_record(data: memoryview, start: int, limit: int, min_seq: int) -> tuple[int, int] | None:
    """(offset, seq) of the first record in ``data[start:limit]`` whose seq is at least
    ``min_seq`` and whose checksum verifies; None if there is none.

    Vectorised: each chunk of candidate offsets (4 KiB, doubling up to 1 MiB) is filtered by
    the seq field (a seq can only lie between ``min_seq`` and one per 24 bytes further)
    before any checksum is computed, so resynchronising over megabytes of zeros or text
    costs milliseconds.
    """
    last = limit - RECORD_OVERHEAD  # the last offset a record fits at
    max_seq = min_seq + (limit - start) // RECORD_OVERHEAD + 1
    chunk, size = start, 4096  # the next record is most often near: start small, then grow
    while chunk <= last:
        chunk_end = min(last + 1, chunk + size)
        hits = []
        for first in range(chunk, min(chunk + 8, chunk_end)):
            seqs = np.frombuffer(data, "<u8", (chunk_end - first + 7) // 8, first + 4)
            hits.append(first + 8 * np.flatnonzero((seqs >= min_seq) & (seqs <= max_seq)))
        for pos in sorted(np.concatenate(hits).tolist()):
            length, seq, _received = RECORD_HEAD.unpack_from(data, pos)
            stop = pos + RECORD_HEAD.size + length
            if (
                stop + CRC.size <= limit
                and zlib.crc32(data[pos:stop]) == CRC.unpack_from(data, stop)[0]
            ):
                return pos, seq
        chunk, size = chunk_end, min(size * 2, _RESYNC_CHUNK)
    return None


def received_range(data: memoryview, start: int, end: int) -> tuple[int, int]:
    """(min, max) receive time of the valid records that fill ``data[start:end]`` exactly;
    (0, 0) if the range is empty. What a footer for them says."""
    low, high, pos = 1 << 63, -(1 << 63), start
    while pos < end:
        length, _seq, received_us = RECORD_HEAD.unpack_from(data, pos)
        low, high = min(low, received_us), max(high, received_us)
        pos += RECORD_OVERHEAD + length
    return (low, high) if pos > start else (0, 0)


def read_summary(ref: SegmentRef) -> SegmentSummary | None:
    """The footer's summary, reading only a few bytes; None for an open or damaged segment."""
    try:
        with ref.path.open("rb") as file:
            if ref.compressed:
                head = file.read(ZHEADER.size + FOOTER.size)
                if head[: len(ZMAGIC)] != ZMAGIC:
                    return None
                return decode_footer(ref.first_seq, head[ZHEADER.size :])
            size = file.seek(0, os.SEEK_END)
            if size < HEADER.size + FOOTER.size:
                return None
            file.seek(size - FOOTER.size)
            return decode_footer(ref.first_seq, file.read(FOOTER.size))
    except FileNotFoundError:
        return None


def load_segment(ref: SegmentRef) -> bytes:
    """The raw segment bytes, decompressed if needed (following a concurrent compression)."""
    path, compressed = ref.path, ref.compressed
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        if compressed:
            raise
        path, compressed = path.with_name(path.name + ".zst"), True
        blob = path.read_bytes()
    if not compressed:
        return blob
    prefix = ZHEADER.size + FOOTER.size
    if len(blob) < prefix or blob[: len(ZMAGIC)] != ZMAGIC:
        raise JournalCorruptError(path, 0, "not a compressed ticklake journal segment")
    (raw_size,) = struct.unpack_from("<Q", blob, len(ZMAGIC))
    if raw_size > _MAX_RAW_SIZE:
        raise JournalCorruptError(path, len(ZMAGIC), f"raw size {raw_size} is not plausible")
    try:
        raw: bytes = pa.Codec("zstd").decompress(blob[prefix:], raw_size, asbytes=True)
    except (OSError, ValueError, MemoryError) as exc:
        raise JournalCorruptError(path, prefix, f"zstd data does not decompress ({exc})") from exc
    return raw


def compress_segment(ref: SegmentRef) -> Path:
    """Replace a closed segment by its ``.seg.zst``; a crash at any point leaves it readable.

    Order: write ``.seg.zst.tmp``, fsync, rename to ``.seg.zst``, fsync the directory, delete
    the ``.seg``. Raises JournalCorruptError if the segment is not complete and valid.
    """
    raw = ref.path.read_bytes()
    scan = SegmentScan(ref.path, raw, ref.first_seq, resync=False).validate()
    if scan.problem is not None or scan.footer is None:
        reason = scan.problem or "no footer (the segment was not closed cleanly)"
        raise JournalCorruptError(ref.path, scan.end, reason)
    codec = pa.Codec("zstd")
    body = codec.compress(raw, asbytes=True)
    if codec.decompress(body, len(raw), asbytes=True) != raw:
        raise JournalError(f"zstd round trip of {ref.path} differs; segment left uncompressed")
    final = ref.path.with_name(segment_name(ref.first_seq, compressed=True))
    temporary = final.with_name(final.name + ".tmp")
    with temporary.open("wb") as file:
        file.write(ZHEADER.pack(ZMAGIC, len(raw)) + raw[-FOOTER.size :] + body)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, final)
    fsync_directory(final.parent)
    ref.path.unlink()
    fsync_directory(final.parent)
    return final
