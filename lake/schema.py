"""The tick's columns, derived from ``proto/pricing.proto``.

One name per idea: a *frame* is one WebSocket text message as received, a *tick* is the
``PricingData`` it carries. A decoded batch and a lake file share these columns, so what
``ticklake decode`` prints, what the lake stores and what SQL reads agree by construction.

Invariants:
- every proto field 1-47 is a column, in field-number order, under its proto name;
- sint64 fields are int64 (zigzag-decoded), float fields stay float32 (exactly the bits on
  the wire), double fields are float64, enum fields are strings holding the enum's name;
- ``time`` (field 3, epoch ms on the wire) is ``timestamp[ms, UTC]``;
- an absent scalar is NULL; an absent enum is its zero value (``PRE_MARKET``, ``NONE``)
  because Yahoo serialises with proto3 rules and never writes a zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import pyarrow as pa
from google.protobuf.descriptor import FieldDescriptor

from lake import pricing_pb2

PricingData = pricing_pb2.PricingData


@dataclass(frozen=True)
class TickField:
    name: str
    number: int
    kind: str  # one of: string, float, double, sint64, enum
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
}
TIME_TYPE: Final = pa.timestamp("ms", tz="UTC")
RECEIVED_TYPE: Final = pa.timestamp("us", tz="UTC")


def _fields() -> tuple[TickField, ...]:
    out = []
    descriptors: list[Any] = list(PricingData.DESCRIPTOR.fields)
    for fd in sorted(descriptors, key=lambda f: f.number):
        kind = _KINDS[fd.type]
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


def enum_name(field: TickField, value: int) -> str:
    """The enum's name for ``value``; an unknown number (a newer Yahoo enum) as its digits."""
    assert field.enum_names is not None
    return field.enum_names.get(value, str(value))
