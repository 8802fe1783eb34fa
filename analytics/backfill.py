"""Backfill: recompute the features of every window of a time range from stored ticks.

Invariants:
- rows come from ``job.compute_rows``, the live job's own function, so a backfill and the
  per-minute job give identical rows for the same stored ticks (``computed_at`` aside):
  the same volume lookback (the last reading before a window within its session, also
  from before ``start``), the same ``late`` flags (given the same lateness) and ``gap``
  flags (from the session log); both tiers of the lake are read (``analytics.loader``);
- idempotent: a rerun upserts the same rows; nothing is deleted (a window whose ticks were
  removed keeps its row);
- only sealed windows: a window is computed when it starts in ``[start, end)`` rounded
  out to whole minutes and its end + lateness has passed on the clock;
- the work is cut into chunks of one UTC date and at most ``tickers_per_chunk`` tickers
  (only ticker-days with a folder in either tier), each loaded and computed on its own (a
  fresh ``LakeIndex``; every minute of the range is requested, so nothing is listed), by
  ``workers`` threads at once with at most two chunks each in flight: memory is bounded
  by the chunk size, not by the range. Threads, not processes: Parquet reads, NumPy and
  DuckDB release the GIL, and threads need no start-up and no pickling, so they are
  faster (``bench/backfill.py`` prints both);
- or by a pool of other processes, maybe on other machines (``ChunkPool``: a Dask
  cluster's, ``analytics.cluster``): each chunk is sent as a ``ChunkTask`` of plain values
  (the data root, the chunk, the lateness, the sessions that carried its tickers, read
  once here), the worker reads its ticks from the lake itself and sends back the chunk's
  rows, computed by the same ``_Compute`` as locally, so the rows are the same bit for bit.
  One future per chunk, each result taken once: a chunk the pool recomputes (a lost
  worker) still reaches the writer once, and its rows are upserts keyed on (ticker,
  window_start) in any case;
- the heap keeps freed memory for the next chunk (``analytics.heap``: page faults would
  otherwise take a large share of the time);
- one writer, this process (contract 6): a thread upserts whole multiples of
  ``batch_rows`` rows (DuckDB row groups) while chunks compute, one transaction each, the
  database opened only to write and retried while another process holds it (up to
  ``lock_timeout``), and left closed for ``YIELD_SECONDS`` after each transaction, so the
  live job and SQL readers get in between instead of waiting for the whole backfill
  (README, Limitations). ``computed_at`` is the clock's time of the write.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, TypeVar

import numpy as np
import pyarrow as pa

from analytics.database import ROW_SCHEMA, WRITER_TIMEOUT, Pause, database_path
from analytics.flags import SessionCoverage
from analytics.heap import keep_freed_memory
from analytics.job import JobResult, LoadOptions, RowContext, compute_rows, write_rows
from lake.clock import Clock
from lake.datadir import SESSIONS_FILE
from lake.index import LakeIndex
from lake.remote import RemoteLake, remote_of
from lake.seal import watermark_at
from lake.sessions import Session, read_sessions
from lake.utc import DAY_MS, MINUTE_MS, iso_utc

__all__ = [
    "BackfillConfig",
    "BackfillError",
    "BackfillProgress",
    "BackfillResult",
    "Chunk",
    "ChunkPool",
    "ChunkTask",
    "backfill",
    "compute_chunk",
    "plan_chunks",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

TICKERS_PER_CHUNK: Final = 10
BATCH_ROWS: Final = 122_880  # DuckDB's row group: a transaction of whole row groups is
# written straight to the file, and closing the database stays cheap; one that leaves a
# row group partly filled makes every close rewrite it, and smaller batches go through
# the WAL, slower still
PENDING_BATCHES: Final = 4  # rows held while the writer is busy, in batches
YIELD_SECONDS: Final = 0.05  # the database stays closed after each transaction, so that
# another writer retrying for the lock (the live job: every 0.05-2 s) can get in


class BackfillError(Exception):
    """The backfill cannot start (bad range, unknown ticker, no data); one line to act on."""


@dataclass(frozen=True)
class BackfillConfig:
    """What to recompute: windows starting in ``[start_ms, end_ms)`` (epoch ms) of
    ``tickers`` (None: every ticker in the lake). ``database`` None: ``<data>/ticklake.duckdb``.
    ``pool`` "process" (worker processes) exists for the benchmark's comparison."""

    start_ms: int
    end_ms: int
    tickers: tuple[str, ...] | None = None
    workers: int = 1
    lateness: float = 10.0
    database: Path | None = None
    lock_timeout: float = WRITER_TIMEOUT
    batch_rows: int = BATCH_ROWS
    tickers_per_chunk: int = TICKERS_PER_CHUNK
    pool: Literal["thread", "process"] = "thread"


