"""``ticklake plot TICKER --out FILE``: one ticker's candles, volume and VWAP, with
connection gaps and late windows marked, as a PNG (:mod:`ticklake.plot_png`, matplotlib:
the ``ticklake[plot]`` extra) or a self-contained HTML page (:mod:`ticklake.plot_html`, no
dependency).

The bars are the Python API's (:meth:`ticklake.api.Lake.bars`: derived exactly from the
one-minute rows of ``features``, a bar overlapping ``[--start, --end)`` whole), read through
one short read-only connection, so a running features job is not kept waiting. The format
follows the file's suffix; nothing is written when there is no bar to draw.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from analytics.database import DatabaseLockedError, DatabaseMissingError
from ticklake.api import bar_width_ms
from ticklake.api import open as open_lake
from ticklake.candles import candles
from ticklake.commands import Command, data_problem, report_error, usage_error
from ticklake.config import add_options, utc_time
from ticklake.options import DATA, DATABASE
from ticklake.plot_html import write_html
from ticklake.plot_png import require, write_png

__all__ = ["COMMAND", "run"]

NAME: Final = "plot"
PLOT_OPTIONS: Final = (DATA, DATABASE)
BARS: Final = ("1m", "5m", "15m", "1h", "1d")
FORMATS: Final = (".png", ".html")


def add_arguments(parser: argparse.ArgumentParser, file_values: Mapping[str, Any]) -> None:
    parser.add_argument("ticker", metavar="TICKER", help="the symbol to draw (AMZN, BTC-USD)")
    parser.add_argument(
        "--start", type=utc_time, help="ISO-8601 UTC; a bar containing it is drawn whole"
    )
    parser.add_argument("--end", type=utc_time, help="end of the range, exclusive (ISO-8601)")
    parser.add_argument(
        "--bar", choices=BARS, default="1m", help="bar width (default: 1m, a candle a minute)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="FILE.png or FILE.html"
    )
    add_options(parser, PLOT_OPTIONS, file_values)


def run(ns: argparse.Namespace) -> int:
    """Write the chart: 0; 1 when there are no bars or the database stayed locked; 2 for a
    request that cannot be served (no data directory, an unknown suffix, no matplotlib)."""
    problem = data_problem(ns.data)
    if problem is not None:
        return usage_error(NAME, problem)
    out: Path = ns.out
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        return usage_error(NAME, f"--out {out}: give a .png or an .html file")
    if suffix == ".png":
        try:
            require()
        except ImportError as exc:
            return usage_error(NAME, exc)
    start, end = (
        None if t is None else dt.datetime.fromtimestamp(t, dt.UTC) for t in (ns.start, ns.end)
    )
    try:
        lake = open_lake(ns.data, database=ns.database)
        bars = lake.bars(ns.bar, tickers=[ns.ticker], start=start, end=end)
    except ValueError as exc:  # an unknown symbol, end before start
        return usage_error(NAME, exc)
    except (DatabaseMissingError, DatabaseLockedError) as exc:
        report_error(NAME, exc)
        return 1
    chart = candles(bars, ns.ticker, ns.bar, bar_width_ms(ns.bar))
    if not len(chart):
        report_error(NAME, f"no {ns.bar} bars of {chart.ticker} in the range; nothing written")
        return 1
    title = f"{chart.ticker}  {ns.bar} bars  (UTC)"
    (write_png if suffix == ".png" else write_html)(chart, title, out)
    print(f"{out}: {len(chart)} {ns.bar} bars of {chart.ticker}")
    return 0


COMMAND: Final = Command(
    name=NAME,
    help="draw a ticker's candles, volume and VWAP (PNG, or an HTML page needing no network)",
    description="Candlesticks with volume and VWAP from the features database; connection "
    "gaps shaded, late windows marked. PNG needs the extra ticklake[plot] (matplotlib); "
    "HTML needs nothing and loads nothing from the network.",
    add_arguments=add_arguments,
    run=run,
    settings=PLOT_OPTIONS,
)
