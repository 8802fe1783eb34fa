"""``lake.importer``: files in, lake rows out (read back with DuckDB), all or nothing."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from lake.datadir import IMPORTS_FILE, TICKS_DIR, DataLockedError
from lake.dedupe import merge_ticks
from lake.history import write_day_atomically
from lake.importer import (
    SEQ_BLOCK,
    ImportOptions,
    ImportProgress,
    ImportRejectedError,
    ImportStats,
    ImportUsageError,
    ImportWriteError,
    import_files,
    import_seq_base,
)
from lake.layout import duckdb_read_sql, encode_ticker, history_file
from lake.schema import LAKE_SCHEMA
from recorder.journal import Journal
from tests.kit.times import IMPORT_OPEN_MS as T0

NOW_US = 1_800_000_000_000_000
PAST = dt.date(2026, 11, 2)  # the import's time: received_at of rows without one


def csv(path: Path, text: str) -> Path:
    path.write_text(text.lstrip())
    return path


def lake(
    data: Path, columns: str = "id, epoch_ms(time) AS ms, price, seq"
) -> list[tuple[Any, ...]]:
    """Every tick in the lake, as DuckDB reads it, in (id, time, seq) order."""
    if not (data / TICKS_DIR).exists():
        return []
    sql = f"SELECT {columns} FROM {duckdb_read_sql(data)} ORDER BY id, time, seq"
    return duckdb.connect().execute(sql).fetchall()


def run(data: Path, *paths: Path, **options: Any) -> ImportStats:
    return import_files(data, list(paths), NOW_US, ImportOptions(**options))


def f32(x: float) -> float:
    return float(np.float32(x))


# --- round trips ----------------------------------------------------------------------


def test_csv_round_trip(tmp_path: Path) -> None:
    source = csv(
        tmp_path / "ticks.csv",
        """
ticker,time,price,day_volume,market_hours,quote_type,currency
^GSPC,2026-11-25T14:30:05Z,5000.25,100,REGULAR_MARKET,INDEX,USD
EURUSD=X,2026-11-25T14:30:06.250Z,1.0523,,,CURRENCY,
BRK-B,2026-11-25T15:31:00+01:00,412.5,7,POST_MARKET,EQUITY,USD
""",
    )
    stats = run(tmp_path / "data", source)
    assert (stats.rows, stats.ticks_added, stats.duplicates, stats.minute_files) == (3, 3, 0, 3)
    assert stats.tickers == {"^GSPC", "EURUSD=X", "BRK-B"}
    rows = lake(
        tmp_path / "data",
        "id, ticker, epoch_ms(time), price, day_volume, market_hours, quote_type, currency,"
        " epoch_us(received_at)",
    )
    assert rows == [
        ("BRK-B", "BRK-B", T0 + 60_000, f32(412.5), 7, "POST_MARKET", "EQUITY", "USD", NOW_US),
        ("EURUSD=X", "EURUSD=X", T0 + 6_250, f32(1.0523), None, None, "CURRENCY", None, NOW_US),
        ("^GSPC", "^GSPC", T0 + 5_000, f32(5000.25), 100, "REGULAR_MARKET", "INDEX", "USD", NOW_US),
    ]
    folder = tmp_path / "data" / TICKS_DIR / f"ticker={encode_ticker('EURUSD=X')}"
    assert folder.is_dir()


def test_parquet_round_trip_with_every_kind_of_column(tmp_path: Path) -> None:
    times = [T0 + 1_500, T0 + 61_000, T0 + 62_000]
    table = pa.table(
        {
            "ticker": pa.array(["ES=F", "ES=F", "^GSPC"]).dictionary_encode(),
            "time": pa.array(times)
            .cast(pa.timestamp("ms", "UTC"))
            .cast(pa.timestamp("us", "America/New_York")),
            "price": pa.array([5010.25, 5011.0, 6000.123456789]),  # float64 -> float32
            "day_volume": pa.array([10, 12, None], pa.int32()),
            "market_cap": pa.array([1e12, None, 2.5e12]),  # a double field stays float64
            "price_hint": pa.array([2, 2, 2], pa.int64()),
            "short_name": pa.array(["E-mini", None, "S&P 500"]),
            "market_hours": pa.array(["REGULAR_MARKET", None, "PRE_MARKET"]),
            "indices": pa.array([None, [], ["^GSPC", "^NDX"]], pa.large_list(pa.large_string())),
            "received_at": pa.array([T0 * 1000 + 7, None, T0 * 1000 + 9]).cast(
                pa.timestamp("us", "UTC")
            ),
        }
    )
    pq.write_table(table, tmp_path / "ticks.parquet")
    run(tmp_path / "data", tmp_path / "ticks.parquet")
    rows = lake(
        tmp_path / "data",
        "id, epoch_ms(time), price, day_volume, market_cap, price_hint, short_name,"
        " market_hours, epoch_us(received_at), indices",
    )
    assert rows == [
        (
            "ES=F",
            times[0],
            f32(5010.25),
            10,
            1e12,
            2,
            "E-mini",
            "REGULAR_MARKET",
            T0 * 1000 + 7,
            None,
        ),
        ("ES=F", times[1], f32(5011.0), 12, None, 2, None, None, NOW_US, []),
        (
            "^GSPC",
            times[2],
            f32(6000.123456789),
            None,
            2.5e12,
            2,
            "S&P 500",
            "PRE_MARKET",
            T0 * 1000 + 9,
            ["^GSPC", "^NDX"],
        ),
    ]
    text = csv(tmp_path / "lists.csv", "ticker,time,price,indices\nES=F,2026-11-25T14:30:05Z,1,x\n")
    with pytest.raises(ImportRejectedError) as refused:
        run(tmp_path / "data", text)
    assert "column 'indices' has type string, not strings" in refused.value.problems[0]


def test_time_formats(tmp_path: Path) -> None:
    text = f"""
