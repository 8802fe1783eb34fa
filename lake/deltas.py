"""The lake's open edge: small immutable delta files, and the fold that seals them into minutes.

While a minute is open, the recorder appends what arrived since its last flush as one
*delta*: one Parquet file holding every ticker of that flush, sorted by (``id``, ``time``,
``seq``), under ``<data>/deltas/``. When minutes seal, a *fold* writes each sealed (ticker,
minute) file once from the deltas and publishes a *fold marker*; covered deltas are deleted
after a grace period. Late ticks of sealed minutes take the same route.

Which copy of a row a reader serves is decided by the latest fold marker
(``fold-<generation>-<base_seq>-<seq>-<watermark_ms>-<published_ms>``): a row with journal
seq ``s`` and time ``t`` is served from the lake's files (minute or history tier) when
``s <= base_seq`` or (``s <= seq`` and ``t < watermark_ms``), else from the deltas.
Imported rows (seq < 1) always come from files.

Invariants:
- a marker is published only after the rows it designates to files are in those files and
  synced; markers only grow (generation, base_seq, seq and watermark never decrease), and
  the newest is never deleted, so a reader always finds one;
- a delta file is never modified; it is deleted only when a marker published at least
  ``grace`` seconds ago designates all its rows to files, so a query that listed it
  can still read it;
- two deltas may hold the same journal seq (a restart re-applies the journal from the
  marker's ``seq``): readers keep one row per seq, and a fold merges under the lake's
  dedupe rules, so nothing is doubled;
- deltas are written without fsync: the journal is the durable copy, and a restart re-applies
  everything after the marker's ``seq``;
- a fold may read its deltas a range of tickers at a time (:func:`ticker_ranges`, a
  :class:`Delta` with ``tickers``): the ranges cover every ticker once, so its peak memory
  is one range's rows, not the whole minute's; a delta's row groups (``ROW_GROUP_ROWS``,
  sorted by ticker, with the ticker's statistics) let a range read only its own.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lake.atomic import atomic_write_bytes, replace_file
from lake.datadir import DELTAS_DIR
from lake.dedupe import conform
from lake.errors import LakeWriteError
from lake.schema import LAKE_SCHEMA, empty_lake_table, upgrade

__all__ = [
    "DELTA_GLOB",
    "FOLD_GLOB",
    "PLACEHOLDER_NAME",
    "Delta",
    "Fold",
    "designated_to_files",
    "ensure_deltas_dir",
    "latest_fold",
    "list_deltas",
    "prune",
    "publish_fold",
    "read_delta",
    "ticker_ranges",
    "write_delta",
]

log = logging.getLogger(__name__)

DELTA_GLOB: Final = f"{DELTAS_DIR}/d-*.parquet"
FOLD_GLOB: Final = f"{DELTAS_DIR}/fold-*"
PLACEHOLDER_NAME: Final = "d-!empty.parquet"  # zero rows; keeps a delta glob non-empty
COMPRESSION: Final = "lz4"  # deltas live one seal: speed over size
ROW_GROUP_ROWS: Final = 4_096  # what a fold's range of tickers reads of a delta, at most extra
_DELTA_RE: Final = re.compile(r"^d-(\d{20})-(\d{20})-(\d{16})\.parquet$")
_FOLD_RE: Final = re.compile(r"^fold-(\d{12})-(\d{20})-(\d{20})-(\d{16})-(\d{16})$")


@dataclass(frozen=True, order=True)
class Fold:
    """A fold marker: which rows readers take from files (see the module docstring)."""

    generation: int
    base_seq: int
    seq: int
    watermark_ms: int
    published_ms: int = 0

    @property
    def name(self) -> str:
        return (
            f"fold-{self.generation:012d}-{self.base_seq:020d}-{self.seq:020d}"
            f"-{self.watermark_ms:016d}-{self.published_ms:016d}"
        )

    def covers(self, delta: Delta) -> bool:
        """Whether every row of ``delta`` is designated to files."""
        return delta.last_seq <= self.base_seq or (
            delta.last_seq <= self.seq and delta.max_time_ms < self.watermark_ms
        )


@dataclass(frozen=True)
class Delta:
    """One delta file: its seq range and its newest tick time."""

    path: Path
    first_seq: int
    last_seq: int
    max_time_ms: int
    min_time_ms: int = 0  # known to its writer; 0 when listed from the folder
    tickers: tuple[str, str] | None = None  # read only the rows with lo <= id <= hi

    def only(self, tickers: tuple[str, str] | None) -> Delta:
        """This delta, read as the rows of ``tickers`` (inclusive range) only."""
        return replace(self, tickers=tickers)


def designated_to_files(
    fold: Fold | None, seqs: npt.NDArray[np.int64], times_ms: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """Per row, whether ``fold`` designates it to the lake's files (all rows without one)."""
    if fold is None:
        return np.ones(len(seqs), dtype=np.bool_)
    return (seqs <= fold.base_seq) | ((seqs <= fold.seq) & (times_ms < fold.watermark_ms))


def ensure_deltas_dir(root: Path) -> Path:
    """``<root>/deltas`` with its zero-row placeholder."""
    folder = Path(root, DELTAS_DIR)
    placeholder = folder / PLACEHOLDER_NAME
    if not placeholder.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        replace_file(placeholder, lambda tmp: pq.write_table(empty_lake_table(), tmp))
    return folder


