"""Static SVG drawings of our plotly figures: ``figure_svg`` turns a figure built here into one line of inline SVG.

A browser draws six such charts for a small fraction of what six live plotly charts cost, so the live view
redraws them as SVG while a run trains (the finished run keeps interactive plotly). It draws what our builders
make: scatter traces (lines, markers, fills), numeric linear and log axes with subplot domains, line and rect
shapes, plain-text annotations, a title with its note and a legend row. Other trace types (bars, heatmaps),
hover text, annotation backgrounds and arrows are left out. Escaping lives in ``svg_text``. Pure functions, no
Streamlit, no I/O.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dpcore.errors import ConfigError
from dpcore.views.plots.base import DEFAULT_HEIGHT, FONT_FAMILY, RUN_PALETTE
from dpcore.views.plots.svg_text import dasharray, escape_attr, escape_text, plain_lines, safe_color, text_width

#: Traces with more points are thinned evenly (first and last kept); markers are dropped above MAX_MARKERS.
MAX_POINTS = 600
MAX_MARKERS = 200
GRID_STYLE = 'stroke="#8a8a8a" stroke-opacity="0.25" stroke-width="1"'
AXIS_STYLE = 'stroke="#8a8a8a" stroke-opacity="0.7" stroke-width="1"'
#: Pixel coordinates are clamped to this magnitude: far-off points stay finite (the clip path hides them).
PX_LIMIT = 1e5
# ---------------------------------------------------------------------- axes: ranges, ticks, pixels
@dataclass
class _Axis:
    """One axis: its range in axis units (log10 on a log axis), ticks and labels, then its pixel span."""

    name: str
    spec: Any
    log: bool
    domain: tuple[float, float]
    lo: float = 0.0
    hi: float = 1.0
    ticks: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    px0: float = 0.0
    px1: float = 1.0

    def units(self, values: np.ndarray) -> np.ndarray:
        """Data values in axis units: log10 on a log axis (non-positive values become NaN)."""
        if not self.log:
            return values
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(values > 0, np.log10(np.where(values > 0, values, 1.0)), np.nan)

    def px(self, values: np.ndarray) -> np.ndarray:
        """Axis units to pixels, clamped to ±PX_LIMIT; non-finite values (gaps) become NaN."""
        with np.errstate(invalid="ignore", over="ignore"):
            scaled = self.px0 + (values - self.lo) / (self.hi - self.lo) * (self.px1 - self.px0)
        return np.where(np.isfinite(values), np.clip(scaled, -PX_LIMIT, PX_LIMIT), np.nan)

    def px_one(self, value: float) -> float:
        return float(self.px(np.array([value], dtype=float))[0])

    @property
    def visible(self) -> bool:
        return self.spec.visible is not False


class _Props:
    """Attribute access to the plain properties of a trace, shape, annotation or axis, None when unset (compound
    ones like 'line' read as empty): plotly's own attribute access cost more than the whole drawing."""

    __slots__ = ("_props",)
    _COMPOUND = frozenset({"line", "marker", "font", "title"})

    def __init__(self, props: dict[str, Any]) -> None:
        self._props = props

    def __getattr__(self, name: str) -> Any:
        value = self._props.get(name)
        if isinstance(value, dict) or (value is None and name in self._COMPOUND):
            return _Props(value or {})
        return value


def _floats(values: Any) -> np.ndarray:
    """A trace's x or y as float64 (None and non-numbers become NaN)."""
    try:
        return np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        return pd.to_numeric(pd.Series(list(values)), errors="coerce").to_numpy(dtype=float)


def _trace_xy(trace: Any) -> tuple[np.ndarray, np.ndarray]:
    ys = _floats(trace.y) if trace.y is not None else np.zeros(0)
    xs = _floats(trace.x) if trace.x is not None else np.arange(ys.size, dtype=float)
    n = min(xs.size, ys.size)
    return xs[:n], ys[:n]


def _drawn(trace: Any) -> bool:
    return trace.type in ("scatter", "scattergl") and trace.visible not in (False, "legendonly")


