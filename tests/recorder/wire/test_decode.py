"""The decoder against protobuf's own parser, every frame form and every kind of bad input."""

from __future__ import annotations

import base64
import json
import logging
import math
import random
import struct
from collections import Counter

import numpy as np
import pytest
from google.protobuf.unknown_fields import UnknownFieldSet

from lake.schema import TICK_FIELDS, PricingData
from recorder.wire import decode as decode_module
from recorder.wire.decode import decode_batch, decode_frame
from recorder.wire.frames import MAX_FRAME_CHARS, FrameError, SkippedFrame
from tests.kit.frames import HEARTBEAT, envelope, v1, v2


def random_message(rng: random.Random) -> PricingData:
    msg = PricingData(id=rng.choice(["AMZN", "^GSPC", "EURUSD=X", "BTC-USD", "ÄÖ€", "x" * 40]))
    msg.time = rng.choice([1713276945000, 0, -1, 2**62, -(2**62), rng.randrange(-(10**13), 10**13)])
    for f in TICK_FIELDS:
        if f.number in (1, 3) or rng.random() < 0.5:
            continue
        if f.kind == "strings":
            getattr(msg, f.name).extend(random_text(rng) for _ in range(rng.randrange(0, 4)))
            continue
        if f.kind == "string":
            value: object = random_text(rng)
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


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice("abcXYZ09=^-é😀") for _ in range(rng.randrange(0, 12)))


def expected_row(msg: PricingData) -> dict[str, object]:
    """What the decoder must make of ``msg``: protobuf's own values, NULL where absent (and
    for a repeated field without elements), enums by name."""
    row: dict[str, object] = {}
    for f in TICK_FIELDS:
        if f.kind == "strings":
            row[f.name] = list(getattr(msg, f.name)) or None
        elif f.kind == "enum":
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


def test_repeated_scalar_keeps_last_value_and_unknown_fields_leave_the_tick_as_it_is() -> None:
    first = PricingData(id="AMZN", time=1000, price=1.5, day_volume=10)
    second = PricingData(price=2.5, market_hours=PricingData.POST_MARKET)
    unknown = b"\x80\x06\x05" + b"\xa2\x06\x03abc"  # field 96 varint, field 100 bytes
    wrong_wire = b"\x10\x07"  # field 2 (float) sent as a varint: protobuf keeps it unknown
    payload = first.SerializeToString() + unknown + wrong_wire + second.SerializeToString()
    parsed = PricingData.FromString(payload)
    batch = decode_batch([base64.b64encode(payload).decode()])
    [row] = batch.ticks.to_pylist()
    assert row["price"] == parsed.price == 2.5
    assert row["day_volume"] == 10
    assert row["market_hours"] == "POST_MARKET"
    assert batch.unknown_fields == {96: 1, 100: 1, 2: 1}


