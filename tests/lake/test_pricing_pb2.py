"""The committed generated code is exactly what the pinned protoc makes of the .proto."""

from __future__ import annotations

from pathlib import Path

from grpc_tools import protoc

from lake.schema import PricingData

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_matches_a_fresh_regeneration(tmp_path: Path) -> None:
    code = protoc.main(
        [
            "protoc",
            f"-I{ROOT / 'proto'}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            str(ROOT / "proto" / "pricing.proto"),
        ]
    )
    assert code == 0
    for name in ("pricing_pb2.py", "pricing_pb2.pyi"):
        fresh = (tmp_path / name).read_bytes()
        committed = (ROOT / "lake" / name).read_bytes()
        assert fresh == committed, f"lake/{name} is stale: run `make proto`"


def test_wire_types_are_yahoos() -> None:
    fields = {f.number: f for f in PricingData.DESCRIPTOR.fields}
    assert sorted(fields) == list(range(1, 48))
    assert fields[2].type == fields[2].TYPE_FLOAT  # price is float32
    assert fields[3].type == fields[3].TYPE_SINT64  # time, zigzag epoch ms
    assert fields[9].type == fields[9].TYPE_SINT64  # day_volume
    assert fields[20].type == fields[20].TYPE_SINT64  # options_type is not an enum on the wire
    assert fields[32].type == fields[32].TYPE_DOUBLE and fields[33].type == fields[33].TYPE_DOUBLE
    assert fields[46].name == "full_day_change" and fields[47].name == "full_day_change_percent"
    hours = PricingData.MarketHours
    assert hours.Value("PRE_MARKET") == 0 and hours.Value("OVERNIGHT_MARKET") == 4
    assert PricingData.QuoteType.Value("CRYPTOCURRENCY") == 41
    assert PricingData.QuoteType.Value("HEARTBEAT") == 7


def test_fields_35_to_45_and_the_newer_quote_types_are_yahoos() -> None:
    """Issue 16: the names and types a client generated from Yahoo's schema declares."""
    fields = {f.number: f for f in PricingData.DESCRIPTOR.fields}
    expected = {
        35: ("indices", "TYPE_STRING"),
        36: ("cmc_rank", "TYPE_SINT64"),
        37: ("underlying_shortname", "TYPE_STRING"),
        38: ("fifty_two_week_change", "TYPE_FLOAT"),
        39: ("fifty_two_week_change_percent", "TYPE_FLOAT"),
        40: ("latest_amount_raised", "TYPE_FLOAT"),
        41: ("latest_funding_date", "TYPE_SINT64"),
        42: ("latest_share_class", "TYPE_STRING"),
        43: ("latest_implied_valuation", "TYPE_FLOAT"),
        44: ("ytd_return", "TYPE_FLOAT"),
        45: ("qtd_return", "TYPE_FLOAT"),
    }
    for number, (name, kind) in expected.items():
        assert (fields[number].name, fields[number].type) == (name, getattr(fields[number], kind))
        assert fields[number].is_repeated == (number == 35)
    quote_types = PricingData.QuoteType
    assert [quote_types.Value(n) for n in ("CUL_IDX", "CUL_SUB_IDX", "CUL_ASSET")] == [43, 44, 45]
    assert quote_types.Value("PRIVATE_COMPANY") == 46 and quote_types.Value("INDUSTRY") == 1000
