"""The dedupe rule of the lake: which of two sets of lake rows survive a merge.

The recorder relies on this rule to make journal replay and reconnects harmless:
- the same ``seq`` is the same journal frame (a replay): one row, the first one seen;
- two rows whose tick content is identical — every ``TICK_SCHEMA`` column equal, NULL equal
  to NULL, floats compared bit for bit (NaN equals the same NaN, -0.0 differs from 0.0),
  lists element by element, ``received_at`` and ``seq`` ignored — are the same tick (a
  reconnect re-sends the latest snapshot): the row with the lowest ``seq`` is kept;
- rows that share a ``time`` but differ in any field are different ticks: all are kept.

Everything is Arrow grouping and filtering: no Python loop per row.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from lake.schema import LAKE_SCHEMA, TICK_SCHEMA

__all__ = ["conform", "content_keys", "merge_ticks"]

_TICK_COLUMNS: Final = TICK_SCHEMA.names
_LAKE_ORDER: Final = tuple(LAKE_SCHEMA.names)
_LAKE_NAMES: Final = frozenset(_LAKE_ORDER)


def conform(table: pa.Table) -> pa.Table:
    """``table`` with exactly LAKE_SCHEMA's columns, in order and cast; ValueError if not."""
    if table.schema.equals(LAKE_SCHEMA):
        return table
    names = table.schema.names
    present = set(names)
    missing = [n for n in _LAKE_ORDER if n not in present]
    extra = [n for n in names if n not in _LAKE_NAMES]
    if missing or extra:
        raise ValueError(f"not a lake table: missing columns {missing}, unknown columns {extra}")
    return table.select(list(_LAKE_ORDER)).cast(LAKE_SCHEMA)


def merge_ticks(existing: pa.Table, incoming: pa.Table) -> tuple[pa.Table, int]:
    """Union of two LAKE_SCHEMA tables under the dedupe rules, sorted by (time, seq).

    ``existing`` must already obey the rules (every lake file does); ``incoming`` may hold
    anything. Returns the merged table and how many of its rows came from ``incoming``.
    When two rows share a ``seq`` the first one (``existing`` before ``incoming``) is kept;
    among rows of equal tick content the one with the lowest ``seq`` is kept.

    Only existing rows that share a ``time`` or a ``seq`` with an incoming row can be
    duplicates, so the grouping runs over those and the incoming rows, not the whole minute.
    """
    if incoming.num_rows == 0:
        return existing, 0
    contested = pc.or_(
        pc.is_in(existing["time"], value_set=incoming["time"]),
        pc.is_in(existing["seq"], value_set=incoming["seq"]),
    )
    settled = existing.filter(pc.invert(contested))
    kept, kept_new = _dedupe(existing.filter(contested), incoming)
    merged = pa.concat_tables([settled, kept])
    merged = merged.sort_by([("time", "ascending"), ("seq", "ascending")])
    return merged.combine_chunks(), kept_new


def _dedupe(first: pa.Table, second: pa.Table) -> tuple[pa.Table, int]:
    """Rows of ``first`` + ``second`` left by the two rules; how many came from ``second``."""
    combined = pa.concat_tables([first, second])
    origin = np.zeros(combined.num_rows, dtype=np.bool_)
    origin[first.num_rows :] = True
    combined = combined.append_column("_new", pa.array(origin))
    if pc.count_distinct(combined["seq"]).as_py() < combined.num_rows:
        combined = combined.append_column("_row", pa.array(np.arange(combined.num_rows)))
        firsts = combined.group_by("seq", use_threads=False).aggregate([("_row", "min")])
        rows = np.sort(firsts["_row_min"].to_numpy())
        combined = combined.take(pa.array(rows)).drop_columns("_row")
    keys = _groupable(combined.select(_TICK_COLUMNS)).append_column("seq", combined["seq"])
    lowest = keys.group_by(_TICK_COLUMNS, use_threads=False).aggregate([("seq", "min")])
    if lowest.num_rows < combined.num_rows:
        combined = combined.filter(pc.is_in(combined["seq"], value_set=lowest["seq_min"]))
    kept_new = int(pc.sum(combined["_new"].cast(pa.int64())).as_py() or 0)
    return combined.drop_columns("_new"), kept_new


_SEEDS: Final = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xD1B54A32D192ED03))
_NULLS: Final = (np.uint64(0x243F6A8885A308D3), np.uint64(0x13198A2E03707344))


def content_keys(table: pa.Table) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Two independent 64-bit keys per row over its tick content (every ``TICK_SCHEMA``
    column; ``received_at`` and ``seq`` ignored): equal content gives equal keys, with the
    rule's equality (NULL equals NULL, floats bit for bit). Two rows with different content
    share both keys with a chance of about 2^-128. Keys of one process only: strings are
    keyed through Python's hash, which is salted per process."""
    n = table.num_rows
    keys = [np.full(n, seed, dtype=np.uint64) for seed in _SEEDS]
    for name in _TICK_COLUMNS:
        for lane, bits in enumerate(_column_bits(table[name])):
            keys[lane] = _mix(keys[lane] ^ bits)
    return keys[0], keys[1]


def _groupable(table: pa.Table) -> pa.Table:
    """``table`` with each list column (Arrow cannot group by one) as its :func:`_list_text`."""
    for i, f in enumerate(table.schema):
        if pa.types.is_list(f.type):
            table = table.set_column(i, f.name, _list_text(table[f.name].combine_chunks()))
    return table


def _list_text(array: pa.ListArray) -> pa.Array:
    """One string per list of strings, equal exactly when the lists are (NULL stays NULL):
    the element count, then each element with ``\\`` and the separator escaped."""
    if array.offset:  # from_arrays takes no validity mask with sliced offsets
        array = pa.concat_arrays([array])
    values = pc.replace_substring(array.values, "\\", "\\\\")
    values = pc.replace_substring(values, _SEPARATOR, "\\s")
    values = pc.fill_null(values, "\\0")  # a NULL element: no escaped text looks like it
    escaped = pa.ListArray.from_arrays(array.offsets, values, mask=array.is_null())
    count = pc.cast(pc.list_value_length(array), pa.string())
    return pc.binary_join_element_wise(count, pc.binary_join(escaped, _SEPARATOR), _SEPARATOR)


_SEPARATOR: Final = "\x1f"


def _column_bits(column: pa.ChunkedArray) -> tuple[npt.NDArray[np.uint64], ...]:
    """Per lane, one uint64 per row standing for the value (a lane's own constant for NULL)."""
    array = column.combine_chunks()
    if pa.types.is_list(array.type):
        array = _list_text(array)
    valid = np.asarray(array.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        encoded = array.dictionary_encode()
        values = encoded.dictionary.to_pylist()
        table = [np.array([hash((lane, v)) for v in values], dtype=np.int64) for lane in (0, 1)]
        index = np.asarray(encoded.indices.fill_null(0).to_numpy(), dtype=np.int64)
        raw = [
            t.view(np.uint64)[index] if len(t) else np.zeros(len(array), np.uint64) for t in table
        ]
    else:
        width = {4: np.uint32, 8: np.uint64}[array.type.byte_width]
        data = np.frombuffer(array.buffers()[1], dtype=width, count=len(array) + array.offset)
        bits = data[array.offset :].astype(np.uint64)
        raw = [bits, bits]
    return tuple(np.where(valid, r, null) for r, null in zip(raw, _NULLS, strict=True))


def _mix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser: every input bit moves every output bit."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))
