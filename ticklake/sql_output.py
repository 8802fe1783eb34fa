"""How ``ticklake sql`` writes a query's result: an aligned text table, CSV, JSON lines or
Parquet; float32 prices shown with the decimals that were sent, NULL as ``NULL`` (table) or
``null`` (JSON, also for NaN and infinities), times in JSON as every JSON output of ticklake
writes them: ISO 8601 in UTC with milliseconds and a ``Z`` (``2024-04-16T14:00:00.000Z``;
a time without a zone is taken as UTC).

A table on a terminal is drawn by DuckDB's own renderer (:func:`box_table`: boxes, the
column types, the middle columns left out when they do not fit, as the ``duckdb`` shell
shows them) within the terminal's width (or ``--max-width``), never narrower than
:data:`BOX_MIN_WIDTH`, the least DuckDB draws. Anywhere else (a pipe, a file) a table is the
plain aligned text of :func:`format_table`, stable for scripts: given a width it fits in it,
the widest columns cut first, to a common width, their cells ending in ``…``. No column is
cut below :data:`MIN_WIDTH` characters: when that is still too wide, the columns on the
right that do not fit are left out, a last ``…`` column and the row count say so.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
from pathlib import Path
from typing import IO, Any, Final

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lake.utc import iso_utc

__all__ = [
    "BOX_MIN_WIDTH",
    "FORMATS",
    "MIN_WIDTH",
    "box_table",
    "fit_widths",
    "format_table",
    "write_result",
]

FORMATS: Final = ("table", "csv", "json", "parquet")
SEPARATOR: Final = " | "
ELLIPSIS: Final = "…"
MIN_WIDTH: Final = 10
"""The narrowest a column is cut to (nine characters and the ellipsis)."""
BOX_MIN_WIDTH: Final = 80
"""DuckDB's renderer draws no table narrower than this, whatever width it is given."""
UNLIMITED: Final = 1 << 20
_TO_MS: Final = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1_000_000)}
"""Per timestamp unit: (multiply, then floor-divide) to get epoch milliseconds."""


def write_result(
    table: pa.Table,
    form: str,
    output: Path | None,
    max_width: int | None = None,
    *,
    box: bool = False,
) -> None:
    """Write ``table`` in ``form`` to ``output`` (stdout if None; parquet needs a file);
    a ``table`` within ``max_width`` characters when given, drawn by DuckDB with ``box``."""
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
    elif box:
        _emit(box_table(table, max_width).encode(), output)
    else:
        text, hidden = _table(table, max_width)
        rows = f"{table.num_rows} {'row' if table.num_rows == 1 else 'rows'}"
        if hidden:
            rows += f"; {hidden} of {table.num_columns} columns left out: --max-width 0 shows all"
        _emit(f"{text}\n({rows})\n".encode(), output)


def _emit(data: bytes, output: Path | None) -> None:
    if output is None:
        stream: IO[bytes] = sys.stdout.buffer
        stream.write(data)
        stream.flush()
    else:
        output.write_bytes(data)


def box_table(table: pa.Table, max_width: int | None = None) -> str:
    """``table`` as DuckDB's renderer draws it, every row, within ``max_width`` characters
    (None: no bound; at least :data:`BOX_MIN_WIDTH`); times with a zone shown in UTC."""
    with duckdb.connect() as con:
        with contextlib.suppress(duckdb.Error):  # without ICU there are no zones to convert
            con.execute("SET TimeZone = 'UTC'")
        relation = con.from_arrow(table)
        drawn = io.StringIO()
        with contextlib.redirect_stdout(drawn):  # show() prints through Python's stdout
            relation.show(
                max_width=max_width or UNLIMITED,
                max_rows=max(table.num_rows, 1),
                null_value="NULL",
            )
    return drawn.getvalue().rstrip("\n") + "\n"


def format_table(table: pa.Table, max_width: int | None = None) -> str:
    """An aligned text table: a header, a rule, one line per row; numbers right-aligned,
    NULL shown as ``NULL``, float32 prices with the decimals that were sent; cut to fit
    ``max_width`` characters when given (see the module docstring)."""
    return _table(table, max_width)[0]