def write_delta(root: Path, rows: pa.Table) -> Delta | None:
    """Write ``rows`` (LAKE_SCHEMA, journal seqs >= 1) as one delta; None if empty."""
    if rows.num_rows == 0:
        return None
    rows = conform(rows).sort_by([("id", "ascending"), ("time", "ascending"), ("seq", "ascending")])
    seqs = rows["seq"]
    first, last = int(pc.min(seqs).as_py()), int(pc.max(seqs).as_py())
    times = rows["time"].cast(pa.int64())
    oldest, newest = int(pc.min(times).as_py()), int(pc.max(times).as_py())
    folder = ensure_deltas_dir(root)
    path = folder / f"d-{first:020d}-{last:020d}-{max(newest, 0):016d}.parquet"
    try:
        replace_file(path, lambda tmp: _write_parquet(rows, tmp))
    except OSError as exc:
        reason = str(exc.strerror or exc).replace("\n", " ")
        raise LakeWriteError(f"cannot write {path}: {reason}") from exc
    return Delta(path, first, last, newest, oldest)


def _write_parquet(table: pa.Table, path: Path) -> None:
    # Plain encoding: half the time of dictionary pages for a flush's rows, and no larger
    # once compressed; statistics only where readers prune (time, seq, the ticker).
    pq.write_table(
        table,
        path,
        row_group_size=ROW_GROUP_ROWS,
        compression=COMPRESSION,
        use_dictionary=False,
        write_statistics=["time", "seq", "id"],
    )


def read_delta(delta: Delta) -> pa.Table:
    """A delta's rows (those of ``delta.tickers`` when set) as today's lake columns,
    whichever version wrote it."""
    file = pq.ParquetFile(delta.path)
    if delta.tickers is None:
        rows = file.read()
    else:
        lo, hi = delta.tickers
        rows = file.read_row_groups(_groups_between(file.metadata, lo, hi))
        ids = rows["id"]
        rows = rows.filter(pc.and_(pc.greater_equal(ids, lo), pc.less_equal(ids, hi)))
    if file.schema_arrow.equals(LAKE_SCHEMA):
        return rows
    return upgrade(rows, LAKE_SCHEMA.names)


def _groups_between(metadata: pq.FileMetaData, lo: str, hi: str) -> list[int]:
    """The row groups whose tickers may fall in ``[lo, hi]`` (every group lacking
    statistics: a delta of another version)."""
    column = metadata.schema.names.index("id")
    groups = []
    for index in range(metadata.num_row_groups):
        stats = metadata.row_group(index).column(column).statistics
        if stats is None or not stats.has_min_max or (stats.min <= hi and stats.max >= lo):
            groups.append(index)
    return groups


def ticker_ranges(deltas: Sequence[Delta], max_rows: int) -> list[tuple[str, str] | None]:
    """Inclusive ranges of tickers that split the rows of ``deltas`` into parts of about
    ``max_rows`` (never splitting a ticker); ``[None]`` (everything) when they fit in one.

    Every ticker of the deltas lies in exactly one range (Arrow's string order: the order
    of ``read_delta``'s filter). Deltas hold no row without a ticker."""
    counts = [pq.read_metadata(d.path).num_rows for d in deltas]
    if sum(counts) <= max_rows:
        return [None]
    ids = pa.chunked_array([pq.read_table(d.path, columns=["id"])["id"] for d in deltas])
    per_ticker = pc.value_counts(ids.drop_null())
    order = pc.sort_indices(per_ticker.field("values"))
    tickers = per_ticker.field("values").take(order).to_pylist()
    rows = np.cumsum(per_ticker.field("counts").take(order).to_numpy())
    cuts = np.searchsorted(rows, np.arange(max_rows, int(rows[-1]), max_rows), side="left")
    starts = sorted({0, *(int(c) + 1 for c in cuts if c + 1 < len(tickers))})
    ends = [*(i - 1 for i in starts[1:]), len(tickers) - 1]
    return [(tickers[a], tickers[b]) for a, b in zip(starts, ends, strict=True)]


def list_deltas(root: Path) -> list[Delta]:
    """Every delta file under ``root``, by first seq."""
    found = []
    for name in _names(root):
        match = _DELTA_RE.match(name)
        if match:
            first, last, newest = (int(g) for g in match.groups())
            found.append(Delta(Path(root, DELTAS_DIR, name), first, last, newest))
    return sorted(found, key=lambda d: (d.first_seq, d.last_seq))


def latest_fold(root: Path) -> Fold | None:
    folds = _folds(root)
    return max(folds) if folds else None


def publish_fold(root: Path, fold: Fold) -> None:
    """Publish ``fold`` (durably: it promises that files hold what it designates)."""
    ensure_deltas_dir(root)
    atomic_write_bytes(Path(root, DELTAS_DIR, fold.name), b"")


def prune(root: Path, now_ms: int, grace_s: float) -> int:
    """Delete deltas covered by a marker published at least ``grace_s`` ago, and markers
    superseded that long ago (the newest always stays); returns how many files went."""
    folder = Path(root, DELTAS_DIR)
    folds = sorted(_folds(root))
    settled = [f for f in folds if now_ms - f.published_ms >= grace_s * 1000]
    doomed = []
    if settled:
        newest_settled = settled[-1]
        doomed = [d.path for d in list_deltas(root) if newest_settled.covers(d)]
        doomed += [folder / f.name for f in folds if f < newest_settled]
    removed = 0
    for path in doomed:
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            continue
    if removed:
        log.debug("event=deltas_pruned files=%d", removed)
    return removed


def _folds(root: Path) -> list[Fold]:
    found = []
    for name in _names(root):
        match = _FOLD_RE.match(name)
        if match:
            found.append(Fold(*(int(g) for g in match.groups())))
    return found


def _names(root: Path) -> list[str]:
    try:
        return os.listdir(Path(root, DELTAS_DIR))
    except FileNotFoundError:
        return []
