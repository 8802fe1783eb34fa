"""Ticks as JSON objects: what ``ticklake decode`` prints and what users read by eye.

Invariants: only fields present in the frame appear; enums are names; integers are JSON
integers; the repeated field (``indices``) is a JSON array of strings; float32 prices are
written as the shortest decimal that reads back to the same float32 (``177.42``, not
``177.4199981689453``), so the text is both what Yahoo meant and exactly the bits received;
``time`` stays epoch milliseconds and ``time_utc`` adds ISO-8601. NaN and infinities, which
JSON cannot carry, become strings ``"NaN"``, ``"Infinity"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from lake.utc import iso_utc


def shortest_float32(value: float) -> float | str:
    """The shortest decimal that is exactly this float32, as a float (or a string for NaN/inf)."""
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return float(str(np.float32(value)))


def _column_values(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    kind = column.type
    if pa.types.is_timestamp(kind):
        column = column.cast(pa.int64())
    values: list[Any] = column.to_pylist()
    if pa.types.is_float32(kind):
        return [None if v is None else shortest_float32(v) for v in values]
    if pa.types.is_float64(kind):
        return [v if v is None or math.isfinite(v) else str(v) for v in values]
    return values


def tick_records(ticks: pa.Table) -> Iterator[dict[str, Any]]:
    """One dict per row with the row's non-NULL fields, in schema order."""
    names = ticks.column_names
    columns = [_column_values(ticks.column(name)) for name in names]
    for row in range(ticks.num_rows):
        record: dict[str, Any] = {}
        for name, values in zip(names, columns, strict=True):
            value = values[row]
            if value is None:
                continue
            record[name] = value
            if name == "time":
                record["time_utc"] = iso_utc(value)
        yield record
