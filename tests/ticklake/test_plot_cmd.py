"""``ticklake plot`` on a real lake and database: the PNG has the size, the ink and one
candle per bar of the data; the HTML page carries the data, loads nothing and marks what
the features table flags; missing matplotlib, a bad suffix and an empty range are one-line
errors that write nothing."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

import ticklake
from analytics.backfill import BackfillConfig, backfill
from analytics.database import database_path
from lake.clock import ManualClock
from lake.utc import DAY_MS, MINUTE_MS, day_start_ms
from tests.kit.lake import write_days
from tests.kit.times import DAY1, DAY2, LATER, OPEN_MS
from ticklake import plot_png
from ticklake.candles import candles
from ticklake.cli import main
from ticklake.commands import USAGE_ERROR

DAY = ["--start", DAY1.isoformat(), "--end", DAY2.isoformat()]
LATE_MINUTES = (3, 17)  # DAY1 AAPL windows flagged late
GAP_MINUTES = (8, 9, 10)  # ... and inside a connection gap


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """AAPL and MSFT, 30 minutes on DAY1 and DAY2, features backfilled; a few AAPL windows
    of DAY1 flagged late or gap (the flags the job sets, set here directly)."""
    root = tmp_path_factory.mktemp("plot")
    write_days(root, ["AAPL", "MSFT"], days=2, minutes=30, per=4)
    config = BackfillConfig(day_start_ms(DAY1), day_start_ms(DAY1) + 2 * DAY_MS)
    assert backfill(root, config, ManualClock(LATER)).windows == 2 * 2 * 30
    con = duckdb.connect(str(database_path(root)))
    try:
        for flag, minutes in (("late", LATE_MINUTES), ("gap", GAP_MINUTES)):
            starts = [OPEN_MS // 1000 + 60 * m for m in minutes]
            con.execute(
                f"UPDATE features SET {flag} = true WHERE ticker = 'AAPL' "
                "AND list_contains(?, epoch(window_start)::BIGINT)",
                [starts],
            )
    finally:
        con.close()
    return root


def day_bars(data: Path, width: str = "1m") -> pa.Table:
    return ticklake.open(data).bars(width, tickers="AAPL", start=DAY1, end=DAY2)


def plot(data: Path, out: Path, *args: str) -> int:
    return main(["plot", "AAPL", "--data", str(data), "--out", str(out), *args])


def by_gid(ax, gid: str) -> list[Any]:
    """The artists of ``ax`` drawn as ``gid`` (:mod:`ticklake.plot_png` names each kind)."""
    return [a for a in (*ax.patches, *ax.collections, *ax.lines) if a.get_gid() == gid]


# --- PNG -----------------------------------------------------------------------------------


def test_the_png_is_an_image_of_one_candle_per_bar(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    out = tmp_path / "aapl.png"
    assert plot(data, out, *DAY) == 0
    bars = day_bars(data)
    assert bars.num_rows == 30
    assert capsys.readouterr().out == f"{out}: 30 1m bars of AAPL\n"
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape == (600, 1000, 3)
    assert (image.min(axis=2) < 200).mean() > 0.05, "mostly blank"
    # one run of candle-coloured pixel columns per bar, in the volume panel (bottom fifth)
    columns = set()
    for color in (plot_png.UP, plot_png.DOWN):
        rgb = np.array([int(color[k : k + 2], 16) for k in (1, 3, 5)])
        columns |= set(np.flatnonzero((image[480:560] == rgb).all(axis=2).any(axis=0)))
    runs = np.split(np.array(sorted(columns)), np.flatnonzero(np.diff(sorted(columns)) > 1) + 1)
    assert len(runs) == 30


def test_the_figure_draws_every_bar_and_marks_late_and_gap(data: Path) -> None:
    chart = candles(day_bars(data), "AAPL", "1m", MINUTE_MS)
    fig = plot_png.figure(chart, "AAPL")
    price, volume = fig.axes
    assert len(by_gid(price, plot_png.BODIES)) == 30
    assert len(by_gid(volume, plot_png.VOLUME)) == 30
    assert len(by_gid(price, plot_png.GAPS)) == len(GAP_MINUTES)
    (late,) = by_gid(price, plot_png.LATE)
    assert len(late.get_offsets()) == len(LATE_MINUTES)
    (vwap,) = by_gid(price, plot_png.VWAP)
    assert np.allclose(vwap.get_ydata(), day_bars(data)["vwap"].to_numpy())
    highs = [b.get_y() + b.get_height() for b in by_gid(price, plot_png.BODIES)]
    assert np.allclose(highs, np.maximum(chart.open, chart.close), atol=1e-3)


def test_five_minute_bars_over_two_days(data: Path, tmp_path: Path) -> None:
    assert plot(data, tmp_path / "a.png", "--bar", "5m") == 0
    chart = candles(ticklake.open(data).bars("5m", tickers="AAPL"), "AAPL", "5m", 5 * MINUTE_MS)
    assert len(chart) == 12  # 6 a day
    price = plot_png.figure(chart, "AAPL").axes[0]
    assert len(by_gid(price, plot_png.BODIES)) == 12
    assert len(by_gid(price, plot_png.GAPS)) == 2  # 14:35 and 14:40 hold gap minutes


def test_without_matplotlib_the_png_is_a_one_line_error(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    out = tmp_path / "a.png"
    assert plot(data, out) == USAGE_ERROR
    err = capsys.readouterr().err
    assert err.startswith(
        "ticklake plot: matplotlib is not installed: pip install 'ticklake[plot]'"
    )
    assert err.count("\n") == 1 and not out.exists()
    assert plot(data, tmp_path / "a.html") == 0, "HTML needs no matplotlib"


# --- HTML ----------------------------------------------------------------------------------


def test_the_html_page_carries_the_data_and_loads_nothing(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "aapl.html"
    assert plot(data, out, *DAY) == 0
    text = out.read_text()
    bars = day_bars(data)
    assert text.count('<g class="bar ') == bars.num_rows == 30
    block = re.search(r'<script type="application/json" id="bars">(.*?)</script>', text, re.S)
    assert block is not None
    page = json.loads(block.group(1))
    closes = np.array(page["close"], dtype=np.float32)  # float32 as received, its decimals
    assert closes.tolist() == bars["close"].to_pylist()
    assert all(len(str(v).split(".")[-1]) <= 2 for v in page["close"])
    assert page["volume"] == [float(v) for v in bars["volume"].to_pylist()]
    assert page["start"][0] == "2024-01-02T14:30:00.000Z"
    assert [i for i, f in enumerate(page["late"]) if f] == list(LATE_MINUTES)
    assert [i for i, f in enumerate(page["gap"]) if f] == list(GAP_MINUTES)
    assert text.count('<path class="late"') == len(LATE_MINUTES)
    assert text.count('<rect class="gap"') == len(GAP_MINUTES)
    assert re.search(r"https?://|\bsrc=|\bhref=|<link|@import|url\(", text) is None


def test_the_html_escapes_what_it_shows(tmp_path: Path) -> None:
    from ticklake.plot_html import page

    bars = pa.table(
        {
            "ticker": ["M&M.NS"],
            "bar_start": pa.array([OPEN_MS], pa.timestamp("ms", tz="UTC")),
            **{k: pa.array([1.5], pa.float32()) for k in ("open", "high", "low", "close")},
            "volume": pa.array([None], pa.int64()),
            "vwap": pa.array([None], pa.float64()),
            "late": [False],
            "gap": pa.array([None], pa.bool_()),
        }
    )
    text = page(candles(bars, "M&M.NS", "1m", MINUTE_MS), "M&M.NS </script>")
    assert "M&amp;M.NS &lt;/script&gt;" in text and "</script> " not in text
    block = re.search(r'id="bars">(.*?)</script>', text, re.S)
    assert block is not None
    assert json.loads(block.group(1))["volume"] == [None]


def test_the_html_renders_in_headless_chromium(data: Path, tmp_path: Path) -> None:
    browser = next(
        (b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
    )
    if browser is None:
        pytest.skip(
            "no headless Chromium on this machine (chromium, chromium-browser, google-chrome)"
        )
    out = tmp_path / "aapl.html"
    assert plot(data, out, *DAY) == 0
    dom = subprocess.run(
        [browser, "--headless", "--disable-gpu", "--no-sandbox", "--dump-dom", out.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert dom.count('class="bar ') == 30 and "<svg" in dom


# --- errors --------------------------------------------------------------------------------


def test_an_unknown_suffix_or_an_empty_range_writes_nothing(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plot(data, tmp_path / "a.svg") == USAGE_ERROR
    assert (
        capsys.readouterr().err
        == f"ticklake plot: --out {tmp_path / 'a.svg'}: give a .png or an .html file\n"
    )
    out = tmp_path / "a.html"
    assert plot(data, out, "--start", "2030-01-01") == 1
    assert (
        capsys.readouterr().err
        == "ticklake plot: no 1m bars of AAPL in the range; nothing written\n"
    )
    assert main(["plot", "NOPE", "--data", str(data), "--out", str(out)]) == 1
    assert not out.exists()
    assert main(["plot", "A B", "--data", str(data), "--out", str(out)]) == USAGE_ERROR
    assert "rejected" in capsys.readouterr().err


def test_a_missing_data_directory_is_a_usage_error(tmp_path: Path) -> None:
    assert plot(tmp_path / "typo", tmp_path / "a.html") == USAGE_ERROR
    assert not (tmp_path / "typo").exists() and not (tmp_path / "a.html").exists()