@dataclass(frozen=True)
class Chunk:
    """Windows starting in ``[start_ms, end_ms)`` (within one UTC date) of ``tickers``."""

    start_ms: int
    end_ms: int
    tickers: tuple[str, ...]


@dataclass(frozen=True)
class ChunkTask:
    """One chunk for a process elsewhere (``compute_chunk``), in plain picklable values:
    the data root (absolute, as a string: a worker on another machine reads the same path
    of a shared filesystem), the chunk, the lateness, and the sessions of the session log
    that carried the chunk's tickers, with only those tickers (what their gap flags depend
    on), so a worker needs no session log of its own and every worker flags from the log
    as this process read it once; and the lake URL of the object store the data directory
    is bound to (``lake.remote``), so a worker without the data directory reads it too."""

    data: str
    chunk: Chunk
    lateness: float
    sessions: tuple[Session, ...]
    lake_url: str | None = None


@dataclass(frozen=True)
class ChunkPool:
    """Other processes computing chunks: ``executor.submit(compute_chunk, task)`` runs
    there (pickling the task and the result), ``slots`` of them at once (two each are kept
    in flight). The caller owns the executor; a backfill only cancels its own futures."""

    executor: Executor
    slots: int


@dataclass(frozen=True)
class BackfillProgress:
    """Where a running backfill is; ``windows_total`` is an estimate until the end."""

    chunks_done: int
    chunks_total: int
    ticker_days_done: int
    ticker_days_total: int
    windows: int
    windows_total: int
    rows_written: int
    ticks: int
    seconds: float

    @property
    def ticks_per_second(self) -> float:
        return self.ticks / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        if not self.ticker_days_done:
            return None
        left = self.ticker_days_total - self.ticker_days_done
        return self.seconds * left / self.ticker_days_done