ticker,time,price
A,2026-11-25T14:30:05Z,1
A,2026-11-25T15:30:06+01:00,2
A,2026-11-25T14:30:07,3
A,2026-11-25 14:30:08.123456,4
A,{T0 + 9_000},5
A, {T0 + 10_000} ,6
A,2026-11-25,7
"""
    run(tmp_path / "data", csv(tmp_path / "t.csv", text))
    naive = pa.array([(T0 + 61_999) * 1_000_000 + 999_999]).cast(pa.timestamp("ns"))  # no tz
    pq.write_table(
        pa.table({"ticker": ["B"], "time": naive, "price": [1.0]}), tmp_path / "ns.parquet"
    )
    run(tmp_path / "data", tmp_path / "ns.parquet")
    epoch = pa.table({"ticker": ["C", "C"], "time": [T0 + 2.0, T0 + 3.0], "price": [1, 2]})
    pq.write_table(epoch, tmp_path / "epoch.parquet")  # integral floats: epoch ms (pandas)
    run(tmp_path / "data", tmp_path / "epoch.parquet")
    pq.write_table(epoch.set_column(1, "time", pa.array([T0 + 0.5, T0])), tmp_path / "f.parquet")
    with pytest.raises(ImportRejectedError) as caught:
        run(tmp_path / "data", tmp_path / "f.parquet")
    assert [b.row for b in caught.value.bad_rows] == [1]
    got = [ms for _, ms, _, _ in lake(tmp_path / "data")]
    midnight = T0 - (14 * 60 + 30) * 60_000
    a = [midnight] + [T0 + s * 1000 for s in (5, 6, 7)] + [T0 + 8_123, T0 + 9_000, T0 + 10_000]
    assert got == [*a, T0 + 61_999, T0 + 2, T0 + 3]  # sub-millisecond digits are floored


# --- order, seqs, idempotence ----------------------------------------------------------


def test_row_order_is_arrival_order_on_equal_times(tmp_path: Path) -> None:
    first = csv(tmp_path / "1.csv", f"ticker,time,price\nX,{T0},3\nX,{T0},1\nX,{T0 + 1},9\n")
    second = csv(tmp_path / "2.csv", f"ticker,time,price\nX,{T0},2\n")
    run(tmp_path / "data", first, second)
    later = csv(tmp_path / "3.csv", f"ticker,time,price\nX,{T0},0.5\n")
    run(tmp_path / "data", later)
    rows = lake(tmp_path / "data")
    assert [price for *_, price, _ in rows] == [3, 1, 2, 0.5, 9]
    seqs = [seq for *_, seq in rows]
    base1, base2 = import_seq_base(1), import_seq_base(2)
    assert seqs == [base1, base1 + 1, base1 + 3, base2, base1 + 2]
    assert all(seq < 0 for seq in seqs)  # never a journal seq (those start at 1)


def test_seq_ranges_are_disjoint_negative_and_ordered() -> None:
    assert import_seq_base(1) == -(1 << 62)
    assert import_seq_base(2) - import_seq_base(1) == SEQ_BLOCK
    last = (1 << 62) // SEQ_BLOCK
    assert import_seq_base(last) + SEQ_BLOCK - 1 == -1
    with pytest.raises(ValueError):
        import_seq_base(last + 1)
    with pytest.raises(ValueError):
        import_seq_base(0)


def test_reimport_adds_nothing(tmp_path: Path) -> None:
    text = f"ticker,time,price,day_volume\nA,{T0},1,5\nA,{T0},1,5\nA,{T0 + 1},2,6\nB,{T0},3,\n"
    source = csv(tmp_path / "t.csv", text)
    first = run(tmp_path / "data", source)
    # two identical rows are one tick under the lake's dedupe rule
    assert (first.rows, first.ticks_added, first.duplicates) == (4, 3, 1)
    before = lake(tmp_path / "data")
    again = run(tmp_path / "data", source)
    assert (again.import_number, again.ticks_added, again.duplicates) == (2, 0, 4)
    assert again.minute_files == 0
    assert lake(tmp_path / "data") == before
    state = json.loads((tmp_path / "data" / IMPORTS_FILE).read_text())
    assert state["next_import"] == 3 and state["pending"] is None
    assert [entry["rows"] for entry in state["done"]] == [4, 4]


def test_interrupted_import_resumes_with_the_same_seqs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    text = f"ticker,time,price\nA,{T0},1\nB,{T0},2\nA,{T0 + 60_000},3\nB,{T0 + 1},4\n"
    source = csv(tmp_path / "t.csv", text)
    blocker = data / TICKS_DIR / "ticker=B"  # a file where B's folder must go: B fails
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way")
    with pytest.raises(ImportWriteError, match="rerun the same command"):
        run(data, source, threads=1)
    assert [row[0] for row in lake(data)] == ["A", "A"]  # A was written before B failed
    state = json.loads((data / IMPORTS_FILE).read_text())
    assert state["pending"]["import"] == 1 and state["next_import"] == 1

    blocker.unlink()
    stats = run(data, source, threads=1)
    assert stats.import_number == 1  # same files: same number, same seqs
    base = import_seq_base(1)
    assert lake(data) == [
        ("A", T0, 1.0, base),
        ("A", T0 + 60_000, 3.0, base + 2),
        ("B", T0, 2.0, base + 1),
        ("B", T0 + 1, 4.0, base + 3),
    ]
    assert json.loads((data / IMPORTS_FILE).read_text())["next_import"] == 2


def test_other_files_after_an_interruption_get_a_new_number(tmp_path: Path) -> None:
    data = tmp_path / "data"
    blocker = data / TICKS_DIR / "ticker=B"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way")
    with pytest.raises(ImportWriteError):
        run(data, csv(tmp_path / "1.csv", f"ticker,time,price\nA,{T0},1\nB,{T0},2\n"), threads=1)
    stats = run(data, csv(tmp_path / "2.csv", f"ticker,time,price\nA,{T0},7\n"))
    assert stats.import_number == 2  # import 1's seqs may be in the lake: never reused
    assert [(price, seq) for _, _, price, seq in lake(data)] == [
        (1.0, import_seq_base(1)),
        (7.0, import_seq_base(2)),
    ]


def test_batches_flushes_and_pieces_do_not_change_the_result(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    n = 240
    table = pa.table(
        {
            "ticker": rng.choice(["A", "B", "C"], n),
            "time": (T0 + rng.integers(0, 4 * 60_000, n) // 500 * 500).astype(np.int64),
            "price": rng.integers(1, 50, n).astype(np.float64),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    run(tmp_path / "one", tmp_path / "t.parquet")
    progress: list[ImportProgress] = []
    small = ImportOptions(batch_rows=7, flush_rows=60, piece_rows=5, threads=3)
    stats = import_files(
        tmp_path / "many", [tmp_path / "t.parquet"], NOW_US, small, progress.append
    )
    assert lake(tmp_path / "many") == lake(tmp_path / "one")
    assert stats.ticks_added + stats.duplicates == n
    writes = [p.rows for p in progress if p.phase == "write"]
    assert writes == sorted(writes) and writes[-1] == n
    assert [p.rows for p in progress if p.phase == "validate"][-1] == n


# --- bad input: nothing written --------------------------------------------------------


def test_bad_rows_write_nothing_and_name_each_row(tmp_path: Path) -> None:
    good = csv(tmp_path / "good.csv", f"ticker,time,price\nA,{T0},1\n")
    bad = csv(
        tmp_path / "bad.csv",
        f"""
