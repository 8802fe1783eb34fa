"""Backfill on a Dask cluster (the ``dask`` extra): ``--cluster local:N`` or
``--cluster tcp://HOST:PORT``.

The cluster computes, this process writes: ``cluster_pool`` gives the backfill a
``ChunkPool`` over ``distributed.Client.get_executor``; each task is one chunk of
ticker-days (``analytics.backfill.ChunkTask``, plain values only), its worker reads the
ticks from the lake itself and sends back the chunk's rows (an Arrow table), and the
backfill's one writer upserts them here (contract 6).

Invariants:
- dask is imported here only, and only when a cluster is asked for; without it,
  ``DaskMissingError`` (the dask extra), before any work;
- ``local:N``: a LocalCluster of N worker processes with one thread each (the chunks'
  work holds the GIL part of the time), listening on 127.0.0.1 only, closed when the
  block ends; ``tcp://``: a running scheduler, left running, whose workers must see the
  data directory at the same absolute path (a shared filesystem);
- a worker lost mid-run: the scheduler reruns its tasks on another worker, up to
  ``distributed.scheduler.allowed-failures`` times (3 by default; past it the task fails
  with KilledWorker, a ``ClusterError`` here); a task that raises is resubmitted
  ``RETRIES`` times (a passing read error on shared storage). Nothing is written twice:
  each chunk is one future whose result the backfill takes once, and rows are upserts
  keyed on (ticker, window_start) anyway.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from analytics.backfill import ChunkPool
from lake.errors import first_line

__all__ = [
    "DASK_MISSING",
    "ClusterError",
    "ClusterSpec",
    "DaskMissingError",
    "cluster_pool",
    "parse_cluster",
]

log = logging.getLogger(__name__)

RETRIES: Final = 2  # resubmissions of a task that raised (a lost worker is counted apart)
CONNECT_TIMEOUT: Final = 10.0  # seconds to reach a scheduler and to wait for a worker
MAX_LOCAL_WORKERS: Final = 256
DASK_MISSING: Final = (
    "ticklake backfill --cluster needs the dask extra: pip install 'ticklake[dask]'"
)
FORMS: Final = "local:N (N worker processes here) or tcp://HOST:PORT (a Dask scheduler)"


class ClusterError(Exception):
    """The cluster cannot be used as asked (a bad address, no scheduler there, no worker,
    a chunk that kept killing its workers); one line to act on."""


class DaskMissingError(ClusterError):
    """dask.distributed is not installed; the message is ``DASK_MISSING``."""


@dataclass(frozen=True)
class ClusterSpec:
    """Where chunks are computed: ``local_workers`` processes of a LocalCluster started
    here, else the scheduler at ``address``."""

    local_workers: int | None = None
    address: str | None = None

    def __str__(self) -> str:
        return f"local:{self.local_workers}" if self.address is None else self.address


def parse_cluster(text: str) -> ClusterSpec:
    """``local:N`` (1 <= N <= ``MAX_LOCAL_WORKERS``) or ``tcp://HOST:PORT``; ClusterError
    naming the value otherwise."""
    value = text.strip()
    if value.startswith("local:"):
        count = value.removeprefix("local:")
        if count.isdigit() and 1 <= int(count) <= MAX_LOCAL_WORKERS:
            return ClusterSpec(local_workers=int(count))
        raise ClusterError(
            f"cluster {text!r}: N of local:N must be a whole number from 1 to {MAX_LOCAL_WORKERS}"
        )
    if value.startswith("tcp://"):
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            port = None
        if parts.hostname and port and not (parts.path or parts.query or parts.fragment):
            return ClusterSpec(address=value)
        raise ClusterError(f"cluster {text!r}: a scheduler's address is tcp://HOST:PORT")
    raise ClusterError(f"cluster {text!r} is not {FORMS}")


@contextlib.contextmanager
def cluster_pool(spec: ClusterSpec, *, timeout: float = CONNECT_TIMEOUT) -> Iterator[ChunkPool]:
    """A ``ChunkPool`` over the cluster ``spec`` names, for the block: a LocalCluster is
    started (and closed after), a scheduler connected to (waiting up to ``timeout`` for
    it and for one worker). ``slots``: the workers' threads at the start."""
    distributed = _distributed()
    with _quiet_dask():
        yield from _pool_of(distributed, spec, timeout)


def _pool_of(distributed: Any, spec: ClusterSpec, timeout: float) -> Iterator[ChunkPool]:
    cluster = None
    try:
        if spec.address is None:
            cluster = distributed.LocalCluster(
                n_workers=spec.local_workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,  # no dashboard; the scheduler's HTTP on any free port
                scheduler_kwargs={"dashboard_address": ":0"},
                silence_logs=logging.ERROR,
            )
            client = distributed.Client(cluster, timeout=timeout)
        else:
            client = distributed.Client(spec.address, timeout=timeout)
    except (OSError, TimeoutError, RuntimeError) as exc:  # RuntimeError: a Nanny failed
        if cluster is not None:
            cluster.close()
        how = (
            "start a local Dask cluster" if spec.address is None else "reach the Dask scheduler at"
        )
        raise ClusterError(f"cannot {how} {spec}: {first_line(exc)}") from None
    try:
        yield _pool(client, spec, timeout)
    except distributed.KilledWorker as exc:
        raise ClusterError(
            f"{exc.allowed_failures + 1} workers died running the same chunk (out of memory?): "
            "use fewer tickers per chunk or workers with more memory"
        ) from exc
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@contextlib.contextmanager
def _quiet_dask() -> Iterator[None]:
    """dask's own INFO lines (a dozen per cluster started: scheduler, nannies, workers;
    dask sets its logger to INFO) held back in this process, unless the log is at DEBUG;
    its warnings pass."""
    logger = logging.getLogger("distributed")
    level = logger.level
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def _pool(client: Any, spec: ClusterSpec, timeout: float) -> ChunkPool:
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (OSError, TimeoutError):
        raise ClusterError(f"the Dask scheduler at {spec} has no worker") from None
    slots = sum(client.nthreads().values())
    workers = len(client.nthreads())
    log.info("event=backfill_cluster cluster=%s workers=%d slots=%d", spec, workers, slots)
    return ChunkPool(client.get_executor(retries=RETRIES, pure=False), slots)


def _distributed() -> Any:
    """``distributed``, imported now (~0.5 s); DaskMissingError without it. Typed Any: its
    API is not annotated (each call would be an untyped call under mypy --strict)."""
    try:
        return importlib.import_module("distributed")
    except ImportError:
        raise DaskMissingError(DASK_MISSING) from None
