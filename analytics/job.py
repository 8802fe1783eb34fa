"""One run of the analytics job: plan -> load -> features -> flags -> upsert -> save state.

Invariants:
- the seal is read before the lake is listed, so every window the plan calls sealed has
  its ticks in the lake (anything written later is marked late and handled next run);
- per step (``plan.Step``): rows are upserted in one transaction, *then* the state is
  saved; a crash in between only recomputes that step next time (rows are idempotent), so
  no window is lost and none doubled. Steps without rows (a closed market) only move the
  state, which is saved with the next write or at the end of the run;
- recomputing a late window also recomputes the ticker's next window holding a reading
  (``loader.next_windows``): a late ``day_volume`` moves volume between the two;
- the database is opened for the write only (open, upsert, close), and only when there
  are rows to write or no database exists yet; a reader holding it longer than
  ``lock_timeout`` makes the run return ``done=False`` with the state of the last committed
  step, and the next run catches up;
- one run at a time per data directory: ``state/analytics.lock`` (flock) makes a second
  concurrent run (another ``ticklake analyze``, say) return ``reason="busy"`` at once;
- one log line per run: ``event=analytics_run`` with counts and timings.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from analytics.database import (
    WRITER_TIMEOUT,
    DatabaseLockedError,
    Pause,
    database_path,
    open_db,
    upsert_features,
)
from analytics.features import compute_features
from analytics.flags import SessionCoverage
from analytics.loader import load_windows, next_windows
from analytics.lookback import ReadingCache
from analytics.plan import load_state, plan_run, save_state, step_windows
from lake.clock import Clock
from lake.datadir import ANALYTICS_LOCK_FILE, SESSIONS_FILE
from lake.index import LakeIndex
from lake.seal import load_seal
from lake.sessions import read_sessions
from lake.utc import DAY_S, MINUTE_MS

__all__ = [
    "AnalyticsJob",
    "JobConfig",
    "JobResult",
    "LoadOptions",
    "RowContext",
    "compute_rows",
    "run_once",
    "session_coverage",
    "write_rows",
]

log = logging.getLogger(__name__)

READINGS_KEPT_MS = 10 * MINUTE_MS  # cached last readings: only the live lookback needs them


@dataclass(frozen=True)
class JobConfig:
    """Settings of the job; ``database`` None means ``<data>/ticklake.duckdb``."""

    lateness: float = 10.0
    recompute_horizon: float = DAY_S
    chunk_minutes: int = 60
    lock_timeout: float = WRITER_TIMEOUT
    database: Path | None = None
    threads: int = 1  # per-ticker finishing is GIL-bound: more threads make a run slower


@dataclass
class JobResult:
    """What one run did. ``done`` is False when work is left for the next run."""

    done: bool
    reason: str = "ok"  # ok | busy | db_locked | stopped
    steps: int = 0
    steps_done: int = 0
    windows: int = 0
    rows: int = 0
    late_windows: int = 0
    late_skipped: int = 0
    ticks: int = 0
    lookback_rows: int = 0
    done_watermark_ms: int | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def timed(self, name: str, seconds: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + seconds


@dataclass(frozen=True)
class RowContext:
    """What rows carry besides their features: ``late`` for windows with a tick received
    over ``lateness`` seconds after their end, ``gap`` from ``coverage``, and ``computed_at``
    = ``now`` (epoch seconds)."""

    lateness: float
    coverage: SessionCoverage
    now: float


@dataclass(frozen=True)
class LoadOptions:
    """How ``compute_rows`` reads the lake: ``loader.load_windows``'s ``index``, ``threads``
    and ``cache``."""

    index: LakeIndex | None = None
    threads: int = 4
    cache: ReadingCache | None = None


def compute_rows(
    data: Path,
    windows: Mapping[str, Iterable[int]],
    *,
    context: RowContext,
    load: LoadOptions | None = None,
    result: JobResult | None = None,
) -> pa.Table:
    """The rows (``database.ROW_SCHEMA``) of the requested windows that hold ticks.

    Shared by the per-minute job and backfill, so both produce identical rows from the
    same stored ticks (``computed_at`` = ``context.now`` aside).
    """
    result = result or JobResult(done=False)
    load = load or LoadOptions()
    started = time.perf_counter()
    loaded = load_windows(data, windows, index=load.index, threads=load.threads, cache=load.cache)
    loaded_at = time.perf_counter()
    features = compute_features(loaded.ticks, loaded.windows, lateness=context.lateness)
    now_us = pa.scalar(int(context.now * 1e6), pa.timestamp("us", tz="UTC"))
    rows = features.append_column("gap", context.coverage.gap_flags(features)).append_column(
        "computed_at", pa.repeat(now_us, features.num_rows)
    )
    result.timed("load", loaded_at - started)
    result.timed("compute", time.perf_counter() - loaded_at)
    result.windows += loaded.windows.num_rows
    result.ticks += loaded.ticks.num_rows - loaded.lookback_rows
    result.lookback_rows += loaded.lookback_rows
    return rows


def session_coverage(data: Path) -> SessionCoverage:
    """The recorder's connection coverage per ticker, from ``<data>/state/sessions.jsonl``."""
    return SessionCoverage(read_sessions(Path(data) / SESSIONS_FILE))


def write_rows(
    path: Path,
    rows: pa.Table,
    *,
    lake: Path,
    clock: Clock,
    timeout: float = WRITER_TIMEOUT,
    pause: Pause | None = None,
) -> int:
    """Open the database (waiting out readers as ``pause`` says), upsert ``rows`` in one
    transaction, close.

    DuckDB writes on one thread: a second one only competes for the cores with the threads
    computing features, and spends more CPU than it saves.
    """
    con = open_db(path, clock=clock, timeout=timeout, lake=lake, pause=pause)
    try:
        con.execute("SET threads = 1")
        return upsert_features(con, rows)
    finally:
        con.close()


