"""What each run computes: pure planning over the seal and the saved state."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import pytest

from analytics.plan import (
    AnalyticsState,
    Step,
    load_state,
    plan_run,
    save_state,
    step_windows,
)
from lake.datadir import ANALYTICS_STATE_FILE
from lake.seal import LateWindow, SealState
from lake.utc import HOUR_MS, MINUTE_MS
from tests.kit.times import T0 as W  # a minute boundary


def seal(
    watermark: int, late: Sequence[tuple[int, str, int]] = (), next_id: int | None = None
) -> SealState:
    entries = [LateWindow(i, t, s, watermark) for i, t, s in late]
    top = max((i for i, _, _ in late), default=0)
    return SealState(watermark, 0, next_id if next_id is not None else top + 1, entries)


def covered(steps: tuple[Step, ...]) -> list[tuple[int, int]]:
    return [(s.start_ms, s.end_ms) for s in steps if s.end_ms > s.start_ms]


def test_nothing_sealed_yet_plans_nothing_and_saves_nothing() -> None:
    plan = plan_run(None, SealState(), horizon_ms=24 * HOUR_MS, chunk_ms=HOUR_MS)
    assert plan.steps == () and plan.final is None


def test_first_run_starts_one_horizon_before_the_watermark() -> None:
    plan = plan_run(None, seal(W), horizon_ms=3 * HOUR_MS + 30_000, chunk_ms=HOUR_MS)
    # the horizon is not a whole number of minutes: the start is floored to a minute
    start = W - 3 * HOUR_MS - MINUTE_MS
    assert covered(plan.steps) == [
        (start, start + HOUR_MS),
        (start + HOUR_MS, start + 2 * HOUR_MS),
        (start + 2 * HOUR_MS, start + 3 * HOUR_MS),
        (start + 3 * HOUR_MS, W),
    ]
    assert plan.final == AnalyticsState(W, 0)
    assert plan.new_minutes == 181


def test_catch_up_after_downtime_covers_every_minute_exactly_once() -> None:
    state = AnalyticsState(W, 0)
    plan = plan_run(
        state, seal(W + 5 * HOUR_MS + 7 * MINUTE_MS), horizon_ms=HOUR_MS, chunk_ms=HOUR_MS
    )
    ranges = covered(plan.steps)
    assert ranges[0][0] == W and ranges[-1][1] == W + 5 * HOUR_MS + 7 * MINUTE_MS
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))  # no gap/overlap
    assert all(hi - lo <= HOUR_MS for lo, hi in ranges)
    # downtime longer than the horizon still catches up completely
    assert [s.after.done_watermark_ms for s in plan.steps] == [hi for _, hi in ranges]
    assert plan.new_minutes == 5 * 60 + 7


def test_no_new_work_when_the_watermark_has_not_moved() -> None:
    plan = plan_run(AnalyticsState(W, 4), seal(W, next_id=5), horizon_ms=HOUR_MS, chunk_ms=HOUR_MS)
    assert plan.steps == () and plan.final == AnalyticsState(W, 4)


def test_late_windows_within_the_horizon_are_recomputed_first() -> None:
    late = [
        (3, "AMZN", W - 10 * MINUTE_MS),  # handled already (id <= late_id)
        (4, "AMZN", W - 5 * MINUTE_MS),
        (5, "MSFT", W - 2 * HOUR_MS),  # older than the horizon: skipped, counted
        (6, "AMZN", W - 5 * MINUTE_MS),  # the same window twice: computed once
        (7, "AMZN", W + 2 * MINUTE_MS),  # not materialized yet: a new window anyway
        (8, "EURUSD=X", W - 55 * MINUTE_MS),
    ]
    plan = plan_run(
        AnalyticsState(W, 3), seal(W + 3 * MINUTE_MS, late), horizon_ms=HOUR_MS, chunk_ms=HOUR_MS
    )
    assert plan.steps[0].late == (("AMZN", W - 5 * MINUTE_MS), ("EURUSD=X", W - 55 * MINUTE_MS))
    assert plan.steps[0].after == AnalyticsState(W, 8)
    assert plan.late_windows == 3 and plan.late_skipped == 1
    assert covered(plan.steps) == [(W, W + 3 * MINUTE_MS)]
    assert plan.final == AnalyticsState(W + 3 * MINUTE_MS, 8)


def test_many_late_windows_are_split_into_steps_in_id_order() -> None:
    late = [(i, "AMZN", W - i * MINUTE_MS) for i in range(1, 12)]
    plan = plan_run(
        AnalyticsState(W, 0), seal(W, late), horizon_ms=HOUR_MS, chunk_ms=HOUR_MS, late_per_step=4
    )
    assert [len(s.late) for s in plan.steps] == [4, 4, 3]
    assert [s.after.late_id for s in plan.steps] == [4, 8, 11]


def test_skipped_late_entries_still_advance_the_late_id() -> None:
    plan = plan_run(
        AnalyticsState(W, 0),
        seal(W, [(1, "AMZN", W - 3 * HOUR_MS)]),
        horizon_ms=HOUR_MS,
        chunk_ms=HOUR_MS,
    )
    assert plan.steps == () and plan.final == AnalyticsState(W, 1) and plan.late_skipped == 1


def test_a_reset_seal_makes_every_late_entry_new() -> None:
    state = AnalyticsState(W, 40)
    plan = plan_run(
        state, seal(W, [(1, "AMZN", W - 5 * MINUTE_MS)]), horizon_ms=HOUR_MS, chunk_ms=HOUR_MS
    )
    assert plan.seal_reset
    assert plan.steps[0].late == (("AMZN", W - 5 * MINUTE_MS),)
    assert plan.final == AnalyticsState(W, 1)


def test_chunk_must_be_whole_minutes() -> None:
    with pytest.raises(ValueError, match="multiple of one minute"):
        plan_run(None, seal(W), horizon_ms=HOUR_MS, chunk_ms=90_000)


def test_state_round_trips_atomically(tmp_path: Path) -> None:
    assert load_state(tmp_path) is None
    save_state(tmp_path, AnalyticsState(W, 17))
    assert load_state(tmp_path) == AnalyticsState(W, 17)
    assert b'"done_watermark_ms": 1713276000000' in (tmp_path / ANALYTICS_STATE_FILE).read_bytes()
    assert [p.name for p in (tmp_path / ANALYTICS_STATE_FILE).parent.iterdir()] == [
        "analytics.json"
    ]


def test_step_windows_merges_listed_minutes_and_late_windows() -> None:
    listed = {"AMZN": [W, W + MINUTE_MS], "MSFT": []}
    calls = []

    def minutes(ticker: str, lo: int, hi: int) -> list[int]:
        calls.append((ticker, lo, hi))
        return listed.get(ticker, [])

    step = Step(W, W + 2 * MINUTE_MS, (("MSFT", W - HOUR_MS), ("AMZN", W)), AnalyticsState(W, 0))
    got = step_windows(step, ["AMZN", "MSFT"], minutes)
    assert got == {"AMZN": [W, W + MINUTE_MS], "MSFT": [W - HOUR_MS]}
    assert calls == [("AMZN", W, W + 2 * MINUTE_MS), ("MSFT", W, W + 2 * MINUTE_MS)]
    late_only = Step(0, 0, (("AMZN", W),), AnalyticsState(W, 0))
    calls.clear()
    assert step_windows(late_only, ["AMZN"], minutes) == {"AMZN": [W]} and calls == []
