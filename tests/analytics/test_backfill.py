"""Backfill against the live path: the per-minute job run minute by minute (ManualClock,
hand-published seals, a late tick, a recorder gap) and a backfill over the same stored
ticks give identical rows; reruns, subsets, workers, lookback before the range, both tiers."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from analytics.backfill import BackfillConfig, BackfillError, BackfillProgress, backfill
from analytics.database import database_path
from analytics.job import AnalyticsJob, JobConfig
from lake.clock import ManualClock
from lake.compact import compact_eligible
from lake.index import LakeIndex, minute_path
from lake.layout import minute_file
from lake.utc import MINUTE_MS
from tests.kit.features import FEATURE_COLUMNS, columns_of, db_features, lake_features
from tests.kit.lake import seal, sessions, write_lake
from tests.kit.ticks import Feed
from tests.kit.times import T0

TICKERS = ("AMZN", "MSFT", "EURUSD=X", "BTC-USD")
MINUTES = 30
LATE_WINDOW = T0 + 5 * MINUTE_MS
ROW_COLUMNS = [*FEATURE_COLUMNS, "late", "gap"]  # every column but computed_at


def build(data: Path) -> None:
    """~6 ticks a minute per ticker (a few silent minutes), FX without volume, a recorder
    gap around minutes 12-14, and a session log."""
    feed = Feed(4)
    tables = []
    for ticker in TICKERS:
        for k in range(MINUTES):
            if (k * 7 + len(ticker)) % 9 == 0:
                continue  # a silent minute
            tables.append(feed.ticks(ticker, T0 + k * MINUTE_MS, 1, 6, volume=ticker != "EURUSD=X"))
    write_lake(data, tables)
    gap_start, gap_end = (T0 + 12 * MINUTE_MS) / 1000 + 20, (T0 + 14 * MINUTE_MS) / 1000 + 30
    sessions(data, [(1, TICKERS, T0 / 1000 - 3600, gap_start), (2, TICKERS, gap_end, None)])


def run_live(data: Path) -> ManualClock:
    """The job as the scheduler runs it, one sealed minute at a time; at minute 10 a late
    tick (received 5 minutes after its time) lands in ``LATE_WINDOW``."""
    clock = ManualClock(T0 / 1000)
    job = AnalyticsJob(data, JobConfig(chunk_minutes=20, recompute_horizon=6 * 3600.0), clock)
    late: list[tuple[str, int]] = []
    for k in range(1, MINUTES + 1):
        if k == 10:
            tick = Feed(99).ticks("AMZN", LATE_WINDOW, 1, 1, delay_s=300.0)
            tick = tick.set_column(tick.schema.get_field_index("seq"), "seq", pa.array([10**9]))
            write_lake(data, [tick])
            late = [("AMZN", LATE_WINDOW)]
        seal(data, T0 + k * MINUTE_MS, late=late)
        clock.set((T0 + k * MINUTE_MS) / 1000 + 12)
        result = job.run_once()
        assert result.done, result.reason
    return clock


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table, ManualClock]:
    """The lake after the live run, the rows the live job wrote, and its clock."""
    data = tmp_path_factory.mktemp("lake")
    build(data)
    clock = run_live(data)
    return data, db_features(database_path(data)), clock


def run(
    data: Path,
    db: Path,
    clock: ManualClock,
    start: int = T0,
    end: int = T0 + MINUTES * MINUTE_MS,
    **kw,
) -> Any:
    config = BackfillConfig(start_ms=start, end_ms=end, database=db, **kw)
    return backfill(data, config, clock)


def rows(db: Path) -> dict[str, list[Any]]:
    return columns_of(db_features(db), ROW_COLUMNS)


def test_backfill_gives_the_rows_the_live_job_wrote(lake, tmp_path) -> None:
    data, live, clock = lake
    result = run(data, tmp_path / "b.duckdb", clock)
    assert columns_of(live, ROW_COLUMNS) == rows(tmp_path / "b.duckdb")
    assert live.num_rows == result.windows == result.rows > 90
    flags = columns_of(live, ["ticker", "window_start", "late", "gap"])
    late = zip(flags["ticker"], flags["window_start"], flags["late"], strict=True)
    assert [(t, s) for t, s, is_late in late if is_late] == [("AMZN", LATE_WINDOW)]
    assert any(flags["gap"]) and not all(flags["gap"])  # the gap flagged some windows only
    expected = lake_features(data, T0 + MINUTES * MINUTE_MS)  # all ticks at once
    assert columns_of(live) == columns_of(expected)


def test_a_rerun_changes_only_computed_at(lake, tmp_path) -> None:
    data, _, clock = lake
    db = tmp_path / "b.duckdb"
    run(data, db, clock)
    first = db_features(db)
    later = ManualClock(clock.now() + 3600)
    again = run(data, db, later)
    second = db_features(db)
    assert again.rows == first.num_rows == second.num_rows
    assert columns_of(first, ROW_COLUMNS) == columns_of(second, ROW_COLUMNS)
    stamps = {v.timestamp() for v in second["computed_at"].to_pylist()}
    assert stamps == {later.now()}


def test_a_subset_of_tickers(lake, tmp_path) -> None:
    data, live, clock = lake
    result = run(data, tmp_path / "b.duckdb", clock, tickers=("BTC-USD", "EURUSD=X"))
    ours = rows(tmp_path / "b.duckdb")
    assert set(ours["ticker"]) == {"BTC-USD", "EURUSD=X"} and result.tickers == 2
    theirs = columns_of(live, ROW_COLUMNS)
    keep = [i for i, t in enumerate(theirs["ticker"]) if t in ("BTC-USD", "EURUSD=X")]
    assert ours == {k: [v[i] for i in keep] for k, v in theirs.items()}


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_two_workers_give_the_same_rows(lake, tmp_path, pool) -> None:
    data, live, clock = lake
    db = tmp_path / "b.duckdb"
    result = run(data, db, clock, workers=2, pool=pool, tickers_per_chunk=1, batch_rows=40)
    assert result.chunks == len(TICKERS) and sum(result.batches) == result.rows == live.num_rows
    # whole multiples of batch_rows while the writer keeps up, the rest in the last one
    *whole, last = result.batches
    assert len(whole) >= 1 and all(n % 40 == 0 for n in whole) and last > 0
    assert result.transactions == len(result.batches) < live.num_rows // 40 + 2
    assert rows(tmp_path / "b.duckdb") == columns_of(live, ROW_COLUMNS)


def test_a_range_starting_mid_session_looks_back_for_volume(lake, tmp_path) -> None:
    data, live, clock = lake
    start = T0 + 17 * MINUTE_MS + 25_000  # inside a minute: that window is included
    result = run(data, tmp_path / "b.duckdb", clock, start=start, end=T0 + 24 * MINUTE_MS)
    ours = rows(tmp_path / "b.duckdb")
    theirs = columns_of(live, ROW_COLUMNS)
    keep = [
        i
        for i, s in enumerate(theirs["window_start"])
        if T0 + 17 * MINUTE_MS <= s < T0 + 24 * MINUTE_MS
    ]
    assert ours == {k: [v[i] for i in keep] for k, v in theirs.items()}
    assert result.lookback_rows == 3  # AMZN, MSFT, BTC-USD; none for FX (no volume)
    volumes = [v for v, t in zip(ours["volume"], ours["ticker"], strict=True) if t == "AMZN"]
    assert volumes[0] > 0  # counted from the reading before the range, not from zero


def test_only_sealed_windows_and_progress(lake, tmp_path) -> None:
    data, _, _ = lake
    clock = ManualClock((T0 + 20 * MINUTE_MS) / 1000 + 5)  # 5 s after 14:20: 14:19 is not sealed
    seen: list[BackfillProgress] = []
    config = BackfillConfig(T0, T0 + MINUTES * MINUTE_MS, database=tmp_path / "b.duckdb")
    result = backfill(data, config, clock, seen.append)
    assert result.end_ms == T0 + 19 * MINUTE_MS
    assert max(rows(tmp_path / "b.duckdb")["window_start"]) == T0 + 18 * MINUTE_MS
    assert [p.chunks_done for p in seen] == [1] and seen[-1].windows == result.windows
    assert seen[-1].windows_total == result.windows and seen[-1].ticks == result.ticks > 0


def test_requests_it_cannot_serve(lake, tmp_path) -> None:
    data, _, clock = lake
    with pytest.raises(BackfillError, match="is not before end"):
        run(data, tmp_path / "b.duckdb", clock, start=T0 + MINUTE_MS, end=T0 + MINUTE_MS)
    with pytest.raises(BackfillError, match=r"no data for ticker\(s\) NVDA in"):
        run(data, tmp_path / "b.duckdb", clock, tickers=("AMZN", "NVDA"))
    with pytest.raises(BackfillError, match="no data directory"):
        run(tmp_path / "missing", tmp_path / "b.duckdb", clock)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackfillError, match="the lake is empty"):
        run(tmp_path / "empty", tmp_path / "b.duckdb", clock)
    assert not (tmp_path / "b.duckdb").exists()


def test_compacted_history_reads_like_minute_files(tmp_path) -> None:
    """Across UTC midnight (mid-session for equities): the first day compacted into the
    history tier; the lookback of the second day reads its day file."""
    midnight = int(dt.datetime(2024, 4, 17, tzinfo=dt.UTC).timestamp()) * 1000
    feed, minutes = Feed(12), range(midnight - 20 * MINUTE_MS, midnight + 20 * MINUTE_MS, MINUTE_MS)
    ticks = [feed.ticks(t, m, 1, 4) for t in ("AMZN", "BTC-USD") for m in minutes]
    plain = tmp_path / "plain"
    write_lake(plain, ticks)
    compacted = tmp_path / "compacted"
    shutil.copytree(plain, compacted)
    done = compact_eligible(compacted, midnight / 1000 + 60, grace=0.0, before=dt.date(2024, 4, 17))
    assert done.days_compacted == 2 and not done.failed
    index = LakeIndex(compacted)
    assert index.day_file("AMZN", midnight // 86_400_000 - 1) is not None
    listed = index.minutes("AMZN", midnight - 3 * MINUTE_MS, midnight)
    assert listed == [midnight - k * MINUTE_MS for k in (3, 2, 1)]
    clock = ManualClock(midnight / 1000 + 3600)
    for lo in (midnight - 20 * MINUTE_MS, midnight - 7 * MINUTE_MS + 1, midnight):
        a = run(plain, tmp_path / f"a{lo}.duckdb", clock, start=lo, end=midnight + 20 * MINUTE_MS)
        b = run(
            compacted, tmp_path / f"b{lo}.duckdb", clock, start=lo, end=midnight + 20 * MINUTE_MS
        )
        assert rows(tmp_path / f"a{lo}.duckdb") == rows(tmp_path / f"b{lo}.duckdb")
        assert a.ticks == b.ticks and a.lookback_rows == b.lookback_rows
    everything = columns_of(lake_features(plain, midnight + 20 * MINUTE_MS))
    assert columns_of(db_features(tmp_path / f"b{midnight - 20 * MINUTE_MS}.duckdb")) == everything


def test_minute_paths_are_the_layouts() -> None:
    for ticker in ("AMZN", "EURUSD=X", "^GSPC", "BRK-B", "ES=F"):
        for minute in (0, T0, T0 + 599 * MINUTE_MS, 4_102_444_740_000):
            assert minute_path(Path("lake"), ticker, minute) == minute_file(
                Path("lake"), ticker, minute
            )
