"""An import's rows of history days: spilled as sorted runs, then streamed into the day files.

``lake.importer`` hands every converted batch to ``DayImport.split``, which keeps the rows
``write_minutes(history_before=...)`` would send to a history day file and returns the rest
(minute files). Once every file has been read, ``merge`` streams each (ticker, date)'s runs
into its day file (``history.merge_streams_into_day``): the result equals the whole-table
merge row for row, but memory is bounded by ``spill_rows`` and ``merge_rows``, not by the
size of the day or of its file.

Invariants:
- a (ticker, date) goes to its day file when the file exists, or when the date is before
  ``history_before`` and the minute tier holds no folder of it (``minutes._write_rows``'s
  rule); decided once per import, so all its rows take one path. The import holds the
  journal's lock, so nothing else writes minute files meanwhile; each day is merged under
  the tier lock (shared), so compaction never swaps a day in under it;
- the runs live in ``history/`` as temporaries (``lake.spill``) and are removed by
  ``close``; they take about the disk space of the spilled rows as Parquet.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from lake.datadir import HISTORY_DIR
from lake.errors import LakeReadError, LakeWriteError
from lake.history import DayStream, ensure_placeholder, merge_streams_into_day, tier_lock
from lake.layout import date_dir, history_file, history_placeholder, minute_placeholder
from lake.logfmt import logfmt
from lake.schema import LAKE_SCHEMA
from lake.spill import Spill, SpillKey
from lake.utc import DAY_MS

__all__ = ["DayImport", "DayImported"]

log = logging.getLogger(__name__)
_EPOCH_DATE = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class DayImported:
    path: Path
    result: DayStream

    @property
    def added(self) -> int:
        """Ticks the day gained (an import that replaced a recorded twin adds none)."""
        return self.result.rows_after - self.result.rows_before


class DayImport:
    """Routes rows of history days to sorted runs, and merges them into day files."""

    def __init__(
        self, data: Path, history_before: dt.date | None, spill_rows: int, merge_rows: int
    ) -> None:
        self.data, self.history_before, self.merge_rows = data, history_before, merge_rows
        self.spill = Spill(data / HISTORY_DIR, spill_rows, merge_rows)
        self._to_day: dict[SpillKey, bool] = {}

    def split(self, table: pa.Table) -> pa.Table:
        """Spill ``table``'s rows of history days (as LAKE_SCHEMA); return the other rows."""
        encoded = table["id"].combine_chunks().dictionary_encode()
        codes = np.asarray(encoded.indices.to_numpy(), dtype=np.int64)
        days = np.floor_divide(np.asarray(table["time"].cast(pa.int64()).to_numpy()), DAY_MS)
        pairs, inverse = np.unique(np.stack([codes, days]), axis=1, return_inverse=True)
        verdicts = np.array(
            [
                self._goes_to_day((str(encoded.dictionary[int(c)].as_py()), int(d)))
                for c, d in pairs.T.tolist()
            ],
            dtype=np.bool_,
        )
        to_day = verdicts[inverse.reshape(-1)]
        if not to_day.any():
            return table
        self.spill.add(_full(table.filter(pa.array(to_day))))
        return table.filter(pa.array(~to_day))

    def merge(self, seq_range: tuple[int, int]) -> Iterator[DayImported]:
        """Merge each spilled (ticker, date) into its day file, in (ticker, date) order."""
        self.spill.flush()
        for key in sorted(self.spill.runs):
            path = history_file(self.data, key[0], _EPOCH_DATE + dt.timedelta(days=key[1]))
            with tier_lock(self.data, exclusive=False):
                ensure_placeholder(history_placeholder(self.data))
                ensure_placeholder(minute_placeholder(self.data))
                try:
                    streams = self.spill.streams(key)
                    result = merge_streams_into_day(path, streams, seq_range, self.merge_rows)
                except (ValueError, pa.ArrowException) as exc:
                    reason = str(exc).splitlines()[0]
                    raise LakeReadError(f"cannot read {path}: {reason}; move it aside") from exc
                except OSError as exc:
                    reason = str(exc.strerror or exc).replace("\n", " ")
                    raise LakeWriteError(f"cannot write {path}: {reason}") from exc
            done = DayImported(path, result)
            log.info(
                "event=lake_history_merged path=%s rows_in=%d added=%d bytes=%d",
                logfmt(path),
                result.rows_in,
                done.added,
                result.bytes_written,
            )
            yield done

    def close(self) -> None:
        self.spill.close()

    def _goes_to_day(self, key: SpillKey) -> bool:
        known = self._to_day.get(key)
        if known is None:
            ticker, date = key[0], _EPOCH_DATE + dt.timedelta(days=key[1])
            past = self.history_before is not None and date < self.history_before
            straight = past and not date_dir(self.data, ticker, date).exists()
            known = self._to_day[key] = straight or history_file(self.data, ticker, date).is_file()
        return known


def _full(table: pa.Table) -> pa.Table:
    """``table`` with every LAKE_SCHEMA column (missing ones NULL), in order and type."""
    n, names = table.num_rows, set(table.column_names)
    arrays = [table[f.name] if f.name in names else pa.nulls(n, f.type) for f in LAKE_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=LAKE_SCHEMA)
