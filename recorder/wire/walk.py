"""The general protobuf walk: all payloads of a batch read *together*, field by field.

Step ``k`` reads the ``k``-th field of every message still going, with NumPy, so the
Python-level work grows with the number of fields in a message (~15-25), not with the
number of messages. It checks what protobuf's parser (upb) checks: truncation, overlong
varints, field 0 or above 2^29 - 1, group or reserved wire types, a string longer than a
frame (UTF-8 is checked later, on the columns). Messages that share a layout with many
others are read faster by ``recorder.wire.layouts``, whose steps :meth:`Walk.keep_step`
stores in the same arrays.

Invariants:
- a scalar field repeated inside one message keeps its last value; every element of a
  repeated field is kept, in wire order;
- a field number the schema does not declare, or a declared one with another wire type,
  is kept aside as unknown and changes nothing else;
- a malformed message is marked ``bad`` and its walk stops there.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from lake.schema import TICK_FIELDS
from recorder.wire.frames import MAX_FRAME_CHARS
from recorder.wire.layouts import Step

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]

_SLOTS: Final = 48  # field numbers 1..47; slot 0 collects every unknown field
_WIRE: Final = {"string": 2, "strings": 2, "float": 5, "double": 1, "sint64": 0, "enum": 0}
_EXPECTED_WIRE: Final = np.full(_SLOTS, -1, dtype=np.int64)
_REPEATED: Final = np.zeros(_SLOTS, dtype=np.bool_)
for _f in TICK_FIELDS:
    _EXPECTED_WIRE[_f.number] = _WIRE[_f.kind]
    _REPEATED[_f.number] = _f.kind == "strings"
_MAX_NUMBER: Final = (1 << 29) - 1  # protobuf's largest field number; upb rejects above


class Fields:
    """Fields the walk keeps besides the last value of each scalar: one (k, 4) array per
    step of (row, field number, start, last), ``last`` being a repeated field element's
    length or an unknown field's wire type."""

    def __init__(self) -> None:
        self._parts: list[I64] = []

    def note(self, rows: I64, number: I64, start: I64, last: I64 | U64, which: Mask) -> None:
        if which.any():
            picked = (rows[which], number[which], start[which], last[which].astype(np.int64))
            self._parts.append(np.stack(picked, axis=1))

    def sorted(self) -> I64:
        """All of them as one (k, 4) array by row, each row's in the order they arrived."""
        if not self._parts:
            return np.zeros((0, 4), dtype=np.int64)
        joined = np.concatenate(self._parts)  # step after step: each row's in wire order
        return joined[np.argsort(joined[:, 0], kind="stable")]


def _varint(data: npt.NDArray[np.uint8], pos: I64) -> tuple[U64, I64]:
    """Read one varint at each position: (values, byte lengths). Length 0 means malformed.

    Byte ``k`` is read only for the varints still going after ``k`` bytes, so the common
    one-byte tag costs three array operations.
    """
    byte = data[pos].astype(np.uint64)
    value = byte & np.uint64(0x7F)
    length = np.ones(pos.size, dtype=np.int64)
    going = np.flatnonzero(byte >= 0x80)
    k = 1
    while going.size and k < 10:
        byte = data[pos[going] + k].astype(np.uint64)
        value[going] |= (byte & np.uint64(0x7F)) << np.uint64(7 * k)
        length[going] += 1
        going = going[byte >= 0x80]
        k += 1
    length[going] = 0
    return value, length


class Walk:
    """What walking the payloads keeps: one row per field number of each scalar's last
    value (value bits, or a string's start and length), which rows are malformed, and the
    repeated and unknown fields."""

    def __init__(self, n: int) -> None:
        self.raw = np.zeros((_SLOTS, n), dtype=np.uint64)  # value bits, or a string's start
        self.size = np.zeros((_SLOTS, n), dtype=np.int64)  # a string's length
        self.seen = np.zeros((_SLOTS, n), dtype=np.bool_)
        self.bad = np.zeros(n, dtype=np.bool_)
        self.repeated, self.unknown = Fields(), Fields()

    def keep(self, rows: I64, number: I64, wire: I64, start: I64, value: U64) -> None:
        """Fields ``number`` (wire type ``wire``) of ``rows``, well-formed, in wire order."""
        slot = np.where(number < _SLOTS, number, 0)
        expected = _EXPECTED_WIRE[slot] == wire
        self.repeated.note(rows, number, start, value, expected & _REPEATED[slot])
        self.unknown.note(rows, number, start, wire, ~expected)
        is_len = wire == 2
        r, s = rows[expected], slot[expected]
        self.seen[s, r] = True
        self.raw[s, r] = np.where(
            is_len[expected], start[expected].astype(np.uint64), value[expected]
        )
        self.size[s, r] = np.where(is_len[expected], value[expected].astype(np.int64), 0)

    def keep_step(self, step: Step) -> None:
        """A field of many rows at once (from a shared layout)."""
        k, rows = step.rows.size, step.rows
        slot = step.number if step.number < _SLOTS else 0
        if _EXPECTED_WIRE[slot] != step.wire:
            number, wire = np.full(k, step.number), np.full(k, step.wire)
            self.unknown.note(rows, number, step.start(), wire, np.ones(k, np.bool_))
            return
        if _REPEATED[slot]:
            number = np.full(k, step.number)
            self.repeated.note(rows, number, step.start(), step.value, np.ones(k, np.bool_))
        self.seen[slot, rows] = True
        if step.wire == 2:
            self.raw[slot, rows] = step.start()
            self.size[slot, rows] = step.value
        else:  # (a slot's size is set by strings only)
            self.raw[slot, rows] = step.value

    def walk(self, data: npt.NDArray[np.uint8], pos: I64, ends: I64, rows: I64) -> None:
        """Walk ``rows`` field by field: step ``k`` reads the ``k``-th field of each."""
        rows = rows[pos[rows] < ends[rows]]
        while rows.size:
            at = pos[rows]
            tag, taglen = _varint(data, at)
            at = at + taglen
            number = (tag >> np.uint64(3)).astype(np.int64)
            wire = (tag & np.uint64(7)).astype(np.int64)
            value = np.zeros(rows.size, dtype=np.uint64)
            width = np.zeros(rows.size, dtype=np.int64)
            start = at.copy()
            broken = (taglen == 0) | (number == 0) | (number > _MAX_NUMBER) | (wire == 3)
            broken |= (wire == 4) | (wire > 5)
            is_var = wire == 0
            if is_var.any():
                v, w = _varint(data, at[is_var])
                value[is_var], width[is_var] = v, w
                broken[is_var] |= w == 0
            for wt, nbytes, dtype in ((5, 4, np.uint32), (1, 8, np.uint64)):
                fixed = wire == wt
                if fixed.any():
                    chunk = data[at[fixed][:, None] + np.arange(nbytes)]
                    value[fixed] = chunk.view(dtype).ravel().astype(np.uint64)
                    width[fixed] = nbytes
            is_len = wire == 2
            if is_len.any():
                v, w = _varint(data, at[is_len])
                too_long = v > np.uint64(MAX_FRAME_CHARS)
                start[is_len] = at[is_len] + w
                value[is_len] = np.where(too_long, np.uint64(0), v)
                width[is_len] = w + value[is_len].astype(np.int64)
                broken[is_len] |= (w == 0) | too_long
            at = at + width
            broken |= at > ends[rows]
            fine = ~broken
            self.keep(rows[fine], number[fine], wire[fine], start[fine], value[fine])
            pos[rows] = at
            self.bad[rows[broken]] = True
            rows = rows[fine]
            rows = rows[pos[rows] < ends[rows]]