def _has_markers(trace: Any, n: int) -> bool:
    mode = trace.mode if trace.mode is not None else ("lines+markers" if n < 20 else "lines")
    return "markers" in mode and n <= MAX_MARKERS


def _auto_range(values: np.ndarray, *, padded: bool, tozero: bool, log: bool) -> tuple[float, float]:
    """Plotly-like autorange over finite ``values`` (axis units): 5 % padding, 0 included for 'tozero'."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (0.0, 1.0)
    lo, hi = float(finite.min()), float(finite.max())
    if hi == lo:
        pad = 0.5 if log else (abs(lo) * 0.1 or 1.0)
        lo, hi = lo - pad, hi + pad
        return (max(lo, 0.0), hi) if tozero and not log and finite.min() >= 0 else (lo, hi)
    pad = 0.05 * (hi - lo) if padded else 0.0
    new_lo, new_hi = lo - pad, hi + pad
    if tozero and not log:
        new_lo = 0.0 if lo >= 0 else new_lo
        new_hi = 0.0 if hi <= 0 else new_hi
    return new_lo, new_hi


def _nice_step(span: float, count: int, *, quarter: bool = True) -> float:
    raw = span / max(count, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in ((1, 2, 2.5, 5, 10) if quarter else (1, 2, 5, 10)) if m * power >= raw)


def _decimals(step: float) -> int:
    for decimals in range(0, 7):
        if abs(round(step, decimals) - step) < step * 1e-6:
            return decimals
    return 6


def _tick_label(value: float, step: float, tickformat: str, log: bool) -> str:
    """A short tick label honouring our builders' tickformats ('.0%', '~%', '.2f'); k/M/G from 10 000 on."""
    fixed = re.fullmatch(r"~?\.(\d+)([f%])", tickformat)
    if fixed:
        scale = 100.0 if fixed.group(2) == "%" else 1.0
        return f"{value * scale:.{int(fixed.group(1))}f}" + ("%" if scale == 100.0 else "")
    if tickformat.endswith("%"):
        if log:
            return f"{value * 100:g}%"
        return f"{value * 100:.{_decimals(step * 100)}f}%"
    if value == 0:
        return "0"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= max(scale, 1e4):
            return _trim(f"{value / scale:.{_decimals(step / scale) if not log else 0}f}") + suffix
    if log:
        return f"{value:g}"
    decimals = _decimals(step)
    if decimals <= 4:
        return _trim(f"{value:.{decimals}f}")
    return f"{value:.{min(15, max(2, math.ceil(math.log10(abs(value) / step)) + 1))}g}"  # tiny steps: enough digits


def _trim(number: str) -> str:
    """'1.50' -> '1.5', '2.0' -> '2' (plotly's default tick labels carry no trailing zeros)."""
    return number.rstrip("0").rstrip(".") if "." in number else number


def _set_ticks(axis: _Axis, count: int) -> None:
    """Fill ``axis.ticks`` (axis units) and ``axis.labels``: nice linear steps or powers of ten."""
    lo, hi, fmt = min(axis.lo, axis.hi), max(axis.lo, axis.hi), str(axis.spec.tickformat or "")  # may be reversed
    if axis.log:
        first, last = math.ceil(lo - 1e-9), math.floor(hi + 1e-9)
        values = [10.0**k for k in range(first, last + 1, max(1, math.ceil((last - first + 1) / 6)))]
        if len(values) < 3:
            values = sorted({m * 10.0**k for k in range(first - 1, last + 1) for m in (1, 2, 5)})
            values = [v for v in values if lo - 1e-9 <= math.log10(v) <= hi + 1e-9]
        axis.ticks = [math.log10(v) for v in values]
        axis.labels = [_tick_label(v, v, fmt, True) for v in values]
        return
    dtick, fixed = axis.spec.dtick, re.fullmatch(r"~?\.(\d+)([f%])", fmt)
    # a fixed format ('.0%') cannot label steps finer than its last digit, nor 2.5 steps
    finest = 10.0 ** -int(fixed.group(1)) / (100.0 if fixed.group(2) == "%" else 1.0) if fixed else 0.0
    if isinstance(dtick, (int, float)) and 0 < (hi - lo) / float(dtick) <= 15:
        steps = [float(dtick)]
    else:
        steps = [max(_nice_step(hi - lo, n, quarter=not fixed), finest) for n in (count, 2 * count)]
    for step in steps:  # the finer step only when the first gives too few ticks
        start = math.ceil(lo / step - 1e-9)
        axis.ticks = [k * step for k in range(start, start + 100) if k * step <= hi + step * 1e-9]
        if len(axis.ticks) >= min(4, count):
            break
    axis.labels = [_tick_label(v, step, fmt, False) for v in axis.ticks]


