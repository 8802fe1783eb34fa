"""What each run of the analytics job computes: pure decisions over the seal and our state.

Persisted state, ``<data>/state/analytics.json`` (replaced atomically, small enough to read):
``done_watermark_ms`` (every sealed window starting below it has been materialized) and
``late_id`` (the last entry of the seal's late list handled).

Each run covers

- *new* windows: every minute in ``[done_watermark_ms, seal.watermark_ms)`` of every
  ticker with a file there, however long the job was down (no minute is ever skipped);
- *late* windows: the seal's entries after ``late_id`` whose window starts within the
  recompute horizon (``window_start >= seal.watermark_ms - horizon``) and below
  ``done_watermark_ms`` (later ones are new windows anyway). Older ones are counted as
  skipped: ``ticklake backfill`` recomputes any range on demand.

The first run (no state file) starts at ``seal.watermark_ms - horizon``: the recent past
is materialized, older history is backfill's job. Work is cut into steps (late windows in
groups, then new windows ``chunk_ms`` at a time) with the state to save after each, so a
crash loses at most one step and the rerun only recomputes (rows are idempotent). Cost
grows with the new work, never with the size of history.

If the seal's late ids restarted (``next_late_id <= late_id``: its state was reset), every
late entry is taken as new.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

from lake.atomic import atomic_write_bytes
from lake.datadir import ANALYTICS_STATE_FILE
from lake.seal import SealState
from lake.utc import MINUTE_MS, floor_minute_ms

__all__ = [
    "AnalyticsState",
    "RunPlan",
    "Step",
    "load_state",
    "plan_run",
    "save_state",
    "step_windows",
]

LATE_PER_STEP: Final = 5000


@dataclass(frozen=True)
class AnalyticsState:
    """How far the job got; see the module docstring."""

    done_watermark_ms: int
    late_id: int

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> AnalyticsState:
        raw: dict[str, Any] = json.loads(data)
        return cls(int(raw["done_watermark_ms"]), int(raw["late_id"]))


def load_state(data: Path) -> AnalyticsState | None:
    """The saved state, or None before the first run."""
    try:
        return AnalyticsState.from_json((Path(data) / ANALYTICS_STATE_FILE).read_bytes())
    except FileNotFoundError:
        return None


def save_state(data: Path, state: AnalyticsState) -> None:
    atomic_write_bytes(Path(data) / ANALYTICS_STATE_FILE, state.to_json())


@dataclass(frozen=True)
class Step:
    """One unit of work: new windows in ``[start_ms, end_ms)`` (an empty range for a step
    of late windows only) and ``late`` (ticker, window_start) pairs; ``after`` is the state
    to save once its rows are committed."""

    start_ms: int
    end_ms: int
    late: tuple[tuple[str, int], ...]
    after: AnalyticsState


@dataclass(frozen=True)
class RunPlan:
    """The steps of one run, in order, and the state once all are done (None: nothing to
    save yet, the recorder never sealed a window)."""

    steps: tuple[Step, ...]
    final: AnalyticsState | None
    new_minutes: int
    late_windows: int
    late_skipped: int
    seal_reset: bool


def plan_run(
    state: AnalyticsState | None,
    seal: SealState,
    *,
    horizon_ms: int,
    chunk_ms: int,
    late_per_step: int = LATE_PER_STEP,
) -> RunPlan:
    """The work of one run (pure); see the module docstring for the rules."""
    if chunk_ms < MINUTE_MS or chunk_ms % MINUTE_MS:
        raise ValueError(f"chunk_ms={chunk_ms} must be a positive multiple of one minute")
    watermark = seal.watermark_ms
    if watermark <= 0:
        return RunPlan((), state, 0, 0, 0, False)
    if state is None:
        state = AnalyticsState(floor_minute_ms(max(watermark - horizon_ms, 0)), 0)
    seal_reset = state.late_id >= seal.next_late_id and state.late_id > 0
    last_id = 0 if seal_reset else state.late_id
    entries = sorted(seal.late_since(last_id), key=lambda w: w.id)
    floor = watermark - horizon_ms
    wanted = [w for w in entries if floor <= w.window_start_ms < state.done_watermark_ms]
    skipped = sum(1 for w in entries if w.window_start_ms < floor)
    final_id = entries[-1].id if entries else last_id

    steps: list[Step] = []
    for i in range(0, len(wanted), late_per_step):
        group = wanted[i : i + late_per_step]
        last = i + late_per_step >= len(wanted)
        after = replace(state, late_id=final_id if last else group[-1].id)
        pairs = tuple(dict.fromkeys((w.ticker, w.window_start_ms) for w in group))
        steps.append(Step(0, 0, pairs, after))
    start = state.done_watermark_ms
    for lo in range(start, watermark, chunk_ms):
        hi = min(lo + chunk_ms, watermark)
        steps.append(Step(lo, hi, (), AnalyticsState(hi, final_id)))
    final = AnalyticsState(max(start, watermark), final_id)
    new_minutes = max(watermark - start, 0) // MINUTE_MS
    return RunPlan(tuple(steps), final, new_minutes, len(wanted), skipped, seal_reset)


def step_windows(
    step: Step, tickers: list[str], minutes_with_files: Callable[[str, int, int], list[int]]
) -> dict[str, list[int]]:
    """The (ticker -> sorted window starts) a step computes.

    ``minutes_with_files(ticker, start_ms, end_ms)`` lists the minutes of a ticker that have
    a lake file in the range (``loader.LakeIndex.minutes``); late windows are taken as given
    (a missing file simply yields no row).
    """
    windows: dict[str, set[int]] = {}
    if step.end_ms > step.start_ms:
        for ticker in tickers:
            found = minutes_with_files(ticker, step.start_ms, step.end_ms)
            if found:
                windows[ticker] = set(found)
    for ticker, start in step.late:
        windows.setdefault(ticker, set()).add(start)
    return {ticker: sorted(starts) for ticker, starts in sorted(windows.items())}
