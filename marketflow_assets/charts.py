"""Small SVG chart primitives for the ticker reports: stacked panels on a shared session axis.

Why not matplotlib: rasterizing a four-panel figure costs ~0.1 s per ticker (Agg text and tick
layout, then PNG encoding), i.e. over a minute for 500 tickers in every daily run. Here each
series is one SVG `<path>` whose coordinates numpy formats in one pass; the result is a third
of the PNG's size, sharp at any zoom, and inline in any browser. `Charts` draws the same series
of many charts at once (every ticker's SMA 50, say): one numpy pass over all their rows and one
string join, cut into each chart's piece by offsets, instead of ~30 small numpy calls per
chart, whose fixed cost dominated at 252 sessions (500 charts: ~2 s -> a fraction of it).

The x axis is the session index (no gaps for weekends and holidays, as trading charts do);
`x_ticks` labels the first session of each month.
"""

from __future__ import annotations

import functools
import html
from dataclasses import dataclass

import numpy as np

WIDTH = 800
LEFT, RIGHT = 56, 12  # room for the y labels
FONT = 'font-family="sans-serif" font-size="{}"'.format
GRID = "#e0e0e0"
MAX_X_LABELS = 7


# Every tenth of a pixel a chart can use, formatted once: indexing this table formats a
# series ~50x faster than `np.char.mod` (which calls Python's formatting per element).
_MAX_PIXEL = 2 * WIDTH
_TENTHS = np.array([f"{i / 10:.1f}" for i in range(10 * _MAX_PIXEL + 1)], dtype=object)


def _num(values: np.ndarray) -> np.ndarray:
    """Pixel coordinates as short strings ('123.4'), vectorized."""
    values = np.asarray(values, dtype=np.float64)
    tenths = np.rint(values * 10)
    inside = np.isfinite(tenths) & (tenths >= 0) & (tenths <= 10 * _MAX_PIXEL)
    if inside.all():
        return _TENTHS[tenths.astype(np.int64)]
    out = np.empty(values.shape, dtype=object)  # off the canvas or missing: formatted one by one
    out[inside] = _TENTHS[tenths[inside].astype(np.int64)]
    out[~inside] = np.char.mod("%.1f", values[~inside]).astype(object)
    return out


def _cat(*parts) -> str:
    """Element-wise concatenation of string arrays / scalars, then joined."""
    sizes = [np.size(part) for part in parts if not isinstance(part, str)]
    if 0 in sizes:
        return ""
    length = max(sizes, default=1)  # scalars (strings, 0-d arrays) repeat on every row
    table = np.empty((length, len(parts)), dtype=object)
    for column, part in enumerate(parts):
        table[:, column] = part
    return "".join(table.ravel().tolist())


@dataclass(frozen=True)
class Panel:
    """One chart: a pixel box (`top`, `height`) showing sessions 0..n-1 and values lo..hi."""

    title: str
    top: float
    height: float
    n: int
    lo: float
    hi: float

    def x(self, index) -> np.ndarray:
        return LEFT + (np.asarray(index, dtype=np.float64) + 0.5) * (WIDTH - LEFT - RIGHT) / self.n

    def y(self, values) -> np.ndarray:
        scale = self.height / (self.hi - self.lo)
        return self.top + (self.hi - np.asarray(values, dtype=np.float64)) * scale

    def line(self, values, color: str, *, width: float = 1.0, dash: str = "", css: str = "") -> str:
        """A polyline over the sessions, broken where a value is missing (warm-up NaNs)."""
        values = np.asarray(values, dtype=np.float64)
        ok = np.isfinite(values)
        if not ok.any():
            return ""
        starts = ok & ~np.concatenate(([False], ok[:-1]))
        commands = np.where(starts, "M", "L")[ok]
        index = np.flatnonzero(ok)
        d = _cat(commands, _num(self.x(index)), ",", _num(self.y(values[ok])))
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        return (
            f'<path class="{css or "line"}" d="{d}" fill="none" stroke="{color}" '
            f'stroke-width="{width}"{extra}/>'
        )

    def bars(self, index, y0, y1, color: str, *, width: float) -> str:
        """Vertical segments from y0 to y1 at the given sessions (candles, wicks, histograms)."""
        index = np.asarray(index)
        if not len(index):
            return ""
        d = _cat("M", _num(self.x(index)), ",", _num(self.y(y0)), "V", _num(self.y(y1)))
        return f'<path d="{d}" stroke="{color}" stroke-width="{width}"/>'

    def markers(self, index, values, color: str, *, up: bool, css: str) -> str:
        """A triangle per point, pointing up or down; one element each, so they can be counted."""
        x, y = _num(self.x(index)), _num(self.y(values))
        shape = "l-6,10h12z" if up else "l-6,-10h12z"
        return _cat(f'<path class="{css}" d="M', x, ",", y, f'{shape}" fill="{color}"/>')

    def hline(self, value: float, color: str, *, dash: str = "") -> str:
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        y = float(self.y(value))
        return (
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{color}"{extra}/>'
        )

    def frame(self, x_ticks: np.ndarray) -> str:
        """Title, border, horizontal grid with value labels, vertical grid at `x_ticks`."""
        return self.frame_head() + self.hgrid() + self.vgrid(x_ticks)

    def frame_head(self) -> str:
        right = WIDTH - RIGHT
        return (
            f'<text class="title" x="{LEFT}" y="{self.top - 6:.1f}" {FONT(13)}>'
            f"{html.escape(self.title)}</text>"
            f'<rect x="{LEFT}" y="{self.top:.1f}" width="{right - LEFT}" '
            f'height="{self.height:.1f}" fill="none" stroke="#999"/>'
        )

    def hgrid(self) -> str:
        """Horizontal grid lines with value labels at round values."""
        return _hgrid(self.top, self.height, self.lo, self.hi)

    def vgrid(self, x_ticks: np.ndarray) -> str:
        """Vertical grid lines at the sessions `x_ticks`."""
        bottom = self.top + self.height
        return "".join(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{self.top:.1f}" y2="{bottom:.1f}" '
            f'stroke="{GRID}"/>'
            for x in self.x(x_ticks)
        )

    def legend(self, items: list[tuple[str, str]]) -> str:
        """Colored swatches with labels in the panel's top-left corner."""
        parts, x, y = [], LEFT + 8, self.top + 14
        for label, color in items:
            parts.append(
                f'<g class="legend"><rect x="{x}" y="{y - 8:.1f}" width="14" height="4" '
                f'fill="{color}"/><text x="{x + 18}" y="{y:.1f}" {FONT(11)}>{html.escape(label)}</text>'
                "</g>"
            )
            x += 26 + 7 * len(label)
        return "".join(parts)


