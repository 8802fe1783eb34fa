"""Tick history from Parquet or CSV files into the lake, through ``write_minutes``: all or nothing.

Days that ended more than the recompute horizon ago (``ImportOptions.history_before``) and
that the minute tier holds nothing of go straight into history day files, one per
ticker-day, as compaction would leave them; later days become minute files.

Columns, by proto name (``lake.schema``): ``ticker`` (or ``id``; both: they must agree),
``time`` and ``price`` are required; any other tick field and ``received_at`` are optional.
Any other column refuses the file (all are listed) unless ``ignore_unknown`` skips it. A file
is Parquet (``.parquet``, ``.pq``) or CSV with a header (``.csv``, ``.csv.gz|bz2|zst|lz4``).

- ``time`` / ``received_at``: a timestamp (any unit; naive = UTC), an integer or integral
  float of epoch **milliseconds**, or text: ISO-8601 (``2026-11-25T14:30:05.250Z``, an offset,
  or none = UTC) or epoch-ms digits. Sub-millisecond digits of ``time`` are floored (the lake
  keeps ms). A time outside 1990..2099 is a bad row (epoch seconds or a zigzag bug, mostly).
  ``received_at`` defaults to the import's time (``now_us``).
- Numbers are cast to the lake's types: float fields (``price``, ...) round to the nearest
  float32 (``184.38`` is stored as 184.3800048828125, which reads back as ``184.38``);
  integer fields must hold integers. Enums hold names (``REGULAR_MARKET``); an absent enum is
  NULL (unknown), not the proto zero value the wire implies.
- A bad row (ticker missing or not a valid symbol, time or price missing, a value that does
  not parse or does not fit, a NaN or infinite price, an unknown enum name) is reported with
  its row number: 1-based per file, counting data rows (a CSV's header and blank lines are
  not rows), and every reason that applies.

Invariants:
- Validation precedes any write: pass 1 streams every file and checks every row; if any row
  or file is bad, ``ImportRejectedError`` lists them and the lake is untouched. Pass 2 reads
  the files again and writes. Memory is bounded by ``batch_rows`` and ``flush_rows`` (minute
  files) and ``spill_rows`` and ``merge_rows`` (day files, ``lake.import_days``), not by the
  size of a file, of a day or of the day file it merges into: with the defaults, a
  history-day import peaks near 320 MB RSS whatever the day holds (``bench/import_memory.py``).
  The valid path has no Python loop per row (only reporting bad rows loops).
- The journal's lock is held throughout, so an import never runs beside the recorder.
- Row order is arrival order: import number ``k`` owns the seqs
  ``[-2**62 + (k-1)*2**40, -2**62 + k*2**40)``, and its i-th row (counting across its files
  in the order given) gets the i-th. Journal seqs are positive, so no seq is shared with a
  recorded tick; imports sort before recorded ticks of the same ``time`` and later imports
  after earlier ones. ``<data>/state/imports.json`` holds ``next_import`` and the import in
  progress (its files' path, size and mtime); ``next_import`` advances only when an import
  completes, so rerunning an interrupted import with the same files reuses the same seqs and
  the dedupe rules make it idempotent; other files get the next number. Never delete it.
- Re-importing is harmless: identical tick content is one tick (``dedupe.py``), also within a
  file, counted as a duplicate. An imported tick identical to a recorded one replaces its
  seq and ``received_at`` (the lowest seq wins); no distinct tick is ever removed.
- Imported ticks do not mark sealed windows late (``seal.json`` is untouched): features of
  imported history come from ``ticklake backfill`` over the imported time range.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import os
import re
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from lake.atomic import atomic_write_bytes
from lake.datadir import IMPORTS_FILE, WriterLock, journal_dir
from lake.errors import LakeError
from lake.import_days import DayImport, DayImported
from lake.logfmt import logfmt
from lake.minutes import MinutesWrite, write_minutes
from lake.schema import FIELD_BY_NAME, LAKE_SCHEMA, RECEIVED_TYPE, TIME_TYPE
from lake.symbols import valid_symbol_mask, validate_symbol
from lake.utc import DAY_MS, MINUTE_MS

__all__ = [
    "SEQ_BLOCK",
    "BadRow",
    "ImportOptions",
    "ImportProgress",
    "ImportRejectedError",
    "ImportStats",
    "ImportUsageError",
    "ImportWriteError",
    "import_files",
    "import_seq_base",
]

log = logging.getLogger(__name__)
Mask = npt.NDArray[np.bool_]

SEQ_BLOCK: Final = 1 << 40  # seqs (rows) per import
FIRST_SEQ: Final = -(1 << 62)
MIN_TIME_MS: Final = 631_152_000_000  # 1990-01-01
MAX_TIME_MS: Final = 4_102_444_800_000  # 2100-01-01
KEEP_DONE: Final = 20  # completed imports listed in imports.json (their paths)
_CSV_RE: Final = re.compile(r"\.csv(\.(gz|bz2|zst|lz4))?$", re.IGNORECASE)
_INT_RE: Final = r"^[+-]?\d+$"
_FLOAT_RE: Final = r"^[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|(?i:nan|inf|infinity))$"
_ISO_RE: Final = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?"
_ZONE_RE: Final = r"(Z|[+-]\d{2}(:?\d{2})?)$"
_PER_SECOND: Final = {"s": 1, "ms": 1000, "us": 1_000_000, "ns": 1_000_000_000}
_EXTRA: Final = {"ticker": "id", "received_at": "received_at"}  # beyond the tick's fields


class ImportUsageError(Exception):
    """The import cannot start: a file is missing or unsupported, or the state is unreadable."""


class ImportWriteError(Exception):
    """Writing stopped part-way; rerunning the same import finishes it (same seqs)."""


@dataclass(frozen=True)
class BadRow:
    path: Path
    row: int  # 1-based data row of its file
    reason: str


class ImportRejectedError(Exception):
    """Some file or row is bad; nothing was written. ``bad_rows`` holds the first few."""

    def __init__(self, problems: list[str], bad_rows: list[BadRow], bad_row_count: int) -> None:
        self.problems, self.bad_rows, self.bad_row_count = problems, bad_rows, bad_row_count
        super().__init__(
            f"nothing imported: {bad_row_count} bad rows, {len(problems)} unusable files"
        )


@dataclass(frozen=True)
class ImportOptions:
    ignore_unknown: bool = False  # skip unknown columns (logged) instead of refusing the file
    threads: int = 4  # write_minutes calls running at once
    batch_rows: int = 65_536  # rows read per batch (pass 1 converts one at a time)
    flush_rows: int = 1_000_000  # rows buffered, then sorted by (ticker, minute) and written
    piece_rows: int = 8_192  # rows per write_minutes call (whole minutes)
    # Days before this UTC date go straight into history day files (whole ticker-days per
    # write_minutes call) when the minute tier holds nothing of them; None: minute files.
    history_before: dt.date | None = None
    max_reported: int = 20  # bad rows kept for the report; all are counted
    # Rows of history days (``history_before``, or a day file exists) are spilled as sorted
    # runs of at most ``spill_rows`` and streamed into their day files ``merge_rows`` at a
    # time (``lake.import_days``): memory does not grow with the day. False: the
    # whole-table merge of ``write_minutes`` (the day and its file held at once).
    stream_days: bool = True
    spill_rows: int = 65_536
    merge_rows: int = 32_768


@dataclass(frozen=True)
class ImportProgress:
    phase: str  # "validate", then "write"
    rows: int  # rows done in this phase
    total: int | None  # rows to do (known once validated)


@dataclass
class ImportStats:
    files: int = 0
    rows: int = 0
    ticks_added: int = 0
    duplicates: int = 0
    minute_files: int = 0  # minutes whose file was (re)written
    import_number: int | None = None  # None: no rows, nothing imported
    tickers: set[str] = field(default_factory=set)
    first_ms: int | None = None  # time of the earliest imported tick
    last_ms: int | None = None
    day_files: int = 0  # history day files (re)written (``ImportOptions.history_before``)


def import_seq_base(number: int) -> int:
    """First seq of import ``number`` (1-based); its rows take the next ``SEQ_BLOCK`` seqs."""
    if not 1 <= number <= -FIRST_SEQ // SEQ_BLOCK:
        raise ValueError(f"import number {number} is outside 1..{-FIRST_SEQ // SEQ_BLOCK}")
    return FIRST_SEQ + (number - 1) * SEQ_BLOCK


def import_files(
    data: Path,
    paths: Sequence[Path],
    now_us: int,
    options: ImportOptions | None = None,
    progress: Callable[[ImportProgress], None] | None = None,
) -> ImportStats:
    """Validate every row of ``paths``, then write them all into the lake under ``data``.

    Raises ImportUsageError (a file is missing or unsupported), DataLockedError (a
    recorder runs), ImportRejectedError (bad rows or files; nothing written) or
    ImportWriteError (a write failed part-way; rerun to finish).
    """
    data, paths, options = Path(data), [Path(p) for p in paths], options or ImportOptions()
    for path in paths:
        if not path.is_file():
            raise ImportUsageError(f"{path}: no such file")
        _kind(path)
    report = progress or (lambda _: None)
    with _writer_lock(data):  # the recorder's lock: never write beside it
        sources, stats = _validate(paths, options, report)
        if stats.rows == 0:
            return stats
        if stats.rows > SEQ_BLOCK:
            raise ImportUsageError(f"{stats.rows} rows in one import; split it (max {SEQ_BLOCK})")
        state, files = _load_state(data), [_fingerprint(p) for p in paths]
        number = stats.import_number = _begin(state, files, now_us)
        atomic_write_bytes(data / IMPORTS_FILE, _dump(state))
        log.info("event=import_begin number=%d files=%d rows=%d", number, len(paths), stats.rows)
        _write(data, sources, stats, now_us, options, report)
        paths_done = [f["path"] for f in files]
        done = {"import": number, "files": paths_done, "rows": stats.rows, "finished_us": now_us}
        state.update(next_import=number + 1, pending=None, done=[*state["done"], done][-KEEP_DONE:])
        atomic_write_bytes(data / IMPORTS_FILE, _dump(state))
        log.info("event=import_done number=%d added=%d", number, stats.ticks_added)
    return stats


# -- files ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    path: Path
    plan: dict[str, str]  # file column -> lake column ("ticker" -> "id"; "id" -> "_id")
    rows: int


def _kind(path: Path) -> str:
    if path.name.lower().endswith((".parquet", ".pq")):
        return "parquet"
    if _CSV_RE.search(path.name):
        return "csv"
    raise ImportUsageError(f"{path}: unsupported file type; give .parquet, .csv or .csv.gz")


def _schema(path: Path) -> pa.Schema:
    """The file's columns; a CSV's are all read as text (``_convert`` parses them)."""
    if _kind(path) == "parquet":
        with pq.ParquetFile(path) as file:
            return file.schema_arrow
    with pcsv.open_csv(pa.input_stream(path, compression="detect")) as reader:
        return pa.schema([(name, pa.string()) for name in reader.schema.names])


def _batches(
    path: Path, schema: pa.Schema, plan: dict[str, str], rows: int
) -> Iterator[pa.RecordBatch]:
    if _kind(path) == "parquet":
        with pq.ParquetFile(path) as file:
            yield from file.iter_batches(batch_size=rows, columns=list(plan))
        return
    convert = pcsv.ConvertOptions(
        column_types={name: pa.string() for name in schema.names},
        include_columns=list(plan),
        strings_can_be_null=True,
        null_values=[""],
    )
    read = pcsv.ReadOptions(block_size=max(rows * 64, 1 << 20))
    stream = pa.input_stream(path, compression="detect")
    with pcsv.open_csv(stream, read_options=read, convert_options=convert) as reader:
        yield from reader


def _plan(path: Path, schema: pa.Schema, ignore_unknown: bool) -> tuple[dict[str, str], str]:
    """Which file column becomes which lake column, or a problem describing the file."""
    names = schema.names
    if len(set(names)) < len(names):
        return {}, f"{path}: duplicate column names"
    plan = {n: _EXTRA.get(n, n) for n in names if n in FIELD_BY_NAME or n in _EXTRA}
    if "ticker" in plan and "id" in plan:
        plan["id"] = "_id"  # checked against ticker, not stored twice
    need = {"ticker": "id", "time": "time", "price": "price"}
    missing = [name for name, target in need.items() if target not in plan.values()]
    if missing:
        return {}, f"{path}: missing column(s) {', '.join(missing)}"
    unknown = [n for n in names if n not in plan]
    if unknown and not ignore_unknown:
        shown = ", ".join(repr(n) for n in unknown)
        return {}, f"{path}: unknown column(s) {shown}; pass --ignore-unknown to skip them"
    if unknown:
        columns = logfmt(",".join(unknown))
        log.warning("event=import_columns_ignored path=%s columns=%s", logfmt(path), columns)
    for name, target in plan.items():
        if not _accepts(_column_kind(target), schema.field(name).type):
            kind = _column_kind(target)
            return {}, f"{path}: column {name!r} has type {schema.field(name).type}, not {kind}"
    return plan, ""


def _column_kind(target: str) -> str:
    if target in ("id", "_id"):
        return "string"
    return "time" if target in ("time", "received_at") else FIELD_BY_NAME[target].kind


def _accepts(kind: str, t: pa.DataType) -> bool:
    types = pa.types
    text = types.is_string(t) or types.is_large_string(t) or types.is_null(t)
    text = text or (types.is_dictionary(t) and types.is_string(t.value_type))
    numeric = types.is_integer(t) or types.is_floating(t) or types.is_decimal(t)
    if kind == "strings":  # a list of strings (``indices``): from Parquet only
        lists = types.is_list(t) or types.is_large_list(t)
        return bool(types.is_null(t) or (lists and _accepts("string", t.value_type)))
    if kind in ("string", "enum"):
        return bool(text or (kind == "string" and types.is_integer(t)))
    return bool(text or numeric or (kind == "time" and types.is_timestamp(t)))


# -- pass 1: validate -------------------------------------------------------------------


def _writer_lock(data: Path) -> WriterLock:
    journal = journal_dir(data)
    try:
        journal.mkdir(parents=True, exist_ok=True)
        return WriterLock.acquire(journal)
    except OSError as exc:
        raise ImportUsageError(f"cannot lock {journal}: {exc.strerror or exc}") from exc


def _validate(
    paths: list[Path], options: ImportOptions, report: Callable[[ImportProgress], None]
) -> tuple[list[_Source], ImportStats]:
    stats, sources, problems = ImportStats(files=len(paths)), [], []
    bad_rows: list[BadRow] = []
    bad_count = done = 0
    for path in paths:
        rows = 0
        try:
            schema = _schema(path)
            plan, problem = _plan(path, schema, options.ignore_unknown)
            if problem:
                problems.append(problem)
                continue
            for batch in _batches(path, schema, plan, options.batch_rows):
                table, checks = _convert(batch, plan, 0, 0)
                index = np.flatnonzero(_bad_mask(checks, batch.num_rows))
                for i in index[: max(0, options.max_reported - len(bad_rows))].tolist():
                    reason = "; ".join(c.describe(i) for c in checks if c.mask[i])
                    bad_rows.append(BadRow(path, rows + i + 1, reason))
                bad_count += len(index)
                if not bad_count:
                    _summarize(stats, table)
                rows, done = rows + batch.num_rows, done + batch.num_rows
                report(ImportProgress("validate", done, None))
        except (OSError, pa.ArrowException) as exc:
            problems.append(f"{path}: cannot read: {str(exc).splitlines()[0]}")
            continue
        sources.append(_Source(path, plan, rows))
        stats.rows += rows
    if problems or bad_count:
        raise ImportRejectedError(problems, bad_rows, bad_count)
    return sources, stats


def _summarize(stats: ImportStats, table: pa.Table) -> None:
    if table.num_rows:
        stats.tickers.update(pc.unique(table["id"]).to_pylist())
        low, high = (s.as_py() for s in pc.min_max(table["time"].cast(pa.int64())).values())
        stats.first_ms = low if stats.first_ms is None else min(stats.first_ms, low)
        stats.last_ms = high if stats.last_ms is None else max(stats.last_ms, high)


# -- converting a batch -----------------------------------------------------------------


@dataclass(frozen=True)
class _Check:
    mask: Mask  # True: the row breaks this rule
    describe: Callable[[int], str]  # why, for row i of the batch (called for bad rows only)


def _convert(
    batch: pa.RecordBatch, plan: dict[str, str], first_seq: int, now_us: int
) -> tuple[pa.Table, list[_Check]]:
    """The batch as lake columns (bad cells NULL) and the rules its rows were checked by."""
    columns: dict[str, pa.Array] = {}
    checks: list[_Check] = []
    for name, target in plan.items():
        values, kind = _plain(batch.column(name)), _column_kind(target)
        if kind == "time":
            out, missing, bad = _times(values, "ms" if target == "time" else "us")
            what = "is not an ISO-8601 time or epoch milliseconds in 1990..2099"
            checks.append(_value_check(bad, name, values, what))
            if target == "time":
                checks.append(_Check(missing, lambda _: "time missing"))
        elif kind == "strings":
            out = values.cast(LAKE_SCHEMA.field(target).type)
        elif kind in ("string", "enum"):
            out = values.cast(pa.string())
            valid = _np(pc.is_valid(out))
            if target == "id":
                checks.append(_Check(~valid, _fixed(f"{name} missing")))
                checks.append(_symbol_check(out, valid & ~_np(valid_symbol_mask(out))))
            if kind == "enum":
                names = list((FIELD_BY_NAME[target].enum_names or {}).values())
                bad = valid & ~_np(pc.is_in(out, value_set=pa.array(names)))
                checks.append(_value_check(bad, name, values, f"is not one of {', '.join(names)}"))
        else:
            out, bad = _numbers(values, LAKE_SCHEMA.field(target).type)
            what = "an integer" if pa.types.is_integer(out.type) else "a number"
            checks.append(_value_check(bad, name, values, f"is not {what} (or does not fit)"))
            if target == "price":
                checks.append(_Check(_np(pc.is_null(out)) & ~bad, lambda _: "price missing"))
                nan = _np(pc.is_nan(out)) | _np(pc.is_inf(out))
                checks.append(_value_check(nan & ~bad, name, out, "is not a finite price"))
        columns[target] = out
    if "_id" in columns:
        other = columns.pop("_id")
        differ = _np(pc.not_equal(columns["id"], other))
        checks.append(_value_check(differ, "id", other, "differs from the row's ticker"))
    n = batch.num_rows
    received = columns.get("received_at", pa.nulls(n, RECEIVED_TYPE))
    columns["received_at"] = pc.fill_null(received, pa.scalar(now_us, RECEIVED_TYPE))
    columns["seq"] = pa.array(np.arange(first_seq, first_seq + n, dtype=np.int64))
    return pa.table(columns), checks


def _fixed(reason: str) -> Callable[[int], str]:
    return lambda _: reason


def _value_check(mask: Mask, name: str, values: pa.Array, what: str) -> _Check:
    def describe(i: int) -> str:
        text = repr(values[i].as_py())
        return f"{name} {text if len(text) <= 40 else text[:37] + '...'} {what}"

    return _Check(mask, describe)


def _symbol_check(ids: pa.Array, mask: Mask) -> _Check:
    def describe(i: int) -> str:
        try:
            validate_symbol(ids[i].as_py())
        except ValueError as exc:
            return str(exc)
        return f"symbol {ids[i].as_py()!r} rejected"  # pragma: no cover - rules agree

    return _Check(mask, describe)


def _bad_mask(checks: list[_Check], n: int) -> Mask:
    bad = np.zeros(n, dtype=np.bool_)
    for check in checks:
        bad |= check.mask
    return bad


def _np(mask: pa.Array) -> Mask:
    result: Mask = pc.fill_null(mask, False).to_numpy(zero_copy_only=False)
    return result


def _plain(values: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    return values.cast(pa.string()) if pa.types.is_large_string(values.type) else values


def _trimmed(values: pa.Array) -> pa.Array:
    """Text with surrounding whitespace removed; an empty value is NULL."""
    text = pc.utf8_trim_whitespace(values)
    return _nulled(text, _np(pc.equal(text, "")))


def _nulled(values: pa.Array, mask: Mask) -> pa.Array:
    if not mask.any():
        return values
    return pc.if_else(pa.array(mask), pa.scalar(None, values.type), values)


def _cast(values: pa.Array, target: pa.DataType) -> tuple[pa.Array, Mask]:
    """``values`` cast to ``target``; cells that cannot be are NULL and flagged.

    The valid path is one vectorized cast; when it fails, halving finds the bad cells.
    """
    bad = np.zeros(len(values), dtype=np.bool_)
    try:
        return values.cast(target), bad
    except pa.ArrowInvalid:
        pass
    stack = [(0, len(values))]
    while stack:
        start, length = stack.pop()
        try:
            values.slice(start, length).cast(target)
        except pa.ArrowInvalid:
            if length == 1:
                bad[start] = True
            else:
                half = length // 2
                stack += [(start, half), (start + half, length - half)]
    return _nulled(values, bad).cast(target), bad


def _numbers(values: pa.Array, target: pa.DataType) -> tuple[pa.Array, Mask]:
    """Numbers of any type (or text) as ``target``: integers exactly, floats rounded."""
    bad = np.zeros(len(values), dtype=np.bool_)
    if pa.types.is_string(values.type):
        text = _trimmed(values)
        pattern = _INT_RE if pa.types.is_integer(target) else _FLOAT_RE
        bad = _np(pc.is_valid(text)) & ~_np(pc.match_substring_regex(text, pattern))
        values = _nulled(text, bad)
    if pa.types.is_integer(target):
        out, failed = _cast(values, target)
        return out, bad | failed
    wide, failed = _cast(values, pa.float64())
    out = wide.cast(target, safe=False)  # float64 -> float32 rounds to nearest
    overflow = _np(pc.and_(pc.is_inf(out), pc.invert(pc.is_inf(wide))))
    return _nulled(out, overflow), bad | failed | overflow


def _times(values: pa.Array, unit: str) -> tuple[pa.Array, Mask, Mask]:
    """Times as ``timestamp[unit, UTC]`` (floored), and the missing and the bad cells."""
    if pa.types.is_timestamp(values.type):
        ns, ok = _epoch_ns(values.cast(pa.int64()), _PER_SECOND[values.type.unit])
    elif pa.types.is_string(values.type):
        values = _trimmed(values)
        ns, ok = _text_ns(values)
    else:
        ns, ok = _epoch_ns(_cast(values, pa.int64())[0], 1000)
    missing = _np(pc.is_null(values))
    out = np.floor_divide(ns, 1_000_000 if unit == "ms" else 1000)
    arrow_type = TIME_TYPE if unit == "ms" else RECEIVED_TYPE
    return pa.array(out, mask=~ok).cast(arrow_type), missing, ~ok & ~missing


def _epoch_ns(ints: pa.Array, per_second: int) -> tuple[npt.NDArray[np.int64], Mask]:
    """Epoch ns of integer times counted ``per_second``; ``ok`` is False for NULL or out of
    range (checked before scaling, so nothing overflows)."""
    raw = pc.fill_null(ints, 0).to_numpy(zero_copy_only=False)
    low, high = MIN_TIME_MS * per_second // 1000, MAX_TIME_MS * per_second // 1000
    ok = _np(pc.is_valid(ints)) & (raw >= low) & (raw < high)
    return np.where(ok, raw, 0) * (1_000_000_000 // per_second), ok


def _text_ns(text: pa.Array) -> tuple[npt.NDArray[np.int64], Mask]:
    """Epoch-ms digits, or ISO-8601 with an offset or without (= UTC), to epoch ns."""
    ns, ok = np.zeros(len(text), dtype=np.int64), np.zeros(len(text), dtype=np.bool_)
    kinds = (
        (_INT_RE, pa.int64(), 1000),
        (_ISO_RE + _ZONE_RE, pa.timestamp("ns", tz="UTC"), 1_000_000_000),
        (_ISO_RE + "$", pa.timestamp("ns"), 1_000_000_000),
    )
    for pattern, kind, per_second in kinds:  # disjoint: each cell is one kind or bad
        mask = _np(pc.match_substring_regex(text, pattern))
        if mask.any():
            parsed, _ = _cast(_nulled(text, ~mask), kind)
            part, part_ok = _epoch_ns(parsed.cast(pa.int64()), per_second)
            ns, ok = ns + part, ok | part_ok
    return ns, ok


# -- pass 2: write ----------------------------------------------------------------------


def _write(
    data: Path,
    sources: list[_Source],
    stats: ImportStats,
    now_us: int,
    options: ImportOptions,
    report: Callable[[ImportProgress], None],
) -> None:
    """Convert again, buffer ``flush_rows``, write whole (ticker, minute) groups in threads.

    A minute split across two flushes is merged twice (correct, just a second write); with
    time-sorted input that is at most one minute per ticker per flush.
    """
    assert stats.import_number is not None
    writer = _PieceWriter(data, stats, options, report)
    days = None
    if options.stream_days:
        days = DayImport(data, options.history_before, options.spill_rows, options.merge_rows)
    buffer: list[pa.Table] = []
    try:
        seq = import_seq_base(stats.import_number)
        for table in _converted_again(sources, seq, now_us, options.batch_rows):
            rest = table if days is None else days.split(table)
            if rest.num_rows:
                buffer.append(rest)
            if sum(t.num_rows for t in buffer) >= options.flush_rows:
                writer.flush(buffer)
        if buffer:
            writer.flush(buffer)
        writer.collect(0)
        if days is not None:
            for day in days.merge((seq, seq + stats.rows - 1)):
                writer.written += _count_day(stats, day)
                report(ImportProgress("write", writer.written, stats.rows))
    except (OSError, LakeError, pa.ArrowException) as exc:
        raise ImportWriteError(
            f"import {stats.import_number} stopped after {writer.written} of {stats.rows} "
            f"rows: {exc}; rerun the same command to finish it"
        ) from exc
    finally:
        writer.close()
        if days is not None:
            days.close()


def _converted_again(
    sources: list[_Source], seq: int, now_us: int, batch_rows: int
) -> Iterator[pa.Table]:
    """Pass 2's batches as lake columns, seqs from ``seq`` on; ImportWriteError if a file
    differs from what pass 1 validated (a bad row now, or another number of rows)."""
    for source in sources:
        read, schema = 0, _schema(source.path)
        for batch in _batches(source.path, schema, source.plan, batch_rows):
            table, checks = _convert(batch, source.plan, seq, now_us)
            seq, read = seq + batch.num_rows, read + batch.num_rows
            if _bad_mask(checks, batch.num_rows).any() or read > source.rows:
                raise ImportWriteError(f"{source.path} changed during the import; import again")
            yield table
        if read != source.rows:
            raise ImportWriteError(f"{source.path} changed during the import; import again")


class _PieceWriter:
    """Writes flushed rows as pieces of whole (ticker, minute) groups, up to
    ``2 * options.threads`` at once in a pool; counts what was written into ``stats``."""

    def __init__(
        self,
        data: Path,
        stats: ImportStats,
        options: ImportOptions,
        report: Callable[[ImportProgress], None],
    ) -> None:
        self.data, self.stats, self.options, self.report = data, stats, options, report
        self.written = 0  # rows
        self.pending: deque[Future[MinutesWrite]] = deque()
        self.pool = ThreadPoolExecutor(options.threads, thread_name_prefix="import")

    def flush(self, buffer: list[pa.Table]) -> None:
        """Write ``buffer``'s rows (the lake's first write to a root runs alone); empty it."""
        history_before = self.options.history_before
        for piece in _pieces(pa.concat_tables(buffer), self.options.piece_rows, history_before):
            if not self.written and not self.pending:
                self.written += _count(self.stats, _write_piece(self.data, piece, history_before))
                continue
            self.pending.append(self.pool.submit(_write_piece, self.data, piece, history_before))
            self.collect(2 * self.options.threads)
        buffer.clear()

    def collect(self, limit: int) -> None:
        """Wait for the oldest writes until at most ``limit`` are pending."""
        while len(self.pending) > limit:
            self.written += _count(self.stats, self.pending.popleft().result())
            self.report(ImportProgress("write", self.written, self.stats.rows))

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _pieces(
    table: pa.Table, piece_rows: int, history_before: dt.date | None = None
) -> Iterator[pa.Table]:
    """``table`` sorted by (ticker, minute), cut into pieces of whole (ticker, minute) groups;
    days before ``history_before`` count as one group (one day file, written once)."""
    codes = table["id"].combine_chunks().dictionary_encode().indices.to_numpy()
    minute = np.floor_divide(table["time"].cast(pa.int64()).to_numpy(), MINUTE_MS)
    if history_before is not None:
        day = minute // (DAY_MS // MINUTE_MS)
        past = day < (history_before - dt.date(1970, 1, 1)).days
        minute = np.where(past, day * (DAY_MS // MINUTE_MS), minute)
    order = np.lexsort((minute, codes))  # stable: row order kept inside a minute
    table, codes, minute = table.take(pa.array(order)), codes[order], minute[order]
    starts = np.flatnonzero(np.r_[True, (np.diff(codes) != 0) | (np.diff(minute) != 0)])
    at = np.searchsorted(starts, np.arange(piece_rows, len(order), piece_rows))
    cuts = np.unique(starts[at[at < len(starts)]])
    bounds = np.r_[0, cuts[cuts > 0], len(order)].tolist()
    for start, end in itertools.pairwise(bounds):
        yield table.slice(start, end - start)


def _write_piece(data: Path, piece: pa.Table, history_before: dt.date | None) -> MinutesWrite:
    n, names = piece.num_rows, set(piece.column_names)
    arrays = [piece[f.name] if f.name in names else pa.nulls(n, f.type) for f in LAKE_SCHEMA]
    table = pa.Table.from_arrays(arrays, schema=LAKE_SCHEMA)
    return write_minutes(data, table, history_before=history_before)


def _count(stats: ImportStats, result: MinutesWrite) -> int:
    if result.rejected_rows:  # validation checked ids and times: a bug if it happens
        raise RuntimeError(f"the lake refused {result.rejected_rows} validated rows")
    days: set[Path] = set()
    for write in result.writes:
        added = write.rows_after - write.rows_before
        stats.ticks_added += added
        stats.duplicates += write.rows_in - added
        if write.path.parent.name.startswith("minute="):
            stats.minute_files += int(write.written)
        elif write.written:
            days.add(write.path)
    stats.day_files += len(days)
    return sum(write.rows_in for write in result.writes)


def _count_day(stats: ImportStats, day: DayImported) -> int:
    """``_count`` for a day merged by ``lake.import_days``: the same totals."""
    stats.ticks_added += day.added
    stats.duplicates += day.result.rows_in - day.added
    stats.day_files += int(day.result.bytes_written > 0)
    return day.result.rows_in


# -- state: import numbers --------------------------------------------------------------


def _load_state(data: Path) -> dict[str, Any]:
    path = data / IMPORTS_FILE
    try:
        state: dict[str, Any] = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {"next_import": 1, "pending": None, "done": []}
    except (OSError, ValueError) as exc:
        raise ImportUsageError(f"cannot read {path} ({exc}); restore it, never delete it") from None
    return state


def _dump(state: dict[str, Any]) -> bytes:
    return json.dumps(state, indent=1).encode() + b"\n"


def _fingerprint(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": os.fspath(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _begin(state: dict[str, Any], files: list[dict[str, Any]], now_us: int) -> int:
    """The import's number: the interrupted one's if these are its files, else the next."""
    pending = state.get("pending")
    if pending and pending["files"] == files:
        log.info("event=import_resume number=%d", pending["import"])
        return int(pending["import"])
    number = int(state["next_import"])
    if pending:  # its seqs may be in the lake: never hand them to other rows
        number = max(number, int(pending["import"]) + 1)
        log.warning("event=import_abandoned number=%d", pending["import"])
    state["pending"] = {"import": number, "files": files, "started_us": now_us}
    return number
