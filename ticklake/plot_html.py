"""``ticklake plot --out FILE.html``: one self-contained page, interactive, no network.

Hand-written inline SVG and ~25 lines of JavaScript instead of a plotting library: the page
is tens of kilobytes (plotly's inlined bundle alone is ~4.5 MB) and the HTML chart needs
no dependency at all, so ``ticklake[plot]`` is matplotlib only, for PNG.

Invariants: the page loads nothing (no ``src``, ``href`` or URL of any kind; the SVG is
inline HTML5, so it needs no namespace URL either); every bar is one ``<g class="bar">``
with a ``<title>`` (the browser's own tooltip, without JavaScript) and its values sit in a
JSON block (``<script type="application/json" id="bars">``: ISO-8601 UTC times, null for a
missing volume or VWAP) that the script reads to show the bar under the pointer; text
from the data is escaped.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any, Final

import numpy as np

from lake.utc import DAY_MS, iso_utc
from ticklake.candles import PRICES, Candles

__all__ = ["page", "write_html"]

WIDTH: Final = 1000
LEFT, RIGHT, TOP = 70, 20, 40
PRICE_H, VOLUME_H, SPACE, BOTTOM = 360, 110, 20, 40
HEIGHT: Final = TOP + PRICE_H + SPACE + VOLUME_H + BOTTOM
PLOT_W: Final = WIDTH - LEFT - RIGHT
VOLUME_TOP: Final = TOP + PRICE_H + SPACE
LABEL_ROOM: Final = 120  # px between time labels

STYLE: Final = """
body{font:13px system-ui,sans-serif;margin:16px;color:#212121}
svg{background:#fff} text{font-size:11px;fill:#616161}
.grid{stroke:#eee} .up{fill:#26a69a;stroke:#26a69a} .down{fill:#ef5350;stroke:#ef5350}
.bar:hover{opacity:.6} .vwap{fill:none;stroke:#5c6bc0;stroke-width:1.5}
.gap{fill:#ef5350;opacity:.12} .late{fill:#ff9800} #cross{stroke:#9e9e9e;stroke-dasharray:3}
#readout{font-family:monospace;min-height:1.4em;white-space:pre}
"""

SCRIPT: Final = """
(() => {
  const data = JSON.parse(document.getElementById("bars").textContent);
  const svg = document.querySelector("svg"), cross = document.getElementById("cross");
  const out = document.getElementById("readout"), n = data.start.length;
  const show = (v) => v === null ? "-" : String(v);
  svg.addEventListener("mousemove", (event) => {
    const box = svg.getBoundingClientRect();
    const x = (event.clientX - box.left) * svg.viewBox.baseVal.width / box.width;
    if (!n || x < data.left || x > data.left + data.plot) return;
    let i = 0;  // the bar nearest the pointer (bars may be missing: no fixed step)
    for (let k = 1; k < n; k++) if (Math.abs(data.x[k] - x) < Math.abs(data.x[i] - x)) i = k;
    const mid = data.x[i];
    cross.setAttribute("x1", mid); cross.setAttribute("x2", mid);
    cross.style.display = "";
    out.textContent = `${data.start[i]}  O ${data.open[i]}  H ${data.high[i]}  ` +
      `L ${data.low[i]}  C ${data.close[i]}  volume ${show(data.volume[i])}  ` +
      `VWAP ${show(data.vwap[i])}` + (data.gap[i] ? "  GAP" : "") +
      (data.late[i] ? "  LATE" : "");
  });
  svg.addEventListener("mouseleave", () => { cross.style.display = "none"; });
})();
"""


def page(c: Candles, title: str) -> str:
    """The whole HTML page of ``c``."""
    x0 = int(c.start_ms[0]) if len(c) else 0
    span = max(int(c.start_ms[-1]) + c.width_ms - x0, c.width_ms) if len(c) else c.width_ms
    per_ms = PLOT_W / span
    step = c.width_ms * per_ms
    left = LEFT + (c.start_ms - x0) * per_ms
    mid = left + step / 2
    lo, hi = _price_range(c)
    price_y = _scale(lo, hi, TOP + PRICE_H, TOP)
    top_volume = float(np.nanmax(c.volume)) if len(c) and np.isfinite(c.volume).any() else 1.0
    volume_y = _scale(0.0, top_volume or 1.0, VOLUME_TOP + VOLUME_H, VOLUME_TOP)
    parts: list[str] = [*_price_axis(lo, hi, price_y), *_time_axis(c, mid)]
    parts += [
        f'<rect class="gap" x="{_f(x)}" y="{TOP}" width="{_f(step)}" height="{PRICE_H}"/>'
        for x in left[c.gap]
    ]
    body_w = max(step * 0.7, 1.0)
    for i in range(len(c)):
        kind = "up" if c.rising[i] else "down"
        y_open, y_close = price_y(c.open[i]), price_y(c.close[i])
        volume = 0.0 if math.isnan(c.volume[i]) else float(c.volume[i])
        parts.append(
            f'<g class="bar {kind}"><title>{html.escape(_tooltip(c, i))}</title>'
            f'<line x1="{_f(mid[i])}" x2="{_f(mid[i])}" y1="{_f(price_y(c.high[i]))}" '
            f'y2="{_f(price_y(c.low[i]))}"/>'
            f'<rect x="{_f(mid[i] - body_w / 2)}" y="{_f(min(y_open, y_close))}" '
            f'width="{_f(body_w)}" height="{_f(max(abs(y_open - y_close), 0.8))}"/>'
            f'<rect x="{_f(mid[i] - body_w / 2)}" y="{_f(volume_y(volume))}" '
            f'width="{_f(body_w)}" height="{_f(VOLUME_TOP + VOLUME_H - volume_y(volume))}"/>'
            "</g>"
        )
    parts += _vwap_lines(mid, c.vwap, price_y)
    parts += [
        f'<path class="late" d="M{_f(x)} {_f(price_y(h) - 4)}l-4 -7h8z"/>'
        for x, h in zip(mid[c.late], c.high[c.late], strict=True)
    ]
    parts.append(f'<line id="cross" y1="{TOP}" y2="{VOLUME_TOP + VOLUME_H}" style="display:none"/>')
    data = _data(c) | {"x": [round(x, 1) for x in mid.tolist()], "left": LEFT, "plot": PLOT_W}
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    svg = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
        f"<h3>{html.escape(title)}</h3>\n"
        '<div id="readout">point at a bar: its time (UTC), prices, volume and VWAP</div>\n'
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{html.escape(title)}">\n{svg}\n</svg>\n'
        "<p>Line: VWAP. Triangle: a late window. Red band: a connection gap. "
        "Times UTC.</p>\n"
        f'<script type="application/json" id="bars">{payload}</script>\n'
        f"<script>{SCRIPT}</script>\n</body></html>\n"
    )


def write_html(c: Candles, title: str, out: Path) -> None:
    """Save the page of ``c`` to ``out``."""
    out.write_text(page(c, title), encoding="utf-8")


def _data(c: Candles) -> dict[str, Any]:
    def values(array: Any) -> list[float | None]:
        return [None if math.isnan(v) else float(v) for v in array.tolist()]

    def prices(array: Any) -> list[float]:  # float32 as received: its shortest decimals
        return [float(str(v)) for v in array.astype(np.float32)]

    return {
        "ticker": c.ticker,
        "width": c.width,
        "start": [iso_utc(int(ms)) for ms in c.start_ms],
        **{name: prices(getattr(c, name)) for name in PRICES},
        "volume": values(c.volume),
        "vwap": values(c.vwap),
        "late": c.late.tolist(),
        "gap": c.gap.tolist(),
    }


def _tooltip(c: Candles, i: int) -> str:
    flags = "".join(text for flag, text in ((c.gap[i], " gap"), (c.late[i], " late")) if flag)
    volume = "-" if math.isnan(c.volume[i]) else f"{c.volume[i]:,.0f}"
    vwap = "-" if math.isnan(c.vwap[i]) else f"{c.vwap[i]:.6g}"
    return (
        f"{iso_utc(int(c.start_ms[i]), 'minutes')}  O {c.open[i]:.6g}  H {c.high[i]:.6g}  "
        f"L {c.low[i]:.6g}  C {c.close[i]:.6g}  volume {volume}  VWAP {vwap}{flags}"
    )


def _price_range(c: Candles) -> tuple[float, float]:
    if not len(c):
        return 0.0, 1.0
    values = np.concatenate([c.low, c.high, c.vwap[np.isfinite(c.vwap)]])
    lo, hi = float(values.min()), float(values.max())
    pad = (hi - lo) * 0.06 or abs(hi) * 1e-3 or 1.0
    return lo - pad, hi + pad


def _scale(lo: float, hi: float, bottom: float, top: float) -> Any:
    def y(value: float) -> float:
        return bottom + (float(value) - lo) / (hi - lo) * (top - bottom)

    return y


def _price_axis(lo: float, hi: float, y: Any) -> list[str]:
    out = []
    for tick in _nice_ticks(lo, hi):
        py = _f(y(tick))
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py}" y2="{py}"/>')
        out.append(f'<text x="{LEFT - 6}" y="{py}" text-anchor="end">{tick:.6g}</text>')
    return out


def _time_axis(c: Candles, mid: Any) -> list[str]:
    """A label under a bar wherever there is room since the last one (bars need not be
    evenly spaced: a market closes)."""
    out, last = [], -math.inf
    for i in range(len(c)):
        if mid[i] - last < LABEL_ROOM:
            continue
        last = mid[i]
        text = iso_utc(int(c.start_ms[i]), "minutes").replace("T", " ").removesuffix("Z")
        text = text[:10] if c.width_ms >= DAY_MS else text
        y = VOLUME_TOP + VOLUME_H + 16
        out.append(f'<text x="{_f(mid[i])}" y="{y}" text-anchor="middle">{text}</text>')
    return out


def _vwap_lines(mid: Any, vwap: Any, y: Any) -> list[str]:
    """One polyline per run of bars with a VWAP."""
    lines: list[list[str]] = []
    points: list[str] = []
    for x, v in zip(mid.tolist(), vwap.tolist(), strict=True):
        if math.isnan(v):
            lines.append(points)
            points = []
        else:
            points.append(f"{_f(x)},{_f(y(v))}")
    lines.append(points)
    return [f'<polyline class="vwap" points="{" ".join(p)}"/>' for p in lines if len(p) > 1]


def _nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(int((hi - first) / step) + 1)]


def _f(value: float) -> str:
    return f"{float(value):.1f}"
