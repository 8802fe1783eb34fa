"""lake.deltas: the open edge of the lake, folded into minute files, each row read once."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lake import deltas as deltas_module
from lake.deltas import (
    Delta,
    Fold,
    designated_to_files,
    latest_fold,
    list_deltas,
    prune,
    publish_fold,
    read_delta,
    ticker_ranges,
    write_delta,
)
from lake.layout import duckdb_read_sql, duckdb_ticker_sql
from lake.minutes import write_minutes
from lake.utc import MINUTE_MS
from tests.kit.ticks import ticks
from tests.kit.times import T0


def seen(root: Path, symbol: str | None = None) -> list[tuple[str, int, float]]:
    """(ticker, seq, price) of every row a DuckDB reader sees, by seq."""
    source = duckdb_read_sql(root) if symbol is None else duckdb_ticker_sql(root, f"'{symbol}'")
    con = duckdb.connect()
    try:
        rows = con.execute(f"SELECT ticker, seq, price FROM {source} ORDER BY seq").fetchall()
    finally:
        con.close()
    return [(t, int(s), float(p)) for t, s, p in rows]


def test_a_fold_marker_designates_each_row_to_one_place() -> None:
    fold = Fold(3, base_seq=10, seq=20, watermark_ms=T0)
    seqs = np.array([5, 10, 11, 20, 20, 21, -4], dtype=np.int64)
    times = np.array([T0 + 9e6, T0, T0 - 1, T0 - 1, T0, T0 - 1, T0 + 1], dtype=np.int64)
    assert designated_to_files(fold, seqs, times).tolist() == [
        True,  # at or below base_seq: files, whatever its time
        True,
        True,  # folded: seq <= seq and before the watermark
        True,
        False,  # at the watermark: the minute is still open
        False,  # above seq: flushed after the fold
        True,  # imported rows (seq < 1) live in files
    ]
    assert designated_to_files(None, seqs, times).all()


def test_markers_round_trip_and_the_newest_wins(tmp_path: Path) -> None:
    assert latest_fold(tmp_path) is None
    publish_fold(tmp_path, Fold(1, 0, 5, T0, 100))
    publish_fold(tmp_path, Fold(2, 5, 9, T0 + MINUTE_MS, 200))
    assert latest_fold(tmp_path) == Fold(2, 5, 9, T0 + MINUTE_MS, 200)


def test_readers_see_files_and_deltas_each_row_once(tmp_path: Path) -> None:
    sealed = ticks("AAPL", [T0 + 1_000, T0 + 2_000], [1, 2], [1.0, 2.0])
    write_minutes(tmp_path, sealed)  # the fold wrote minute T0 ...
    later = ticks("AAPL", [T0 + MINUTE_MS + 1_000], [3], [3.0])
    other = ticks("MSFT", [T0 + MINUTE_MS + 2_000], [4], [4.0])
    write_delta(tmp_path, pa.concat_tables([sealed, later, other]))  # ... which is still here
    publish_fold(tmp_path, Fold(1, 0, 2, T0 + MINUTE_MS))
    assert seen(tmp_path) == [
        ("AAPL", 1, 1.0),
        ("AAPL", 2, 2.0),
        ("AAPL", 3, 3.0),
        ("MSFT", 4, 4.0),
    ]
    assert [s for _, s, _ in seen(tmp_path, "AAPL")] == [1, 2, 3]
    assert [s for _, s, _ in seen(tmp_path, "MSFT")] == [4]


def test_a_fold_published_while_a_reader_reads_changes_nothing_it_sees(tmp_path: Path) -> None:
    """The rows of the next minute are written into files before their marker appears:
    until it does they are still served from the deltas, never from both."""
    rows = ticks("AAPL", [T0 + 1_000, T0 + MINUTE_MS + 1_000], [1, 2], [1.0, 2.0])
    write_delta(tmp_path, rows)
    publish_fold(tmp_path, Fold(1, 0, 2, T0))
    assert [s for _, s, _ in seen(tmp_path)] == [1, 2]
    write_minutes(tmp_path, rows.slice(0, 1))  # the fold is half done: file written, no marker
    assert [s for _, s, _ in seen(tmp_path)] == [1, 2]
    publish_fold(tmp_path, Fold(2, 0, 2, T0 + MINUTE_MS))
    assert [s for _, s, _ in seen(tmp_path)] == [1, 2]


def test_deltas_holding_the_same_tick_twice_show_it_once(tmp_path: Path) -> None:
    """A restart re-applies the journal after the marker's seq (the same seq in two deltas);
    a reconnect re-sends a snapshot (same content, a higher seq): one row each."""
    first = ticks("AAPL", [T0 + 1_000, T0 + 2_000], [1, 2], [1.0, 2.0])
    again = ticks("AAPL", [T0 + 1_000, T0 + 2_000, T0 + 2_000], [1, 2, 3], [1.0, 2.0, 2.0])
    write_delta(tmp_path, first)
    write_delta(tmp_path, again)
    publish_fold(tmp_path, Fold(1, 0, 0, T0))
    assert [s for _, s, _ in seen(tmp_path)] == [1, 2]


def test_without_a_marker_the_deltas_are_not_read(tmp_path: Path) -> None:
    write_minutes(tmp_path, ticks("AAPL", [T0 + 1_000], [1]))
    write_delta(tmp_path, ticks("AAPL", [T0 + 1_000], [1]))
    assert [s for _, s, _ in seen(tmp_path)] == [1]


def test_prune_waits_for_the_grace_period_and_keeps_the_newest_marker(tmp_path: Path) -> None:
    folded = write_delta(tmp_path, ticks("AAPL", [T0 + 1_000], [1]))
    open_ = write_delta(tmp_path, ticks("AAPL", [T0 + MINUTE_MS + 1_000], [2]))
    assert isinstance(folded, Delta) and isinstance(open_, Delta)
    publish_fold(tmp_path, Fold(1, 0, 0, T0, published_ms=T0))
    publish_fold(tmp_path, Fold(2, 0, 2, T0 + MINUTE_MS, published_ms=T0 + 70_000))
    assert prune(tmp_path, T0 + 100_000, grace_s=600) == 0, "inside the grace period"
    assert prune(tmp_path, T0 + 70_000 + 600_000, grace_s=600) == 2  # the delta, the old marker
    assert [d.path for d in list_deltas(tmp_path)] == [open_.path]
    assert latest_fold(tmp_path) == Fold(2, 0, 2, T0 + MINUTE_MS, T0 + 70_000)
    assert prune(tmp_path, T0 + 10 * 600_000, grace_s=600) == 0, "the newest marker stays"


@pytest.mark.parametrize("rows", [0, 3])
def test_a_delta_is_named_by_its_seqs_and_newest_time(tmp_path: Path, rows: int) -> None:
    table = ticks("AAPL", [T0 + i * 1_000 for i in range(rows)], range(7, 7 + rows))
    delta = write_delta(tmp_path, table)
    if rows == 0:
        assert delta is None and list_deltas(tmp_path) == []
        return
    assert delta is not None
    assert (delta.first_seq, delta.last_seq, delta.max_time_ms) == (7, 9, T0 + 2_000)
    listed = list_deltas(tmp_path)
    assert [(d.path, d.first_seq, d.last_seq, d.max_time_ms) for d in listed] == [
        (delta.path, 7, 9, T0 + 2_000)
    ]


def test_ticker_ranges_split_the_rows_without_splitting_a_ticker(tmp_path: Path) -> None:
    names = ["AAPL", "BRK-B", "EURUSD=X", "MSFT", "ZZ", "^GSPC", "€X"]  # Arrow's byte order
    deltas = []
    for flush in range(3):
        parts = [ticks(n, [T0 + flush * 1_000 + i for i in range(4)], range(4)) for n in names]
        table = pa.concat_tables(parts)
        seqs = pa.array(np.arange(len(table)) + 1 + flush * 1_000, pa.int64())
        delta = write_delta(
            tmp_path, table.set_column(table.schema.get_field_index("seq"), "seq", seqs)
        )
        assert delta is not None
        deltas.append(delta)
    assert ticker_ranges(deltas, 84) == [None], "all 84 rows fit in one range"

    ranges = ticker_ranges(deltas, 30)
    assert len(ranges) > 1 and None not in ranges
    whole = pa.concat_tables([read_delta(d) for d in deltas])
    pieces = [pa.concat_tables([read_delta(d.only(r)) for d in deltas]) for r in ranges]
    per_range = [sorted(set(p["id"].to_pylist())) for p in pieces]
    assert sorted(n for ids in per_range for n in ids) == sorted(names), "each ticker once"
    assert all(p.num_rows <= 30 + 12 for p in pieces), "about max_rows, a ticker at most over"
    assert sorted(pa.concat_tables(pieces)["seq"].to_pylist()) == sorted(whole["seq"].to_pylist())


def test_a_range_of_tickers_reads_only_its_row_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deltas_module, "ROW_GROUP_ROWS", 8)
    names = ["AAPL", "BRK-B", "EURUSD=X", "MSFT", "ZZ", "^GSPC", "€X"]
    table = pa.concat_tables([ticks(n, [T0 + i for i in range(8)], range(8)) for n in names])
    table = table.set_column(
        table.schema.get_field_index("seq"), "seq", pa.array(np.arange(len(table)) + 1)
    )
    delta = write_delta(tmp_path, table)
    assert delta is not None
    metadata = pq.read_metadata(delta.path)
    assert metadata.num_row_groups == len(names), "sorted by ticker, 8 rows a group"

    reads: list[list[int]] = []
    original = pq.ParquetFile.read_row_groups

    def counted(self: pq.ParquetFile, groups: list[int], **kwargs: object) -> pa.Table:
        reads.append(list(groups))
        return original(self, groups, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", counted)
    part = read_delta(delta.only(("BRK-B", "MSFT")))
    assert sorted(set(part["id"].to_pylist())) == ["BRK-B", "EURUSD=X", "MSFT"]
    assert part.num_rows == 24
    assert reads == [[1, 2, 3]], "only the groups whose tickers fall in the range"
