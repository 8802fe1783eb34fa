"""Backfill on a Dask cluster (a real LocalCluster of 2 single-threaded worker processes
on 127.0.0.1, reached by its tcp:// address as a remote scheduler would be): the rows equal
the local backfill's bit for bit, also when a worker is SIGKILLed mid-run; the forms of
``--cluster``; a scheduler that is not there."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from analytics.backfill import BackfillConfig, BackfillProgress, BackfillResult, ChunkPool, backfill
from analytics.cluster import ClusterError, ClusterSpec, cluster_pool, parse_cluster
from lake.clock import ManualClock
from lake.compact import compact_eligible
from lake.utc import DAY_MS, MINUTE_MS
from tests.kit.features import db_features
from tests.kit.lake import sessions, write_lake
from tests.kit.ticks import Feed
from tests.kit.times import T0

distributed = pytest.importorskip("distributed")

TICKERS = ("AMZN", "MSFT", "EURUSD=X", "BTC-USD")
MINUTES = 20
DAY2 = T0 + DAY_MS
END = DAY2 + MINUTES * MINUTE_MS
CLOCK = ManualClock(END / 1000 + 3600)


def build(data: Path) -> None:
    """Two UTC days of four tickers (silent minutes, FX without volume, a tick received 5
    minutes late), the first day compacted into the history tier; a session log with a
    gap on day 1 and, on day 2, a session carrying two of the tickers only."""
    feed = Feed(7)
    tables = []
    for day in (T0, DAY2):
        for ticker in TICKERS:
            for k in range(MINUTES):
                if (k * 5 + len(ticker)) % 7 == 0:
                    continue
                start = day + k * MINUTE_MS
                tables.append(feed.ticks(ticker, start, 1, 6, volume=ticker != "EURUSD=X"))
    tables.append(Feed(99).ticks("AMZN", DAY2 + 4 * MINUTE_MS, 1, 1, delay_s=300.0))
    write_lake(data, tables)
    done = compact_eligible(data, END / 1000, grace=0.0, before=_date(DAY2))
    assert done.days_compacted == len(TICKERS) and not done.failed
    s = T0 / 1000
    sessions(
        data,
        [
            (1, TICKERS, s - 3600, s + 8 * 60 + 20),
            (2, TICKERS, s + 10 * 60 + 30, DAY2 / 1000 + 5 * 60),
            (3, ("MSFT", "BTC-USD"), DAY2 / 1000 + 6 * 60, None),
        ],
    )


def _date(ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date()


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table, BackfillResult]:
    """The lake, and the rows and result of a local backfill (one thread) over it."""
    data = tmp_path_factory.mktemp("lake")
    build(data)
    db = data / "local.duckdb"
    result = run(data, db)
    return data, db_features(db), result


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A LocalCluster of 2 worker processes (one thread each) on 127.0.0.1, and a client."""
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": ":0"},
        ) as local,
        distributed.Client(local) as client,
    ):
        yield client


def run(
    data: Path,
    db: Path,
    pool: ChunkPool | None = None,
    progress: Callable[[BackfillProgress], None] | None = None,
) -> BackfillResult:
    config = BackfillConfig(T0, END, database=db, tickers_per_chunk=1, batch_rows=40)
    return backfill(data, config, CLOCK, progress, pool)


@pytest.mark.slow  # with the cluster's start and the workers' imports
def test_rows_equal_the_local_backfill_bit_for_bit(lake, cluster, tmp_path) -> None:
    data, local, local_result = lake
    with (
        distributed.get_task_stream(client=cluster) as stream,
        cluster_pool(parse_cluster(cluster.scheduler.address)) as pool,
    ):
        assert pool.slots == 2
        result = run(data, tmp_path / "b.duckdb", pool)
    ours = db_features(tmp_path / "b.duckdb")
    assert ours.num_rows == local.num_rows > 120
    assert ours.equals(local)  # every column, computed_at too (the same clock)
    assert _same_bits(ours, local)
    counts = ("chunks", "windows", "rows", "ticks", "lookback_rows")
    assert [getattr(result, n) for n in counts] == [getattr(local_result, n) for n in counts]
    assert result.chunks == 2 * len(TICKERS) and sum(result.batches) == result.rows
    flags = ours.select(["late", "gap"]).to_pydict()
    assert flags["late"].count(True) == 1  # the late tick's window
    assert True in flags["gap"] and False in flags["gap"] and None not in flags["gap"]
    tasks = [t for t in stream.data if str(t["key"]).startswith("compute_chunk")]
    assert len(tasks) == result.chunks  # each chunk computed once, on the cluster
    assert len({t["worker"] for t in tasks}) == 2  # by both workers


