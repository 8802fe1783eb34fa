"""PricingData payloads and WebSocket text frames for thousands of ticks at once, with NumPy.

Burst mode's encoder: what ``PricingData.SerializeToString``, base64, the v2 envelope and a
server's WebSocket frame header make of each tick, built in a few dozen array operations
per batch instead of a Python loop per tick. A batch holds ``k`` ticks of each of ``n``
symbols, numbered tick-major (row ``r`` is tick ``r // n`` of symbol ``r % n``) and sent in
``k`` rounds, each with one tick of every symbol.

Invariants:
- a payload is byte for byte what protobuf serializes for the same fields: fields in number
  order, each as tag + value, sint64 as zigzag varints in their shortest form, float and
  double little-endian, a changing field whose value is zero left out (proto3, as the feed
  sets fields); fields that do not change within a batch are encoded by protobuf itself;
- a frame is what a server sends: FIN + text opcode (0x81), unmasked, 7-bit or 16-bit
  length, then the v1 base64 or the compact v2 envelope around it.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt
from google.protobuf.descriptor import FieldDescriptor

from lake.pricing_pb2 import PricingData
from ticklake.simulator.frames import v2_frame

__all__ = ["Batch", "encode", "field_bytes", "frame_texts", "text_frame"]

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
_FIELDS: Final = PricingData.DESCRIPTOR.fields_by_name
# type -> (wire type, little-endian dtype of a fixed-width value; None for a varint)
_ENCODINGS: Final[dict[int, tuple[int, str | None]]] = {
    FieldDescriptor.TYPE_FLOAT: (5, "<f4"),
    FieldDescriptor.TYPE_DOUBLE: (1, "<f8"),
    FieldDescriptor.TYPE_SINT64: (0, None),
}
_V2_PREFIX, _V2_SUFFIX = (part.encode() for part in v2_frame("\0").split("\0"))
_SHIFTS: Final = np.arange(0, 70, 7, dtype=np.uint64)  # the 10 groups of a 64-bit varint
_VARINT_LIMITS: Final = np.left_shift(np.uint64(1), _SHIFTS[1:])  # a varint is longer from here
_PAD: Final = ord("=")


class Part(NamedTuple):
    """Some consecutive fields of every row: row ``r``'s bytes are ``tag + data[i]``, cut to
    ``lengths[i]`` bytes (none at all for an unset field), with ``i = r % n`` for a part of
    per-symbol constants (``per_symbol``), else ``i = r``."""

    data: U8
    lengths: I64
    per_symbol: bool = False
    tag: bytes = b""


@dataclass(frozen=True)
class Batch:
    """A batch of ticks encoded: ``frames`` holds every row's WebSocket frame."""

    frames: bytes
    groups: list[tuple[I64, U8, int]]  # (rows, their payloads zero-padded, payload size)
    group_of: I64  # row -> index into groups

    def payload(self, row: int) -> bytes:
        """The serialized ``PricingData`` of ``row``."""
        rows, payloads, size = self.groups[int(self.group_of[row])]
        return payloads[int(np.searchsorted(rows, row)), :size].tobytes()


def field_bytes(message: PricingData) -> dict[int, bytes]:
    """Each field set in ``message``, encoded on its own (tag + value), by field number."""
    return {
        field.number: PricingData(**{field.name: value}).SerializeToString()
        for field, value in message.ListFields()
    }


def encode(
    statics: Sequence[Mapping[int, bytes]],
    columns: Sequence[Mapping[str, npt.NDArray[Any]]],
    version: int,
) -> Batch:
    """``k`` ticks of each of ``n`` symbols as protocol ``version`` frames, in ``k`` rounds.

    ``statics[s]`` holds symbol ``s``'s fields that are the same in all its ``k`` ticks
    (from :func:`field_bytes`); ``columns[s]`` its changing fields by name, ``k`` values each
    (float, double or sint64 fields; zero = unset). A field is static or changing, never
    both. Row ``r`` is tick ``r // n`` of symbol ``r % n``.

    Rows of one layout (every field the same length) are built together as one dense
    matrix, so the work is a few array operations per layout, not per row. ``frames`` holds
    round after round, each with one frame of every symbol, ordered by layout within the
    round (so that the frames of a layout are copied in runs).
    """
    n = len(statics)
    k = len(next(iter(columns[0].values())))
    parts = _parts(statics, columns, k)
    lengths = np.stack([np.tile(p.lengths, k) if p.per_symbol else p.lengths for p in parts], 1)
    if lengths.sum(axis=1).max() >= 1 << 15:
        raise ValueError("a payload of 32 KiB or more is beyond this encoder")
    layouts = np.ascontiguousarray(lengths.astype(np.uint16))
    keys = layouts.view(np.dtype((np.void, 2 * len(parts)))).ravel()
    _, group_of = np.unique(keys, return_inverse=True)
    group_of = group_of.ravel().astype(np.int64)
    by_group = np.argsort(group_of, kind="stable")
    starts = np.flatnonzero(np.diff(group_of[by_group], prepend=-1))
    groups: list[tuple[I64, U8, int]] = []
    frames: list[U8] = []
    for rows in np.split(by_group, starts[1:]):
        layout = lengths[rows[0]]
        size = int(layout.sum())
        pieces = []
        for p, width in zip(parts, layout, strict=True):
            if width:
                if p.tag:
                    tag = np.frombuffer(p.tag, dtype=np.uint8)
                    pieces.append(np.broadcast_to(tag, (len(rows), len(tag))))
                data = p.data[rows % n] if p.per_symbol else p.data[rows]
                pieces.append(data[:, : width - len(p.tag)])
        pieces.append(np.zeros((len(rows), -size % 3), dtype=np.uint8))  # whole base64 quanta
        payloads = np.concatenate(pieces, axis=1)
        groups.append((rows, payloads, size))
        frames.append(_frames(payloads, size, version))
    rank = np.empty_like(by_group)
    rank[by_group] = np.arange(n * k) - starts[group_of[by_group]]
    return Batch(_in_rounds(frames, group_of, rank, n), groups, group_of)


