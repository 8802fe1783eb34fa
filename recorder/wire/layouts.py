"""Messages that share a layout, read together at fixed offsets: the decoder's fast path.

A message's *layout* is where its fields sit: for each field, in wire order, its number,
wire type, offset and width. A few *structure* bits decide it: every tag byte, the
continuation bit (0x80) of every varint byte, and every byte of a string's length prefix.
Two messages of one length whose structure bits are equal are walked identically, step for
step, by any protobuf reader: the same fields at the same offsets, valid or malformed
alike. So one message of a length (the *representative*) is walked here in Python, every
other message of that length is compared with it (a few 8-byte words each, at once), and
the messages that match are read column by column at the representative's offsets.

A burst of one asset class has a handful of layouts in 100 k messages; a mix of symbols,
some dozens. Messages whose layout is rare are left to ``decode``'s general walk.

Invariants:
- a message matched here yields the same steps (rows, field number, wire type, start,
  value) that the general walk yields for it, in wire order; UTF-8 is checked later, on
  the columns, for both alike;
- a representative this walk finds malformed (truncated, an overlong varint, field 0 or
  above 2^29 - 1, a group or reserved wire type, a string over the frame limit) is never
  a layout: its length's messages are left to the general walk;
- reads run at most 8 bytes past a message's last byte (``data`` is padded); bytes past
  the message are never compared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from recorder.wire.frames import MAX_FRAME_CHARS

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]

MIN_ROWS: Final = 64  # fewer messages of one layout: the general walk is as cheap
_MAX_NUMBER: Final = (1 << 29) - 1
_U64: Final = (1 << 64) - 1
_WORD: Final = 8


class Field(NamedTuple):
    """One field of a layout: its tag at offset ``tag``, its value ``skip`` bytes later
    (past the tag and a string's length prefix); ``width`` is a varint's or fixed value's
    bytes, or a string's length."""

    number: int
    wire: int
    tag: int
    skip: int
    width: int


class Layout(NamedTuple):
    """``words[i]`` for ``i < len(fields)`` is the word at field ``i``'s tag; any more
    cover the structure bits those leave out."""

    fields: list[Field]
    words: list[tuple[int, int, int]]  # (offset, mask, expected): little-endian words


class Step(NamedTuple):
    """One field of many messages: what the general walk's step yields for them."""

    rows: I64
    number: int
    wire: int
    at: I64  # where each message starts
    offset: int  # the value's offset in the message
    value: U64  # varint or fixed bits; a string's length

    def start(self) -> I64:
        """Absolute offset of each value."""
        starts: I64 = self.at + self.offset
        return starts


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """(value mod 2^64, bytes); 0 bytes when it runs past 10 bytes, as the general walk."""
    value = 0
    for k in range(10):
        byte = data[at + k]
        value |= (byte & 0x7F) << (7 * k)
        if byte < 0x80:
            return value & _U64, k + 1
    return value & _U64, 0


def layout_of(data: bytes, start: int, end: int) -> Layout | None:
    """The layout of the message ``data[start:end]``; None if it is malformed."""
    fields: list[Field] = []
    structure: dict[int, int] = {}  # offset in the message -> bits that decide the walk
    at = start
    while at < end:
        tag, taglen = _varint(data, at)
        number, wire = tag >> 3, tag & 7
        if taglen == 0 or number == 0 or number > _MAX_NUMBER or wire in (3, 4) or wire > 5:
            return None
        structure.update(dict.fromkeys(range(at - start, at - start + taglen), 0xFF))
        first, at = at - start, at + taglen
        if wire == 0:
            _, width = _varint(data, at)
            if width == 0:
                return None
            structure.update(dict.fromkeys(range(at - start, at - start + width), 0x80))
            fields.append(Field(number, wire, first, taglen, width))
            at += width
        elif wire == 2:
            size, width = _varint(data, at)
            if width == 0 or size > MAX_FRAME_CHARS:
                return None
            structure.update(dict.fromkeys(range(at - start, at - start + width), 0xFF))
            fields.append(Field(number, wire, first, taglen + width, size))
            at += width + size
        else:
            width = 4 if wire == 5 else 8
            fields.append(Field(number, wire, first, taglen, width))
            at += width
        if at > end:
            return None
    firsts = [f.tag for f in fields]
    covered = {o for f in firsts for o in range(f, f + _WORD)}
    extra = sorted(o for o in structure if o not in covered)
    words = [_word(structure, data, start, first) for first in firsts]
    while extra:
        words.append(_word(structure, data, start, extra[0]))
        extra = [o for o in extra if o >= extra[0] + _WORD]
    return Layout(fields, words)


def _word(structure: dict[int, int], data: bytes, start: int, first: int) -> tuple[int, int, int]:
    """(first, mask, expected) of the structure bits in the 8 bytes from ``first``."""
    mask = expected = 0
    for offset in range(first, first + _WORD):
        bits = structure.get(offset, 0)
        if bits:
            mask |= bits << (8 * (offset - first))
            expected |= (data[start + offset] & bits) << (8 * (offset - first))
    return first, mask, expected


def match(
    raw: bytes,
    data: npt.NDArray[np.uint8],
    starts: I64,
    lengths: I64,
    rows: I64,
    keep: Callable[[Step], None],
) -> I64:
    """Read the messages ``rows`` whose layout many of them share, handing each step to
    ``keep`` as it is read (the arrays of one go before the next): the rows left to the
    general walk. ``raw`` and ``data`` are the same bytes, padded by 8 zero bytes."""
    words = np.ndarray((data.size - _WORD + 1,), dtype="<u8", buffer=data, strides=(1,))
    left: list[I64] = []
    by_length = rows[np.argsort(lengths[rows], kind="stable")]
    bounds = np.flatnonzero(np.diff(lengths[by_length])) + 1
    for group in np.split(by_length, bounds):
        while group.size >= MIN_ROWS:
            first = int(starts[group[0]])
            layout = layout_of(raw, first, first + int(lengths[group[0]]))
            if layout is None:
                break
            at = starts[group]
            found = [words[offset:][at] for offset, _, _ in layout.words]
            ok = np.ones(group.size, dtype=np.bool_)
            for word, (_, mask, expected) in zip(found, layout.words, strict=True):
                ok &= (word & np.uint64(mask)) == np.uint64(expected)
            matched = group[ok]
            if matched.size < MIN_ROWS:
                break
            if matched.size < group.size:
                found, at = [word[ok] for word in found], at[ok]
            for step in _read(layout, words, found, matched, at):
                keep(step)
            group = group[~ok]
        left.append(group)
    return np.sort(np.concatenate(left)) if left else np.zeros(0, dtype=np.int64)


def _read(layout: Layout, words: U64, found: list[U64], rows: I64, at: I64) -> Iterator[Step]:
    """The fields of ``rows``, messages at ``at`` of ``layout``; ``found[i]`` holds the
    word at each one's field ``i`` (dropped once read)."""
    for i, f in enumerate(layout.fields):
        word, found[i] = found[i], found[i][:0]
        offset = f.tag + f.skip
        if f.wire == 2:
            value = np.full(rows.size, f.width, dtype=np.uint64)
        else:
            inside = f.skip + f.width <= _WORD  # the value is in the word at the tag
            bits = word >> np.uint64(8 * f.skip) if inside else words[offset:][at]
            if f.wire == 0:
                value = _varints(bits, words[offset + _WORD :], at, f.width)
            elif f.wire == 5:
                value = bits & np.uint64(0xFFFFFFFF)
            else:
                value = bits
        yield Step(rows, f.number, f.wire, at, offset, value)


_LANES: Final = [  # (bytes packed so far, what stays, shift of the rest)
    (1, np.uint64(0x00FF00FF00FF00FF), np.uint64(1)),
    (2, np.uint64(0x0000FFFF0000FFFF), np.uint64(2)),
    (4, np.uint64(0x00000000FFFFFFFF), np.uint64(4)),
]


def _varints(bits: U64, after: U64, at: I64, width: int) -> U64:
    """The varints of ``width`` bytes in ``bits`` (the 8 bytes from each) and, past 8
    bytes, ``after[at]``, mod 2^64 (bits past 64 dropped)."""
    low = bits & np.uint64(int.from_bytes(b"\x7f" * min(width, _WORD), "little"))
    for packed, keep, shift in _LANES:  # pack 7-bit groups: bytes, then pairs, then quads
        if width <= packed:
            break
        low = (low & keep) | ((low & ~keep) >> shift)
    if width > _WORD:
        high = after[at]
        low |= (high & np.uint64(0x7F)) << np.uint64(56)
        if width > _WORD + 1:
            low |= ((high >> np.uint64(8)) & np.uint64(0x7F)) << np.uint64(63)
    return low