ticker,time,price,market_hours
A,{T0},1,REGULAR_MARKET
../x,{T0},1,
A,{T0},,
A,yesterday,1,
A,{T0},1,LUNCH_BREAK
A,{T0},NaN,
A,2026-02-30T10:00:00Z,1,
A,1700000000,1,
,{T0},1,
A,{T0},1e39,
""",
    )
    with pytest.raises(ImportRejectedError) as caught:
        run(tmp_path / "data", good, bad)
    err = caught.value
    assert err.bad_row_count == 9 and err.problems == []
    assert [(b.path.name, b.row) for b in err.bad_rows] == [("bad.csv", r) for r in range(2, 11)]
    reasons = [b.reason for b in err.bad_rows]
    assert "contains '/'" in reasons[0]
    assert reasons[1] == "price missing"
    assert "'yesterday'" in reasons[2]
    assert "'LUNCH_BREAK' is not one of" in reasons[3] and "REGULAR_MARKET" in reasons[3]
    assert "nan" in reasons[4] and "finite" in reasons[4]
    assert "2026-02-30" in reasons[5]
    assert "1700000000" in reasons[6] and "1990" in reasons[6]  # epoch seconds, not ms
    assert reasons[7] == "ticker missing"
    assert reasons[8] == "price '1e39' is not a number (or does not fit)"
    assert not (tmp_path / "data" / TICKS_DIR).exists()
    assert not (tmp_path / "data" / IMPORTS_FILE).exists()


def test_bad_rows_are_capped_but_all_counted(tmp_path: Path) -> None:
    rows = "".join(f"A,not-a-time-{i},1\n" for i in range(45))
    source = csv(tmp_path / "t.csv", f"ticker,time,price\nA,{T0},1\n{rows}")
    with pytest.raises(ImportRejectedError) as caught:
        run(tmp_path / "data", source, batch_rows=10, max_reported=20)
    assert caught.value.bad_row_count == 45
    assert [b.row for b in caught.value.bad_rows] == list(range(2, 22))


def test_unknown_columns_refuse_the_file_unless_ignored(tmp_path: Path) -> None:
    source = csv(tmp_path / "t.csv", f"ticker,time,price,Volume,seq\nA,{T0},1,5,9\n")
    with pytest.raises(ImportRejectedError) as caught:
        run(tmp_path / "data", source)
    assert "'Volume', 'seq'" in caught.value.problems[0]
    assert "--ignore-unknown" in caught.value.problems[0]
    stats = run(tmp_path / "data", source, ignore_unknown=True)
    assert stats.ticks_added == 1 and lake(tmp_path / "data")[0][3] == import_seq_base(1)


def test_file_problems_are_listed_together(tmp_path: Path) -> None:
    no_price = csv(tmp_path / "a.csv", f"ticker,time\nA,{T0}\n")
    pq.write_table(
        pa.table({"ticker": ["A"], "time": [T0], "price": [True]}), tmp_path / "b.parquet"
    )
    (tmp_path / "c.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ImportRejectedError) as caught:
        run(tmp_path / "data", no_price, tmp_path / "b.parquet", tmp_path / "c.parquet")
    problems = caught.value.problems
    assert "missing column(s) price" in problems[0]
    assert "'price' has type bool" in problems[1]
    assert "c.parquet: cannot read" in problems[2]


def test_id_column_names_the_ticker(tmp_path: Path) -> None:
    both = csv(tmp_path / "both.csv", f"ticker,id,time,price\nA,A,{T0},1\nA,B,{T0},2\n")
    with pytest.raises(ImportRejectedError) as caught:
        run(tmp_path / "data", both)
    assert [(b.row, b.reason) for b in caught.value.bad_rows] == [
        (2, "id 'B' differs from the row's ticker")
    ]
    only_id = csv(tmp_path / "id.csv", f"id,time,price\nBTC-USD,{T0},1\n")
    run(tmp_path / "data", only_id)
    assert lake(tmp_path / "data") == [("BTC-USD", T0, 1.0, import_seq_base(1))]


def test_compressed_csv(tmp_path: Path) -> None:
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(f"ticker,time,price\nA,{T0},1.25\n".encode()))
    run(tmp_path / "data", path)
    assert lake(tmp_path / "data") == [("A", T0, 1.25, import_seq_base(1))]


def test_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(ImportUsageError, match="no such file"):
        run(tmp_path / "data", tmp_path / "missing.csv")
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(ImportUsageError, match="unsupported file type"):
        run(tmp_path / "data", tmp_path / "t.json")


def test_refuses_while_the_journal_is_locked(tmp_path: Path) -> None:
    source = csv(tmp_path / "t.csv", f"ticker,time,price\nA,{T0},1\n")
    with Journal.open(tmp_path / "data" / "journal"), pytest.raises(DataLockedError):
        run(tmp_path / "data", source)
    assert lake(tmp_path / "data") == []
    assert run(tmp_path / "data", source).ticks_added == 1  # once the lock is free


def test_empty_file_imports_nothing(tmp_path: Path) -> None:
    stats = run(tmp_path / "data", csv(tmp_path / "t.csv", "ticker,time,price\n"))
    assert (stats.rows, stats.import_number) == (0, None)
    assert not (tmp_path / "data" / IMPORTS_FILE).exists()


# --- past days straight into the history tier ------------------------------------------------


def test_past_days_go_straight_to_one_day_file_each(tmp_path: Path) -> None:
    """Days before ``history_before`` become day files (none per minute), exactly the rows
    the minute path would store; a day the minute tier already holds stays there; later
    days stay minute files; importing again adds nothing."""
    data = tmp_path / "data"
    held = csv(tmp_path / "held.csv", "ticker,time,price\nAAPL,2026-11-03T14:30:00Z,99\n")
    run(data, held)  # AAPL's 2026-11-03 is in the minute tier before the big import
    rows = ["ticker,time,price,day_volume"]
    for day in (2, 3, 24):
        for minute in range(3):
            for second in (0, 0, 30):  # a tie on time, and two identical rows
                price = 100 + minute + (0.5 if second else 0)
                rows.append(f"AAPL,2026-11-{day:02d}T14:3{minute}:{second:02d}Z,{price},{minute}")
                rows.append(f"MSFT,2026-11-{day:02d}T14:3{minute}:{second:02d}Z,{price},{minute}")
    source = csv(tmp_path / "t.csv", "\n".join(rows) + "\n")
    before = dt.date(2026, 11, 24)
    stats = run(data, source, history_before=before)
    assert stats.rows == 54 and stats.ticks_added == 36 and stats.duplicates == 18
    days = sorted(p.relative_to(data).as_posix() for p in (data / "history").glob("*/*/*.parquet"))
    assert days == [
        "history/ticker=!empty/date=1970-01-01/part.parquet",
        "history/ticker=AAPL/date=2026-11-02/part.parquet",
        "history/ticker=MSFT/date=2026-11-02/part.parquet",
        "history/ticker=MSFT/date=2026-11-03/part.parquet",
    ]
    assert stats.day_files == 3 and stats.minute_files == 3 + 3 + 3  # AAPL 11-03, both 11-24
    assert not (data / "ticks" / "ticker=MSFT" / "date=2026-11-02").exists()
    assert (data / "ticks" / "ticker=AAPL" / "date=2026-11-03").is_dir()
    on_history = lake(data)
    minute_only = tmp_path / "minutes"
    run(minute_only, held)
    run(minute_only, source)  # the same files through minute files only
    assert on_history == lake(minute_only) and len(on_history) == 37
    again = run(data, source, history_before=before)
    assert again.ticks_added == 0 and again.day_files == 0 and lake(data) == on_history


# --- streamed day merges (memory bounded by the options, not the day) ----------------------


PAST_START_MS = int(dt.datetime(2026, 11, 2, 14, tzinfo=dt.UTC).timestamp()) * 1000


def generated(rng: np.random.Generator, n: int, ticker: str) -> pa.Table:
    """``n`` ticks over 14:00-18:00 of 2026-11-02 in whole seconds (ties on time), few
    distinct values (identical twins at equal times), NaN, -0.0 and 0.0 in ``change``."""
    times = PAST_START_MS + rng.integers(0, 4 * 3600, n) * 1000
    changes = np.array([np.nan, -0.0, 0.0, 1.5], dtype=np.float32)
    return pa.table(
        {
            "ticker": [ticker] * n,
            "time": pa.array(times).cast(pa.timestamp("ms", "UTC")),
            "price": rng.choice([100.0, 100.5, 101.0], n),
            "change": pa.array(rng.choice(changes, n)),
            "day_volume": rng.integers(1, 3, n),
            "received_at": pa.array(times * 1000 + 5).cast(pa.timestamp("us", "UTC")),
        }
    )


def as_lake(table: pa.Table, seqs: np.ndarray) -> pa.Table:
    """``generated`` rows as lake rows with ``seqs``, deduplicated (a valid day file)."""
    columns = {"id": table["ticker"], "seq": pa.array(seqs, pa.int64())}
    columns |= {n: table[n] for n in ("time", "price", "change", "day_volume", "received_at")}
    n = table.num_rows
    arrays = [
        columns[f.name].cast(f.type) if f.name in columns else pa.nulls(n, f.type)
        for f in LAKE_SCHEMA
    ]
    rows = pa.Table.from_arrays(arrays, schema=LAKE_SCHEMA)
    return merge_ticks(LAKE_SCHEMA.empty_table(), rows)[0]


def bits(table: pa.Table) -> pa.Table:
    """``table`` with floats as their bit patterns: NaN equals the same NaN, -0.0 not 0.0."""
    out = table.combine_chunks()
    for i, f in enumerate(out.schema):
        if pa.types.is_floating(f.type):
            width = pa.int32() if f.type == pa.float32() else pa.int64()
            out = out.set_column(i, f.name, out[f.name].chunk(0).view(width))
    return out


def test_streamed_day_import_equals_the_whole_table_merge_bit_for_bit(tmp_path: Path) -> None:
    """Out-of-order input with twins inside it, twins of recorded rows (the import's lower
    seq wins), a row an interrupted run of this import left at another time (its seq is
    kept), NaN and -0.0: the streamed merge, spilled into more than ``FAN_IN`` runs and
    merged a few hundred rows at a time, leaves the same rows in the same row groups."""
    rng = np.random.default_rng(7)
    base = tmp_path / "base"
    recorded = generated(rng, 3000, "AAPL")
    held = as_lake(recorded, np.arange(1, 3001))
    incoming = pa.concat_tables(
        [generated(rng, 3000, "AAPL"), generated(rng, 3000, "MSFT"), recorded.slice(0, 400)]
    )
    incoming = pa.concat_tables([incoming, incoming.take(rng.integers(0, 6_400, 600))])
    source = tmp_path / "in.parquet"
    incoming = incoming.take(rng.permutation(incoming.num_rows))
    pq.write_table(incoming, source)
    first_aapl = incoming["ticker"].to_pylist().index("AAPL")  # the seq its row 1 will get
    left = as_lake(generated(rng, 1, "AAPL"), np.array([import_seq_base(1) + first_aapl]))
    left = left.set_column(1, "price", pa.array([555.0], pa.float32()))  # not the import's row
    write_day_atomically(pa.concat_tables([held, left]), history_file(base, "AAPL", PAST))
    before = dt.date(2026, 11, 24)
    whole, streamed = tmp_path / "whole", tmp_path / "streamed"
    shutil.copytree(base, whole)
    shutil.copytree(base, streamed)
    expected = run(whole, source, history_before=before, stream_days=False)
    small = {"batch_rows": 300, "spill_rows": 300, "merge_rows": 1024}
    got = run(streamed, source, history_before=before, **small)
    fields = ("rows", "ticks_added", "duplicates", "day_files", "minute_files")
    assert [getattr(got, f) for f in fields] == [getattr(expected, f) for f in fields]
    assert expected.duplicates > 600 and expected.day_files == 2
    for ticker in ("AAPL", "MSFT"):
        want, have = (pq.ParquetFile(history_file(d, ticker, PAST)) for d in (whole, streamed))
        groups = [want.metadata.row_group(g).num_rows for g in range(want.num_row_groups)]
        assert groups == [have.metadata.row_group(g).num_rows for g in range(have.num_row_groups)]
        assert len(groups) >= 2
        assert bits(have.read()).equals(bits(want.read()))
    day = pq.read_table(history_file(streamed, "AAPL", PAST))
    assert import_seq_base(1) + first_aapl in day["seq"].to_pylist()  # the left-over row stays
    assert 555.0 in day["price"].to_pylist()
    assert pc.sum(pc.greater(day["seq"], 0)).as_py() < held.num_rows  # replaced
    assert lake(streamed) == lake(whole)
    assert not [p for p in (streamed / "history").iterdir() if p.name.startswith(".import-run")]


def test_streamed_reimport_of_a_day_rewrites_nothing(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    source = tmp_path / "in.parquet"
    pq.write_table(generated(rng, 2000, "AAPL"), source)
    data, before = tmp_path / "data", dt.date(2026, 11, 24)
    first = run(data, source, history_before=before, spill_rows=500)
    path = history_file(data, "AAPL", PAST)
    stamp = path.stat().st_mtime_ns, path.stat().st_ino
    state = json.loads((data / IMPORTS_FILE).read_bytes())
    state["next_import"] = 1  # as if the first run had been interrupted: the same seqs
    (data / IMPORTS_FILE).write_text(json.dumps(state))
    again = run(data, source, history_before=before, spill_rows=500)
    assert first.ticks_added > 0 and first.day_files == 1
    assert (again.ticks_added, again.day_files, again.duplicates) == (0, 0, 2000)
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == stamp