def _axes(fig: go.Figure, letter: str, traces: list[Any], shapes: list[Any]) -> dict[str, _Axis]:
    """The figure's x or y axes (``letter``), keyed by reference ('x', 'x2'), ranged and ticked."""
    names = {(getattr(trace, f"{letter}axis") or letter) for trace in traces} | {letter}
    names |= {key.replace("axis", "") for key in fig.layout if key.startswith(f"{letter}axis")}
    axes: dict[str, _Axis] = {}
    for name in sorted(names, key=lambda n: int(n[1:] or 1)):
        spec = _Props(fig.layout[f"{letter}axis{name[1:]}"].to_plotly_json())
        domain = tuple(spec.domain) if spec.domain else (0.0, 1.0)
        axes[name] = _Axis(name=name, spec=spec, log=spec.type == "log", domain=(float(domain[0]), float(domain[1])))
    groups: dict[str, list[str]] = {}
    for name, axis in axes.items():
        root = axis.spec.matches if axis.spec.matches in axes else name
        groups.setdefault(root, []).append(name)
    for members in groups.values():
        lo, hi = _group_range([axes[n] for n in members], letter, traces, shapes)
        for name in members:
            axes[name].lo, axes[name].hi = lo, hi
            share = axes[name].domain[1] - axes[name].domain[0]
            _set_ticks(axes[name], 6 if share > 0.55 else 3)
    return axes


