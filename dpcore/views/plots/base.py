"""The shared look of every DP Explorer figure and the helpers the chart modules build on.

``TEMPLATE`` through ``base_figure`` (one look), ``run_colors`` (one colour per run), ``add_no_data``
(one way of saying there is nothing to show yet), ``finish_figure`` (legend and top margin), the
ε band shading (``add_epsilon_bands``; the bands themselves are ``dpcore.privacy.bands.EPSILON_BANDS``)
and small axis and number helpers. Pure functions, no Streamlit, no I/O.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from dpcore.errors import ConfigError
from dpcore.privacy import deployments
from dpcore.privacy.bands import EPSILON_BANDS

#: Subtle fills for the bands (green -> red), light enough to sit behind curves.
EPSILON_BAND_COLORS: dict[str, str] = {
    "strong": "rgba(44, 160, 44, 0.09)",
    "moderate": "rgba(160, 180, 30, 0.10)",
    "weak": "rgba(255, 140, 0, 0.10)",
    "very weak": "rgba(214, 39, 40, 0.09)",
}


NO_DATA_TEXT = "no data yet"


#: One colour per run, in order (Tableau 10 without grey: grey means "non-private baseline").
RUN_PALETTE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#d62728", "#17becf", "#8c564b", "#e377c2", "#bcbd22",
)


BASELINE_COLOR = "#7f7f7f"


WARNING_RING_COLOR = "#d97706"  # rings points whose ε is not a proven guarantee (dpcore.privacy.caveats)


TARGET_COLOR = "#333333"


LIMIT_COLOR = "#d62728"


MEMBER_COLOR = "#d55e00"


NON_MEMBER_COLOR = "#0072b2"


HEALTHY_FILL = "rgba(44, 160, 44, 0.10)"


GOOD_COLOR = "#2ca02c"


WARN_COLOR = "#e67e00"


ACCOUNTANT_COLORS: dict[str, str] = {"RDP": "#1f77b4", "PRV": "#ff7f0e", "GDP": "#2ca02c"}


FONT_FAMILY = "Inter, 'Source Sans Pro', 'Segoe UI', Helvetica, Arial, sans-serif"


DEFAULT_HEIGHT = 360


def _make_template() -> go.layout.Template:
    template = go.layout.Template(pio.templates["plotly_white"])
    axis = dict(
        showline=True, linecolor="#b0b0b0", ticks="outside", tickcolor="#b0b0b0", ticklen=4,
        gridcolor="#ececec", zeroline=False, title=dict(standoff=8, font=dict(size=13)),
        automargin=True,
    )
    template.layout.update(
        font=dict(family=FONT_FAMILY, size=13, color="#262730"),
        title=dict(font=dict(size=16), x=0.0, xref="paper", xanchor="left", y=0.985, yref="container",
                   yanchor="top"),
        paper_bgcolor="white",
        plot_bgcolor="white",
        margin=dict(l=56, r=16, t=76, b=44),
        legend=dict(orientation="h", yanchor="bottom", y=1.01, xanchor="left", x=0.0,
                    bgcolor="rgba(255,255,255,0)", font=dict(size=12), title=dict(text="")),
        hoverlabel=dict(font=dict(family=FONT_FAMILY, size=12), bgcolor="white", bordercolor="#b0b0b0"),
        colorway=list(RUN_PALETTE),
        xaxis=axis,
        yaxis=axis,
    )
    return template


#: The one look of every DP Explorer figure (plotly_white plus dashboard spacing).
TEMPLATE: go.layout.Template = _make_template()


def base_figure(
    *,
    title: str | None,
    x_title: str | None = None,
    y_title: str | None = None,
    height: int = DEFAULT_HEIGHT,
    hovermode: str = "closest",
) -> go.Figure:
    """An empty Figure with the shared template, a short title and axis titles (which should carry units)."""
    fig = go.Figure()
    fig.update_layout(
        template=TEMPLATE,
        title=dict(text=title or ""),
        height=height,
        hovermode=hovermode,
        xaxis_title=x_title,
        yaxis_title=y_title,
    )
    return fig


def add_no_data(fig: go.Figure, message: str = NO_DATA_TEXT) -> go.Figure:
    """Add a centred grey annotation (``"no data yet"`` by default) and return the same figure."""
    fig.add_annotation(
        text=message, name="no data", xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
        font=dict(size=15, color="#9a9a9a"),
    )
    return fig


def empty_figure(title: str | None = None, message: str = NO_DATA_TEXT, *, height: int = DEFAULT_HEIGHT) -> go.Figure:
    """A figure with no traces that says ``message``: the placeholder before the first data arrives."""
    return add_no_data(base_figure(title=title, height=height), message)


def run_colors(labels: Sequence[str]) -> dict[str, str]:
    """Map each distinct label to a palette colour, in order of first appearance (cycles after 9 runs)."""
    colors: dict[str, str] = {}
    for label in labels:
        if label not in colors:
            colors[label] = RUN_PALETTE[len(colors) % len(RUN_PALETTE)]
    return colors


def finish_figure(fig: go.Figure, *, width: int = 650) -> go.Figure:
    """Show the legend only when it has two or more entries and fit the top margin to title, note and legend.

    Every chart builder here ends with it; figures appended later should too. ``width`` is the chart's
    expected width in pixels (call again with a smaller one for charts drawn side by side, whose legend
    wraps into more rows). Returns the same figure.
    """
    entries = [trace.name or "" for trace in fig.data if trace.showlegend is not False and trace.name]
    if fig.layout.showlegend is None:
        fig.layout.showlegend = len(entries) >= 2
    top = 42 if fig.layout.title.text else 12
    if fig.layout.title.subtitle.text:
        top += 18
    if fig.layout.showlegend:
        # a horizontal legend wraps; count its rows for a chart ``width`` px wide (12 px font), entry by entry
        rows, used = 1, 0
        for name in entries:
            entry = 40 + 7 * len(name)
            if used and used + entry > width:
                rows, used = rows + 1, 0
            used += entry
        top += 26 * rows
    fig.update_layout(margin_t=top)
    return fig


def finished(build: Callable[..., go.Figure]) -> Callable[..., go.Figure]:
    """Decorator: run ``finish_figure`` on what a chart builder returns.

    Every decorated builder takes an extra keyword ``width`` (px, default 650): the width the chart is
    drawn at, so that a legend that wraps in a narrow column gets the top margin it needs.
    """
    @functools.wraps(build)
    def wrapper(*args: Any, width: int = 650, **kwargs: Any) -> go.Figure:
        return finish_figure(build(*args, **kwargs), width=width)
    return wrapper


def numeric_column(frame: pd.DataFrame, column: str, *, label: str, what: str) -> np.ndarray:
    """``frame[column]`` as float64 (non-numbers become NaN); a clear error when the column is missing."""
    if column not in frame.columns:
        raise ConfigError(
            f"{what} for {label!r} has no {column!r} column (columns given: {list(frame.columns)}); "
            f"pass the DataFrame from the run result (history or epochs) unchanged"
        )
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)


def sorted_xy(frame: pd.DataFrame, x: str, y: str, *, label: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    """x and y of one run, sorted by x, keeping only rows where both are finite."""
    xs = numeric_column(frame, x, label=label, what=what)
    ys = numeric_column(frame, y, label=label, what=what)
    keep = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[keep], ys[keep]
    order = np.argsort(xs, kind="stable")
    return xs[order], ys[order]


def short_number(value: float) -> str:
    return f"{value:.3g}"


def percent_text(fraction: float) -> str:
    """A fraction as a short percentage that never rounds a small nonzero share to 0 % or a big one to 100 %."""
    if 0 < fraction < 0.005:
        return "<1%"
    if 0.995 <= fraction < 1:
        return ">99%"
    return f"{fraction:.0%}"


def line_mode(n: int) -> str:
    # A single point drawn as a line is invisible; markers make the first live step show up.
    return "lines+markers" if n < 3 else "lines"


def add_hline(fig: go.Figure, y: float, *, text: str, color: str, dash: str, name: str, x: float = 0.01) -> None:
    """A labelled horizontal reference line across the plot; the label sits above the line at paper ``x``."""
    fig.add_shape(type="line", name=name, xref="paper", x0=0, x1=1, yref="y", y0=y, y1=y,
                  line=dict(color=color, width=1.6, dash=dash), layer="above")
    fig.add_annotation(name=name, text=text, xref="paper", x=x, xanchor="left", yref="y", y=y, yanchor="bottom",
                       showarrow=False, font=dict(size=11, color=color), bgcolor="rgba(255,255,255,0.7)")


def add_note(fig: go.Figure, text: str) -> go.Figure:
    """Append a short grey sentence under the title (skipped runs, values off the chart); returns the figure."""
    previous = fig.layout.title.subtitle.text
    fig.update_layout(title_subtitle=dict(text=f"{previous}; {text}" if previous else text,
                                          font=dict(size=12, color="#777777")))
    return fig


def add_epsilon_bands(fig: go.Figure, *, upper: float, lower: float = 0.0, axis: str = "y",
                      log: bool = False) -> go.Figure:
    """Shade the EPSILON_BANDS that are visible between ``lower`` and ``upper`` (in epsilon units).

    ``axis='y'`` draws horizontal bands labelled at the right edge (epsilon on the y axis);
    ``axis='x'`` draws vertical bands labelled along the bottom (epsilon on the x axis). ``log``
    says the axis is logarithmic. Bands too thin to hold their name are shaded but not labelled.
    Returns the same figure.
    """
    def position(value: float) -> float:
        return math.log10(value) if log else value

    if log and lower <= 0:
        raise ConfigError(f"lower must be > 0 on a log axis, got {lower!r}")
    span = position(upper) - position(lower)
    for band_lower, band_upper, name in EPSILON_BANDS:
        lo, hi = max(band_lower, lower), min(band_upper, upper)
        if not hi > lo:
            continue
        fill = EPSILON_BAND_COLORS[name]
        # shapes take data coordinates on log axes, annotations take log10 coordinates
        share = (position(hi) - position(lo)) / span if span > 0 else 1.0
        label = dict(name=f"band: {name}", text=name, showarrow=False, font=dict(size=11, color="#8a8a8a"))
        if axis == "y":
            fig.add_shape(type="rect", name=f"band: {name}", xref="paper", x0=0, x1=1, yref="y", y0=lo, y1=hi,
                          fillcolor=fill, line_width=0, layer="below")
            # named just under the band's top edge: the middle of 'moderate' is 3, a favourite target
            if share >= 0.07:
                fig.add_annotation(xref="paper", x=1, xanchor="right", yref="y", y=position(hi), yanchor="top",
                                   **label)
        else:
            fig.add_shape(type="rect", name=f"band: {name}", yref="paper", y0=0, y1=1, xref="x", x0=lo, x1=hi,
                          fillcolor=fill, line_width=0, layer="below")
            if share >= 0.12:
                fig.add_annotation(yref="paper", y=0, yanchor="bottom", xref="x", x=(position(lo) + position(hi)) / 2,
                                   **label)
    return fig


#: Reference points of real deployments (``dpcore.privacy.deployments``): muted, thin, dotted.
REFERENCE_COLOR = "#7a6a9e"


#: Marks closer than this share of the axis to each other (or to the axis' start) are left out, so labels never pile up.
REFERENCE_MIN_GAP = 0.05


def add_references(fig: go.Figure, *, lower: float, upper: float, axis: str = "y", log: bool = False,
                   references: Sequence[deployments.Deployment] = deployments.DEPLOYMENTS) -> list[str]:
    """Draw the published ε of real deployments inside [``lower``, ``upper``] as thin dotted lines with a label.

    Only marks inside the visible ε range are drawn (the axis is never stretched for them); marks that would sit
    within ``REFERENCE_MIN_GAP`` of the axis' start or of a lower mark are skipped, so a chart reaching ε = 10⁶
    draws none. ``axis='y'``: horizontal lines (ε on y); ``axis='x'``: vertical lines, labels turned along
    them; ``log``: the axis is logarithmic (``lower`` must then be > 0). Each label's hover names δ, the unit of
    privacy and the model. Shapes and annotations are named ``reference: <label>``. Returns the labels drawn.
    """
    if not (math.isfinite(lower) and math.isfinite(upper)) or upper <= lower or (log and lower <= 0):
        return []

    def position(value: float) -> float:
        return math.log10(value) if log else value

    span, drawn, last = position(upper) - position(lower), [], 0.0
    for ref in deployments.in_range(lower=lower, upper=upper, references=tuple(references)):
        share = (position(ref.epsilon) - position(lower)) / span
        if share < REFERENCE_MIN_GAP or share - last < REFERENCE_MIN_GAP or share > 0.995:
            continue
        last, name = share, f"reference: {ref.label}"
        text = f"{ref.label}: ε {ref.epsilon:g}"
        line = dict(color=REFERENCE_COLOR, width=1, dash="dot")
        label = dict(name=name, text=text, hovertext=ref.hover(), showarrow=False,
                     font=dict(size=10, color=REFERENCE_COLOR), bgcolor="rgba(255,255,255,0.6)")
        if axis == "y":
            fig.add_shape(type="line", name=name, xref="paper", x0=0, x1=1, yref="y", y0=ref.epsilon,
                          y1=ref.epsilon, line=line, layer="below")
            fig.add_annotation(xref="paper", x=0.8, xanchor="right", yref="y", y=position(ref.epsilon),
                               yanchor="bottom", **label)
        else:
            fig.add_shape(type="line", name=name, yref="paper", y0=0, y1=1, xref="x", x0=ref.epsilon,
                          x1=ref.epsilon, line=line, layer="below")
            fig.add_annotation(yref="paper", y=0.98, yanchor="top", xref="x", x=position(ref.epsilon),
                               xanchor="right", textangle=-90, **label)
        drawn.append(ref.label)
    return drawn


def log_ticks(lo: float, hi: float) -> dict[str, Any]:
    """Readable tick positions for a log axis from ``lo`` to ``hi``: 1-2-5 per decade, or decades only when wide."""
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    mantissas = (1, 2, 5) if last - first <= 3 else (1,)
    values = [m * 10.0**k for k in range(first, last + 1) for m in mantissas]
    values = [v for v in values if lo <= v <= hi]
    return dict(tickvals=values, ticktext=[f"{v:g}" for v in values])


def log_range(values: np.ndarray, pad: float = 1.3) -> tuple[float, float]:
    """Data limits for a log axis around positive ``values`` (padded by a factor)."""
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size == 0:
        return 0.1, 10.0
    return float(positive.min()) / pad, float(positive.max()) * pad


def epsilon_axis(fig: go.Figure, curve_max: float, *, target_epsilon: float | None,
                  extra: float | None = None, references: bool = False) -> float:
    """Epsilon y axis from 0 to 1.15 x the largest of curve, target and ``extra``; bands; target line.

    ``references`` adds the deployments' marks that fall inside the axis (``add_references``). Returns the top
    of the axis.
    """
    reference = max(curve_max, target_epsilon or 0.0, extra or 0.0)
    top = reference * 1.15 if reference > 0 else 1.0
    fig.update_yaxes(range=[0, top])
    add_epsilon_bands(fig, upper=top)
    if references:
        add_references(fig, lower=0.0, upper=top)
    if target_epsilon is not None:
        add_hline(fig, target_epsilon, text=f"target ε = {short_number(target_epsilon)}", color=TARGET_COLOR,
                   dash="dash", name="target")
    return top


def fit_fraction_axis(fig: go.Figure, *, pad: float = 0.04, include: Sequence[float] = ()) -> go.Figure:
    """Fit the y axis of a chart of fractions (accuracy, rates) to its data, inside [0, 1]; return the figure.

    Plotly pads a lone point (or a flat line) far beyond 100 %; this keeps the axis between the
    lowest and highest value drawn (error bars included) and any ``include`` values (e.g. a
    chance level drawn as a shape), plus ``pad``, never below 0 or above 1.
    """
    values: list[float] = [float(v) for v in include]
    for trace in fig.data:
        ys = getattr(trace, "y", None)
        if ys is None:
            continue
        ys = np.asarray(ys, dtype=float)
        errors = getattr(getattr(trace, "error_y", None), "array", None)
        spread = np.asarray(errors, dtype=float) if errors is not None and len(errors) == len(ys) else 0.0
        values.extend((ys + spread).tolist())
        values.extend((ys - spread).tolist())
    finite = [v for v in values if math.isfinite(v)]
    if finite:
        fig.update_yaxes(range=[max(0.0, min(finite) - pad), min(1.0, max(finite) + pad)])
    return fig
