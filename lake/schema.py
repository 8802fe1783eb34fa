"""The tick's columns, derived from ``proto/pricing.proto``.

One name per idea: a *frame* is one WebSocket text message as received, a *tick* is the
``PricingData`` it carries. A decoded batch and a lake file share these columns, so what
``ticklake decode`` prints, what the lake stores and what SQL reads agree by construction.

Invariants:
- every proto field 1-47 is a column, in field-number order, under its proto name;
- sint64 fields are int64 (zigzag-decoded), float fields stay float32 (exactly the bits on
  the wire), double fields are float64, enum fields are strings holding the enum's name;
  the one repeated field, ``indices`` (35), is ``list<string>`` in the order received;
- ``time`` (field 3, epoch ms on the wire) is ``timestamp[ms, UTC]``;
- an absent scalar is NULL, and so is a repeated field without elements (proto3 cannot
  tell it from an empty list); an absent enum is its zero value (``PRE_MARKET``, ``NONE``)
  because Yahoo serialises with proto3 rules and never writes a zero;
- lake files written before fields 35-45 had names hold int64 placeholders ``field_35`` ...
  ``field_45`` instead (:data:`LEGACY_COLUMNS`); :func:`upgrade` reads them as today's
  columns, and ``lake.layout``'s SQL does the same.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Final

import pyarrow as pa
from google.protobuf.descriptor import FieldDescriptor

from lake import pricing_pb2

PricingData = pricing_pb2.PricingData
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TickField:
    name: str
    number: int
    kind: str  # one of: string, strings (repeated string), float, double, sint64, enum
    arrow_type: pa.DataType
    enum_names: dict[int, str] | None = None


_KINDS: Final = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_DOUBLE: "double",
    FieldDescriptor.TYPE_SINT64: "sint64",
    FieldDescriptor.TYPE_ENUM: "enum",
}
_ARROW: Final = {
    "string": pa.string(),
    "float": pa.float32(),
    "double": pa.float64(),
    "sint64": pa.int64(),
    "enum": pa.string(),
    "strings": pa.list_(pa.string()),
}
TIME_TYPE: Final = pa.timestamp("ms", tz="UTC")
RECEIVED_TYPE: Final = pa.timestamp("us", tz="UTC")


def _fields() -> tuple[TickField, ...]:
    out = []
    descriptors: list[Any] = list(PricingData.DESCRIPTOR.fields)
    for fd in sorted(descriptors, key=lambda f: f.number):
        kind = _KINDS[fd.type]
        if fd.is_repeated:
            if kind != "string":
                raise TypeError(f"{fd.name}: only a repeated string has a column type here")
            kind = "strings"
        arrow_type = TIME_TYPE if fd.name == "time" else _ARROW[kind]
        names = {v.number: v.name for v in fd.enum_type.values} if fd.enum_type else None
        out.append(TickField(fd.name, fd.number, kind, arrow_type, names))
    return tuple(out)


TICK_FIELDS: Final[tuple[TickField, ...]] = _fields()
FIELD_BY_NUMBER: Final[dict[int, TickField]] = {f.number: f for f in TICK_FIELDS}
FIELD_BY_NAME: Final[dict[str, TickField]] = {f.name: f for f in TICK_FIELDS}

TICK_SCHEMA: Final = pa.schema([pa.field(f.name, f.arrow_type) for f in TICK_FIELDS])
"""Columns of a decoded batch: exactly the proto's fields."""

LAKE_SCHEMA: Final = TICK_SCHEMA.append(pa.field("received_at", RECEIVED_TYPE)).append(
    pa.field("seq", pa.int64())
)
"""Columns of a lake file: the tick, when it was received (µs) and its journal sequence."""


@functools.cache
def empty_lake_table() -> pa.Table:
    """``LAKE_SCHEMA``'s empty table, built once, on first use: an Arrow array built at
    import makes pyarrow import pandas (~45 MB a process, see ``recorder.lake_process``)."""
    return LAKE_SCHEMA.empty_table()


def enum_name(field: TickField, value: int) -> str:
    """The enum's name for ``value``; an unknown number (a newer Yahoo enum) as its digits."""
    assert field.enum_names is not None
    return field.enum_names.get(value, str(value))


LEGACY_COLUMNS: Final = tuple(f"field_{number}" for number in range(35, 46))
"""Columns of lake files written before fields 35-45 had names and types: int64
placeholders, which could only hold a field sent as a varint (sint64)."""
LEGACY_SOURCES: Final = {"cmc_rank": "field_36", "latest_funding_date": "field_41"}
"""Today's columns a placeholder already held: fields 36 and 41 are sint64 on the wire,
so the old decoder kept them, zigzag-decoded, under their placeholder names."""
NAMED_COLUMNS: Final = tuple(f.name for f in TICK_FIELDS if 35 <= f.number <= 45)
"""The columns that replaced the placeholders: absent from an old file, NULL there."""


def stored_columns(names: Sequence[str], stored: Collection[str]) -> list[str]:
    """The columns to read from a file whose columns are ``stored`` to give ``names``:
    each name itself if stored, else its legacy placeholder if stored, else nothing
    (:func:`upgrade` then adds it as NULLs)."""
    out = []
    for name in names:
        if name in stored:
            out.append(name)
        elif LEGACY_SOURCES.get(name, "") in stored:
            out.append(LEGACY_SOURCES[name])
    return list(dict.fromkeys(out))


def upgrade(table: pa.Table, names: Sequence[str] | None = None) -> pa.Table:
    """``table``'s rows as the lake columns ``names`` (all of LAKE_SCHEMA's by default), in
    that order, whichever version wrote them.

    A column of :data:`NAMED_COLUMNS` missing from ``table`` is read from its placeholder
    (:data:`LEGACY_SOURCES`) or is NULL; the other placeholders are left out, with a
    warning when they hold values (the journal keeps those frames). A column ``table``
    has keeps its array (a dictionary-encoded string stays so). ValueError for any other
    missing column, a column the lake does not know, or one of another type.
    """
    wanted = LAKE_SCHEMA.names if names is None else list(names)
    present = set(table.schema.names)
    unknown = present - set(LAKE_SCHEMA.names) - set(LEGACY_COLUMNS)
    missing = [n for n in wanted if n not in present and n not in NAMED_COLUMNS]
    if unknown or missing:
        raise ValueError(
            f"not lake rows: unknown columns {sorted(unknown)}, missing columns {missing}"
        )
    for name in present & set(LAKE_SCHEMA.names):
        kind, expected = table.schema.field(name).type, LAKE_SCHEMA.field(name).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if not kind.equals(expected):
            raise ValueError(f"not lake rows: column {name} is {kind}, not {expected}")
    for column in sorted(present & set(LEGACY_COLUMNS) - set(LEGACY_SOURCES.values())):
        held = table.num_rows - table[column].null_count
        if held:
            log.warning("event=legacy_column_dropped column=%s rows=%d", column, held)
    if table.schema.names == wanted:
        return table
    arrays = []
    for name in wanted:
        source = name if name in present else LEGACY_SOURCES.get(name, "")
        kind = LAKE_SCHEMA.field(name).type
        if source == name:
            arrays.append(table[name])
        elif source in present:
            arrays.append(table[source].cast(kind))
        else:
            arrays.append(pa.nulls(table.num_rows, kind))
    return pa.Table.from_arrays(arrays, names=wanted)