def _group_range(group: list[_Axis], letter: str, traces: list[Any], shapes: list[Any]) -> tuple[float, float]:
    """The range (axis units) shared by matched axes: explicit where given, else autorange over what they draw."""
    first = group[0]
    given = next((list(a.spec.range) for a in group if a.spec.range is not None and a.spec.autorange is not True), [])
    explicit = [_finite(value) for value in [*given, None, None][:2]]
    if explicit[0] is not None and explicit[1] is not None and explicit[1] != explicit[0]:
        return explicit[0], explicit[1]
    names = {a.name for a in group}
    values, padded = [], letter == "y"
    for trace in traces:
        if (getattr(trace, f"{letter}axis") or letter) in names:
            xs, ys = _trace_xy(trace)
            values.append(first.units(xs if letter == "x" else ys))
            padded = padded or _has_markers(trace, xs.size)
    for shape in shapes:
        if getattr(shape, f"{letter}ref") in names:
            values.append(first.units(_floats([getattr(shape, f"{letter}0"), getattr(shape, f"{letter}1")])))
    rangemode = first.spec.rangemode
    lo, hi = _auto_range(np.concatenate(values) if values else np.zeros(0), padded=padded,
                         tozero=rangemode in ("tozero", "nonnegative"), log=first.log)
    lo, hi = explicit[0] if explicit[0] is not None else lo, explicit[1] if explicit[1] is not None else hi
    if not (math.isfinite(hi - lo) and hi != lo):
        return (0.0, 1.0)  # e.g. data at ±1e308: nothing sensible to show, but nothing may divide by zero
    return lo, hi


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# ---------------------------------------------------------------------- drawing
@dataclass
class _Frame:
    """The plot area in px and the axes placed in it."""

    left: float
    top: float
    right: float
    bottom: float
    xaxes: dict[str, _Axis]
    yaxes: dict[str, _Axis]
    uid: str
    clips: dict[tuple[str, str], str] = field(default_factory=dict)

    def place(self) -> None:
        for axis in self.xaxes.values():
            axis.px0 = self.left + axis.domain[0] * (self.right - self.left)
            axis.px1 = self.left + axis.domain[1] * (self.right - self.left)
        for axis in self.yaxes.values():
            axis.px0 = self.bottom - axis.domain[0] * (self.bottom - self.top)
            axis.px1 = self.bottom - axis.domain[1] * (self.bottom - self.top)

    def clip(self, xname: str, yname: str) -> str:
        """The id of the clip path of subplot (``xname``, ``yname``), made on first use."""
        key = (xname if xname in self.xaxes else "x", yname if yname in self.yaxes else "y")
        return self.clips.setdefault(key, f"{self.uid}-{len(self.clips)}")

    def defs(self) -> str:
        rects = []
        for (xname, yname), clip_id in self.clips.items():
            xa, ya = self.xaxes[xname], self.yaxes[yname]
            rects.append(f'<clipPath id="{clip_id}"><rect x="{xa.px0:.1f}" y="{ya.px1:.1f}" '
                         f'width="{xa.px1 - xa.px0:.1f}" height="{ya.px0 - ya.px1:.1f}"/></clipPath>')
        return f"<defs>{''.join(rects)}</defs>" if rects else ""

    def position(self, ref: Any, value: Any, letter: str, *, data_units: bool) -> float | None:
        """Pixel of ``value`` given in ``ref`` ('paper', 'x2', 'x2 domain'); ``data_units``: log10 it on log axes."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        axes = self.xaxes if letter == "x" else self.yaxes
        ref = str(ref or "paper")
        if ref == "paper":
            span = (self.left, self.right) if letter == "x" else (self.bottom, self.top)
            result = span[0] + number * (span[1] - span[0])
        elif ref.endswith(" domain") and ref[:-7] in axes:
            axis = axes[ref[:-7]]  # px0/px1 are the domain's edges (bottom/top on a y axis)
            result = axis.px0 + number * (axis.px1 - axis.px0)
        elif ref in axes:
            axis = axes[ref]
            units = float(axis.units(np.array([number]))[0]) if data_units else number
            result = axis.px_one(units) if math.isfinite(units) else math.nan
        else:
            return None
        return result if math.isfinite(result) else None


def _polyline(xs: np.ndarray, ys: np.ndarray, shape: Any) -> list[str]:
    """Path pieces ('M x,y L x,y ...') for runs of finite points; non-finite points split the line."""
    finite = np.isfinite(xs) & np.isfinite(ys)
    pieces: list[str] = []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], finite.astype(np.int8), [0]])))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        px, py = xs[start:stop], ys[start:stop]
        if shape in ("hv", "vh") and px.size > 1:
            mid_x, mid_y = (px[1:], py[:-1]) if shape == "hv" else (px[:-1], py[1:])
            px = [*np.column_stack([px[:-1], mid_x]).ravel().tolist(), px[-1]]
            py = [*np.column_stack([py[:-1], mid_y]).ravel().tolist(), py[-1]]
        points = " L".join(f"{x:.1f},{y:.1f}" for x, y in zip(px, py, strict=True))
        pieces.append(f"M{points}")
    return pieces


def _thin(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most MAX_POINTS evenly spaced points (first and last kept), plus every gap so lines still split there."""
    if xs.size <= MAX_POINTS:
        return xs, ys
    keep = np.unique(np.round(np.linspace(0, xs.size - 1, MAX_POINTS)).astype(int))
    keep = np.union1d(keep, np.flatnonzero(~(np.isfinite(xs) & np.isfinite(ys))))
    return xs[keep], ys[keep]


