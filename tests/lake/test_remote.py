"""The object-store tier against a real S3 API (moto's server on 127.0.0.1): offload by
maintenance, reads through every reader, exactly once across a crash between upload and
local removal, and a reader that has only the URL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from lake.failpoints import ENV as FAILPOINT
from lake.index import LakeIndex
from lake.layout import duckdb_read_sql, duckdb_ticker_sql, history_file, remote_lake
from lake.minutes import list_minutes, read_minutes, write_minutes
from lake.offload import MARKER, DayOffloadedError, day_source, offload_days
from lake.remote import RemoteDay, RemoteError, RemoteLake, bind_remote, remote_of
from lake.utc import DAY_MS, day_start_ms
from tests.kit.lake import three_days
from tests.kit.ticks import sessions_of
from tests.kit.times import DAY1, DAY2, DAY3, LATER

GRACE = 600.0
Row = tuple[str, int, int]


def seen(root: Path, remote: RemoteLake | None = None, where: str = "true") -> list[Row]:
    """(ticker, seq, time) of every tick the whole-lake expression gives, sorted."""
    with duckdb.connect() as con:
        store = remote_lake(root, remote)
        if store is not None:
            store.register(con)
        sql = f"SELECT ticker, seq, epoch_ms(time) FROM {duckdb_read_sql(root, remote=remote)}"
        return sorted(con.execute(f"{sql} WHERE {where}").fetchall())


def seen_of(
    root: Path, symbol: str, day: str = "NULL", remote: RemoteLake | None = None
) -> list[Row]:
    """The same through one ticker's expression (the ``ticks_of`` macro's)."""
    with duckdb.connect() as con:
        store = remote_lake(root, remote)
        if store is not None:
            store.register(con)
        one = duckdb_ticker_sql(root, f"'{symbol}'", day, remote=remote)
        assert one is not None
        return sorted(con.execute(f"SELECT ticker, seq, epoch_ms(time) FROM {one}").fetchall())


@pytest.fixture
def lake(tmp_path: Path) -> tuple[Path, list[Row]]:
    """A data directory with AAPL and MSFT on DAY1-DAY3, DAY1 and DAY2 compacted; and every
    tick it holds, as ``seen`` gives them."""
    root = tmp_path / "data"
    three_days(root)
    return root, seen(root)


def test_offload_uploads_verifies_and_removes_local_copies_after_the_grace(
    lake: tuple[Path, list[Row]], s3_url: str
) -> None:
    root, before = lake
    remote = bind_remote(root, s3_url)
    done = offload_days(root, remote, LATER, after_days=1, grace=GRACE)
    assert (done.days_uploaded, done.days_removed, done.failed) == (4, 0, [])
    assert done.days_waiting == 0
    assert sorted((v, d) for v, d, _ in remote.days()) == [
        (t, d) for t in ("AAPL", "MSFT") for d in (DAY1, DAY2)
    ]
    assert seen(root) == before  # both copies exist: each day once, from the object store
    assert history_file(root, "AAPL", DAY1).is_file()

    waiting = offload_days(root, remote, LATER + GRACE / 2, after_days=1, grace=GRACE)
    assert (waiting.days_uploaded, waiting.days_removed, waiting.days_waiting) == (0, 0, 4)
    later = offload_days(root, remote, LATER + GRACE, after_days=1, grace=GRACE)
    assert (later.days_uploaded, later.days_removed) == (0, 4)
    assert not history_file(root, "AAPL", DAY1).exists()
    assert (history_file(root, "AAPL", DAY1).parent / MARKER).is_file()
    assert seen(root) == before
    assert seen_of(root, "AAPL") == [r for r in before if r[0] == "AAPL"]
    assert seen_of(root, "MSFT", "DATE '2024-01-03'") == [
        r for r in before if r[0] == "MSFT" and r[2] // DAY_MS == day_start_ms(DAY2) // DAY_MS
    ]


def test_python_readers_fetch_offloaded_days(lake: tuple[Path, list[Row]], s3_url: str) -> None:
    root, _ = lake
    local = read_minutes(root, "AAPL", list_minutes(root, "AAPL", DAY1))
    remote = bind_remote(root, s3_url)
    offload_days(root, remote, LATER, after_days=1, grace=0)
    offload_days(root, remote, LATER, after_days=1, grace=0)  # removes the local copies
    assert not history_file(root, "AAPL", DAY1).exists()
    source = day_source(root, "AAPL", DAY1)
    assert isinstance(source, RemoteDay) and str(source).startswith(s3_url)
    minutes = list_minutes(root, "AAPL", DAY1)
    assert len(minutes) == 4
    assert read_minutes(root, "AAPL", minutes).equals(local)
    index = LakeIndex(root)
    assert index.minutes("AAPL", day_start_ms(DAY1), day_start_ms(DAY1) + DAY_MS) == minutes
    assert isinstance(index.day_file("AAPL", day_start_ms(DAY1) // DAY_MS), RemoteDay)


def test_a_write_into_an_offloaded_day_is_refused_and_the_rest_is_written(
    lake: tuple[Path, list[Row]], s3_url: str
) -> None:
    root, before = lake
    offload_days(root, bind_remote(root, s3_url), LATER, after_days=1, grace=GRACE)
    late = sessions_of(["AAPL"], days=1, minutes=1, per=1)  # on DAY1
    with pytest.raises(DayOffloadedError, match="AAPL 2024-01-02 is in the object store"):
        write_minutes(
            root,
            late.set_column(
                late.schema.get_field_index("seq"), "seq", pa.array([10_000], pa.int64())
            ),
        )
    assert seen(root) == before


def test_a_crash_between_upload_and_marker_leaves_each_day_visible_once(
    lake: tuple[Path, list[Row]], s3_url: str
) -> None:
    """SIGKILL right after the first object is written (marker still 'uploading'), then
    after it is verified (local copy still there): each time every tick is seen exactly
    once, and the next run finishes without uploading a day twice."""
    root, before = lake
    for point in ("offload_uploaded", "offload_verified"):
        proc = maintain(root, s3_url, {FAILPOINT: point})
        assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
        assert seen(root) == before
        assert len(set(seen(root))) == len(before)
    finished = maintain(root, s3_url)
    assert finished.returncode == 0, finished.stderr.decode()
    record = json.loads((root / "state" / "maintenance.json").read_text())
    # the first kill came right after AAPL's DAY1 upload, the second right after its
    # verification: that day is never uploaded again, the other three once
    assert record["days_offloaded"] == 3
    assert seen(root) == before
    again = maintain(root, s3_url)
    assert again.returncode == 0, again.stderr.decode()
    assert not any((root / "history").glob("ticker=AAPL/date=*/part.parquet"))
    assert seen(root) == before


def maintain(
    root: Path, url: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``ticklake maintain`` offloading every compacted day at once, as its own process."""
    return subprocess.run(
        [sys.executable, "-m", "ticklake.cli", "maintain", "--data", str(root),
         "--lake-url", url, "--offload-after-days", "1", "--compaction-grace", "0"],
        env={**os.environ, **(env or {})},
        capture_output=True,
        timeout=60,
    )  # fmt: skip


