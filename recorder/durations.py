"""How long a repeated step took, kept as a histogram: bounded memory however long it runs.

``ticklake.metrics`` reads it at scrape time as a Prometheus histogram (the journal's fsyncs,
the lake writer's cycles). Invariants: each observation lands in exactly one bucket (the
first whose upper bound it does not exceed, else the overflow); ``count`` and ``sum`` only
grow; :meth:`Durations.snapshot` is consistent (taken under the same lock the writers
take), so a scrape never sees a count without its bucket.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

__all__ = ["BOUNDS", "Durations", "DurationsSnapshot"]

BOUNDS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds in seconds: from a page-cache fsync to a slow disk's lake write."""


@dataclass(frozen=True)
class DurationsSnapshot:
    bounds: tuple[float, ...]
    counts: tuple[int, ...]  # per bucket, not cumulative; one more than bounds (overflow)
    sum: float

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, observations at or under it) as Prometheus writes them, ``+Inf`` last."""
        out, running = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


class Durations:
    """A histogram of durations in seconds; :meth:`observe` from any thread."""

    def __init__(self, bounds: tuple[float, ...] = BOUNDS) -> None:
        self.bounds = tuple(sorted(bounds))
        self._counts = [0] * (len(self.bounds) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        index = bisect.bisect_left(self.bounds, seconds)
        with self._lock:
            self._counts[index] += 1
            self._sum += seconds

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        """Observe how long the block took (also when it raises)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.observe(time.perf_counter() - started)

    def snapshot(self) -> DurationsSnapshot:
        with self._lock:
            return DurationsSnapshot(self.bounds, tuple(self._counts), self._sum)