class AnalyticsJob:
    """The job over one data directory; keeps caches between runs (the session log's
    coverage), so the scheduler reuses one instance."""

    def __init__(
        self,
        data: Path,
        config: JobConfig,
        clock: Clock,
        *,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.data = Path(data)
        self.config = config
        self.clock = clock
        self.stop = stop or threading.Event()
        self.sleep = sleep
        self.database = config.database or database_path(self.data)
        self._coverage: tuple[tuple[int, int], SessionCoverage] | None = None
        self.readings = ReadingCache()  # lookbacks of the next run: the minutes just loaded

    def run_once(self) -> JobResult:
        """Materialize everything the seal allows; see the module docstring."""
        result = JobResult(done=False)
        started = time.perf_counter()
        with self._exclusive() as mine:
            if not mine:
                result.reason = "busy"
                log.info("event=analytics_run done=false reason=busy")
                return result
            try:
                self._run(result)
            except Exception as exc:
                log.error("event=analytics_run_failed reason=%r", str(exc).splitlines()[0])
                raise
        result.timed("total", time.perf_counter() - started)
        self._log(result)
        return result

    def _run(self, result: JobResult) -> None:
        planned_at = time.perf_counter()
        seal = load_seal(self.data)  # before listing the lake: see the module docstring
        saved = load_state(self.data)
        plan = plan_run(
            saved,
            seal,
            horizon_ms=int(self.config.recompute_horizon * 1000),
            chunk_ms=self.config.chunk_minutes * MINUTE_MS,
        )
        if plan.seal_reset:
            log.warning("event=seal_reset action=take_all_late_entries")
        result.steps, result.late_windows = len(plan.steps), plan.late_windows
        result.late_skipped = plan.late_skipped
        result.done_watermark_ms = None if saved is None else saved.done_watermark_ms
        index = LakeIndex(self.data)
        coverage = self.coverage()
        load = LoadOptions(index, self.config.threads, self.readings)
        result.timed("plan", time.perf_counter() - planned_at)
        current, pending = saved, None  # pending: after empty steps, saved with the next write
        for step in plan.steps:
            if self.stop.is_set():
                result.reason = "stopped"
                break
            windows = step_windows(step, index.tickers(), index.minutes)
            for ticker, start in step.late:  # a late reading moves volume from the next window
                following = next_windows(
                    index, ticker, start, step.after.done_watermark_ms, self.readings
                )
                windows[ticker] = sorted({*windows[ticker], *following})
            context = RowContext(self.config.lateness, coverage, now=self.clock.now())
            rows = compute_rows(self.data, windows, context=context, load=load, result=result)
            if rows.num_rows == 0:
                pending = step.after
            elif self._write(rows, result):
                save_state(self.data, step.after)
                current, pending = step.after, None
            else:
                break
            result.steps_done += 1
            result.done_watermark_ms = step.after.done_watermark_ms
        else:
            if plan.final is not None and plan.final != current:
                pending = plan.final
            if not self.database.exists():
                self._write(None, result)  # create it, so SQL users find the views
            result.done = result.reason == "ok"
        if pending is not None:
            save_state(self.data, pending)
            result.done_watermark_ms = pending.done_watermark_ms
        self.readings.prune(seal.watermark_ms - READINGS_KEPT_MS)

    def _write(self, rows: pa.Table | None, result: JobResult) -> bool:
        """Upsert ``rows`` (None: only create the database); False if it stayed locked."""
        written_at = time.perf_counter()
        try:
            if rows is None:
                open_db(self.database, clock=self.clock, lake=self.data).close()
            else:
                result.rows += write_rows(
                    self.database,
                    rows,
                    lake=self.data,
                    clock=self.clock,
                    timeout=self.config.lock_timeout,
                    pause=Pause(self._waiting(result), self.stop),
                )
        except DatabaseLockedError as exc:
            result.reason = "stopped" if self.stop.is_set() else "db_locked"
            log.warning("event=analytics_write_deferred reason=%r", str(exc))
            return False
        result.timed("write", time.perf_counter() - written_at)
        return True

    def _waiting(self, result: JobResult) -> Callable[[float], None]:
        """``self.sleep``, its pauses counted as ``lock_wait`` in ``result.timings``."""

        def sleep(seconds: float) -> None:
            result.timed("lock_wait", seconds)
            self.sleep(seconds)

        return sleep

    def coverage(self) -> SessionCoverage:
        """Gap intervals from the session log, rebuilt only when the log changed."""
        try:
            stat = (self.data / SESSIONS_FILE).stat()
            key = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            key = (0, 0)
        if self._coverage is None or self._coverage[0] != key:
            self._coverage = (key, session_coverage(self.data))
        return self._coverage[1]

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[bool]:
        path = self.data / ANALYTICS_LOCK_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _log(self, r: JobResult) -> None:
        times = " ".join(f"{k}_ms={v * 1000:.1f}" for k, v in r.timings.items())
        log.info(
            "event=analytics_run done=%s reason=%s steps=%d/%d windows=%d rows=%d late=%d "
            "late_skipped=%d ticks=%d lookback=%d watermark_ms=%s %s",
            str(r.done).lower(),
            r.reason,
            r.steps_done,
            r.steps,
            r.windows,
            r.rows,
            r.late_windows,
            r.late_skipped,
            r.ticks,
            r.lookback_rows,
            r.done_watermark_ms,
            times,
        )


def run_once(data: Path, clock: Clock, config: JobConfig | None = None) -> JobResult:
    """One run with a fresh job (no caches); the scheduler keeps an ``AnalyticsJob``."""
    return AnalyticsJob(data, config or JobConfig(), clock).run_once()
