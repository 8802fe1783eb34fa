"""The object store seen from the commands and the Python API (moto's S3 server on
127.0.0.1): a data directory whose days were offloaded, and a machine with only the URL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ticklake
from lake.offload import offload_days
from lake.remote import bind_remote
from lake.utc import day_start_ms
from tests.kit.lake import three_days
from tests.kit.times import DAY3, LATER
from ticklake.cli import main


@pytest.fixture
def offloaded(tmp_path: Path, s3_url: str) -> tuple[Path, list[tuple[int, int]]]:
    """A data directory whose DAY1 and DAY2 are in the object store only (local copies
    removed); and AAPL's (seq, time ms) before the offload."""
    root = tmp_path / "data"
    three_days(root)
    before = ticklake.open(root).ticks("AAPL")
    rows = list(
        zip(
            before["seq"].to_pylist(),
            [t.timestamp() for t in before["time"].to_pylist()],
            strict=True,
        )
    )
    remote = bind_remote(root, s3_url)
    offload_days(root, remote, LATER, after_days=1, grace=0)
    offload_days(root, remote, LATER, after_days=1, grace=0)
    assert not any(root.glob("history/ticker=AAPL/date=*/part.parquet"))
    return root, [(seq, int(t * 1000)) for seq, t in rows]


def pairs(table: object) -> list[tuple[int, int]]:
    import pyarrow as pa

    assert isinstance(table, pa.Table)
    seqs, times = table["seq"].to_pylist(), table["time"].to_pylist()
    return [(s, int(t.timestamp() * 1000)) for s, t in zip(seqs, times, strict=True)]


def test_the_api_reads_offloaded_days_from_the_data_directory(
    offloaded: tuple[Path, list[tuple[int, int]]],
) -> None:
    root, before = offloaded
    assert pairs(ticklake.open(root).ticks("AAPL")) == before
    day = ticklake.open(root).ticks("AAPL", "2024-01-02", "2024-01-03")
    assert pairs(day) == [p for p in before if p[1] < day_start_ms(DAY3) - 86_400_000]


def test_a_machine_with_only_the_url_reads_every_compacted_tick(
    offloaded: tuple[Path, list[tuple[int, int]]], s3_url: str, tmp_path: Path
) -> None:
    _, before = offloaded
    lake = ticklake.open(tmp_path / "elsewhere", lake_url=s3_url)
    assert pairs(lake.ticks("AAPL")) == [p for p in before if p[1] < day_start_ms(DAY3)]
    with pytest.raises(ValueError, match="holds no ticklake lake yet"):
        ticklake.open(tmp_path / "third", lake_url=s3_url + "-nothing")


def test_status_shows_the_object_store_as_a_tier(
    offloaded: tuple[Path, list[tuple[int, int]]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = offloaded
    assert main(["status", "--data", str(root), "--format", "json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    tiers = {t["tier"]: t for t in lines if "tier" in t}
    store = next(t for name, t in tiers.items() if name.startswith("object store s3://"))
    assert (store["files"], store["rows"], store["rows_exact"]) == (4, 4 * 4 * 6, True)
    assert tiers["history"]["files"] == 0


def test_a_url_the_data_directory_is_not_bound_to_is_refused(
    offloaded: tuple[Path, list[tuple[int, int]]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = offloaded
    assert main(["status", "--data", str(root), "--lake-url", "s3://other-bucket/x"]) == 2
    assert "is bound to the lake URL" in capsys.readouterr().err
