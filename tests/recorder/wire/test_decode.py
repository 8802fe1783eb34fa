"""The decoder against protobuf's own parser, every frame form and every kind of bad input."""

from __future__ import annotations

import base64
import json
import math
import random
import struct

import numpy as np
import pytest

from lake.schema import TICK_FIELDS, PricingData
from recorder.wire.decode import decode_batch, decode_frame
from recorder.wire.frames import MAX_FRAME_CHARS, FrameError, SkippedFrame
from tests.kit.frames import HEARTBEAT, envelope, v1, v2


def random_message(rng: random.Random) -> PricingData:
    msg = PricingData(id=rng.choice(["AMZN", "^GSPC", "EURUSD=X", "BTC-USD", "ÄÖ€", "x" * 40]))
    msg.time = rng.choice([1713276945000, 0, -1, 2**62, -(2**62), rng.randrange(-(10**13), 10**13)])
    for f in TICK_FIELDS:
        if f.number in (1, 3) or rng.random() < 0.5:
            continue
        if f.kind == "string":
            value: object = "".join(
                rng.choice("abcXYZ09=^-é😀") for _ in range(rng.randrange(0, 12))
            )
        elif f.kind == "float":
            value = struct.unpack("<f", struct.pack("<f", rng.uniform(-1e6, 1e6)))[0]
        elif f.kind == "double":
            value = rng.choice([rng.uniform(-1e15, 1e15), 0.0, float("inf")])
        elif f.kind == "sint64":
            value = rng.choice([0, 1, -1, 2**63 - 1, -(2**63), rng.randrange(-(2**40), 2**40)])
        else:
            value = rng.choice(list(f.enum_names or {0: ""}))
        setattr(msg, f.name, value)
    return msg


def expected_row(msg: PricingData) -> dict[str, object]:
    row: dict[str, object] = {}
    for f in TICK_FIELDS:
        if f.kind == "enum":
            value = getattr(msg, f.name) if msg.HasField(f.name) else 0
            row[f.name] = (f.enum_names or {}).get(value, str(value))
        elif not msg.HasField(f.name):
            row[f.name] = None
        elif f.name == "time":
            row[f.name] = msg.time
        else:
            row[f.name] = getattr(msg, f.name)
    return row


def actual_rows(frames: list[str]) -> list[dict[str, object]]:
    batch = decode_batch(frames)
    assert not batch.errors, batch.errors
    table = batch.ticks.set_column(2, "time", batch.ticks.column("time").cast("int64"))
    rows: list[dict[str, object]] = table.to_pylist()
    return rows


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def test_columns_equal_protobufs_own_parser_on_random_messages() -> None:
    rng = random.Random(7)
    messages = [random_message(rng) for _ in range(600)]
    frames = [v1(m) if i % 2 else v2(m) for i, m in enumerate(messages)]
    for msg, row in zip(messages, actual_rows(frames), strict=True):
        expected = expected_row(msg)
        for name, value in expected.items():
            assert same(row[name], value), (name, row[name], value)


def test_repeated_field_keeps_last_value_and_unknown_fields_are_ignored() -> None:
    first = PricingData(id="AMZN", time=1000, price=1.5, day_volume=10)
    second = PricingData(price=2.5, market_hours=PricingData.POST_MARKET)
    unknown = b"\x80\x06\x05" + b"\xa2\x06\x03abc"  # field 96 varint, field 100 bytes
    wrong_wire = b"\x10\x07"  # field 2 (float) sent as a varint: ignored like protobuf does
    payload = first.SerializeToString() + unknown + wrong_wire + second.SerializeToString()
    parsed = PricingData.FromString(payload)
    [row] = actual_rows([base64.b64encode(payload).decode()])
    assert row["price"] == parsed.price == 2.5
    assert row["day_volume"] == 10
    assert row["market_hours"] == "POST_MARKET"


def test_truncated_and_corrupted_payloads_fail_exactly_when_protobuf_fails() -> None:
    rng = random.Random(3)
    payloads = []
    for _ in range(40):
        raw = random_message(rng).SerializeToString()
        payloads += [raw[:cut] for cut in range(1, len(raw))]  # cut 0 is an empty frame
        for _ in range(20):
            flipped = bytearray(raw)
            flipped[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
            payloads.append(bytes(flipped))
        payloads.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60))))
    frames = [base64.b64encode(p).decode() for p in payloads]
    batch = decode_batch(frames)
    errors = {e.index: e.reason for e in batch.errors}
    assert len(errors) + batch.ticks.num_rows == len(frames)
    checked_ok = 0
    for i, payload in enumerate(payloads):
        try:
            msg = PricingData.FromString(payload)
        except Exception:
            assert i in errors and errors[i].startswith("invalid protobuf"), (
                payload,
                errors.get(i),
            )
            continue
        if msg.HasField("id") and msg.HasField("time"):
            assert i not in errors, (payload, errors[i])
            checked_ok += 1
        else:
            assert "has no" in errors[i]
    assert checked_ok > 100


