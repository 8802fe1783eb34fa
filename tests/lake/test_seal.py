"""The seal state: watermark arithmetic, monotonic advance, late ids, trimming, the JSON file,
and a damaged file refused with an error that names it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lake.datadir import SEAL_FILE
from lake.errors import LakeReadError
from lake.seal import LateWindow, SealError, SealState, load_seal, save_seal, watermark_at
from lake.utc import MINUTE_MS, floor_minute_ms
from tests.kit.times import WEDNESDAY_15_MS as T0_MS
from tests.kit.times import WEDNESDAY_15_UTC as T0  # a minute boundary


@pytest.mark.parametrize(
    ("now", "lateness", "expected"),
    [
        (T0, 0.0, T0_MS),  # exactly on a boundary: the minute that just ended is sealed
        (T0 - 0.001, 0.0, T0_MS - MINUTE_MS),
        (T0 + 59.999, 0.0, T0_MS),
        (T0 + 10.0, 10.0, T0_MS),  # end + lateness reached
        (T0 + 9.999, 10.0, T0_MS - MINUTE_MS),  # not yet
        (T0 + 70.0, 10.0, T0_MS + MINUTE_MS),
    ],
)
def test_watermark_at_is_the_minute_boundary_of_now_minus_lateness(
    now: float, lateness: float, expected: int
) -> None:
    assert watermark_at(now, lateness) == expected
    assert expected % MINUTE_MS == 0


def test_floor_minute() -> None:
    assert floor_minute_ms(T0_MS + 59_999) == T0_MS
    assert floor_minute_ms(T0_MS) == T0_MS


def test_advance_never_moves_backwards() -> None:
    seal = SealState()
    assert seal.advance(T0_MS) is True
    assert seal.advance(T0_MS) is False
    assert seal.advance(T0_MS - MINUTE_MS) is False
    assert seal.watermark_ms == T0_MS
    assert seal.advance(T0_MS + MINUTE_MS) is True
    assert seal.watermark_ms == T0_MS + MINUTE_MS


def test_a_window_is_sealed_once_its_end_reaches_the_watermark() -> None:
    seal = SealState(watermark_ms=T0_MS)
    assert seal.is_sealed(T0_MS - MINUTE_MS)
    assert not seal.is_sealed(T0_MS)
    assert not SealState().is_sealed(0)


def test_late_ids_strictly_increase_and_survive_a_trim() -> None:
    seal = SealState(watermark_ms=T0_MS)
    first = seal.mark_late("AMZN", T0_MS - MINUTE_MS, T0_MS + 1)
    second = seal.mark_late("AMZN", T0_MS - MINUTE_MS, T0_MS + 2)  # same window again
    third = seal.mark_late("^GSPC", T0_MS - 2 * MINUTE_MS, T0_MS + 3)
    assert [first.id, second.id, third.id] == [1, 2, 3]
    assert seal.late_since(1) == [second, third]
    assert seal.late_since(3) == []

    seal.trim(now_ms=T0_MS + 2 + 1000, keep_late_ms=1000)  # keeps marks at or after T0+2
    assert [w.id for w in seal.late] == [2, 3]
    seal.trim(now_ms=T0_MS + 10_000, keep_late_ms=1000)
    assert seal.late == []
    assert seal.mark_late("AMZN", T0_MS - MINUTE_MS, T0_MS + 10_000).id == 4, "ids never reused"


def test_json_round_trip_and_file(tmp_path: Path) -> None:
    seal = SealState(watermark_ms=T0_MS, applied_seq=42)
    seal.mark_late("EURUSD=X", T0_MS - MINUTE_MS, T0_MS + 5)
    again = SealState.from_json(seal.to_json())
    assert again == seal
    assert again.late == [LateWindow(1, "EURUSD=X", T0_MS - MINUTE_MS, T0_MS + 5)]

    assert load_seal(tmp_path) == SealState(), "no file: a fresh state"
    save_seal(tmp_path, seal)
    raw = json.loads((tmp_path / SEAL_FILE).read_text())
    assert raw["watermark_ms"] == T0_MS and raw["applied_seq"] == 42 and raw["next_late_id"] == 2
    assert raw["late"] == [
        {
            "id": 1,
            "ticker": "EURUSD=X",
            "window_start_ms": T0_MS - MINUTE_MS,
            "marked_at_ms": T0_MS + 5,
        }
    ]
    assert load_seal(tmp_path) == seal
    assert [p.name for p in (tmp_path / SEAL_FILE).parent.iterdir()] == ["seal.json"]


GOOD = {"watermark_ms": T0_MS, "applied_seq": 7, "next_late_id": 1, "late": []}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "Expecting value"),
        (b'{"watermark_ms": 1713276060000, "applied', "Unterminated string"),  # torn
        (b"{\xc3\x28}", "codec can't decode"),
        (b"[]", "expected the keys watermark_ms, applied_seq, next_late_id, late"),
        (json.dumps({**GOOD, "applied_seq": None}).encode(), "applied_seq is not an integer"),
        (json.dumps({**GOOD, "watermark_ms": True}).encode(), "watermark_ms is not an integer"),
        (json.dumps({**GOOD, "late": {}}).encode(), "late is not a list"),
        (json.dumps({**GOOD, "late": [{"id": 1}]}).encode(), "late entry {'id': 1} lacks"),
        (
            json.dumps(
                {
                    **GOOD,
                    "late": [{"id": "1", "ticker": "A", "window_start_ms": 0, "marked_at_ms": 0}],
                }
            ).encode(),
            "has a value of the wrong type",
        ),
        (json.dumps({k: v for k, v in GOOD.items() if k != "applied_seq"}).encode(), "keys"),
    ],
    ids=["empty", "torn", "not utf-8", "a list", "null", "bool", "late", "entry", "id", "missing"],
)
def test_a_damaged_seal_file_is_an_error_naming_it(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / SEAL_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(SealError) as damaged:
        load_seal(tmp_path)
    message = str(damaged.value)
    assert message.startswith(f"{path} is damaged (") and reason in message
    assert "\n" not in message and "ticklake replay" in message and "backup" in message
    assert path.read_bytes() == content, "left as it was"
    assert isinstance(damaged.value, LakeReadError)


def test_a_well_formed_seal_file_still_loads(tmp_path: Path) -> None:
    path = tmp_path / SEAL_FILE
    path.parent.mkdir(parents=True)
    late = {"id": 3, "ticker": "AMZN", "window_start_ms": T0_MS, "marked_at_ms": T0_MS + 9}
    path.write_text(json.dumps({**GOOD, "next_late_id": 4, "late": [late]}))
    assert load_seal(tmp_path) == SealState(T0_MS, 7, 4, [LateWindow(3, "AMZN", T0_MS, T0_MS + 9)])