def _trace_svg(trace: Any, index: int, frame: _Frame, colorway: list[str]) -> str:
    """One scatter trace as ``<g class="trace">``: its fill, its line (``class="line"``) and small markers."""
    xname, yname = trace.xaxis or "x", trace.yaxis or "y"
    xa, ya = frame.xaxes.get(xname, frame.xaxes["x"]), frame.yaxes.get(yname, frame.yaxes["y"])
    xs, ys = _trace_xy(trace)
    n = xs.size
    if n == 0:
        return ""
    xs, ys = _thin(xs, ys)
    px, py = xa.px(xa.units(xs)), ya.px(ya.units(ys))
    color = safe_color(trace.line.color, escape_attr(colorway[index % len(colorway)]))
    width = float(trace.line.width if trace.line.width is not None else 2)
    mode = trace.mode if trace.mode is not None else ("lines+markers" if n < 20 else "lines")
    parts, pieces = [], _polyline(px, py, trace.line.shape)
    fill = trace.fill
    if fill in ("toself", "tozeroy", "tozerox") and pieces:
        fill_color = safe_color(trace.fillcolor, "")
        paint = f'fill="{fill_color}"' if fill_color else f'fill="{color}" fill-opacity="0.5"'
        closed = []
        for piece in pieces:
            if fill == "toself":
                closed.append(piece + "Z")
                continue
            coords = [p.split(",") for p in piece[1:].split(" L")]
            if fill == "tozeroy":
                zero = min(max(ya.px_one(0.0) if not ya.log else ya.px0, ya.px1), ya.px0)
                closed.append(f"{piece} L{coords[-1][0]},{zero:.1f} L{coords[0][0]},{zero:.1f}Z")
            else:
                zero = min(max(xa.px_one(0.0) if not xa.log else xa.px0, xa.px0), xa.px1)
                closed.append(f"{piece} L{zero:.1f},{coords[-1][1]} L{zero:.1f},{coords[0][1]}Z")
        parts.append(f'<path class="fill" d="{"".join(closed)}" {paint} stroke="none"/>')
    if "lines" in mode and width > 0 and pieces:
        parts.append(f'<path class="line" d="{"".join(pieces)}" fill="none" stroke="{color}" '
                     f'stroke-width="{width:g}"{dasharray(trace.line.dash, width)} stroke-linejoin="round"/>')
    if "markers" in mode and n <= MAX_MARKERS:
        size = trace.marker.size if isinstance(trace.marker.size, (int, float)) else 6
        marker = safe_color(trace.marker.color, color)
        finite = np.isfinite(px) & np.isfinite(py)
        parts.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{size / 2:g}" fill="{marker}"/>'
                     for x, y in zip(px[finite], py[finite], strict=True))
    if not parts:
        return ""
    opacity = f' opacity="{float(trace.opacity):g}"' if trace.opacity is not None and trace.opacity < 1 else ""
    return (f'<g class="trace" clip-path="url(#{frame.clip(xname, yname)})"{opacity}>{"".join(parts)}</g>')


def _shape_svg(shape: Any, frame: _Frame) -> str:
    """A layout shape of type 'line' or 'rect' (others are skipped), clipped to the plot area when on an axis."""
    if shape.type not in ("line", "rect") or shape.visible is False:
        return ""
    x0, x1 = (frame.position(shape.xref, v, "x", data_units=True) for v in (shape.x0, shape.x1))
    y0, y1 = (frame.position(shape.yref, v, "y", data_units=True) for v in (shape.y0, shape.y1))
    if None in (x0, x1, y0, y1):
        return ""
    width = float(shape.line.width if shape.line.width is not None else 2)
    stroke = (f' stroke="{safe_color(shape.line.color, "#444")}" stroke-width="{width:g}"'
              f'{dasharray(shape.line.dash, width)}') if width > 0 else ' stroke="none"'
    opacity = f' opacity="{float(shape.opacity):g}"' if shape.opacity is not None and shape.opacity < 1 else ""
    on_axis = str(shape.xref or "paper") != "paper" or str(shape.yref or "paper") != "paper"
    clip = ""
    if on_axis:
        xname = str(shape.xref).split(" ")[0] if shape.xref != "paper" else "x"
        yname = str(shape.yref).split(" ")[0] if shape.yref != "paper" else "y"
        clip = f' clip-path="url(#{frame.clip(xname, yname)})"'
    if shape.type == "line":
        return f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}"{stroke}{opacity}{clip}/>'
    fill = safe_color(shape.fillcolor, "none")
    return (f'<rect x="{min(x0, x1):.1f}" y="{min(y0, y1):.1f}" width="{abs(x1 - x0):.1f}" '
            f'height="{abs(y1 - y0):.1f}" fill="{fill}"{stroke}{opacity}{clip}/>')


