"""Backoff math: bounds, doubling up to the cap, full-jitter spread, determinism and reset."""

from __future__ import annotations

import random
import statistics

import pytest

from lake.backoff import Backoff, BackoffConfigError, ceiling


def test_ceiling_doubles_from_base_until_the_cap() -> None:
    assert [ceiling(n, 0.5, 60.0) for n in range(9)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0,
    ]  # fmt: skip


def test_ceiling_of_a_huge_attempt_is_the_cap_without_overflow() -> None:
    assert ceiling(1023, 0.5, 60.0) == 60.0
    assert ceiling(10**9, 0.5, 60.0) == 60.0
    with pytest.raises(ValueError, match="attempt"):
        ceiling(-1, 0.5, 60.0)


def test_every_delay_lies_within_zero_and_its_ceiling_and_never_gives_up() -> None:
    backoff = Backoff(0.5, 60.0, random.Random(7))
    for attempt in range(2000):  # far past any give-up-after-N
        limit = backoff.ceiling()
        assert limit == ceiling(attempt, 0.5, 60.0)
        assert 0.0 <= backoff.next_delay() <= limit <= 60.0
    assert backoff.attempt == 2000


def test_full_jitter_spreads_delays_uniformly_over_the_whole_range() -> None:
    backoff = Backoff(1.0, 8.0, random.Random(1))
    backoff.attempt = 10  # at the cap
    delays = []
    for _ in range(20_000):
        delays.append(backoff.next_delay())
        backoff.attempt = 10
    assert min(delays) < 0.05 and max(delays) > 7.95  # full jitter reaches both ends
    assert statistics.fmean(delays) == pytest.approx(4.0, abs=0.1)
    quartiles = statistics.quantiles(delays, n=4)
    assert quartiles == pytest.approx([2.0, 4.0, 6.0], abs=0.15)


def test_connections_failing_together_do_not_reconnect_together() -> None:
    rng = random.Random(3)
    first = [Backoff(0.5, 60.0, rng).next_delay() for _ in range(50)]
    assert len({round(d, 6) for d in first}) == 50


def test_same_seed_gives_same_delays() -> None:
    a, b = Backoff(0.5, 60.0, random.Random(42)), Backoff(0.5, 60.0, random.Random(42))
    assert [a.next_delay() for _ in range(20)] == [b.next_delay() for _ in range(20)]


def test_reset_starts_again_from_base() -> None:
    backoff = Backoff(0.5, 60.0, random.Random(0))
    for _ in range(12):
        backoff.next_delay()
    assert backoff.ceiling() == 60.0
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.ceiling() == 0.5
    assert backoff.next_delay() <= 0.5


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_bad_settings_are_refused(base: float, cap: float) -> None:
    with pytest.raises(BackoffConfigError, match="backoff"):
        Backoff(base, cap)
