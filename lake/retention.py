"""Tick retention: whole UTC days older than ``tick_retention_days`` leave the lake.

Invariants:
- ``tick_retention_days`` None (the default) keeps ticks forever; otherwise a (ticker,
  date) is deleted, from both tiers at once, only after the whole day ended more than the
  retention ago (``day_end <= now - retention``);
- the retention must exceed the recompute horizon by at least a day (``check_retention``),
  so no window whose ticks are gone can still be marked late and recomputed;
- features are never touched: they live in DuckDB, which only analytics writes, and a
  window's row is only ever replaced by recomputing it from its ticks. Analytics must never
  delete or recompute a window whose ticks were removed (the continuous-aggregate trap: a
  refresh over deleted raw data wipes the aggregates);
- deletions happen under the tier lock held exclusively, so a late tick never lands in a
  file being deleted. A query that listed a deleted day file fails loudly (file not found)
  rather than silently missing it; retention runs on days nobody recorded for weeks.
- journal segments have their own retention (``journal_retention_days``, applied by the
  recorder with ``Journal.prune``); replaying a journal older than the tick retention
  brings those days back until the next pass.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from lake.atomic import file_size, fsync_directory, list_names
from lake.compact import remove_tree, retire_minute_folder
from lake.datadir import HISTORY_DIR, TICKS_DIR
from lake.history import tier_lock
from lake.layout import PART_NAME, lake_days
from lake.logfmt import logfmt
from lake.utc import DAY_S, utc_date

__all__ = [
    "RetentionConfig",
    "RetentionError",
    "RetentionPass",
    "apply_tick_retention",
    "check_retention",
    "first_kept_date",
]

log = logging.getLogger(__name__)


class RetentionError(ValueError):
    """Retention settings that would delete ticks still needed."""


@dataclass(frozen=True)
class RetentionConfig:
    """How long raw data is kept; None means forever."""

    tick_retention_days: float | None = None
    journal_retention_days: float = 30.0

    def __post_init__(self) -> None:
        days = self.tick_retention_days
        if days is not None and not days > 0:
            raise RetentionError(f"tick_retention_days={days} must be positive (or unset)")
        if not self.journal_retention_days > 0:
            raise RetentionError(
                f"journal_retention_days={self.journal_retention_days} must be positive"
            )


@dataclass
class RetentionPass:
    """What one pass deleted."""

    history_files: int = 0
    minute_days: int = 0
    minute_files: int = 0
    bytes: int = 0


def check_retention(config: RetentionConfig, recompute_horizon_s: float) -> None:
    """RetentionError unless ticks outlive the recompute horizon by at least a day."""
    days = config.tick_retention_days
    if days is not None and days * DAY_S < recompute_horizon_s + DAY_S:
        raise RetentionError(
            f"tick_retention_days={days:g} keeps ticks for less than the recompute horizon "
            f"({recompute_horizon_s / DAY_S:g} days) plus one day: raise it"
        )


def first_kept_date(now: float, days: float) -> dt.date:
    """The oldest date retention keeps at ``now``: every earlier date ended ``days`` ago."""
    return utc_date(int((now - days * DAY_S) * 1000))


def apply_tick_retention(data: Path, now: float, config: RetentionConfig) -> RetentionPass:
    """Delete every day of either tier that retention no longer keeps at ``now``."""
    result = RetentionPass()
    if config.tick_retention_days is None:
        return result
    root = Path(data)
    keep_from = first_kept_date(now, config.tick_retention_days)
    for ticker, date, folder in list(lake_days(root, HISTORY_DIR)):
        if date >= keep_from:
            continue
        with tier_lock(root, exclusive=True):
            result.bytes += file_size(folder / PART_NAME)
            result.history_files += _delete_history_day(folder)
        log.info("event=retention_removed tier=history ticker=%s date=%s", logfmt(ticker), date)
    for ticker, date, folder in list(lake_days(root, TICKS_DIR)):
        if date >= keep_from:
            continue
        with tier_lock(root, exclusive=True):
            result.bytes += sum(file_size(p) for p in folder.glob(f"*/{PART_NAME}"))
            trash = retire_minute_folder(root, folder)
        result.minute_files += remove_tree(trash)
        result.minute_days += 1
        log.info("event=retention_removed tier=minute ticker=%s date=%s", logfmt(ticker), date)
    return result


def _delete_history_day(folder: Path) -> int:
    removed = 0
    for name in list_names(folder):
        os.unlink(folder / name)
        removed += name == PART_NAME
    folder.rmdir()
    parent = folder.parent
    with contextlib.suppress(OSError):  # not empty: the ticker has other days
        parent.rmdir()
        parent = parent.parent
    fsync_directory(parent)
    return removed