def text_frame(text: str) -> bytes:
    """One server text frame carrying ``text``."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return bytes((0x81, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + size.to_bytes(8, "big") + payload


def frame_texts(data: bytes) -> list[str]:
    """The texts of server text frames back to back (``text_frame``'s, ``Batch.frames``)."""
    out, i = [], 0
    while i < len(data):
        size, i = data[i + 1] & 0x7F, i + 2
        if size in (126, 127):
            width = 2 if size == 126 else 8
            size, i = int.from_bytes(data[i : i + width], "big"), i + width
        out.append(data[i : i + size].decode())
        i += size
    return out


def _parts(
    statics: Sequence[Mapping[int, bytes]],
    columns: Sequence[Mapping[str, npt.NDArray[Any]]],
    k: int,
) -> list[Part]:
    """The message's fields in number order, as parts: runs of static fields between the
    changing ones, and each changing field on its own."""
    changing = {_FIELDS[name].number: name for cols in columns for name in cols}
    static = set().union(*statics)
    if static & changing.keys():
        raise ValueError(f"fields both static and changing: {sorted(static & changing.keys())}")
    parts: list[Part] = []
    run: list[int] = []
    for number in sorted(static | changing.keys()):
        if number not in changing:
            run.append(number)
            continue
        if run:
            parts.append(_static_part(statics, run))
            run = []
        name = changing[number]
        zeros = np.zeros(k)
        values = np.vstack([cols.get(name, zeros) for cols in columns]).T.ravel()
        parts.append(_field_part(name, values))
    if run:
        parts.append(_static_part(statics, run))
    return parts


def _static_part(statics: Sequence[Mapping[int, bytes]], numbers: list[int]) -> Part:
    """The fields ``numbers`` of every symbol."""
    encoded = [b"".join(static.get(number, b"") for number in numbers) for static in statics]
    lengths = np.array([len(e) for e in encoded], dtype=np.int64)
    table = np.zeros((len(encoded), int(lengths.max())), dtype=np.uint8)
    for i, e in enumerate(encoded):
        table[i, : len(e)] = np.frombuffer(e, dtype=np.uint8)
    return Part(table, lengths, per_symbol=True)


def _field_part(name: str, values: npt.NDArray[Any]) -> Part:
    """Tag + value of field ``name`` for each value; zero-length where the value is zero."""
    field = _FIELDS[name]
    if field.type not in _ENCODINGS:
        raise ValueError(f"{name}: only float, double and sint64 fields can change per tick")
    wire_type, dtype = _ENCODINGS[field.type]
    tag = _varint_of((field.number << 3) | wire_type)
    if dtype is None:
        signed = values.astype(np.int64)
        zigzag = ((signed << 1) ^ (signed >> 63)).view(np.uint64)
        size = 1 + np.searchsorted(_VARINT_LIMITS, zigzag, side="right")
        width = int(size.max())
        body = ((zigzag[:, None] >> _SHIFTS[:width]) & 0x7F).astype(np.uint8)
        body[np.arange(width) < size[:, None] - 1] |= 0x80
    else:
        body = values.astype(dtype).view(np.uint8).reshape(len(values), -1)
        size = np.full(len(values), body.shape[1])
    return Part(body, np.where(values != 0, len(tag) + size, 0), tag=tag)


def _frames(payloads: U8, size: int, version: int) -> U8:
    """Frames of ``size``-byte payloads (rows zero-padded to whole base64 quanta): header,
    base64, and the v2 envelope around it."""
    rows = len(payloads)
    encoded = binascii.b2a_base64(payloads.tobytes(), newline=False)
    b64 = np.frombuffer(encoded, dtype=np.uint8).reshape(rows, -1)
    missing = -size % 3  # base64 ends with this many "="
    if missing:
        b64 = b64.copy()
        b64[:, b64.shape[1] - missing :] = _PAD
    prefix, suffix = (_V2_PREFIX, _V2_SUFFIX) if version == 2 else (b"", b"")
    text = b64.shape[1] + len(prefix) + len(suffix)
    head = np.frombuffer(text_frame("\0" * text)[:-text] + prefix, dtype=np.uint8)
    tail = np.frombuffer(suffix, dtype=np.uint8)
    return np.concatenate(
        [np.broadcast_to(head, (rows, len(head))), b64, np.broadcast_to(tail, (rows, len(tail)))],
        axis=1,
    )


def _in_rounds(frames: list[U8], group_of: I64, rank: I64, n: int) -> bytes:
    """Round after round (rows ``j*n .. j*n+n-1``), each ordered by group: runs of
    consecutive frames of one group, joined. ``rank`` is each row's place in its group."""
    rows = len(group_of)
    order = np.argsort(np.arange(rows) // n * len(frames) + group_of, kind="stable")
    sequence = group_of[order]
    bounds = np.flatnonzero(np.diff(sequence)) + 1
    views = [f.data.cast("B") for f in frames]  # each is C-contiguous
    widths = [f.shape[1] for f in frames]
    runs = []
    for start, end in zip([0, *bounds.tolist()], [*bounds.tolist(), rows], strict=True):
        g = int(sequence[start])
        first = int(rank[order[start]]) * widths[g]
        runs.append(views[g][first : first + (end - start) * widths[g]])
    return b"".join(runs)


def _varint_of(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)
