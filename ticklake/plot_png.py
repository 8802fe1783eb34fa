"""``ticklake plot --out FILE.png``: candles, volume and VWAP as a static image (matplotlib,
Agg, no display needed; pyplot's global state is never touched).

The figure has two panels sharing the time axis (UTC): prices above (a candle per bar,
the VWAP line, late bars marked with a triangle above their high, bars of a connection gap
shaded red) and volume below. Each kind of artist carries a ``gid`` (:data:`BODIES` ...),
so a test can count what was drawn before the pixels are written.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from lake.utc import DAY_MS
from ticklake.candles import Candles

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["BODIES", "GAPS", "LATE", "VOLUME", "VWAP", "WICKS", "figure", "require", "write_png"]

BODIES: Final = "candle-bodies"
WICKS: Final = "candle-wicks"
VOLUME: Final = "volume"
VWAP: Final = "vwap"
LATE: Final = "late"
GAPS: Final = "gaps"
UP, DOWN = "#26a69a", "#ef5350"
SIZE: Final = (10.0, 6.0)  # inches at DPI: 1000 x 600 pixels
DPI: Final = 100
BODY_SHARE: Final = 0.7  # of a bar's width


def require() -> None:
    """ImportError naming the extra when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(
            "matplotlib is not installed: pip install 'ticklake[plot]' (or pip install "
            "matplotlib) to write PNG charts"
        ) from None


def figure(c: Candles, title: str) -> Figure:
    """The chart of ``c``, not yet saved."""
    require()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    price, volume = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    price.use_sticky_edges = False  # bodies' bottoms would pin the lowest to the frame
    days = c.width_ms / DAY_MS  # matplotlib's dates are days
    x = c.start_ms / DAY_MS  # matplotlib's date numbers: days since its epoch, 1970 UTC
    mid = x + days / 2
    colors = np.where(c.rising, UP, DOWN)
    for gap_start in x[c.gap]:
        price.axvspan(gap_start, gap_start + days, color=DOWN, alpha=0.12, lw=0, gid=GAPS)
    price.vlines(mid, c.low, c.high, colors=colors, linewidth=0.8, gid=WICKS)
    price.bar(
        mid,
        _body_heights(c),
        bottom=np.minimum(c.open, c.close),
        width=days * BODY_SHARE,
        color=colors,
        edgecolor=colors,
        linewidth=0.5,
        gid=BODIES,
    )
    price.plot(mid, c.vwap, color="#5c6bc0", linewidth=1.2, label="VWAP", gid=VWAP)
    if c.late.any():
        top = c.high[c.late] + _pad(c)
        price.scatter(mid[c.late], top, marker="v", color="#ff9800", s=18, zorder=3, gid=LATE)
    volume.bar(mid, np.nan_to_num(c.volume), width=days * BODY_SHARE, color=colors, gid=VOLUME)
    _decorate(fig, price, volume, c, title)
    return fig


def write_png(c: Candles, title: str, out: Path) -> None:
    """Save the chart of ``c`` to ``out`` as PNG."""
    figure(c, title).savefig(out, format="png")


def _body_heights(c: Candles) -> Any:
    """|close - open|, at least a hair's height so a bar that closed where it opened shows."""
    return np.maximum(np.abs(c.close - c.open), _pad(c) / 20)


def _pad(c: Candles) -> float:
    if not len(c):
        return 0.0
    span = float(np.max(c.high) - np.min(c.low))
    return span * 0.03 if span > 0 else max(abs(float(c.high[0])) * 1e-4, 1e-9)


def _decorate(fig: Figure, price: Any, volume: Any, c: Candles, title: str) -> None:
    from matplotlib import dates
    from matplotlib.patches import Patch

    fig.suptitle(title, fontsize=11)
    price.set_ylabel("price")
    volume.set_ylabel("volume")
    volume.set_xlabel("UTC")
    locator = dates.AutoDateLocator(tz=dt.UTC)  # type: ignore[no-untyped-call]
    formatter = dates.ConciseDateFormatter(locator, tz=dt.UTC)  # type: ignore[no-untyped-call]
    volume.xaxis.set_major_locator(locator)
    volume.xaxis.set_major_formatter(formatter)
    for ax in (price, volume):
        ax.grid(True, color="#e0e0e0", linewidth=0.5)
    handles, _ = price.get_legend_handles_labels()
    if c.gap.any():
        handles.append(Patch(color=DOWN, alpha=0.12, label="connection gap"))
    if c.late.any():
        handles.append(price.collections[-1])
        handles[-1].set_label("late window")
    price.legend(handles=handles, loc="best", fontsize=8, framealpha=0.8)
