"""Batches of frames into columns: the recorder's hot path.

:func:`decode_batch` turns many frames into one Arrow table with :data:`TICK_SCHEMA`'s
columns, without building a Python object per field, in three steps over the whole batch:

1. ``recorder.wire.frames.unwrap_batch``: envelopes and base64, for all frames at once when
   they are all in Yahoo's compact v2 envelope (a few passes over the joined text), else
   per kind of frame, :func:`~recorder.wire.frames.unwrap` for any odd one;
2. ``recorder.wire.layouts``: the messages that share a layout with many others (a burst
   has a handful of layouts) are compared with one of them and read at its offsets;
3. ``recorder.wire.walk``: the rest are walked together, field by field, in NumPy.

Then each column is built from the values found. ``decode_batch(frames, reference=True)``
skips the bulk parts of 1 and 2 (each frame unwrapped alone, every message walked);
``tests/recorder/wire/test_bulk.py`` holds both paths equal, and
``tests/recorder/wire/test_decode.py`` holds them to protobuf's own parser (upb) on random,
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

import functools
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from lake.schema import TICK_FIELDS, TICK_SCHEMA, TickField
from recorder.wire.frames import PADDING, FrameError, unwrap, unwrap_batch
from recorder.wire.layouts import MIN_ROWS, match
from recorder.wire.walk import Walk

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]
log = logging.getLogger(__name__)

_REPORTED: set[int] = set()  # field numbers this process has logged as unknown


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


def decode_batch(frames: Sequence[str | bytes], *, reference: bool = False) -> DecodedBatch:
    """Decode ``frames`` (v1 or v2, mixed freely) into columns; never raises on bad input.

    ``reference=True`` takes the plain path the fast one must equal: every frame unwrapped
    on its own (:func:`~recorder.wire.frames.unwrap`), every payload walked field by
    field; the tests hold the two equal."""
    payloads = unwrap_batch(frames, bulk=not reference)
    errors, frame_index = payloads.errors, payloads.index
    table, reasons, unknown = _columns(
        payloads.data, payloads.starts, payloads.lengths, layouts=not reference
    )
    if reasons:
        for row, reason in reasons.items():
            errors.append(FrameError(reason, int(frame_index[row])))
        keep = np.ones(frame_index.size, dtype=np.bool_)
        keep[list(reasons)] = False
        table = table.filter(pa.array(keep))
        frame_index = frame_index[keep]
    errors.sort(key=lambda e: e.index)
    return DecodedBatch(table, frame_index, errors, payloads.skipped, unknown)


def decode_frame(frame: str | bytes) -> pa.Table:
    """One frame as a one-row table; raises :class:`FrameError` or :class:`SkippedFrame`."""
    payload = unwrap(frame)
    start, length = np.zeros(1, dtype=np.int64), np.full(1, len(payload), dtype=np.int64)
    table, reasons, _ = _columns(payload + bytes(PADDING), start, length)
    if reasons:
        raise FrameError(reasons[0])
    return table


def _columns(
    payloads: bytes, starts: I64, lengths: I64, *, layouts: bool = True
) -> tuple[pa.Table, dict[int, str], Counter[int]]:
    """Walk the payloads ``payloads[starts[i] : starts[i] + lengths[i]]`` (followed by
    :data:`~recorder.wire.frames.PADDING` zero bytes at least): the table, a
    reason for each bad row, and the unknown fields of the good rows by field number
    (logged on first sight). Payloads of a shared layout are read at its offsets
    (``recorder.wire.layouts``), the others walked field by field."""
    n = len(starts)
    ends = starts + lengths
    data = np.frombuffer(payloads, dtype=np.uint8)
    state = Walk(n)
    rows = np.arange(n, dtype=np.int64)
    if layouts and n >= MIN_ROWS:
        rows = match(payloads, data, starts, lengths, rows, state.keep_step)
    state.walk(data, starts.copy(), ends, rows)
    seen, bad = state.seen, state.bad
    reasons = {
        int(r): "invalid protobuf: truncated or malformed PricingData" for r in np.flatnonzero(bad)
    }
    seen[:, bad] = False
    for row in np.flatnonzero(~bad & ~seen[1]):
        reasons[int(row)] = "tick has no id (field 1)"
    for row in np.flatnonzero(~bad & seen[1] & ~seen[3]):
        reasons[int(row)] = "tick has no time (field 3)"
    elements = state.repeated.sorted()
    elements = elements[~bad[elements[:, 0]]]
    columns = []
    for f in TICK_FIELDS:
        if f.kind == "strings":
            mine = elements[elements[:, 1] == f.number]
            column = _list_column(data, mine, n, reasons)
        else:
            column = _column(f, data, state.raw[f.number], state.size[f.number], seen[f.number])
        if f.kind == "string":
            column = _valid_utf8(column, reasons)
        columns.append(column)
    counts = _unknown(state.unknown.sorted(), bad, reasons)
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
    body, value_offsets = _gather(data, elements[:, 2], elements[:, 3])
    values = pa.Array.from_buffers(
        pa.string(), len(elements), [None, pa.py_buffer(value_offsets), pa.py_buffer(body)]
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


def _gather(
    data: npt.NDArray[np.uint8], starts: I64, lengths: I64
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32]]:
    """The bytes ``data[starts[i] : starts[i] + lengths[i]]`` joined, and their offsets."""
    offsets = np.zeros(len(starts) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    picks = np.arange(int(offsets[-1]), dtype=np.int64) - np.repeat(offsets[:-1] - starts, lengths)
    return data[picks], offsets


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
        body, offsets = _gather(data, raw.astype(np.int64), np.where(present, size, 0))
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
    lookup, names = _enum_lookup(f.number)
    inside = (numbers >= 0) & (numbers < lookup.size)
    codes = np.where(inside, lookup[np.clip(numbers, 0, lookup.size - 1)], -1)
    strange = np.flatnonzero(codes < 0)
    if strange.size:  # a number this proto does not name (a newer Yahoo enum): its digits
        extra, inverse = np.unique(numbers[strange], return_inverse=True)
        codes[strange] = len(names) + inverse
        names = pa.concat_arrays([names, pa.array([str(int(x)) for x in extra])])
    return pa.DictionaryArray.from_arrays(codes.astype(np.int32), names).dictionary_decode()


@functools.cache
def _enum_lookup(number: int) -> tuple[npt.NDArray[np.int32], pa.Array]:
    """(code by enum number, names) of field ``number``; built on first use, not at import
    (an Arrow array at import makes pyarrow import pandas, see ``recorder.lake_process``)."""
    names_of = next(f.enum_names for f in TICK_FIELDS if f.number == number)
    assert names_of is not None
    numbers = sorted(names_of)
    lookup = np.full(max(numbers) + 1, -1, dtype=np.int32)
    lookup[numbers] = np.arange(len(numbers), dtype=np.int32)
    return lookup, pa.array([names_of[k] for k in numbers], type=pa.string())
