"""``ticklake decode`` as a user runs it: a real process, files and stdin."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

from lake.schema import PricingData


def run_decode(args: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ticklake.cli", "decode", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def frame(msg: PricingData, v2: bool) -> str:
    text = base64.b64encode(msg.SerializeToString()).decode()
    return json.dumps({"type": "pricing", "message": text}) if v2 else text


def test_decode_writes_one_object_per_tick_and_per_bad_line(tmp_path: Path) -> None:
    amzn = PricingData(
        id="AMZN",
        price=177.42,
        time=1713276945000,
        quote_type=PricingData.EQUITY,
        day_volume=7182358,
        price_hint=2,
    )
    fx = PricingData(
        id="EURUSD=X", price=1.0842, time=1713276946000, market_hours=PricingData.REGULAR_MARKET
    )
    lines = [frame(amzn, False), "garbage!", '{"type":"heartbeat"}', frame(fx, True)]
    path = tmp_path / "frames.txt"
    path.write_text("\n".join(lines) + "\n")
    done = run_decode([str(path)])
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert out[0] == {
        "id": "AMZN",
        "price": 177.42,
        "time": 1713276945000,
        "time_utc": "2024-04-16T14:15:45.000Z",
        "quote_type": "EQUITY",
        "market_hours": "PRE_MARKET",
        "day_volume": 7182358,
        "price_hint": 2,
    }
    assert out[1] == {"line": 2, "error": "invalid base64: Only base64 data is allowed"}
    assert out[2]["id"] == "EURUSD=X" and out[2]["price"] == 1.0842
    assert out[2]["market_hours"] == "REGULAR_MARKET"
    assert len(out) == 3
    assert "decoded 2 ticks from 4 lines: 1 bad, 1 skipped" in done.stderr


def test_decode_reads_stdin_and_reports_a_missing_file_in_one_line(tmp_path: Path) -> None:
    msg = PricingData(id="BTC-USD", price=63000.5, time=1713276947000)
    done = run_decode([], stdin=frame(msg, True) + "\n")
    assert json.loads(done.stdout)["id"] == "BTC-USD"
    missing = run_decode([str(tmp_path / "nope.txt")])
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "cannot read" in missing.stderr


def test_decode_prints_fields_35_to_45_by_name_and_names_unknown_fields(tmp_path: Path) -> None:
    """The frame of issue 16: fields 35-45 in Yahoo's types, quote type 46, and a field 48
    no schema declares yet: every known field printed by name, 48 reported, none dropped."""
    msg = PricingData(
        id="ACME",
        price=12.5,
        time=1713276945000,
        quote_type=PricingData.PRIVATE_COMPANY,
        indices=["^GSPC", "^NDX"],
        cmc_rank=3,
        underlying_shortname="Acme Holdings",
        fifty_two_week_change=-1.25,
        fifty_two_week_change_percent=-9.5,
        latest_amount_raised=2.5e8,
        latest_funding_date=1700000000000,
        latest_share_class="Series C",
        latest_implied_valuation=4e9,
        ytd_return=12.25,
        qtd_return=-3.5,
    )
    payload = msg.SerializeToString() + b"\x80\x03\x06"  # field 48, varint 6
    text = base64.b64encode(payload).decode()
    path = tmp_path / "frames.txt"
    path.write_text(f"{text}\n{frame(msg, True)}\n")
    done = run_decode([str(path)])
    assert done.returncode == 0, done.stderr
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert first == second
    assert first["quote_type"] == "PRIVATE_COMPANY"
    assert first["indices"] == ["^GSPC", "^NDX"]
    assert first["cmc_rank"] == 3 and first["latest_funding_date"] == 1700000000000
    assert first["underlying_shortname"] == "Acme Holdings"
    assert first["latest_share_class"] == "Series C"
    assert (first["fifty_two_week_change"], first["fifty_two_week_change_percent"]) == (-1.25, -9.5)
    assert (first["latest_amount_raised"], first["latest_implied_valuation"]) == (2.5e8, 4e9)
    assert (first["ytd_return"], first["qtd_return"]) == (12.25, -3.5)
    assert not any(key.startswith("field_") for key in first)
    assert "decoded 2 ticks from 2 lines: 0 bad, 0 skipped; unknown fields (count): 48 (1)" in (
        done.stderr
    )
    assert "event=unknown_wire_field field=48 wire_type=0 count=1" in done.stderr