def _text_block(lines: list[str], *, x: float, y: float, size: float, fill: str, xanchor: str, yanchor: str,
                angle: float = 0.0, extra: str = "", tip: str = "") -> str:
    """``lines`` of text anchored at (x, y) like a plotly annotation box (``xanchor``, ``yanchor``), turned; ``tip``
    (the annotation's hover text) becomes the text's ``<title>``, which a browser shows as a tooltip."""
    height = 1.25 * size * len(lines)
    if angle:
        rad, box_w = math.radians(angle), max(text_width(line, size) for line in lines)
        w = abs(math.cos(rad)) * box_w + abs(math.sin(rad)) * height
        h = abs(math.sin(rad)) * box_w + abs(math.cos(rad)) * height
        cx = x + {"left": w / 2, "right": -w / 2}.get(xanchor, 0.0)
        cy = y + {"top": h / 2, "bottom": -h / 2}.get(yanchor, 0.0)
        x, anchor, top = cx, "middle", cy - height / 2
        extra += f' transform="rotate({angle:g} {cx:.1f} {cy:.1f})"'
    else:
        anchor = {"left": "start", "right": "end"}.get(xanchor, "middle")
        top = {"top": y, "bottom": y - height}.get(yanchor, y - height / 2)
    spans = "".join(f'<tspan x="{x:.1f}" y="{top + (i + 0.5) * 1.25 * size + 0.35 * size:.1f}">'
                    f'{escape_text(line)}</tspan>' for i, line in enumerate(lines))
    title = f"<title>{escape_text(tip)}</title>" if tip else ""
    return f'<text font-size="{size:g}" fill="{fill}" text-anchor="{anchor}"{extra}>{title}{spans}</text>'


def _annotation_svg(note: Any, frame: _Frame) -> str:
    """A plain-text annotation; ones outside the plot area (or its axis range) are skipped."""
    lines = [line for line in plain_lines(note.text) if line]
    if not lines or note.visible is False:
        return ""
    x = frame.position(note.xref, note.x if note.x is not None else 0.5, "x", data_units=False)
    y = frame.position(note.yref, note.y if note.y is not None else 0.5, "y", data_units=False)
    inside = frame.left - 1 <= (x or 0) <= frame.right + 1 and frame.top - 1 <= (y or 0) <= frame.bottom + 1
    if x is None or y is None or not inside:
        return ""
    if note.showarrow is not False:
        x += float(note.ax if note.ax is not None else -10)
        y += float(note.ay if note.ay is not None else -30)
    xanchor = note.xanchor or "auto"
    if xanchor == "auto":
        share = (x - frame.left) / max(frame.right - frame.left, 1.0)
        xanchor = "center" if note.xref not in (None, "paper") else (
            "left" if share <= 1 / 3 else "right" if share >= 2 / 3 else "center")
    size = float(note.font.size or 12)
    fill = safe_color(note.font.color, "currentColor")
    return _text_block(lines, x=x, y=y, size=size, fill=fill, xanchor=xanchor, yanchor=note.yanchor or "middle",
                       angle=float(note.textangle or 0), tip=" · ".join(plain_lines(note.hovertext)))


