"""The Python API on a real lake and database: features, ticks of both tiers, bars, SQL and
status equal what the database, the files and ``ticklake status`` hold; every call lets a
writer in as soon as it returns; reads are confined like ``ticklake sql``; ``import
ticklake`` stays cheap."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import ticklake
from analytics.backfill import BackfillConfig, backfill
from analytics.database import DatabaseLockedError, DatabaseMissingError, database_path
from lake.clock import ManualClock
from lake.compact import compact_eligible
from lake.symbols import SymbolError
from lake.utc import DAY_MS, MINUTE_MS, day_start_ms
from tests.kit.features import db_features, hold_database
from tests.kit.lake import write_days
from tests.kit.times import DAY1, DAY3, LATER, OPEN_MS
from ticklake import status_cmd
from ticklake.sql_sandbox import SandboxError

TICKERS = ["AAPL", "MSFT"]
UTC = dt.UTC


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table]:
    """AAPL and MSFT, 30 minutes a day on DAY1-DAY3; DAY1 and DAY2 compacted into the
    history tier, DAY3 in minute files; the features of all three days backfilled."""
    root = tmp_path_factory.mktemp("api")
    table = write_days(root, TICKERS, days=3, minutes=30, per=4)
    compact_eligible(root, LATER, before=DAY3, grace=0)
    config = BackfillConfig(day_start_ms(DAY1), day_start_ms(DAY3) + DAY_MS)
    assert backfill(root, config, ManualClock(LATER)).windows == 3 * 2 * 30
    return root, table


@pytest.fixture
def data(written: tuple[Path, pa.Table]) -> Path:
    return written[0]


def at(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=UTC)


def epoch_ms(column: pa.ChunkedArray) -> list[int]:
    return list(column.cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64()).to_pylist())


# --- features ----------------------------------------------------------------------------


def test_features_are_the_table_in_utc(data: Path) -> None:
    table = ticklake.open(data).features()
    stored = db_features(database_path(data))
    assert table.num_rows == stored.num_rows == 180
    assert table.to_pylist() == stored.to_pylist()
    for name in ("window_start", "window_end", "first_time", "last_time", "computed_at"):
        assert table.schema.field(name).type == pa.timestamp("us", tz="UTC")


def test_features_filter_by_ticker_and_half_open_range(data: Path) -> None:
    lake = ticklake.open(data)
    start = OPEN_MS + DAY_MS + 10 * MINUTE_MS  # DAY2 14:40 UTC
    table = lake.features(tickers=["MSFT"], start=at(start), end=at(start + 5 * MINUTE_MS))
    assert set(table["ticker"].to_pylist()) == {"MSFT"}
    assert epoch_ms(table["window_start"]) == [start + k * MINUTE_MS for k in range(5)]
    assert lake.features(tickers="AAPL").num_rows == 90  # one symbol as a string
    assert lake.features(tickers=[]).num_rows == 0


@pytest.mark.parametrize(
    "start",
    [
        "2024-01-03T14:40Z",
        "2024-01-03 09:40-05:00",
        "2024-01-03T14:40",
        dt.datetime(2024, 1, 3, 14, 40),  # naive: UTC  # noqa: DTZ001
        dt.datetime(2024, 1, 3, 15, 40, tzinfo=dt.timezone(dt.timedelta(hours=1))),
    ],
    ids=["iso-z", "iso-offset", "iso-naive", "naive", "aware"],
)
def test_every_form_of_a_time_means_the_same_instant(data: Path, start: Any) -> None:
    table = ticklake.open(data).features(start=start, end="2024-01-03T14:42Z")
    assert table.num_rows == 4  # two minutes of two tickers
    assert min(epoch_ms(table["window_start"])) == OPEN_MS + DAY_MS + 10 * MINUTE_MS


def test_pandas_timestamps_and_dates_are_times(data: Path) -> None:
    pd = pytest.importorskip("pandas")
    lake = ticklake.open(data)
    by_text = lake.features(start="2024-01-03", end="2024-01-04")
    assert lake.features(start=dt.date(2024, 1, 3), end=dt.date(2024, 1, 4)) == by_text
    stamps = pd.Timestamp("2024-01-03", tz="UTC"), pd.Timestamp("2024-01-03 19:00", tz="EST")
    assert lake.features(start=stamps[0], end=stamps[1]) == by_text
    assert lake.features(start=pd.Timestamp("2024-01-03"), end=stamps[1]) == by_text
    assert by_text.num_rows == 60


# --- ticks -------------------------------------------------------------------------------


def test_ticks_come_from_both_tiers_each_once(written: tuple[Path, pa.Table]) -> None:
    data, table = written
    lake = ticklake.open(data)
    for ticker in TICKERS:
        ticks = lake.ticks(ticker)
        expected = table.filter(pc.equal(table["id"], ticker))
        assert ticks["seq"].to_pylist() == sorted(expected["seq"].to_pylist())
        assert set(ticks["date"].to_pylist()) == {DAY1, DAY1 + dt.timedelta(1), DAY3}
        assert ticks.schema.field("time").type == pa.timestamp("us", tz="UTC")
        assert set(ticks["ticker"].to_pylist()) == {ticker}


@pytest.mark.parametrize("day", [0, 2], ids=["history", "minute-tier"])
def test_ticks_of_a_range_within_a_day_and_across_days(
    written: tuple[Path, pa.Table], day: int
) -> None:
    data, table = written
    start = OPEN_MS + day * DAY_MS + 3 * MINUTE_MS
    end = start + 2 * MINUTE_MS
    ticks = ticklake.open(data).ticks("AAPL", start=at(start), end=at(end))
    times = pc.cast(table["time"], pa.int64())
    inside = pc.and_(pc.greater_equal(times, start), pc.less(times, end))
    expected = table.filter(pc.and_(pc.equal(table["id"], "AAPL"), inside))
    assert ticks["seq"].to_pylist() == expected["seq"].to_pylist() and ticks.num_rows == 8
    assert epoch_ms(ticks["time"])[0] == start  # [start, end): a tick at start is in
    across = ticklake.open(data).ticks("AAPL", start="2024-01-02T14:50Z", end="2024-01-04T14:31Z")
    assert across.num_rows == 40 + 120 + 4  # DAY1's last 10 minutes, DAY2, DAY3's first


def test_ticks_need_no_database(data: Path) -> None:
    holder = hold_database(database_path(data), 30, read_only=False)
    try:
        lake = ticklake.open(data, timeout=0.2)
        assert lake.ticks("MSFT").num_rows == 360
        with pytest.raises(DatabaseLockedError):
            lake.features()
    finally:
        holder.kill()
        holder.wait()


def test_a_symbol_is_checked_before_any_sql(data: Path) -> None:
    lake = ticklake.open(data)
    with pytest.raises(SymbolError):
        lake.ticks("AAPL' OR true --")
    with pytest.raises(SymbolError):
        lake.features(tickers=["../x"])
    assert lake.ticks("NOPE").num_rows == 0


# --- bars --------------------------------------------------------------------------------


def test_bars_equal_the_views(data: Path) -> None:
    lake = ticklake.open(data)
    for width, view in (("5m", "bars_5m"), ("1h", "bars_1h"), ("1d", "bars_1d")):
        bars = lake.bars(width)
        assert bars.to_pylist() == lake.sql(f"FROM {view} ORDER BY ticker, bar_start").to_pylist()
    assert lake.bars("5m").num_rows == 2 * 3 * 6 and lake.bars("1d").num_rows == 6


def test_bars_overlapping_the_range_come_whole(data: Path) -> None:
    lake = ticklake.open(data)
    every = lake.bars("15m", tickers=["AAPL"])
    start = OPEN_MS + DAY_MS + 10 * MINUTE_MS  # 14:40 on DAY2, inside the 14:30 bar
    part = lake.bars("15m", tickers="AAPL", start=at(start), end=at(start + 6 * MINUTE_MS))
    starts = epoch_ms(part["bar_start"])  # 14:46 ends inside the 14:45 bar
    assert starts == [OPEN_MS + DAY_MS, OPEN_MS + DAY_MS + 15 * MINUTE_MS]
    whole = [row for row in every.to_pylist() if row["bar_start"] in part["bar_start"].to_pylist()]
    assert part.to_pylist() == whole and part["minutes"].to_pylist() == [15, 15]


@pytest.mark.parametrize("width", ["7m", "0m", "90s", "5", "1w", "25h", ""])
def test_a_bar_width_must_divide_a_day(data: Path, width: str) -> None:
    with pytest.raises(ValueError, match="dividing a day"):
        ticklake.open(data).bars(width)


# --- sql and status ----------------------------------------------------------------------


def test_sql_reads_the_database_and_the_lake(data: Path) -> None:
    lake = ticklake.open(data)
    counts = lake.sql("SELECT (SELECT count(*) FROM features) AS f, (SELECT count(*) FROM ticks) t")
    assert counts.to_pylist() == [{"f": 180, "t": 720}]
    one = lake.sql("SELECT count(*) AS n FROM features WHERE ticker = ?", ["AAPL"])
    assert one.to_pylist() == [{"n": 90}]
    script = lake.sql(
        "SET VARIABLE t = 'MSFT'; SELECT count(*) AS n FROM ticks WHERE ticker = getvariable('t')"
    )
    assert script.to_pylist() == [{"n": 360}]
    assert lake.sql("SET VARIABLE t = 1").num_rows == 0


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("DELETE FROM features", "read-only"),
        ("COPY features TO 'x.csv'", "read-only"),
        ("SELECT * FROM read_csv('/etc/passwd')", "reads only files under"),
        ("INSTALL httpfs", "read-only"),
    ],
)
def test_sql_is_sandboxed(data: Path, query: str, message: str) -> None:
    with pytest.raises(SandboxError, match=message):
        ticklake.open(data).sql(query)
    assert ticklake.open(data).features().num_rows == 180


def test_status_is_what_the_command_prints(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    status_cmd.add_arguments(parser, {})
    assert status_cmd.run(parser.parse_args(["--data", str(data), "--format", "json"])) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    status = ticklake.open(data).status()
    assert list(status) == ["minute", "history", "journal", "maintenance"]
    assert list(status.values())[:3] == printed[:3]
    assert {"maintenance": status["maintenance"]} == printed[3]
    assert status["history"]["rows"] == 480 and status["minute"]["oldest"].endswith("Z")


def test_missing_things_are_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no data directory"):
        ticklake.open(tmp_path / "nowhere")
    lake = ticklake.open(tmp_path)
    with pytest.raises(DatabaseMissingError, match="no database"):
        lake.features()
    empty = lake.ticks("AAPL")
    assert empty.num_rows == 0 and "price" in empty.column_names


# --- the lock: nothing held after a call -------------------------------------------------

WRITER = """
import sys, duckdb
for _ in sys.stdin:
    try:
        duckdb.connect(sys.argv[1]).close()
        print("in", flush=True)
    except duckdb.Error as exc:
        print("refused: " + str(exc).splitlines()[0], flush=True)
