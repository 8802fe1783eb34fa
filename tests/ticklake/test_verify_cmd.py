"""``ticklake verify`` as users run it: the short report, ``--format json``, exit status 0
only when clean, ``--repair`` refused while a recorder holds the writer's lock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lake.datadir import WriterLock, journal_dir
from lake.utc import DAY_MS
from recorder.journal import Journal
from recorder.replay import replay
from tests.kit.frames import pricing, v2
from tests.kit.lake import lake_files
from tests.kit.times import OPEN_MS
from ticklake.cli import main


@pytest.fixture(autouse=True)
def no_checkout_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no ./ticklake.toml of the checkout


def recorded(data: Path, frames: int = 120) -> None:
    with Journal.open(journal_dir(data)) as journal:
        for seq in range(1, frames + 1):
            journal.append(v2(pricing("AAPL", OPEN_MS + seq * 1000)), (OPEN_MS + seq) * 1000)
    replay(data, OPEN_MS + DAY_MS)


def test_a_clean_data_directory_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    recorded(data)
    assert main(["verify", "--data", str(data)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "journal: 1 segments, 120 records read, checksums verified"
    assert lines[1] == "lake files: 4 minute, 1 history read"  # 2 minutes, 2 placeholders
    assert lines[2] == (
        "ticks: 120 journaled ticks compared (frames up to seq 120): 0 missing, 0 twice, 0 differ"
    )
    assert lines[-1] == "verify: clean"


def test_a_deleted_minute_file_exits_1_and_repair_brings_it_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    recorded(data)
    gone = sorted(lake_files(data).values())[0]
    gone.unlink()
    assert main(["verify", "--data", str(data), "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["clean"] is False and report["problems"] == ["ticks: 59 missing"]
    assert report["ticks"]["missing"] == 59 and len(report["ticks"]["examples"]["missing"]) == 5
    assert main(["verify", "--data", str(data), "--repair"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2].startswith("repaired: re-applied 120 journaled frames (59 ticks added")
    assert out[-1] == "verify: clean" and gone.is_file()


def test_unreadable_files_are_named_and_repair_needs_the_lock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    recorded(data)
    damaged = sorted(lake_files(data).values())[-1]
    raw = bytearray(damaged.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    raw[4:40] = bytes(36)  # the first page's header and data: no longer decodes
    damaged.write_bytes(bytes(raw))
    assert main(["verify", "--data", str(data)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith(f"lake files: 3 minute, 1 history read; 1 unreadable: {damaged} (")
    assert lines[1].isprintable(), "a reason's control characters are escaped"
    assert lines[2] == "ticks: not compared (an unreadable lake file stops the readers' SQL)"
    assert lines[-1] == "verify: 1 problems: lake: 1 unreadable files"
    with WriterLock.acquire(journal_dir(data)):
        assert main(["verify", "--data", str(data), "--repair"]) == 2
    assert "is open for writing by process" in capsys.readouterr().err
    assert main(["verify", "--data", str(data), "--repair"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "verify: clean"


def test_no_data_directory_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "--data", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err == f"ticklake verify: no data directory {tmp_path / 'none'}\n"
