"""Heap settings for batch work: freed memory is kept for reuse, not returned to the system.

NumPy allocates its arrays with the C library's ``malloc``. glibc serves a request above
its mmap threshold (128 KB at first, then adjusted to the largest block freed) with fresh
pages from the system, and returns free memory at the top of the heap beyond its trim
threshold at once; every new page costs a fault on first touch. A backfill allocates and
frees arrays of a few MB per chunk, so it kept faulting in fresh pages, and the faults'
system time was a large share of its work. With blocks up to 32 MB served from the heap
and up to 128 MB of free heap kept, the pages are reused and most of those faults are gone
(README, Benchmarks: what moved; ``bench/backfill.py`` measures the backfill).

Invariants:
- :func:`keep_freed_memory` changes process-wide ``mallopt`` settings, once; it is for
  batch commands (backfill), whose speed matters more than returning memory between
  chunks; the recorder, whose resident memory matters, does not call it;
- without glibc (macOS, musl) it does nothing and says so by returning False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from typing import Final

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_memory"]

log = logging.getLogger(__name__)

MMAP_THRESHOLD: Final = 32 << 20  # blocks below this come from the heap, reused when freed
TRIM_THRESHOLD: Final = 128 << 20  # free heap kept before any is returned to the system
_M_TRIM_THRESHOLD: Final = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD: Final = -3


@functools.cache
def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (see the module docstring); True if set."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    done = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and done
    log.debug(
        "event=heap_tuned mmap_threshold=%d trim_threshold=%d ok=%s",
        MMAP_THRESHOLD,
        TRIM_THRESHOLD,
        done,
    )
    return bool(done)