# Yahoo's PricingData field by field, as docs/wire.md lists it (number -> name, wire kind):
# written out here, apart from proto/pricing.proto, so that a wrong type there fails.
YAHOO_FIELDS = {
    1: ("id", "string"),
    2: ("price", "float"),
    3: ("time", "sint64"),
    4: ("currency", "string"),
    5: ("exchange", "string"),
    6: ("quote_type", "enum"),
    7: ("market_hours", "enum"),
    8: ("change_percent", "float"),
    9: ("day_volume", "sint64"),
    10: ("day_high", "float"),
    11: ("day_low", "float"),
    12: ("change", "float"),
    13: ("short_name", "string"),
    14: ("expire_date", "sint64"),
    15: ("open_price", "float"),
    16: ("previous_close", "float"),
    17: ("strike_price", "float"),
    18: ("underlying_symbol", "string"),
    19: ("open_interest", "sint64"),
    20: ("options_type", "sint64"),
    21: ("mini_option", "sint64"),
    22: ("last_size", "sint64"),
    23: ("bid", "float"),
    24: ("bid_size", "sint64"),
    25: ("ask", "float"),
    26: ("ask_size", "sint64"),
    27: ("price_hint", "sint64"),
    28: ("vol_24hr", "sint64"),
    29: ("vol_all_currencies", "sint64"),
    30: ("from_currency", "string"),
    31: ("last_market", "string"),
    32: ("circulating_supply", "double"),
    33: ("market_cap", "double"),
    34: ("components", "string"),
    35: ("indices", "repeated string"),
    36: ("cmc_rank", "sint64"),
    37: ("underlying_shortname", "string"),
    38: ("fifty_two_week_change", "float"),
    39: ("fifty_two_week_change_percent", "float"),
    40: ("latest_amount_raised", "float"),
    41: ("latest_funding_date", "sint64"),
    42: ("latest_share_class", "string"),
    43: ("latest_implied_valuation", "float"),
    44: ("ytd_return", "float"),
    45: ("qtd_return", "float"),
    46: ("full_day_change", "float"),
    47: ("full_day_change_percent", "float"),
}
WIRE_TYPES = {"string": 2, "repeated string": 2, "float": 5, "double": 1, "sint64": 0, "enum": 0}
QUOTE_TYPES = [0, 5, 7, 8, 9, 11, 12, 13, 14, 15, 17, 18, 20, 23, 28, 41, 42, 43, 44, 45, 46, 1000]


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # a negative enum is ten bytes, as protobuf writes it
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes([*out, value])


def wire_field(number: int, wire_type: int, value: object) -> bytes:
    """One field as bytes: tag, then the value in ``wire_type``'s encoding."""
    tag = varint(number << 3 | wire_type)
    if wire_type == 0:
        assert isinstance(value, int)
        return tag + varint(value)
    if wire_type == 5:
        return tag + struct.pack("<f", value)
    if wire_type == 1:
        return tag + struct.pack("<d", value)
    data = value.encode() if isinstance(value, str) else value
    assert isinstance(data, bytes)
    return tag + varint(len(data)) + data


def crafted_fields(rng: random.Random, number: int) -> list[bytes]:
    """Field ``number`` with a random value in Yahoo's wire type (several elements for the
    repeated field, each its own record)."""
    kind = YAHOO_FIELDS[number][1]
    wire_type = WIRE_TYPES[kind]
    if kind == "repeated string":
        return [wire_field(number, 2, random_text(rng)) for _ in range(rng.randrange(1, 4))]
    if kind == "string":
        value: object = random_text(rng)
    elif kind == "float":
        value = rng.choice([rng.uniform(-1e6, 1e6), 0.0, -0.0, float("nan"), 3.4e38])
    elif kind == "double":
        value = rng.choice([rng.uniform(-1e15, 1e15), 19_900_000.0, float("-inf")])
    elif kind == "sint64":
        signed = rng.choice([0, 1, -1, 2**63 - 1, -(2**63), rng.randrange(-(2**40), 2**40)])
        value = (signed << 1) ^ (signed >> 63)  # zigzag
    elif number == 6:
        value = rng.choice([*QUOTE_TYPES, 99])
    else:
        value = rng.choice([0, 1, 2, 3, 4, 9])
    return [wire_field(number, wire_type, value)]


def test_yahoo_field_table_is_the_proto() -> None:
    by_number = {f.number: f for f in TICK_FIELDS}
    assert sorted(by_number) == sorted(YAHOO_FIELDS) == list(range(1, 48))
    for number, (name, kind) in YAHOO_FIELDS.items():
        assert by_number[number].name == name
        assert by_number[number].kind == ("strings" if kind == "repeated string" else kind)


