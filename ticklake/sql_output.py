"""How ``ticklake sql`` writes a query's result: an aligned text table, CSV, JSON lines or
Parquet; float32 prices shown with the decimals that were sent, NULL as ``NULL`` (table) or
``null`` (JSON, also for NaN and infinities)."""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

__all__ = ["FORMATS", "format_table", "write_result"]

FORMATS: Final = ("table", "csv", "json", "parquet")


def write_result(table: pa.Table, form: str, output: Path | None) -> None:
    """Write ``table`` in ``form`` to ``output`` (stdout if None; parquet needs a file)."""
    if form == "parquet":
        assert output is not None
        pq.write_table(table, output, compression="zstd")
        return
    if form == "csv":
        buffer = io.BytesIO()
        pacsv.write_csv(table, buffer)
        _emit(buffer.getvalue(), output)
    elif form == "json":
        lines = (json.dumps(row, default=str) + "\n" for row in _json_rows(table))
        _emit("".join(lines).encode(), output)
    else:
        rows = "row" if table.num_rows == 1 else "rows"
        _emit(f"{format_table(table)}\n({table.num_rows} {rows})\n".encode(), output)


def _emit(data: bytes, output: Path | None) -> None:
    if output is None:
        stream: IO[bytes] = sys.stdout.buffer
        stream.write(data)
        stream.flush()
    else:
        output.write_bytes(data)


def format_table(table: pa.Table) -> str:
    """An aligned text table: a header, a rule, one line per row; numbers right-aligned,
    NULL shown as ``NULL``, float32 prices with the decimals that were sent."""
    names = table.column_names
    columns = [_cells(table.column(i)) for i in range(table.num_columns)]
    numeric = [_is_numeric(f.type) for f in table.schema]
    widths = [max([len(n), *map(len, c)]) for n, c in zip(names, columns, strict=True)]

    def line(cells: list[str]) -> str:
        parts = [
            cell.rjust(w) if right else cell.ljust(w)
            for cell, w, right in zip(cells, widths, numeric, strict=True)
        ]
        return " | ".join(parts).rstrip()

    out = [line(names), "-+-".join("-" * w for w in widths)]
    out.extend(line([c[i] for c in columns]) for i in range(table.num_rows))
    return "\n".join(out)


def _is_numeric(kind: pa.DataType) -> bool:
    return any(
        test(kind) for test in (pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal)
    )


def _cells(column: pa.ChunkedArray) -> list[str]:
    values = column.to_pylist()
    if pa.types.is_float32(column.type):
        return ["NULL" if v is None else str(np.float32(v)) for v in values]
    if pa.types.is_boolean(column.type):
        return ["NULL" if v is None else str(v).lower() for v in values]
    return ["NULL" if v is None else str(v) for v in values]


def _json_rows(table: pa.Table) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = table.to_pylist()
    floats32 = [f.name for f in table.schema if pa.types.is_float32(f.type)]
    floats = [f.name for f in table.schema if pa.types.is_floating(f.type)]
    for row in rows:
        for name in floats32:
            if row[name] is not None:
                row[name] = float(str(np.float32(row[name])))
        for name in floats:
            value = row[name]
            if value is not None and not math.isfinite(value):
                row[name] = None  # JSON has no NaN or infinity
    return rows