@pytest.mark.slow  # with the cluster's start and the workers' imports
def test_a_worker_killed_mid_run_changes_nothing(lake, cluster, tmp_path) -> None:
    """The sixth chunk's task SIGKILLs its worker process the first time (chunks 1 and 2
    are done by then: only two per worker are in flight); Dask reruns it on a worker
    alive, and the rows are the same, each written once."""
    data, local, local_result = lake
    marker = tmp_path / "killed"
    seen: list[BackfillProgress] = []
    with cluster_pool(parse_cluster(cluster.scheduler.address)) as pool:
        dying = ChunkPool(KillOnce(pool.executor, marker, nth=6), pool.slots)
        result = run(data, tmp_path / "b.duckdb", dying, seen.append)
    killed = int(marker.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)  # that worker process is gone
    ours = db_features(tmp_path / "b.duckdb")
    assert ours.equals(local)
    assert result.windows == result.rows == local_result.rows == sum(result.batches)
    assert [p.chunks_done for p in seen] == list(range(1, result.chunks + 1))
    cluster.wait_for_workers(2, timeout=30)  # the nanny restarted it, for the next tests
    assert killed not in cluster.run(os.getpid).values()


def test_cluster_forms() -> None:
    assert parse_cluster("local:2") == ClusterSpec(local_workers=2)
    assert parse_cluster(" tcp://10.0.0.5:8786 ") == ClusterSpec(address="tcp://10.0.0.5:8786")
    assert str(parse_cluster("tcp://scheduler:8786")) == "tcp://scheduler:8786"
    assert str(parse_cluster("local:16")) == "local:16"
    for bad in ("local:", "local:0", "local:-1", "local:x", "local:257", "local:2.5"):
        with pytest.raises(ClusterError, match="N of local:N must be a whole number"):
            parse_cluster(bad)
    for bad in ("tcp://host", "tcp://:8786", "tcp://h:99999", "tcp://h:86/x", "tcp://h:p"):
        with pytest.raises(ClusterError, match=r"address is tcp://HOST:PORT"):
            parse_cluster(bad)
    for bad in ("", "local", "8786", "http://h:8786", "localhost:8786", "tls://h:8786"):
        with pytest.raises(ClusterError, match=r"is not local:N .* or tcp://HOST:PORT"):
            parse_cluster(bad)


def test_no_scheduler_there() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    spec = parse_cluster(f"tcp://127.0.0.1:{port}")
    with (
        pytest.raises(ClusterError, match=f"cannot reach the Dask scheduler at {spec}: "),
        cluster_pool(spec, timeout=0.5),
    ):
        pytest.fail("connected to nothing")


class KillOnce(Executor):
    """Submits through ``inner``; the ``nth`` call's task SIGKILLs its worker process the
    first time it runs (``marker`` records the pid), then computes as asked."""

    def __init__(self, inner: Executor, marker: Path, nth: int) -> None:
        self.inner, self.marker, self.nth, self.calls = inner, marker, nth, 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.calls += 1
        if self.calls != self.nth:
            return self.inner.submit(fn, *args, **kwargs)
        return self.inner.submit(die_once, str(self.marker), fn, *args, **kwargs)


def die_once(marker: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """In a worker: SIGKILL this process if ``marker`` does not exist yet (creating it)."""
    try:
        with open(marker, "x") as file:
            file.write(str(os.getpid()))
    except FileExistsError:
        return fn(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("not reached")


def _same_bits(a: pa.Table, b: pa.Table) -> bool:
    """Every buffer of every column equal byte for byte (NaN and -0.0 included)."""
    a, b = a.combine_chunks(), b.combine_chunks()
    if a.schema != b.schema:
        return False
    for x, y in zip(a.columns, b.columns, strict=True):
        bx = [buf.to_pybytes() if buf else None for buf in x.chunk(0).buffers()]
        by = [buf.to_pybytes() if buf else None for buf in y.chunk(0).buffers()]
        if bx != by:
            return False
    return True
