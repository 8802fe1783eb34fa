"""How long a connection waits before its next attempt: capped exponential backoff, full jitter.

The n-th consecutive failed attempt (``attempt`` counts from 0) waits a delay drawn uniformly
from ``[0, min(cap, base * 2**attempt)]`` ("full jitter"), so connections that failed together
spread out instead of reconnecting in a storm. There is no give-up-after-N: the attempt
counter grows forever and the ceiling simply stays at ``cap``; :meth:`Backoff.reset` (called
once a connection has been healthy) starts again from ``base``.

Invariants:
- ``0 <= delay <= ceiling(attempt) <= cap`` for every attempt, however large;
- the ceiling doubles with each attempt until it reaches ``cap`` and never decreases
  until :meth:`Backoff.reset`;
- the same seeded ``random.Random`` gives the same delays.
"""

from __future__ import annotations

import random
from typing import Final

__all__ = ["Backoff", "BackoffConfigError", "ceiling"]

_MAX_DOUBLINGS: Final = 1000  # 2**1000 * base overflows nothing and exceeds any sane cap


class BackoffConfigError(ValueError):
    """A backoff setting is out of range; the message names the setting and the valid range."""


def ceiling(attempt: int, base: float, cap: float) -> float:
    """The largest delay of the ``attempt``-th retry: ``min(cap, base * 2**attempt)``."""
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, not {attempt}")
    if attempt >= _MAX_DOUBLINGS:
        return cap
    return min(cap, base * 2.0**attempt)


class Backoff:
    """The retry delays of one connection; each connection owns its own instance."""

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        if not base > 0:
            raise BackoffConfigError(f"backoff base must be > 0 seconds, not {base}")
        if not cap >= base:
            raise BackoffConfigError(f"backoff cap must be >= base ({base} s), not {cap}")
        self.base, self.cap = base, cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        """The ceiling of the next delay."""
        return ceiling(self.attempt, self.base, self.cap)

    def next_delay(self) -> float:
        """Draw the next delay in ``[0, ceiling()]`` and count the attempt."""
        delay = self._rng.uniform(0.0, self.ceiling())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """The connection is healthy again: the next delay starts from ``base``."""
        self.attempt = 0