def _axes_svg(frame: _Frame) -> tuple[str, str]:
    """(grid and axis lines, tick labels and axis titles) of every visible axis."""
    lines, labels = [], []
    for xa in frame.xaxes.values():
        ya = frame.yaxes.get(str(xa.spec.anchor or "y"), frame.yaxes["y"])
        if not xa.visible:
            continue
        for tick, label in zip(xa.ticks, xa.labels, strict=True):
            px = xa.px_one(tick)
            lines.append(f'<line x1="{px:.1f}" y1="{ya.px1:.1f}" x2="{px:.1f}" y2="{ya.px0:.1f}" {GRID_STYLE}/>')
            if xa.spec.showticklabels is not False:
                labels.append(f'<text x="{px:.1f}" y="{ya.px0 + 15:.1f}" text-anchor="middle">'
                              f'{escape_text(label)}</text>')
        lines.append(f'<line x1="{xa.px0:.1f}" y1="{ya.px0:.1f}" x2="{xa.px1:.1f}" y2="{ya.px0:.1f}" {AXIS_STYLE}/>')
        title = " ".join(plain_lines(xa.spec.title.text))
        if title:
            labels.append(f'<text x="{(xa.px0 + xa.px1) / 2:.1f}" y="{ya.px0 + 33:.1f}" text-anchor="middle" '
                          f'font-size="12">{escape_text(title)}</text>')
    for ya in frame.yaxes.values():
        xa = frame.xaxes.get(str(ya.spec.anchor or "x"), frame.xaxes["x"])
        if not ya.visible:
            continue
        for tick, label in zip(ya.ticks, ya.labels, strict=True):
            py = ya.px_one(tick)
            lines.append(f'<line x1="{xa.px0:.1f}" y1="{py:.1f}" x2="{xa.px1:.1f}" y2="{py:.1f}" {GRID_STYLE}/>')
            if ya.spec.showticklabels is not False:
                labels.append(f'<text x="{xa.px0 - 6:.1f}" y="{py + 4:.1f}" text-anchor="end">'
                              f'{escape_text(label)}</text>')
        lines.append(f'<line x1="{xa.px0:.1f}" y1="{ya.px0:.1f}" x2="{xa.px0:.1f}" y2="{ya.px1:.1f}" {AXIS_STYLE}/>')
        title = " ".join(plain_lines(ya.spec.title.text))
        if title:
            middle = (ya.px0 + ya.px1) / 2
            labels.append(f'<text x="14" y="{middle:.1f}" text-anchor="middle" font-size="12" '
                          f'transform="rotate(-90 14 {middle:.1f})">{escape_text(title)}</text>')
    return "".join(lines), "".join(labels)


def _legend_entries(indexed: list[tuple[int, Any]], show: bool | None,
                    colorway: list[str]) -> list[tuple[str, str, str, str]]:
    """(name, colour, dash attribute, 'line'/'markers'/'fill') of each drawn trace the legend lists; [] for none."""
    entries = []
    for index, trace in indexed:
        if trace.showlegend is not False and trace.name:
            color = safe_color(trace.line.color, escape_attr(colorway[index % len(colorway)]))
            kind = "markers" if "markers" in (trace.mode or "lines") else "line"
            if trace.fill in ("toself", "tozeroy", "tozerox") and trace.line.width == 0:
                kind, color = "fill", safe_color(trace.fillcolor, color)
            entries.append((" ".join(plain_lines(trace.name)), color, dasharray(trace.line.dash, 2.0), kind))
    return entries if show or (show is None and len(entries) >= 2) else []


def _legend_svg(entries: list[tuple[str, str, str, str]], *, top: float, width: float) -> tuple[str, float]:
    """The legend as rows of (line sample, name) from ``top``; returns (svg, y below it)."""
    parts, x, y = [], 8.0, top + 9
    for name, color, dash, kind in entries:
        entry = 44 + text_width(name, 12)
        if x > 8 and x + entry > width - 8:
            x, y = 8.0, y + 18
        if kind == "fill":
            parts.append(f'<rect x="{x:.1f}" y="{y - 5:.1f}" width="22" height="10" fill="{color}"/>')
        else:
            parts.append(f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x + 22:.1f}" y2="{y:.1f}" stroke="{color}" '
                         f'stroke-width="2"{dash}/>')
        if kind == "markers":
            parts.append(f'<circle cx="{x + 11:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')
        parts.append(f'<text x="{x + 27:.1f}" y="{y + 4:.1f}" font-size="12">{escape_text(name)}</text>')
        x += entry
    return ("".join(parts), y + 11) if entries else ("", top)