def test_a_reader_with_only_the_url_sees_every_offloaded_tick(
    lake: tuple[Path, list[Row]], s3_url: str, tmp_path: Path
) -> None:
    root, before = lake
    offload_days(root, bind_remote(root, s3_url), LATER, after_days=1, grace=0)
    elsewhere = tmp_path / "reader"
    elsewhere.mkdir()
    bind_remote(elsewhere, s3_url, create=False)
    compacted = [r for r in before if r[2] < day_start_ms(DAY3)]
    assert seen(elsewhere) == compacted
    assert seen_of(elsewhere, "MSFT") == [r for r in compacted if r[0] == "MSFT"]
    index = LakeIndex(elsewhere, remote_of(elsewhere))
    assert index.days() == {t: {day_start_ms(d) // DAY_MS for d in (DAY1, DAY2)}
                            for t in ("AAPL", "MSFT")}  # fmt: skip
    assert read_minutes(elsewhere, "AAPL", list_minutes(root, "AAPL", DAY1), None,
                        remote_of(elsewhere)).num_rows == 4 * 6  # fmt: skip


def test_an_object_with_other_bytes_is_never_overwritten(
    lake: tuple[Path, list[Row]], s3_url: str, tmp_path: Path
) -> None:
    root, _ = lake
    remote = bind_remote(root, s3_url)
    key = remote.day_key("AAPL", DAY1)
    with remote.filesystem.open_output_stream(key) as sink:
        sink.write(b"not the same bytes")
    done = offload_days(root, remote, LATER, after_days=1, grace=0)
    assert done.days_uploaded == 3
    assert len(done.failed) == 1 and "AAPL 2024-01-02" in done.failed[0]
    assert "other bytes" in done.failed[0]
    assert history_file(root, "AAPL", DAY1).is_file()


def test_one_url_per_data_directory_and_bad_urls_are_refused(tmp_path: Path, s3_url: str) -> None:
    bind_remote(tmp_path, s3_url)
    with pytest.raises(RemoteError, match="is bound to the lake URL"):
        bind_remote(tmp_path, s3_url + "2")
    for bad in ("http://x/y", "s3://", "file://relative", "s3://b/p?x=1", "s3://b/*"):
        with pytest.raises(RemoteError, match="lake URL"):
            RemoteLake.parse(bad)
    empty = tmp_path / "other"
    empty.mkdir()
    with pytest.raises(RemoteError, match="holds no ticklake lake yet"):
        bind_remote(empty, s3_url.replace("/lake", "/none"), create=False)


def test_days_not_yet_old_enough_or_still_compacting_stay_local(
    tmp_path: Path, s3_url: str
) -> None:
    root = tmp_path / "data"
    three_days(root)
    remote = bind_remote(root, s3_url)
    now = (day_start_ms(DAY2) + DAY_MS) / 1000 + 3 * 86400  # DAY2 ended 3 days ago
    done = offload_days(root, remote, now, after_days=3.5, grace=0)
    assert done.days_uploaded == 2  # DAY1 only, both tickers
    assert [d for _, d, _ in remote.days()] == [DAY1, DAY1]
    assert history_file(root, "AAPL", DAY2).is_file()