def limits(*series, pad: float = 0.05) -> tuple[float, float]:
    """The padded value range of the series (ignoring NaN); (0, 1) when all are missing."""
    values = np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in series])
    values = values[np.isfinite(values)]
    if not len(values):
        return 0.0, 1.0
    lo, hi = float(values.min()), float(values.max())
    span = hi - lo or abs(hi) or 1.0
    return lo - pad * span, hi + pad * span


def nice_ticks(lo: float, hi: float, count: int = 4) -> np.ndarray:
    """Round values (1, 2, 2.5 or 5 x 10^k apart) inside [lo, hi], about `count` of them."""
    raw = (hi - lo) / count
    magnitude = 10 ** np.floor(np.log10(raw))
    step = magnitude * min(m for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return np.arange(np.ceil(lo / step), np.floor(hi / step) + 1) * step


@functools.lru_cache(maxsize=256)  # panels on the same scale (every RSI 0..100) share one
def _hgrid(top: float, height: float, lo: float, hi: float) -> str:
    """`Panel.hgrid`: the tick positions computed as one array (the same float operations as
    one tick at a time), the labels formatted from Python floats (as numpy's scalars format)."""
    ticks = nice_ticks(lo, hi)
    scale = height / (hi - lo)
    ys = (top + (hi - ticks) * scale).tolist()
    right, font = WIDTH - RIGHT, FONT(11)
    return "".join(
        f'<line x1="{LEFT}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
        f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" {font}>{value:g}</text>'
        for value, y in zip(ticks.tolist(), ys, strict=True)
    )


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def x_ticks(dates) -> tuple[np.ndarray, list[str]]:
    """Session indexes and labels of month starts, thinned to at most `MAX_X_LABELS`."""
    months = np.asarray(dates, dtype="datetime64[ns]").astype("datetime64[M]").astype(np.int64)
    index = np.flatnonzero(np.concatenate(([False], months[1:] != months[:-1])))
    index = index[:: max(1, -(-len(index) // MAX_X_LABELS))]
    return index, [f"{MONTHS[m % 12]} {1970 + m // 12}" for m in months[index].tolist()]


def x_labels(panel: Panel, index: np.ndarray, labels: list[str]) -> str:
    y = panel.top + panel.height + 14
    return "".join(
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="middle" {FONT(11)}>{html.escape(label)}</text>'
        for x, label in zip(panel.x(index), labels, strict=True)
    )


def document(height: int, title: str, body: list[str]) -> str:
    """A standalone SVG (with its namespace, so it also works as a data: URI)."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}"><rect width="100%" height="100%" fill="white"/>'
        f'<text class="suptitle" x="{WIDTH / 2}" y="20" text-anchor="middle" {FONT(15)}>'
        f"{html.escape(title)}</text>{''.join(body)}</svg>"
    )


def _cat_charts(chart: np.ndarray, charts: int, *parts) -> list[str]:
    """`_cat` per chart: the rows of each chart (`chart`: sorted chart ids of the rows)
    concatenated element-wise and joined; one cell table for all rows, one join per chart."""
    out = [""] * charts
    if not len(chart):
        return out
    width = len(parts)
    table = np.empty((len(chart), width), dtype=object)
    for column, part in enumerate(parts):
        table[:, column] = part
    cells = table.ravel().tolist()
    counts = np.bincount(chart, minlength=charts)
    bounds = (np.concatenate(([0], np.cumsum(counts))) * width).tolist()
    for i in np.flatnonzero(counts).tolist():
        out[i] = "".join(cells[bounds[i] : bounds[i + 1]])
    return out


@dataclass(frozen=True)
class Charts:
    """The same panel of many charts at once, over rows sorted by chart: chart `i` owns rows
    `bounds[i]:bounds[i + 1]` and shows values `lo[i]..hi[i]`. Each method returns one string
    per chart, exactly what `Panel` (`panel(i)`) draws for that chart's rows alone."""

    title: str
    top: float
    height: float
    bounds: np.ndarray  # row offsets of the charts, len(charts) + 1
    lo: np.ndarray
    hi: np.ndarray

    @property
    def count(self) -> int:
        return len(self.bounds) - 1

    @property
    def chart(self) -> np.ndarray:
        """The chart of every row."""
        return np.repeat(np.arange(self.count), np.diff(self.bounds))

    @property
    def position(self) -> np.ndarray:
        """Every row's session index within its chart."""
        return np.arange(self.bounds[-1]) - np.repeat(self.bounds[:-1], np.diff(self.bounds))

    def panel(self, i: int) -> Panel:
        n = int(self.bounds[i + 1] - self.bounds[i])
        return Panel(self.title, self.top, self.height, n, float(self.lo[i]), float(self.hi[i]))

    def x(self, position: np.ndarray, chart: np.ndarray) -> np.ndarray:
        n = np.diff(self.bounds)[chart]
        return LEFT + (np.asarray(position, dtype=np.float64) + 0.5) * (WIDTH - LEFT - RIGHT) / n

    def y(self, values, chart: np.ndarray) -> np.ndarray:
        scale = self.height / (self.hi - self.lo)
        return self.top + (self.hi[chart] - np.asarray(values, dtype=np.float64)) * scale[chart]

    def lines(
        self, values, color: str, *, width: float = 1.0, dash: str = "", css: str = ""
    ) -> list[str]:
        """`Panel.line` of every chart."""
        values = np.asarray(values, dtype=np.float64)
        ok = np.isfinite(values)
        previous = np.concatenate(([False], ok[:-1]))
        previous[self.bounds[:-1][np.diff(self.bounds) > 0]] = False  # a chart's first row
        commands = np.where(ok & ~previous, "M", "L")[ok]
        chart, position = self.chart[ok], self.position[ok]
        d = _cat_charts(
            chart,
            self.count,
            commands,
            _num(self.x(position, chart)),
            ",",
            _num(self.y(values[ok], chart)),
        )
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        head = f'<path class="{css or "line"}" d="'
        tail = f'" fill="none" stroke="{color}" stroke-width="{width}"{extra}/>'
        return [f"{head}{text}{tail}" if text else "" for text in d]

    def bars(self, mask: np.ndarray, y0, y1, color: str, *, width: float) -> list[str]:
        """`Panel.bars` of every chart at its rows in `mask`, from `y0` to `y1` (row arrays or
        a scalar)."""
        at = np.flatnonzero(mask)
        chart, position = self.chart[at], self.position[at]
        pick = lambda v: v if np.ndim(v) == 0 else np.asarray(v)[at]  # noqa: E731
        d = _cat_charts(
            chart,
            self.count,
            "M",
            _num(self.x(position, chart)),
            ",",
            _num(self.y(pick(y0), chart)),
            "V",
            _num(self.y(pick(y1), chart)),
        )
        tail = f'" stroke="{color}" stroke-width="{width}"/>'
        return [f'<path d="{text}{tail}' if text else "" for text in d]

    def markers(
        self, chart: np.ndarray, position: np.ndarray, values, color: str, *, up: bool, css: str
    ) -> list[str]:
        """`Panel.markers` of every chart: points at (`chart`, `position`), sorted by chart."""
        shape = "l-6,10h12z" if up else "l-6,-10h12z"
        return _cat_charts(
            chart,
            self.count,
            f'<path class="{css}" d="M',
            _num(self.x(position, chart)),
            ",",
            _num(self.y(values, chart)),
            f'{shape}" fill="{color}"/>',
        )


def chart_limits(bounds: np.ndarray, *series, pad: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """`limits` of every chart (rows `bounds[i]:bounds[i + 1]`); a scalar series is a value of
    every chart."""
    charts = len(bounds) - 1
    lo, hi = np.full(charts, np.nan), np.full(charts, np.nan)
    filled = np.diff(bounds) > 0
    starts = bounds[:-1][filled]
    for s in series:
        values = np.asarray(s, dtype=np.float64)
        values = np.where(np.isfinite(values), values, np.nan)
        if values.ndim == 0:
            lo, hi = np.fmin(lo, values), np.fmax(hi, values)
        elif len(starts):
            lo[filled] = np.fmin(lo[filled], np.fmin.reduceat(values, starts))
            hi[filled] = np.fmax(hi[filled], np.fmax.reduceat(values, starts))
    missing = np.isnan(lo)
    span = hi - lo
    span = np.where(span == 0, np.abs(hi), span)
    span = np.where(span == 0, 1.0, span)
    low, high = lo - pad * span, hi + pad * span
    return np.where(missing, 0.0, low), np.where(missing, 1.0, high)