"""


@pytest.fixture
def writer(data: Path) -> Iterator[Callable[[], str]]:
    """Another process that, when asked, opens the database for writing once (no retry)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(database_path(data))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    def attempt() -> str:
        stdin.write("\n")
        stdin.flush()
        return stdout.readline().strip()

    yield attempt
    stdin.close()
    proc.wait(10)


def test_a_writer_gets_in_right_after_every_call(data: Path, writer: Callable[[], str]) -> None:
    lake = ticklake.open(data)
    con = duckdb.connect(str(database_path(data)), read_only=True)
    try:
        assert writer().startswith("refused")  # the probe sees a held file
    finally:
        con.close()
    calls: list[Callable[[], Any]] = [
        lambda: lake.features(tickers=["AAPL"], start="2024-01-03"),
        lambda: lake.ticks("AAPL", start="2024-01-04"),
        lambda: lake.bars("5m"),
        lambda: lake.sql("SELECT count(*) FROM ticks"),
        lambda: lake.status(),
    ]
    results = []
    for call in calls:
        results.append(call())
        assert writer() == "in"
    assert [r.num_rows for r in results[:4]] == [60, 120, 36, 1]  # usable after the close


def test_a_call_waits_while_the_job_writes(data: Path) -> None:
    holder = hold_database(database_path(data), 1.0, read_only=False)
    try:
        assert ticklake.open(data, timeout=30).features().num_rows == 180
        assert holder.wait(10) == 0  # it let go before the call could read
    finally:
        holder.kill()


