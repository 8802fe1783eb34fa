"""Batches of frames into columns: the recorder's hot path.

:func:`decode_batch` turns many frames into one Arrow table with :data:`TICK_SCHEMA`'s
columns, without building a Python object per field. Each payload is first checked by
protobuf's own parser (upb: it rejects truncated or garbage bytes and invalid UTF-8), then
all valid payloads are walked *together* by a vectorized protobuf wire reader in NumPy: step
``k`` reads the ``k``-th field of every message at once, so the Python-level work grows with
the number of fields in a message (~15), not with the number of ticks. The reader checks
what protobuf's parser checks (truncation, overlong varints, field 0 or above 2^29 - 1,
group or reserved wire types, invalid UTF-8 in strings);
``tests/recorder/wire/test_decode.py`` holds it to protobuf's own parser (upb) on random,
corrupted and crafted messages.

Invariants:
- every sint64 is zigzag-decoded (times are epoch ms, volumes are not doubled);
- float32 fields keep the exact bits received;
- a scalar field repeated inside one message keeps its last value, as protobuf merging
  does; every element of the repeated field (``indices``) is kept, in order;
- nothing is dropped silently: a field number the schema does not declare, or a declared
  one arriving with another wire type, leaves the tick as it is (protobuf keeps such a
  field as an unknown field) and is counted per field number in
  :attr:`DecodedBatch.unknown_fields`; the first time a process meets a field number it
  logs ``event=unknown_wire_field`` once (the journal keeps the frame itself);
- a bad frame never poisons the others: it becomes a :class:`FrameError` with its index;
- a tick without ``id`` or ``time`` cannot be placed in the lake and is an error too.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from lake.schema import TICK_FIELDS, TICK_SCHEMA, TickField
from recorder.wire.frames import MAX_FRAME_CHARS, FrameError, SkippedFrame, unwrap

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]
log = logging.getLogger(__name__)

_SLOTS: Final = 48  # field numbers 1..47; slot 0 collects every unknown field
_WIRE: Final = {"string": 2, "strings": 2, "float": 5, "double": 1, "sint64": 0, "enum": 0}
_EXPECTED_WIRE: Final = np.full(_SLOTS, -1, dtype=np.int64)
_REPEATED: Final = np.zeros(_SLOTS, dtype=np.bool_)
for _f in TICK_FIELDS:
    _EXPECTED_WIRE[_f.number] = _WIRE[_f.kind]
    _REPEATED[_f.number] = _f.kind == "strings"
_MAX_NUMBER: Final = (1 << 29) - 1  # protobuf's largest field number; upb rejects above
_PAD: Final = b"\x00" * 32  # reads may run up to 19 bytes past the last payload
_REPORTED: set[int] = set()  # field numbers this process has logged as unknown


class _Fields:
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


@dataclass
class DecodedBatch:
    """The ticks decoded from a batch of frames.

    ``ticks`` row ``i`` came from ``frames[frame_index[i]]``; ``errors`` name the frames that
    could not be decoded; ``skipped`` counts well-formed non-pricing envelopes by type;
    ``unknown_fields`` counts, per field number, the fields of ``ticks`` that the schema
    does not declare or that came with another wire type (each left out of the columns).
    """

    ticks: pa.Table
    frame_index: I64
    errors: list[FrameError] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    unknown_fields: Counter[int] = field(default_factory=Counter)


def decode_batch(frames: Sequence[str | bytes]) -> DecodedBatch:
    """Decode ``frames`` (v1 or v2, mixed freely) into columns; never raises on bad input."""
    payloads: list[bytes] = []
    index: list[int] = []
    errors: list[FrameError] = []
    skipped: Counter[str] = Counter()
    for i, frame in enumerate(frames):
        try:
            payloads.append(unwrap(frame))
            index.append(i)
        except FrameError as exc:
            errors.append(exc.at(i))
        except SkippedFrame as skip:
            skipped[skip.kind] += 1
    table, reasons, unknown = _columns(payloads)
    frame_index = np.asarray(index, dtype=np.int64)
    if reasons:
        for row, reason in reasons.items():
            errors.append(FrameError(reason, int(frame_index[row])))
        keep = np.ones(len(payloads), dtype=np.bool_)
        keep[list(reasons)] = False
        table = table.filter(pa.array(keep))
        frame_index = frame_index[keep]
        errors.sort(key=lambda e: e.index)
    return DecodedBatch(table, frame_index, errors, skipped, unknown)


def decode_frame(frame: str | bytes) -> pa.Table:
    """One frame as a one-row table; raises :class:`FrameError` or :class:`SkippedFrame`."""
    table, reasons, _ = _columns([unwrap(frame)])
    if reasons:
        raise FrameError(reasons[0])
    return table


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


def _columns(payloads: list[bytes]) -> tuple[pa.Table, dict[int, str], Counter[int]]:
    """Walk all payloads field by field: the table, a reason for each bad row, and the
    unknown fields of the good rows by field number (logged on first sight)."""
    n = len(payloads)
    lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=n)
    ends = np.cumsum(lengths)
    pos = ends - lengths
    data = np.frombuffer(b"".join(payloads) + _PAD, dtype=np.uint8)
    # One row per field number, so each field's values are contiguous.
    raw = np.zeros((_SLOTS, n), dtype=np.uint64)  # value bits, or a string's start
    size = np.zeros((_SLOTS, n), dtype=np.int64)  # a string's length
    seen = np.zeros((_SLOTS, n), dtype=np.bool_)
    bad = np.zeros(n, dtype=np.bool_)
    repeated, unknown = _Fields(), _Fields()
    rows = np.flatnonzero(pos < ends)
    while rows.size:
        at = pos[rows]
        tag, taglen = _varint(data, at)
        at = at + taglen
        number = (tag >> np.uint64(3)).astype(np.int64)
        wire = (tag & np.uint64(7)).astype(np.int64)
        value = np.zeros(rows.size, dtype=np.uint64)
        width = np.zeros(rows.size, dtype=np.int64)
        start = at.copy()
        broken = (taglen == 0) | (number == 0) | (number > _MAX_NUMBER) | (wire == 3) | (wire == 4)
        broken |= wire > 5
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
        slot = np.where(number < _SLOTS, number, 0)
        expected = _EXPECTED_WIRE[slot] == wire
        repeated.note(rows, number, start, value, ~broken & expected & _REPEATED[slot])
        unknown.note(rows, number, start, wire, ~broken & ~expected)
        take = ~broken & expected
        r, s = rows[take], slot[take]
        seen[s, r] = True
        raw[s, r] = np.where(is_len[take], start[take].astype(np.uint64), value[take])
        size[s, r] = np.where(is_len[take], value[take].astype(np.int64), 0)
        pos[rows] = at
        bad[rows[broken]] = True
        rows = rows[~broken]
        rows = rows[pos[rows] < ends[rows]]
    reasons = {
        int(r): "invalid protobuf: truncated or malformed PricingData" for r in np.flatnonzero(bad)
    }
    seen[:, bad] = False
    for row in np.flatnonzero(~bad & ~seen[1]):
        reasons[int(row)] = "tick has no id (field 1)"
    for row in np.flatnonzero(~bad & seen[1] & ~seen[3]):
        reasons[int(row)] = "tick has no time (field 3)"
    elements = repeated.sorted()
    elements = elements[~bad[elements[:, 0]]]
    columns = []
    for f in TICK_FIELDS:
        if f.kind == "strings":
            mine = elements[elements[:, 1] == f.number]
            column = _list_column(data, mine, n, reasons)
        else:
            column = _column(f, data, raw[f.number], size[f.number], seen[f.number])
        if f.kind == "string":
            column = _valid_utf8(column, reasons)
        columns.append(column)
    counts = _unknown(unknown.sorted(), bad, reasons)
    return pa.Table.from_arrays(columns, schema=TICK_SCHEMA), reasons, counts


def _unknown(found: I64, bad: Mask, reasons: dict[int, str]) -> Counter[int]:
    """The unknown fields of the rows that become ticks, by field number; the first sight
    of a number in this process is logged once."""
    keep = ~bad[found[:, 0]]
    if reasons:
        keep &= ~np.isin(found[:, 0], np.fromiter(reasons, dtype=np.int64))
    found = found[keep]
    numbers, first, counts = np.unique(found[:, 1], return_index=True, return_counts=True)
    unknown: Counter[int] = Counter(dict(zip(numbers.tolist(), counts.tolist(), strict=True)))
    for number, at, count in zip(numbers.tolist(), first.tolist(), counts.tolist(), strict=True):
        if number not in _REPORTED:
            _REPORTED.add(number)
            wire_type = int(found[at, 3])
            log.warning(
                "event=unknown_wire_field field=%d wire_type=%d count=%d",
                number,
                wire_type,
                count,
            )
    return unknown


def _list_column(
    data: npt.NDArray[np.uint8], elements: I64, n: int, reasons: dict[int, str]
) -> pa.Array:
    """A ``list<string>`` column from one repeated field's elements (rows ascending, each
    row's in wire order); a row without elements is NULL."""
    if not elements.size:
        return pa.nulls(n, pa.list_(pa.string()))
    counts = np.bincount(elements[:, 0], minlength=n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    lengths = elements[:, 3]
    value_offsets = np.zeros(len(elements) + 1, dtype=np.int32)
    np.cumsum(lengths, out=value_offsets[1:])
    picks = np.arange(int(value_offsets[-1]), dtype=np.int64) - np.repeat(
        value_offsets[:-1] - elements[:, 2], lengths
    )
    values = pa.Array.from_buffers(
        pa.string(),
        len(elements),
        [None, pa.py_buffer(value_offsets), pa.py_buffer(data[picks])],
    )
    owner: dict[int, str] = {}  # element -> why it is bad
    values = _valid_utf8(values, owner)
    for element in owner:
        reasons.setdefault(int(elements[element, 0]), owner[element])
    present = counts > 0
    return pa.ListArray.from_arrays(
        pa.array(offsets), values, mask=pa.array(~present), type=pa.list_(pa.string())
    )


def _valid_utf8(column: pa.Array, reasons: dict[int, str]) -> pa.Array:
    """The column if all its strings are UTF-8; otherwise bad rows get a reason and a NULL."""
    try:
        column.validate(full=True)
        return column
    except pa.ArrowInvalid:
        pass
    values = column.view(pa.binary()).to_pylist()
    good = []
    for row, value in enumerate(values):
        try:
            good.append(None if value is None else value.decode("utf-8"))
        except UnicodeDecodeError:
            reasons.setdefault(row, "invalid protobuf: a string field is not UTF-8")
            good.append(None)
    return pa.array(good, type=pa.string())


def _mask(present: npt.NDArray[np.bool_]) -> pa.Buffer | None:
    if present.all():
        return None
    return pa.py_buffer(np.packbits(present, bitorder="little"))


def _column(
    f: TickField,
    data: npt.NDArray[np.uint8],
    raw: U64,
    size: I64,
    present: npt.NDArray[np.bool_],
) -> pa.Array:
    n = len(raw)
    if f.kind == "enum":
        return _enum_column(f, raw, present)
    if not present.any():
        return pa.nulls(n, f.arrow_type)
    if f.kind == "string":
        lengths = np.where(present, size, 0)
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        picks = np.arange(int(offsets[-1]), dtype=np.int64) - np.repeat(
            offsets[:-1] - raw.astype(np.int64), lengths
        )
        body = data[picks]
        buffers = [_mask(present), pa.py_buffer(offsets), pa.py_buffer(body)]
        return pa.Array.from_buffers(pa.string(), n, buffers)
    if f.kind == "sint64":
        values = (raw >> np.uint64(1)).astype(np.int64) ^ -(raw & np.uint64(1)).astype(np.int64)
    elif f.kind == "float":
        values = raw.astype(np.uint32).view(np.float32)
    else:
        values = raw.view(np.float64)
    storage = pa.Array.from_buffers(
        pa.from_numpy_dtype(values.dtype), n, [_mask(present), pa.py_buffer(values)]
    )
    return storage if storage.type == f.arrow_type else storage.view(f.arrow_type)


def _enum_column(f: TickField, raw: U64, present: npt.NDArray[np.bool_]) -> pa.Array:
    # proto3: an absent enum is its zero value (PRE_MARKET is 0 and never on the wire).
    numbers = np.where(present, raw.astype(np.int64).astype(np.int32), 0)
    lookup, names = _ENUM_LOOKUP[f.number]
    inside = (numbers >= 0) & (numbers < lookup.size)
    codes = np.where(inside, lookup[np.clip(numbers, 0, lookup.size - 1)], -1)
    strange = np.flatnonzero(codes < 0)
    if strange.size:  # a number this proto does not name (a newer Yahoo enum): its digits
        extra, inverse = np.unique(numbers[strange], return_inverse=True)
        codes[strange] = len(names) + inverse
        names = pa.concat_arrays([names, pa.array([str(int(x)) for x in extra])])
    return pa.DictionaryArray.from_arrays(codes.astype(np.int32), names).dictionary_decode()


def _enum_lookup(f: TickField) -> tuple[npt.NDArray[np.int32], pa.Array]:
    assert f.enum_names is not None
    numbers = sorted(f.enum_names)
    lookup = np.full(max(numbers) + 1, -1, dtype=np.int32)
    lookup[numbers] = np.arange(len(numbers), dtype=np.int32)
    return lookup, pa.array([f.enum_names[k] for k in numbers], type=pa.string())


_ENUM_LOOKUP: Final = {f.number: _enum_lookup(f) for f in TICK_FIELDS if f.kind == "enum"}