def _margins(xaxes: dict[str, _Axis], yaxes: dict[str, _Axis], width: int) -> tuple[float, float, float]:
    """(left, right, bottom) margins in px that leave room for tick labels and axis titles."""
    shown_y = [a for a in yaxes.values() if a.visible]
    label_w = max((text_width(label, 11) for a in shown_y for label in a.labels), default=0.0)
    has_y_title = any(plain_lines(a.spec.title.text) for a in shown_y)
    left = (24 if has_y_title else 6) + label_w + 8 if shown_y else 10
    shown_x = [a for a in xaxes.values() if a.visible]
    last = max((text_width(a.labels[-1], 11) / 2 for a in shown_x if a.labels), default=0.0)
    has_x_title = any(plain_lines(a.spec.title.text) for a in shown_x)
    bottom = (22 + (18 if has_x_title else 0)) if shown_x else 10
    return min(left, width * 0.4), max(12.0, last + 4), bottom


def figure_svg(fig: go.Figure, *, width: int = 520, height: int | None = None) -> str:
    """The figure as one line of self-contained inline SVG: ``<svg viewBox="0 0 width height" ...>...</svg>``.

    ``width`` and ``height`` are the drawing's size in px (``height`` defaults to ``fig.layout.height``, else
    ``DEFAULT_HEIGHT``); the SVG has ``width="100%"`` and scales to its container. Text is drawn in
    ``currentColor`` on a transparent background, so the chart follows a light or dark page. Every text and
    attribute from the figure is escaped (and inert to Markdown), and the result has no newline, so it can go
    into ``st.markdown(..., unsafe_allow_html=True)``. Returns a str.
    """
    if not isinstance(width, int) or width < 50:
        raise ConfigError(f"width must be an int of at least 50 px, got {width!r}")
    height = height if height is not None else int(fig.layout.height or DEFAULT_HEIGHT)
    if not isinstance(height, int) or height < 50:
        raise ConfigError(f"height must be an int of at least 50 px, got {height!r}")
    data = [_Props(trace.to_plotly_json()) for trace in fig.data]
    indexed = [(index, trace) for index, trace in enumerate(data) if _drawn(trace)]
    traces = [trace for _, trace in indexed]
    shapes = [shape for shape in (_Props(item.to_plotly_json()) for item in fig.layout.shapes)
              if shape.type in ("line", "rect")]
    colorway = list(fig.layout.colorway or fig.layout.template.layout.colorway or RUN_PALETTE)
    title = " ".join(plain_lines(fig.layout.title.text))
    note = " ".join(plain_lines(fig.layout.title.subtitle.text))
    head, top = [], 6.0
    if title:
        head.append(f'<text x="8" y="{top + 16:.1f}" font-size="16">{escape_text(title)}</text>')
        top += 24
    if note:
        head.append(f'<text x="8" y="{top + 11:.1f}" font-size="12" opacity="0.7">{escape_text(note)}</text>')
        top += 18
    legend, top = _legend_svg(_legend_entries(indexed, fig.layout.showlegend, colorway), top=top, width=width)
    xaxes, yaxes = _axes(fig, "x", traces, shapes), _axes(fig, "y", traces, shapes)
    left, right, bottom = _margins(xaxes, yaxes, width)
    uid = "dpsvg" + hashlib.sha1(f"{width}x{height}|{title}|{left}|{top}|{bottom}".encode()).hexdigest()[:10]
    frame = _Frame(left=left, top=top + 8, right=width - right, bottom=height - bottom, xaxes=xaxes, yaxes=yaxes,
                   uid=uid)
    frame.place()
    below = "".join(_shape_svg(s, frame) for s in shapes if s.layer == "below")
    above = "".join(_shape_svg(s, frame) for s in shapes if s.layer != "below")
    grid, labels = _axes_svg(frame)
    drawn = "".join(_trace_svg(trace, index, frame, colorway) for index, trace in indexed)
    notes = "".join(_annotation_svg(_Props(note.to_plotly_json()), frame) for note in fig.layout.annotations)
    label = escape_attr(title or "chart")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
            f'aria-label="{label}" font-family="{escape_attr(FONT_FAMILY)}" font-size="11" fill="currentColor" '
            f'style="display:block;max-width:100%;height:auto"><title>{escape_text(title or "chart")}</title>'
            f'{frame.defs()}{"".join(head)}{legend}{below}{grid}{drawn}{above}'
            f'<g fill="currentColor">{labels}</g>{notes}</svg>')


__all__ = ["MAX_MARKERS", "MAX_POINTS", "figure_svg"]
