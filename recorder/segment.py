"""Journal segments on disk: byte format, validation, naming, reading, repair, compression.

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
the last 32 bytes and names the last record's seq. A segment is scanned front to back and
the scan stops at the first byte that breaks an invariant (``SegmentScan.problem`` says why,
``SegmentScan.end`` is where the valid prefix ends); what to do about it is the journal's
decision (cut a torn tail, or report corruption).

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
    """A torn or corrupt tail that was cut: ``bytes_cut`` bytes from ``offset`` on."""

    segment: Path
    offset: int
    bytes_cut: int
    reason: str


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

    After ``records()`` is exhausted (or abandoned), ``end`` is the offset just past the last
    valid header/record/footer, ``last_seq`` the last valid record's seq (``first_seq - 1``
    if none), ``footer`` the summary if a valid footer ended the data, and ``problem`` why
    the scan stopped before the end of the data (None if it did not); ``received_range()``
    is the valid records' receive-time range, what a footer for them says.
    """

    def __init__(self, path: Path, data: bytes | memoryview, first_seq: int) -> None:
        self.path = path
        self.data = memoryview(data)
        self.first_seq = first_seq
        self.end = 0
        self.last_seq = first_seq - 1
        self.footer: SegmentSummary | None = None
        self.problem: str | None = None

    def validate(self) -> SegmentScan:
        """Scan everything without decoding payloads; returns self."""
        for _ in self.records(_NO_DECODE):
            pass
        return self

    def records(self, start_seq: int = 0) -> Iterator[JournalRecord]:
        """Valid records in order; those below ``start_seq`` are checked but not yielded."""
        if not self._header_ok():
            return
        data, size, crc32, unpack_head = (
            self.data,
            len(self.data),
            zlib.crc32,
            RECORD_HEAD.unpack_from,
        )
        pos, expected = HEADER.size, self.first_seq
        while pos < size:
            if size - pos < RECORD_HEAD.size:
                self.problem = "incomplete record header"
                return
            length, seq, received_us = unpack_head(data, pos)
            if length == FOOTER_MARK:
                self._read_footer(pos)
                return
            stop = pos + RECORD_HEAD.size + length
            if stop + CRC.size > size:
                self.problem = "incomplete record"
                return
            if crc32(data[pos:stop]) != CRC.unpack_from(data, stop)[0]:
                self.problem = "checksum mismatch"
                return
            if seq != expected:
                self.problem = f"seq {seq} where {expected} was expected"
                return
            frame = None
            if seq >= start_seq:
                try:
                    frame = str(data[stop - length : stop], "utf-8")
                except UnicodeDecodeError:
                    self.problem = "payload is not UTF-8"
                    return
            pos, expected = stop + CRC.size, seq + 1
            self.end, self.last_seq = pos, seq
            if frame is not None:
                yield JournalRecord(seq, received_us, frame)

    def received_range(self) -> tuple[int, int]:
        """(min, max) receive time of the valid records; (0, 0) if there is none.

        Only a repair needs it (to write a missing footer), so it walks the valid records'
        heads again rather than adding two comparisons per record to every scan.
        """
        if self.last_seq < self.first_seq:
            return 0, 0
        data, unpack_head, pos = self.data, RECORD_HEAD.unpack_from, HEADER.size
        low = high = unpack_head(data, pos)[2]
        for _ in range(self.last_seq - self.first_seq + 1):
            length, _seq, received_us = unpack_head(data, pos)
            low, high = min(low, received_us), max(high, received_us)
            pos += RECORD_OVERHEAD + length
        return low, high

    def _header_ok(self) -> bool:
        head = bytes(self.data[: HEADER.size])
        if len(head) < HEADER.size or head == bytes(HEADER.size):
            self.problem = "incomplete segment header"
            return False
        magic, version, _flags, first_seq = HEADER.unpack(head)
        if magic != MAGIC:
            raise JournalCorruptError(self.path, 0, "not a ticklake journal segment (bad magic)")
        if version != VERSION:
            raise JournalCorruptError(
                self.path, 0, f"format version {version}, this ticklake reads {VERSION}: upgrade"
            )
        if first_seq != self.first_seq:
            raise JournalCorruptError(
                self.path, 0, f"header says first seq {first_seq}, the file name {self.first_seq}"
            )
        self.end = HEADER.size
        return True

    def _read_footer(self, pos: int) -> None:
        summary = decode_footer(self.first_seq, bytes(self.data[pos:]))
        if summary is None:
            self.problem = "invalid or incomplete footer"
        elif summary.last_seq != self.last_seq:
            self.problem = f"footer names last seq {summary.last_seq}, data ends at {self.last_seq}"
        else:
            self.footer, self.end = summary, len(self.data)


@dataclass(frozen=True, slots=True)
class RecordRange:
    """Which records a read yields: ``start_seq <= seq < stop_seq``, and received in
    ``[window[0], window[1])`` (epoch microseconds) if ``window`` is given."""

    start_seq: int = 0
    stop_seq: int = 1 << 64
    window: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """How a read goes: ``batch_size`` records per batch; with ``skip_corrupt`` a bad
    segment is logged and skipped; with ``open_tail`` the newest segment may be growing in
    another process (see ``read_batches``)."""

    batch_size: int = 10_000
    skip_corrupt: bool = False
    open_tail: bool = False