def test_crafted_frames_with_every_field_equal_protobufs_own_parse() -> None:
    """Fields 1-47 each in Yahoo's wire type, in any order, some twice, the repeated field's
    elements between other fields: the columns equal the reference runtime's parse, which
    finds no unknown field in them (so the .proto declares every type as Yahoo sends it)."""
    rng = random.Random(16)
    payloads = []
    for i in range(400):
        numbers = [n for n in range(4, 48) if i % 2 == 0 or rng.random() < 0.4]
        numbers += [n for n in numbers if rng.random() < 0.1]  # a scalar again: last wins
        pieces = [wire_field(1, 2, f"S{i}"), wire_field(3, 0, 2 * 1713276945000)]
        pieces += [piece for n in numbers for piece in crafted_fields(rng, n)]
        rng.shuffle(pieces)
        payloads.append(b"".join(pieces))
    frames = [base64.b64encode(p).decode() for p in payloads]
    batch = decode_batch(frames)
    assert not batch.errors and batch.unknown_fields == Counter()
    table = batch.ticks.set_column(2, "time", batch.ticks.column("time").cast("int64"))
    for payload, row in zip(payloads, table.to_pylist(), strict=True):
        parsed = PricingData.FromString(payload)
        assert len(UnknownFieldSet(parsed)) == 0
        for name, value in expected_row(parsed).items():
            assert same(row[name], value), (name, row[name], value)
    indices = table.column("indices").to_pylist()
    assert sum(len(v) > 1 for v in indices if v) > 50  # many frames carry several elements
    assert table.column("time").to_pylist()[0] == 1713276945000
    names = set(table.column("quote_type").to_pylist())
    assert {"CUL_IDX", "CUL_SUB_IDX", "CUL_ASSET", "PRIVATE_COMPANY", "INDUSTRY", "99"} <= names


def test_unknown_field_numbers_are_counted_logged_once_and_the_tick_kept(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decode_module, "_REPORTED", set())
    known = PricingData(id="AMZN", time=1000, price=177.5, cmc_rank=7).SerializeToString()
    newer = wire_field(48, 0, 5) + wire_field(48, 0, 6) + wire_field(60, 2, b"\x01\x02")
    old_type = wire_field(38, 0, 2)  # field 38 as the old placeholder's varint, not a float
    payloads = [known + newer + old_type, known + wire_field(48, 5, 1.0)]
    no_time = PricingData(id="X").SerializeToString() + wire_field(49, 0, 1)  # an error
    frames = [base64.b64encode(p).decode() for p in [*payloads, no_time]]
    with caplog.at_level(logging.WARNING, logger="recorder.wire.decode"):
        batch = decode_batch(frames)
        again = decode_batch(frames[:1])
    assert batch.ticks.num_rows == 2 and [e.index for e in batch.errors] == [2]
    assert batch.ticks.column("price").to_pylist() == [177.5, 177.5]
    assert batch.ticks.column("cmc_rank").to_pylist() == [7, 7]
    assert batch.ticks.column("fifty_two_week_change").to_pylist() == [None, None]
    assert batch.unknown_fields == {48: 3, 60: 1, 38: 1}  # field 49 came in the bad frame
    sets = [UnknownFieldSet(PricingData.FromString(p)) for p in payloads]
    reference = Counter(fields[i].field_number for fields in sets for i in range(len(fields)))
    assert batch.unknown_fields == reference
    assert again.unknown_fields == {48: 2, 60: 1, 38: 1}
    events = [r.getMessage() for r in caplog.records if "unknown_wire_field" in r.getMessage()]
    assert sorted(events) == [
        "event=unknown_wire_field field=38 wire_type=0 count=1",
        "event=unknown_wire_field field=48 wire_type=0 count=3",
        "event=unknown_wire_field field=60 wire_type=2 count=1",
    ]


def test_indices_keep_every_element_in_order_and_absent_is_null() -> None:
    many = PricingData(id="AAPL", time=1000, indices=["^GSPC", "^DJI", "", "^NDX"])
    one = PricingData(id="BTC-USD", time=1000, indices=["^CMC200"])
    rows = actual_rows([v1(many), v2(one), v1(PricingData(id="EURUSD=X", time=1000))])
    assert [r["indices"] for r in rows] == [["^GSPC", "^DJI", "", "^NDX"], ["^CMC200"], None]


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
        (base64.b64encode(b"\x0a\x01A\x18\x02\x9a\x02\x01\xff").decode(), "not UTF-8"),
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