def test_every_asset_class_decodes_with_the_values_yahoo_meant() -> None:
    equity = PricingData(
        id="AMZN",
        price=177.42,
        time=1713276945000,
        exchange="NMS",
        quote_type=PricingData.EQUITY,
        day_volume=7182358,
        change=-1.25,
        last_size=100,
        price_hint=2,
        full_day_change=0.5,
        full_day_change_percent=0.28,
    )  # market_hours absent: PRE_MARKET is proto3's zero and never on the wire
    fx = PricingData(
        id="EURUSD=X",
        price=1.0842,
        time=1713276946000,
        currency="USD",
        exchange="CCY",
        quote_type=PricingData.CURRENCY,
        market_hours=PricingData.REGULAR_MARKET,
        price_hint=4,
    )
    crypto = PricingData(
        id="BTC-USD",
        price=63123.45,
        time=1713276947000,
        currency="USD",
        exchange="CCC",
        quote_type=PricingData.CRYPTOCURRENCY,
        market_hours=PricingData.REGULAR_MARKET,
        day_volume=31_000_000_000,
        vol_24hr=31_000_000_000,
        circulating_supply=19_687_000.0,
        market_cap=1.24e12,
        from_currency="BTC",
        last_market="CoinMarketCap",
    )
    overnight = PricingData(
        id="^GSPC",
        price=5000.5,
        time=1713300000000,
        quote_type=PricingData.INDEX,
        market_hours=PricingData.OVERNIGHT_MARKET,
    )
    future = PricingData(
        id="ES=F",
        price=5010.25,
        time=1713276948000,
        quote_type=PricingData.FUTURE,
        market_hours=PricingData.REGULAR_MARKET,
        day_volume=1_200_000,
        open_interest=2_000_000,
    )
    rows = actual_rows([v1(equity), v2(fx), v2(crypto), v1(overnight), v2(future)])
    eq, fxr, cr, ov, fu = rows
    assert eq["time"] == 1713276945000  # zigzag: not the year 2083
    assert eq["day_volume"] == 7182358  # zigzag: not doubled
    assert eq["market_hours"] == "PRE_MARKET" and eq["quote_type"] == "EQUITY"
    assert eq["change"] == pytest.approx(-1.25) and eq["currency"] is None
    price = eq["price"]
    assert isinstance(price, float)
    assert str(np.float32(price)) == "177.42"  # exactly the float32, shown as meant
    assert np.float32(price) == np.float32(177.42)
    assert eq["full_day_change"] == pytest.approx(0.5)
    assert eq["full_day_change_percent"] == pytest.approx(0.28)
    assert fxr["day_volume"] is None and fxr["currency"] == "USD"
    assert fxr["quote_type"] == "CURRENCY" and fxr["market_hours"] == "REGULAR_MARKET"
    assert cr["day_volume"] == cr["vol_24hr"] == 31_000_000_000
    assert cr["market_cap"] == 1.24e12 and cr["last_market"] == "CoinMarketCap"
    assert ov["market_hours"] == "OVERNIGHT_MARKET" and ov["id"] == "^GSPC"
    assert fu["open_interest"] == 2_000_000 and fu["quote_type"] == "FUTURE"


def test_unknown_enum_number_is_kept_as_its_digits() -> None:
    payload = PricingData(id="X", time=1000).SerializeToString() + b"\x38\x09"  # hours = 9
    [row] = actual_rows([base64.b64encode(payload).decode()])
    assert row["market_hours"] == "9"


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("", "empty frame"),
        ("not base64!", "invalid base64"),
        ("QUJD", "invalid protobuf"),  # 'ABC': field 8 with wire type 1, truncated
        ("{broken", "invalid JSON"),
        ('{"type":"pricing"}', "no string 'message'"),
        ('{"type":"pricing","message":17}', "no string 'message'"),
        ('["pricing"]', "not an object"),
        ('{"message":"CgFB"}', "no string 'type'"),
        (envelope("%%%"), "invalid base64"),
        (base64.b64encode(b"\x0a\x02AB").decode(), "has no time"),
        (base64.b64encode(b"\x18\x02").decode(), "has no id"),
        (base64.b64encode(b"\x0a\x02\xff\xfe\x18\x02").decode(), "not UTF-8"),
        (b"\xff\xfe", "not UTF-8"),
        ("A" * (MAX_FRAME_CHARS + 1), "exceeds"),
    ],
)
def test_bad_frames_raise_one_error_type_with_a_one_line_reason(frame: str, reason: str) -> None:
    with pytest.raises(FrameError) as caught:
        decode_frame(frame)
    assert reason in caught.value.reason
    assert "\n" not in caught.value.reason


def test_non_pricing_envelopes_are_skipped_and_counted() -> None:
    good = v2(PricingData(id="AMZN", time=1000, price=1.0))
    frames = [HEARTBEAT, good, '{"type":"status","message":"x"}', good]
    batch = decode_batch(frames)
    assert batch.errors == [] and batch.ticks.num_rows == 2
    assert batch.skipped == {"heartbeat": 1, "status": 1}
    assert batch.frame_index.tolist() == [1, 3]
    with pytest.raises(SkippedFrame):
        decode_frame(HEARTBEAT)


def test_a_bad_frame_does_not_poison_the_good_ones_and_huge_frames_are_cheap() -> None:
    good = [v1(PricingData(id=f"S{i}", time=1000 * i, price=float(i))) for i in range(50)]
    bad = ["", "A" * (10 * 1024 * 1024), "{x", base64.b64encode(b"\xff" * 30).decode(), "QUJD"]
    frames = [f for pair in zip(good, bad * 10, strict=False) for f in pair]
    batch = decode_batch(frames)
    assert batch.ticks.column("id").to_pylist() == [f"S{i}" for i in range(len(bad) * 10)]
    assert [e.index for e in batch.errors] == list(range(1, 2 * len(bad) * 10, 2))
    assert batch.frame_index.tolist() == list(range(0, 2 * len(bad) * 10, 2))


def test_v2_envelope_with_spaces_or_escapes_takes_the_json_path() -> None:
    msg = PricingData(id="MSFT", time=5000, price=417.29)
    spaced = json.dumps({"message": v1(msg), "type": "pricing"})
    escaped = envelope(v1(msg).replace("/", "\\/"))
    rows = actual_rows([spaced, escaped])
    assert [r["id"] for r in rows] == ["MSFT", "MSFT"]
