"""The heap settings of batch work: set through glibc's mallopt, once."""

from __future__ import annotations

import platform

from analytics.heap import keep_freed_memory


def test_keep_freed_memory_sets_glibc_thresholds_once() -> None:
    glibc = platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is glibc
    assert keep_freed_memory() is glibc  # cached: mallopt is called once per process
    assert keep_freed_memory.cache_info().hits >= 1