# --- DataFrames and the cost of importing ------------------------------------------------


def test_dataframes_keep_utc(data: Path) -> None:
    pytest.importorskip("pandas")
    polars = pytest.importorskip("polars")
    table = ticklake.open(data).features(tickers="AAPL")
    frame = ticklake.to_pandas(table)
    assert len(frame) == 90 and str(frame["window_start"].dt.tz) == "UTC"
    pl = ticklake.to_polars(table)
    assert isinstance(pl, polars.DataFrame) and pl.height == 90
    assert pl.schema["window_start"].time_zone == "UTC"


@pytest.mark.parametrize("name", ["pandas", "polars"])
def test_a_missing_dataframe_library_says_what_to_install(
    data: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    table = ticklake.open(data).features(tickers="AAPL")
    monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    convert = ticklake.to_pandas if name == "pandas" else ticklake.to_polars
    with pytest.raises(ImportError, match=rf"pip install 'ticklake\[{name}\]'"):
        convert(table)


def test_import_is_cheap_and_pandas_is_never_imported(data: Path) -> None:
    script = (
        "import sys, ticklake\n"
        "heavy = [m for m in ('duckdb', 'pyarrow', 'pandas', 'polars') if m in sys.modules]\n"
        f"lake = ticklake.open({str(data)!r})\n"
        "n = lake.features(start='2024-01-03').num_rows + lake.ticks('AAPL').num_rows\n"
        "print(heavy, n, 'pandas' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.split() == ["[]", str(120 + 360), "False"]


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no attribute 'features'"):
        ticklake.features  # noqa: B018
    assert ticklake.open is ticklake.api.open and ticklake.Lake is ticklake.api.Lake
