"""``ticklake replay``: the journal applied to the lake again, into a fresh directory or into
the live lake after losing files, exactly as live recording wrote it."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from lake.layout import duckdb_read_sql, parse_minute_dir
from lake.schema import LAKE_SCHEMA
from lake.seal import SealState
from lake.utc import MINUTE_MS
from tests.kit.lake import lake_files, lake_table, read_quarantine, to_legacy
from tests.kit.recorder import CRYPTO, assert_lake_is_journal, record, recorder_config
from ticklake.cli import main
from ticklake.simulator import SimulatorConfig


def test_replay_rebuilds_the_live_lake_exactly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, rebuilt = tmp_path / "data", tmp_path / "rebuilt"
    sim = SimulatorConfig(rate=20, seed=22, duplicate_rate=0.1, garbage_rate=0.05, late_rate=0.3)
    record(recorder_config(data, CRYPTO), sim, 2.0)
    live, seen = lake_files(data), lake_table(data)
    assert len(live) >= 3 and read_quarantine(data)
    in_files = pa.concat_tables([pq.read_table(p, columns=["seq"]) for p in live.values()])
    edge = seen.filter(pc.invert(pc.is_in(seen["seq"], value_set=in_files["seq"])))
    in_deltas = edge.num_rows
    assert in_deltas > 0, "the open minutes are in deltas: the fold has not sealed them"

    # 1. Into a new directory: every tick in files, each identical in every column.
    assert main(["replay", "--data", str(data), "--into", str(rebuilt)]) == 0
    assert f"into {rebuilt}" in capsys.readouterr().out
    assert lake_table(rebuilt).equals(seen)
    assert set(live) < set(lake_files(rebuilt))
    for name, path in live.items():  # a sealed file gains only its late ticks, still in deltas
        mine, theirs = pq.read_table(path), pq.read_table(rebuilt / name)
        assert theirs.filter(pc.is_in(theirs["seq"], value_set=mine["seq"])).equals(mine), name
    assert read_quarantine(rebuilt) == read_quarantine(data)

    # 2. Into the live lake after losing some files: exactly those come back, and the
    # deltas' ticks join their minute files; files that lost nothing are left alone.
    tables = {name: pq.read_table(path) for name, path in live.items()}
    lost = sorted(live)[::2]
    kept = {name: os.stat(live[name]).st_ino for name in live if name not in lost}
    for name in lost:
        live[name].unlink()
    seal = SealState.from_json((data / "state" / "seal.json").read_bytes())
    quarantine = read_quarantine(data)
    assert main(["replay", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert f"{sum(tables[name].num_rows for name in lost) + in_deltas} ticks added" in out
    assert set(lake_files(data)) == set(lake_files(rebuilt))
    for name, path in lake_files(data).items():
        assert pq.read_table(path).equals(pq.read_table(rebuilt / name)), name
        if name in kept and parse_minute_dir(path) not in windows(edge):
            assert os.stat(path).st_ino == kept[name], f"{name} was rewritten"
    assert read_quarantine(data) == quarantine, "replay quarantines nothing twice"
    assert lake_table(data).equals(seen)
    assert_lake_is_journal(data)

    # Restored windows that were already sealed are late again: analytics recomputes them.
    after = SealState.from_json((data / "state" / "seal.json").read_bytes())
    new_late = {(w.ticker, w.window_start_ms) for w in after.late_since(seal.next_late_id - 1)}
    restored = {parse_minute_dir(live[name]) for name in lost} | windows(edge)
    assert new_late == {w for w in restored if seal.is_sealed(w[1])}
    assert new_late, "some restored windows were sealed"


def windows(rows: pa.Table) -> set[tuple[str, int]]:
    """(ticker, minute start) of each row."""
    times = rows["time"].cast(pa.int64()).to_pylist()
    return {(t, m - m % MINUTE_MS) for t, m in zip(rows["id"].to_pylist(), times, strict=True)}


def test_replay_into_rebuilds_a_lake_of_placeholder_columns_with_todays(tmp_path: Path) -> None:
    """Issue 16: a lake recorded while fields 35-45 were ``field_35`` ... placeholders
    (made so by ``to_legacy``) reads with the new columns NULL but for those 36 and 41
    held; ``replay --into`` rebuilds it from the journal with every new column filled."""
    data, rebuilt = tmp_path / "data", tmp_path / "rebuilt"
    record(recorder_config(data, CRYPTO), SimulatorConfig(rate=20, seed=16), 2.0)
    assert to_legacy(data) > 3  # placeholders, minute files and deltas
    assert all("cmc_rank" not in pq.read_schema(p).names for p in data.rglob("*.parquet"))
    assert main(["replay", "--data", str(data), "--into", str(rebuilt)]) == 0
    files = list(lake_files(rebuilt).values())
    assert files and all(pq.read_schema(p).equals(LAKE_SCHEMA) for p in files)
    columns = "ticker, seq, cmc_rank, circulating_supply, indices"
    with duckdb.connect() as con:
        old = con.execute(f"SELECT {columns} FROM {duckdb_read_sql(data)} ORDER BY seq").fetchall()
        new = con.execute(f"SELECT {columns} FROM {duckdb_read_sql(rebuilt)} ORDER BY seq")
        new_rows = new.fetchall()
    assert old == new_rows and len(new_rows) > 10  # cmc_rank read from field_36 in `data`
    ranks = {ticker: rank for ticker, _, rank, _, _ in new_rows}
    assert ranks == {"BTC-USD": 1, "ETH-USD": 2, "SOL-USD": 6}
    assert all(row[4] is None for row in new_rows)  # coins belong to no index


def test_a_data_directory_without_a_journal_is_one_line_and_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./ticklake.toml of the checkout
    data = tmp_path / "data"
    data.mkdir()
    assert main(["replay", "--data", str(data), "--into", str(tmp_path / "fresh")]) == 2
    assert capsys.readouterr().err == f"ticklake replay: no journal in {data}: nothing to replay\n"
    assert list(data.iterdir()) == [] and not (tmp_path / "fresh").exists()