def read_batches(
    refs: list[SegmentRef], wanted: list[int], selected: RecordRange, options: ReadOptions
) -> Iterator[list[JournalRecord]]:
    """Batches of the valid records of ``refs[i]`` for i in ``wanted`` (ascending) that
    ``selected`` takes.

    A bad record, or a seq gap between adjacent segments, raises JournalCorruptError once the
    records before it are yielded; with ``options.skip_corrupt`` it is logged and the rest of
    that segment skipped. With ``options.open_tail`` a bad end of the newest segment, if it
    has no footer, is where another process is writing: reading ends there quietly.
    """
    start_seq, stop_seq, window = selected.start_seq, selected.stop_seq, selected.window
    batch_size = options.batch_size
    batch: list[JournalRecord] = []
    previous: tuple[int, int] | None = None  # (index, last seq) of the last segment read
    for index in wanted:
        ref = refs[index]
        try:
            _check_follows(previous, index, ref)
            scan = SegmentScan(ref.path, load_segment(ref), ref.first_seq)
            for record in scan.records(start_seq):
                if record.seq >= stop_seq:
                    break
                if window is None or window[0] <= record.received_at_us < window[1]:
                    batch.append(record)
                    if len(batch) >= batch_size:
                        yield batch
                        batch = []
            growing = options.open_tail and index + 1 == len(refs)
            _check_scan_end(scan, ref, growing)
        except JournalCorruptError as exc:
            if not options.skip_corrupt:
                if batch:
                    yield batch
                raise
            log.error("event=journal_corrupt_skipped error=%r", str(exc))
            previous = None  # the gap after a skipped segment is expected
            continue
        previous = (index, scan.last_seq)
        if scan.last_seq + 1 >= stop_seq:
            break
    if batch:
        yield batch


def _check_follows(previous: tuple[int, int] | None, index: int, ref: SegmentRef) -> None:
    """JournalCorruptError if ``ref`` (at ``index``) does not continue the seqs of the
    segment just read before it (``previous``: its index and last seq)."""
    if previous and previous[0] + 1 == index and previous[1] + 1 != ref.first_seq:
        raise JournalCorruptError(ref.path, 0, f"seqs after {previous[1]} are missing")


def _check_scan_end(scan: SegmentScan, ref: SegmentRef, newest_may_grow: bool) -> None:
    """JournalCorruptError if the scan stopped at a problem, unless ``ref`` is the newest
    segment of another process (``newest_may_grow``), still open (no footer): it may be
    appending right now, so reading quietly ends there."""
    if scan.problem is None:
        return
    growing = (
        newest_may_grow and decode_footer(ref.first_seq, bytes(scan.data[-FOOTER.size :])) is None
    )
    if not growing:
        raise JournalCorruptError(ref.path, scan.end, scan.problem)
    log.info("event=journal_read_stop segment=%s offset=%d", ref.path, scan.end)


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
    try:
        raw: bytes = pa.Codec("zstd").decompress(blob[prefix:], raw_size, asbytes=True)
    except (OSError, ValueError) as exc:
        raise JournalCorruptError(path, prefix, f"zstd data does not decompress ({exc})") from exc
    return raw


def repair_segment(ref: SegmentRef) -> tuple[SegmentScan, JournalRepair | None]:
    """Make a writer's newest segment valid, closed and durable: cut a torn tail, add the
    missing footer and fsync, or delete the file if no record is left (``scan.last_seq <
    ref.first_seq``). A compressed segment cannot be cut: any problem raises."""
    scan = SegmentScan(ref.path, load_segment(ref), ref.first_seq).validate()
    if ref.compressed:
        if scan.problem is not None or scan.footer is None:
            raise JournalCorruptError(ref.path, scan.end, scan.problem or "no footer")
        return scan, None
    repair = None
    with ref.path.open("r+b") as file:
        if scan.problem is not None:
            repair = JournalRepair(ref.path, scan.end, len(scan.data) - scan.end, scan.problem)
            file.truncate(scan.end)
        if scan.last_seq >= ref.first_seq and scan.footer is None:
            file.seek(scan.end)
            file.write(encode_footer(scan.last_seq, *scan.received_range()))
        file.flush()
        os.fsync(file.fileno())
    if scan.last_seq < ref.first_seq:
        ref.path.unlink()
        fsync_directory(ref.path.parent)
    return scan, repair


def compress_segment(ref: SegmentRef) -> Path:
    """Replace a closed segment by its ``.seg.zst``; a crash at any point leaves it readable.

    Order: write ``.seg.zst.tmp``, fsync, rename to ``.seg.zst``, fsync the directory, delete
    the ``.seg``. Raises JournalCorruptError if the segment is not complete and valid.
    """
    raw = ref.path.read_bytes()
    scan = SegmentScan(ref.path, raw, ref.first_seq).validate()
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