@dataclass
class BackfillResult:
    """What a backfill did: ``windows`` holding ticks (one row each), ``rows`` written,
    ``ticks`` read (lookback rows aside); ``end_ms`` is the end of the range computed (the
    last sealed minute at most)."""

    start_ms: int
    end_ms: int
    tickers: int = 0
    chunks: int = 0
    windows: int = 0
    rows: int = 0
    ticks: int = 0
    lookback_rows: int = 0
    batches: list[int] = field(default_factory=list)  # rows per transaction, in order
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def transactions(self) -> int:
        return len(self.batches)

    def timed(self, name: str, seconds: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + seconds

    @property
    def ticks_per_second(self) -> float:
        return self.ticks / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Computed:
    rows: pa.Table
    ticks: int
    lookback_rows: int
    ticker_days: int


def plan_chunks(
    days: Mapping[str, set[int]], start_ms: int, end_ms: int, tickers_per_chunk: int
) -> list[Chunk]:
    """The chunks covering ``[start_ms, end_ms)`` (minute-aligned) for ``days`` (per
    ticker, the UTC day numbers holding its ticks): per date in order, the tickers with
    ticks that day in sorted groups of at most ``tickers_per_chunk``."""
    by_day: dict[int, list[str]] = {}
    for ticker, numbers in days.items():
        for day in numbers:
            if start_ms < (day + 1) * DAY_MS and day * DAY_MS < end_ms:
                by_day.setdefault(day, []).append(ticker)
    chunks = []
    for day in sorted(by_day):
        names = sorted(by_day[day])
        lo, hi = max(start_ms, day * DAY_MS), min(end_ms, (day + 1) * DAY_MS)
        for i in range(0, len(names), tickers_per_chunk):
            chunks.append(Chunk(lo, hi, tuple(names[i : i + tickers_per_chunk])))
    return chunks


def backfill(
    data: Path,
    config: BackfillConfig,
    clock: Clock,
    progress: Callable[[BackfillProgress], None] | None = None,
    pool: ChunkPool | None = None,
) -> BackfillResult:
    """Recompute and upsert every sealed window of the range; see the module docstring.
    ``pool``: compute the chunks there instead of in this process's ``workers`` threads.

    Raises BackfillError before any work for an unusable request, and DatabaseLockedError
    when another process held the database longer than ``lock_timeout`` (rows written so
    far stay: rerun to finish).
    """
    data = Path(data)
    started = time.perf_counter()
    days = _check(data, config)
    keep_freed_memory()
    lo = config.start_ms - config.start_ms % MINUTE_MS
    hi = -(-config.end_ms // MINUTE_MS) * MINUTE_MS
    hi = min(hi, watermark_at(clock.now(), config.lateness))  # sealed windows only
    result = BackfillResult(lo, max(lo, hi), tickers=len(days))
    chunks = plan_chunks(days, lo, hi, config.tickers_per_chunk)
    sessions = read_sessions(data / SESSIONS_FILE)
    compute = _Compute(data, config.lateness, SessionCoverage(sessions), remote_of(data))
    writer = _Writer(data, config, clock, result)
    ticker_days = sum(len(c.tickers) for c in chunks)
    days_done = 0
    try:
        if pool is None:
            computed = _computed(compute, chunks, config)
        else:
            tasks = _Tasks(data, config.lateness, sessions).of(chunks)
            computed = _in_order(pool.executor, compute_chunk, tasks, pool.slots)
        for done in computed:
            result.chunks += 1
            result.windows += done.rows.num_rows
            result.ticks += done.ticks
            result.lookback_rows += done.lookback_rows
            days_done += done.ticker_days
            writer.add(done.rows)
            if progress is not None:
                estimate = result.windows * ticker_days // max(days_done, 1)
                progress(
                    BackfillProgress(
                        result.chunks,
                        len(chunks),
                        days_done,
                        ticker_days,
                        result.windows,
                        result.windows if result.chunks == len(chunks) else estimate,
                        result.rows,
                        result.ticks,
                        time.perf_counter() - started,
                    )
                )
    except BaseException:
        with contextlib.suppress(Exception):  # the first error is the one to report
            writer.close(flush=False)
        raise
    writer.close(flush=True)
    result.seconds = time.perf_counter() - started
    log.info(
        "event=backfill start_ms=%d end_ms=%d tickers=%d chunks=%d windows=%d rows=%d ticks=%d "
        "lookback=%d transactions=%d workers=%d seconds=%.3f write_s=%.3f",
        result.start_ms,
        result.end_ms,
        result.tickers,
        result.chunks,
        result.windows,
        result.rows,
        result.ticks,
        result.lookback_rows,
        result.transactions,
        config.workers if pool is None else pool.slots,
        result.seconds,
        result.timings.get("write", 0.0),
    )
    return result


class _Writer:
    """The single writer: upserts whole multiples of ``batch_rows`` rows (the rest waits
    for the next batch; the last batch takes all), one transaction each, in a thread, so
    chunks go on computing meanwhile. It writes whenever it is idle and a batch is ready;
    at most ``PENDING_BATCHES`` batches wait meanwhile (bounded memory). Errors surface at
    the next ``add`` or at ``close``."""

    def __init__(
        self, data: Path, config: BackfillConfig, clock: Clock, result: BackfillResult
    ) -> None:
        self.data, self.config, self.clock, self.result = data, config, clock, result
        self.database = config.database or database_path(data)
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="backfill-writer")
        self.writing: Future[None] | None = None
        self.stop = threading.Event()  # ends a wait for the lock when the backfill fails

    def add(self, rows: pa.Table) -> None:
        if rows.num_rows:
            self.pending.append(rows)
            self.pending_rows += rows.num_rows
        if self.writing is not None and self.writing.done():
            self._wait()  # raises the error of a failed write
        if self.pending_rows < self.config.batch_rows:
            return
        if self.writing is None or self.pending_rows >= PENDING_BATCHES * self.config.batch_rows:
            self._flush(last=False)  # the writer is idle, or memory is full: wait for it

    def close(self, *, flush: bool) -> None:
        """Write what is pending and wait for the last transaction; without ``flush`` (an
        error, Ctrl-C), drop what is pending and stop waiting for the lock."""
        try:
            if flush:
                self._flush(last=True)
            else:
                self.stop.set()
            self._wait()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def _flush(self, *, last: bool) -> None:
        if not self.pending:
            return
        rows = pa.concat_tables(self.pending)
        size = rows.num_rows if last else rows.num_rows - rows.num_rows % self.config.batch_rows
        rest = rows.slice(size)
        self.pending, self.pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
        self._wait()
        self.writing = self.pool.submit(self._write, rows.slice(0, size), last)

    def _wait(self) -> None:
        if self.writing is not None:
            writing, self.writing = self.writing, None
            writing.result()

    def _write(self, rows: pa.Table, last: bool) -> None:
        started = time.perf_counter()
        at = rows.schema.get_field_index("computed_at")
        now = pa.scalar(int(self.clock.now() * 1e6), ROW_SCHEMA.field(at).type)
        rows = rows.set_column(at, "computed_at", pa.repeat(now, rows.num_rows))
        written = write_rows(
            self.database,
            rows,
            lake=self.data,
            clock=self.clock,
            timeout=self.config.lock_timeout,
            pause=Pause(stop=self.stop),
        )
        self.result.rows += written
        self.result.batches.append(written)
        self.result.timed("write", time.perf_counter() - started)
        if not last:
            self.stop.wait(YIELD_SECONDS)


def _check(data: Path, config: BackfillConfig) -> dict[str, set[int]]:
    """The days of the tickers to backfill (``LakeIndex.days``), or BackfillError."""
    if not data.is_dir():
        raise BackfillError(f"no data directory {data}")
    if config.start_ms >= config.end_ms:
        raise BackfillError(
            f"start {iso_utc(config.start_ms, 'seconds')} is not before "
            f"end {iso_utc(config.end_ms, 'seconds')}"
        )
    if config.workers < 1 or config.batch_rows < 1 or config.tickers_per_chunk < 1:
        raise BackfillError("workers, batch_rows and tickers_per_chunk must be positive")
    stored = LakeIndex(data, remote_of(data)).days()
    if not stored:
        raise BackfillError(f"no ticks in {data}: the lake is empty")
    if config.tickers is None:
        return stored
    unknown = [t for t in dict.fromkeys(config.tickers) if t not in stored]
    if unknown:
        raise BackfillError(f"no data for ticker(s) {', '.join(unknown)} in {data}")
    return {t: stored[t] for t in config.tickers}


class _Compute:
    """Computes one chunk; shared by the worker threads, or built once per worker process
    (the session log is read once)."""

    def __init__(
        self,
        data: Path,
        lateness: float,
        coverage: SessionCoverage,
        remote: RemoteLake | None = None,
    ) -> None:
        self.data = data
        self.remote = remote  # its days count too (every ticker's prefix listed per chunk)
        self.context = RowContext(lateness, coverage, now=0.0)  # stamped by the writer

    def __call__(self, chunk: Chunk) -> _Computed:
        # Every minute of the range is requested, not only those holding ticks: no listing
        # is needed, and a minute without ticks simply yields no row.
        minutes = np.arange(chunk.start_ms, chunk.end_ms, MINUTE_MS, dtype=np.int64)
        job = JobResult(done=False)
        rows = compute_rows(
            self.data,
            dict.fromkeys(chunk.tickers, minutes),
            context=self.context,
            load=LoadOptions(LakeIndex(self.data, self.remote), threads=1),
            result=job,
        )
        return _Computed(rows, job.ticks, job.lookback_rows, len(chunk.tickers))


_worker: _Compute | None = None


def _start_worker(compute: _Compute) -> None:
    global _worker
    _worker = compute
    keep_freed_memory()


def _run_in_worker(chunk: Chunk) -> _Computed:
    assert _worker is not None, "worker not initialized"
    return _worker(chunk)


def compute_chunk(task: ChunkTask) -> _Computed:
    """A ``ChunkTask``'s rows, in the process it was sent to (keeps freed memory there)."""
    keep_freed_memory()
    remote = None if task.lake_url is None else RemoteLake.parse(task.lake_url)
    compute = _Compute(Path(task.data), task.lateness, SessionCoverage(task.sessions), remote)
    return compute(task.chunk)


class _Tasks:
    """``ChunkTask`` for each chunk: the sessions carrying any of its tickers, each reduced
    to those tickers (indexed once by ticker, so a chunk costs its own tickers' sessions,
    not the whole log)."""

    def __init__(self, data: Path, lateness: float, sessions: Sequence[Session]) -> None:
        self.data, self.lateness, self.sessions = os.path.abspath(data), lateness, sessions
        remote = remote_of(data)
        self.lake_url = None if remote is None else remote.url
        self.carrying: dict[str, list[int]] = {}
        for i, session in enumerate(sessions):
            for symbol in session.symbols:
                self.carrying.setdefault(symbol, []).append(i)

    def of(self, chunks: Iterable[Chunk]) -> Iterator[ChunkTask]:
        for chunk in chunks:
            wanted = set(chunk.tickers)
            indices = sorted({i for t in wanted for i in self.carrying.get(t, ())})
            sessions = tuple(
                dataclasses.replace(
                    self.sessions[i],
                    symbols=tuple(s for s in self.sessions[i].symbols if s in wanted),
                )
                for i in indices
            )
            yield ChunkTask(self.data, chunk, self.lateness, sessions, self.lake_url)


def _computed(
    compute: _Compute, chunks: list[Chunk], config: BackfillConfig
) -> Iterator[_Computed]:
    """Each chunk's result, in order; at most two chunks per worker in flight."""
    if config.workers == 1:
        yield from map(compute, chunks)
        return
    pool: Executor
    if config.pool == "thread":
        pool = ThreadPoolExecutor(config.workers, thread_name_prefix="backfill")
        run: Callable[[Chunk], _Computed] = compute
    else:
        context = multiprocessing.get_context("forkserver")  # never fork a threaded process
        context.set_forkserver_preload(["analytics.backfill"])
        pool = ProcessPoolExecutor(
            config.workers, mp_context=context, initializer=_start_worker, initargs=(compute,)
        )
        run = _run_in_worker
    try:
        yield from _in_order(pool, run, chunks, config.workers)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _in_order(
    executor: Executor, run: Callable[[T], R], items: Iterable[T], slots: int
) -> Iterator[R]:
    """``run(item)`` of each item on ``executor``, results in order, at most two per slot
    in flight; when the caller stops early (an error), the futures not done are cancelled."""
    todo = iter(items)
    queue: deque[Future[R]] = deque(
        executor.submit(run, item) for item in itertools.islice(todo, 2 * slots)
    )
    try:
        while queue:
            done = queue.popleft().result()
            queue.extend(executor.submit(run, item) for item in itertools.islice(todo, 1))
            yield done
    finally:
        for future in queue:
            future.cancel()