def _table(table: pa.Table, max_width: int | None) -> tuple[str, int]:
    """:func:`format_table`'s text, and how many columns on the right it left out."""
    names = table.column_names
    columns = [_cells(table.column(i)) for i in range(table.num_columns)]
    numeric = [_is_numeric(f.type) for f in table.schema]
    widths = [max([len(n), *map(len, c)]) for n, c in zip(names, columns, strict=True)]
    shown = total = len(widths)
    if max_width is not None:
        shown = shown_columns(widths, max_width)
        if shown < len(widths):  # a last column of "…" marks those left out
            names, columns = [*names[:shown], ELLIPSIS], [*columns[:shown], _marks(table)]
            numeric = [*numeric[:shown], False]
        room = max_width - len(SEPARATOR) * (len(names) - 1) - (len(names) - shown)
        widths = [*fit_widths(widths[:shown], room), *[1] * (len(names) - shown)]

    def line(cells: list[str]) -> str:
        parts = [
            _cut(cell, w).rjust(w) if right else _cut(cell, w).ljust(w)
            for cell, w, right in zip(cells, widths, numeric, strict=True)
        ]
        return SEPARATOR.join(parts).rstrip()

    out = [line(names), "-+-".join("-" * w for w in widths)]
    out.extend(line([c[i] for c in columns]) for i in range(table.num_rows))
    return "\n".join(out), total - shown


def shown_columns(widths: list[int], max_width: int) -> int:
    """How many columns, from the left, fit in ``max_width`` characters each cut to at most
    ``MIN_WIDTH`` (with a one-character column marking the rest when some are left out);
    at least one."""
    if sum(widths) + len(SEPARATOR) * (len(widths) - 1) <= max_width:
        return len(widths)
    used = 1  # the marker column
    for count, width in enumerate(widths):
        used += min(width, MIN_WIDTH) + len(SEPARATOR)
        if used > max_width:
            return max(count, 1)
    return len(widths)


def _marks(table: pa.Table) -> list[str]:
    return [ELLIPSIS] * table.num_rows


def fit_widths(widths: list[int], budget: int) -> list[int]:
    """Column widths that sum to at most ``budget``: every column wider than a common cap is
    cut to it (the cap as high as the budget allows, what is left shared from the left);
    never below ``MIN_WIDTH`` (or a column's own width), even if the sum then exceeds it."""
    if sum(widths) <= budget:
        return list(widths)
    low, high = MIN_WIDTH, max(widths)  # the widest cap that fits: low fits or is the floor
    while low < high:
        cap = (low + high + 1) // 2
        if sum(min(w, cap) for w in widths) <= budget:
            low = cap
        else:
            high = cap - 1
    fitted = [min(w, low) for w in widths]
    spare = budget - sum(fitted)
    for i, width in enumerate(widths):
        if spare <= 0:
            break
        if width > fitted[i]:
            fitted[i] += 1
            spare -= 1
    return fitted


def _cut(cell: str, width: int) -> str:
    return cell if len(cell) <= width else cell[: width - 1] + ELLIPSIS


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
    times = {
        f.name: _iso_times(table.column(f.name))
        for f in table.schema
        if pa.types.is_timestamp(f.type)
    }
    for i, row in enumerate(rows):
        for name in floats32:
            if row[name] is not None:
                row[name] = float(str(np.float32(row[name])))
        for name in floats:
            value = row[name]
            if value is not None and not math.isfinite(value):
                row[name] = None  # JSON has no NaN or infinity
        for name, texts in times.items():
            row[name] = texts[i]
    return rows


def _iso_times(column: pa.ChunkedArray) -> list[str | None]:
    """Each timestamp as :func:`lake.utc.iso_utc` writes it (milliseconds, floored)."""
    multiply, divide = _TO_MS[column.type.unit]
    values = column.cast(pa.int64()).to_pylist()
    return [None if v is None else iso_utc(v * multiply // divide) for v in values]
