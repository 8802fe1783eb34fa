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
