"""Figures for DP Explorer: pure functions from plain data (DataFrames, arrays) to plotly Figures.

Every chart shares one look (``TEMPLATE`` through ``base_figure``), one colour per run
(``run_colors``) and one way of saying that there is nothing to show yet (``add_no_data``),
so the dashboard, the HTML report and scripts draw the same pictures. No Streamlit, no I/O.

Charts that overlay runs take ``runs`` as a list of ``(label, DataFrame)`` pairs (a bare
DataFrame, a ``{label: DataFrame}`` dict or a list of ``on_step`` dicts per run also work).
Colours follow the order of the list, so passing the same list to every chart keeps a run's
colour the same everywhere; pass ``colors=run_colors(all_labels)`` to pin them explicitly.
"""

from __future__ import annotations

import base64
import functools
import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import sample_colorscale

from dpcore.errors import ConfigError

# --------------------------------------------------------------------------------------
# Shared vocabulary: epsilon bands, colours, the template
# --------------------------------------------------------------------------------------

#: Rough reading of an epsilon value: (lower, upper, name), lower bound inclusive.
EPSILON_BANDS: list[tuple[float, float, str]] = [
    (0.0, 1.0, "strong"),
    (1.0, 5.0, "moderate"),
    (5.0, 10.0, "weak"),
    (10.0, math.inf, "very weak"),
]
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
#: Step series with at least this many points get a smoothed line over faint raw values.
SMOOTH_MIN_STEPS = 30


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


def _finished(build: Callable[..., go.Figure]) -> Callable[..., go.Figure]:
    """Decorator: run ``finish_figure`` on what a chart builder returns."""
    @functools.wraps(build)
    def wrapper(*args: Any, **kwargs: Any) -> go.Figure:
        return finish_figure(build(*args, **kwargs))
    return wrapper


def epsilon_band(eps: float) -> str:
    """Name of the EPSILON_BANDS band that ``eps`` falls in: 'strong', 'moderate', 'weak' or 'very weak'.

    ``inf`` (a non-private run) gives 'none (not private)' and NaN gives 'unknown'.

    >>> epsilon_band(0.5), epsilon_band(1.0), epsilon_band(8), epsilon_band(50)
    ('strong', 'moderate', 'weak', 'very weak')
    """
    eps = float(eps)
    if math.isnan(eps):
        return "unknown"
    if math.isinf(eps) and eps > 0:
        return "none (not private)"
    if eps < 0:
        raise ConfigError(f"epsilon must be >= 0, got {eps!r}; epsilon is a privacy loss and is never negative")
    for lower, upper, name in EPSILON_BANDS:
        if lower <= eps < upper:
            return name
    return EPSILON_BANDS[-1][2]


# --------------------------------------------------------------------------------------
# Small helpers shared by the charts
# --------------------------------------------------------------------------------------

RunsInput = pd.DataFrame | Sequence[tuple[str, Any]] | Mapping[str, Any] | None


def _as_runs(runs: RunsInput, default_label: str = "run") -> list[tuple[str, pd.DataFrame]]:
    """Normalise the accepted ``runs`` shapes to a list of (label, DataFrame)."""
    if runs is None:
        return []
    if isinstance(runs, pd.DataFrame):
        return [(default_label, runs)]
    items = list(runs.items()) if isinstance(runs, Mapping) else list(runs)
    normalised: list[tuple[str, pd.DataFrame]] = []
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ConfigError(
                f"runs must be a DataFrame or a list of (label, DataFrame) pairs, got an item of type "
                f"{type(item).__name__}; wrap a single run as [('my run', result.history)]"
            )
        label, frame = item
        if frame is None:
            frame = pd.DataFrame()
        elif not isinstance(frame, pd.DataFrame):
            frame = pd.DataFrame(list(frame))  # e.g. the list of on_step dicts collected so far
        normalised.append((str(label), frame))
    return normalised


def _colors_for(runs: list[tuple[str, pd.DataFrame]], colors: Mapping[str, str] | None) -> dict[str, str]:
    palette = run_colors([label for label, _ in runs])
    if colors:
        palette.update({label: color for label, color in colors.items() if label in palette})
    return palette


def _column(frame: pd.DataFrame, column: str, *, label: str, what: str) -> np.ndarray:
    """``frame[column]`` as float64 (non-numbers become NaN); a clear error when the column is missing."""
    if column not in frame.columns:
        raise ConfigError(
            f"{what} for {label!r} has no {column!r} column (columns given: {list(frame.columns)}); "
            f"pass the DataFrame from the run result (history or epochs) unchanged"
        )
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)


def _xy(frame: pd.DataFrame, x: str, y: str, *, label: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    """x and y of one run, sorted by x, keeping only rows where both are finite."""
    xs = _column(frame, x, label=label, what=what)
    ys = _column(frame, y, label=label, what=what)
    keep = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[keep], ys[keep]
    order = np.argsort(xs, kind="stable")
    return xs[order], ys[order]


def _smoothing_window(n: int) -> int:
    """Rolling-mean window: ~5 % of the points, between 3 and 50 steps."""
    return int(max(3, min(50, n // 20)))


def _rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    return pd.Series(values).rolling(window, min_periods=1).mean().to_numpy()


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _percent(fraction: float) -> str:
    """A fraction as a short percentage that never rounds a small nonzero share to 0 % or a big one to 100 %."""
    if 0 < fraction < 0.005:
        return "<1%"
    if 0.995 <= fraction < 1:
        return ">99%"
    return f"{fraction:.0%}"


def _line_mode(n: int) -> str:
    # A single point drawn as a line is invisible; markers make the first live step show up.
    return "lines+markers" if n < 3 else "lines"


def _add_hline(fig: go.Figure, y: float, *, text: str, color: str, dash: str, name: str, x: float = 0.01) -> None:
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


def _log_ticks(lo: float, hi: float) -> dict[str, Any]:
    """Readable tick positions for a log axis from ``lo`` to ``hi``: 1-2-5 per decade, or decades only when wide."""
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    mantissas = (1, 2, 5) if last - first <= 3 else (1,)
    values = [m * 10.0**k for k in range(first, last + 1) for m in mantissas]
    values = [v for v in values if lo <= v <= hi]
    return dict(tickvals=values, ticktext=[f"{v:g}" for v in values])


def _log_range(values: np.ndarray, pad: float = 1.3) -> tuple[float, float]:
    """Data limits for a log axis around positive ``values`` (padded by a factor)."""
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size == 0:
        return 0.1, 10.0
    return float(positive.min()) / pad, float(positive.max()) * pad


# --------------------------------------------------------------------------------------
# Training: epsilon, clipping, loss, accuracy
# --------------------------------------------------------------------------------------

def _epsilon_axis(fig: go.Figure, curve_max: float, *, target_epsilon: float | None,
                  extra: float | None = None) -> float:
    """Epsilon y axis from 0 to 1.15 x the largest of curve, target and ``extra``; bands; target line.

    Returns the top of the axis.
    """
    reference = max(curve_max, target_epsilon or 0.0, extra or 0.0)
    top = reference * 1.15 if reference > 0 else 1.0
    fig.update_yaxes(range=[0, top])
    add_epsilon_bands(fig, upper=top)
    if target_epsilon is not None:
        _add_hline(fig, target_epsilon, text=f"target ε = {_fmt(target_epsilon)}", color=TARGET_COLOR,
                   dash="dash", name="target")
    return top


@_finished
def epsilon_chart(
    runs: RunsInput,
    *,
    target_epsilon: float | None = None,
    epsilon_limit: float | None = None,
    x: str = "step",
    delta: float | None = None,
    colors: Mapping[str, str] | None = None,
    title: str | None = "Privacy spent",
) -> go.Figure:
    """Epsilon spent (at ``delta``) against ``x`` ('step' or 'epoch'), one line per run.

    Draws a dashed line at ``target_epsilon``, a red line at the hard ``epsilon_limit`` and light
    EPSILON_BANDS behind the curves. The y axis runs from 0 to 1.15 x max(curve, target) (the
    limit when there is no target); a limit above that is named in a note instead of drawn.
    Non-private runs (epsilon all inf/NaN) are skipped with a note. Returns a plotly Figure.
    """
    if x not in ("step", "epoch"):
        raise ConfigError(f"x must be 'step' or 'epoch', got {x!r}")
    run_list = _as_runs(runs)
    palette = _colors_for(run_list, colors)
    x_title = "optimizer step" if x == "step" else "epoch"
    y_title = "ε spent" + (f" (δ = {delta:g})" if delta else "")
    fig = base_figure(title=title, x_title=x_title, y_title=y_title, hovermode="x unified")
    fig.update_xaxes(unifiedhovertitle=dict(text=f"{x} %{{x}}"), rangemode="tozero")

    curve_max, plotted, skipped = 0.0, 0, []
    for label, frame in run_list:
        if frame.empty:
            continue
        xs, ys = _xy(frame, x, "epsilon", label=label, what="history")
        if ys.size == 0:
            # rows exist but no finite epsilon: the non-private baseline (epsilon = inf)
            skipped.append(label)
            continue
        fig.add_trace(go.Scatter(
            x=xs, y=ys, name=label, mode=_line_mode(ys.size), line=dict(color=palette[label], width=2),
            hovertemplate="ε %{y:.3f}",
        ))
        curve_max = max(curve_max, float(ys.max()))
        plotted += 1

    top = _epsilon_axis(fig, curve_max, target_epsilon=target_epsilon,
                        extra=epsilon_limit if target_epsilon is None else None)
    notes = []
    if epsilon_limit is not None:
        if epsilon_limit <= top:
            _add_hline(fig, epsilon_limit, text=f"limit ε = {_fmt(epsilon_limit)}", color=LIMIT_COLOR,
                       dash="solid", name="limit", x=0.45)
        else:
            notes.append(f"hard limit ε = {_fmt(epsilon_limit)} (above the chart)")
    if skipped:
        notes.append(f"not plotted (no DP, ε = ∞): {', '.join(skipped)}")
    if notes:
        add_note(fig, "; ".join(notes))
    if plotted == 0 and not skipped:
        add_no_data(fig)
    return fig


def _add_smoothed_series(fig: go.Figure, xs: np.ndarray, ys: np.ndarray, *, label: str, color: str,
                         hover: str, smooth: bool | None) -> None:
    """A run's per-step values: faint raw line plus a rolling mean when there are many steps."""
    use_smoothing = (ys.size >= SMOOTH_MIN_STEPS) if smooth is None else (smooth and ys.size >= 2)
    if not use_smoothing:
        fig.add_trace(go.Scatter(x=xs, y=ys, name=label, legendgroup=label, mode=_line_mode(ys.size),
                                 line=dict(color=color, width=2), hovertemplate=hover))
        return
    window = _smoothing_window(ys.size)
    fig.add_trace(go.Scatter(x=xs, y=ys, name=f"{label} (per step)", legendgroup=label, showlegend=False,
                             mode="lines", line=dict(color=color, width=1), opacity=0.3,
                             hovertemplate=hover + " (per step)"))
    fig.add_trace(go.Scatter(x=xs, y=_rolling_mean(ys, window), name=label, legendgroup=label, mode="lines",
                             line=dict(color=color, width=2.2),
                             hovertemplate=hover + f" (mean of {window} steps)"))


@_finished
def clip_fraction_chart(
    runs: RunsInput,
    *,
    band: tuple[float, float] = (0.5, 0.8),
    smooth: bool | None = None,
    colors: Mapping[str, str] | None = None,
    title: str | None = "Clipped gradients",
) -> go.Figure:
    """Share of per-sample gradients clipped per step (fractions 0..1, shown as %), one line per run.

    Shades ``band`` (default 50-80 %, a common healthy range for the clipping bound). With
    ``smooth=None`` a rolling mean is drawn over faint raw values once a run has at least
    SMOOTH_MIN_STEPS steps. Runs without clipping data (non-private) are skipped with a note.
    """
    low, high = band
    if not 0 <= low < high <= 1:
        raise ConfigError(f"band must be two fractions 0 <= low < high <= 1, got {band!r}; e.g. (0.5, 0.8)")
    run_list = _as_runs(runs)
    palette = _colors_for(run_list, colors)
    fig = base_figure(title=title, x_title="optimizer step", y_title="gradients clipped (%)",
                      hovermode="x unified")
    fig.update_xaxes(unifiedhovertitle=dict(text="step %{x}"), rangemode="tozero")
    fig.update_yaxes(range=[0, 1.03], tickformat=".0%")
    fig.add_shape(type="rect", name="healthy band", xref="paper", x0=0, x1=1, yref="y", y0=low, y1=high,
                  fillcolor=HEALTHY_FILL, line_width=0, layer="below")
    fig.add_annotation(name="healthy band", text=f"healthy {low * 100:.0f}–{high * 100:.0f} %", xref="paper",
                       x=1, xanchor="right", yref="y", y=low, yanchor="bottom", showarrow=False,
                       font=dict(size=11, color="#4f8a4f"), bgcolor="rgba(255,255,255,0.7)")

    plotted, skipped = 0, []
    for label, frame in run_list:
        if frame.empty:
            continue
        xs, ys = _xy(frame, "step", "clip_fraction", label=label, what="history")
        if ys.size == 0:
            skipped.append(label)
            continue
        _add_smoothed_series(fig, xs, ys, label=label, color=palette[label], hover="%{y:.1%} clipped",
                             smooth=smooth)
        plotted += 1
    if skipped:
        add_note(fig, f"no clipping (no DP): {', '.join(skipped)}")
    if plotted == 0 and not skipped:
        add_no_data(fig)
    return fig


@_finished
def loss_chart(
    runs: RunsInput,
    *,
    smooth: bool | None = None,
    log_y: bool = False,
    colors: Mapping[str, str] | None = None,
    title: str | None = "Training loss",
) -> go.Figure:
    """Training loss (cross-entropy, nats) per optimizer step: faint raw values plus a rolling mean.

    Non-finite losses (a diverged run) are left out. Returns a plotly Figure.
    """
    run_list = _as_runs(runs)
    palette = _colors_for(run_list, colors)
    fig = base_figure(title=title, x_title="optimizer step", y_title="loss (cross-entropy, nats)",
                      hovermode="x unified")
    fig.update_xaxes(unifiedhovertitle=dict(text="step %{x}"), rangemode="tozero")
    if log_y:
        fig.update_yaxes(type="log")
    plotted = 0
    for label, frame in run_list:
        if frame.empty:
            continue
        xs, ys = _xy(frame, "step", "loss", label=label, what="history")
        if log_y:
            xs, ys = xs[ys > 0], ys[ys > 0]
        if ys.size == 0:
            continue
        _add_smoothed_series(fig, xs, ys, label=label, color=palette[label], hover="loss %{y:.4f}", smooth=smooth)
        plotted += 1
    if plotted == 0:
        add_no_data(fig)
    return fig


@_finished
def accuracy_chart(
    runs: RunsInput,
    *,
    baseline: pd.DataFrame | float | None = None,
    colors: Mapping[str, str] | None = None,
    title: str | None = "Accuracy",
) -> go.Figure:
    """Train (dashed) and test (solid) accuracy per epoch for each run, as % (inputs are fractions 0..1).

    ``baseline`` is a non-private run's epochs DataFrame (its test accuracy per epoch) or one
    accuracy; it is drawn as a grey dotted line named 'non-private baseline'.
    """
    run_list = _as_runs(runs)
    palette = _colors_for(run_list, colors)
    fig = base_figure(title=title, x_title="epoch", y_title="accuracy (%)", hovermode="x unified")
    fig.update_xaxes(unifiedhovertitle=dict(text="epoch %{x}"))
    fig.update_yaxes(tickformat=".0%")
    single = len(run_list) == 1
    epochs_seen: list[float] = []
    plotted = 0
    for label, frame in run_list:
        if frame.empty:
            continue
        for column, dash, split in (("test_accuracy", "solid", "test"), ("train_accuracy", "dash", "train")):
            if column not in frame.columns and split == "train":
                continue  # test accuracy is required, train accuracy is optional
            xs, ys = _xy(frame, "epoch", column, label=label, what="epochs")
            if ys.size == 0:
                continue
            fig.add_trace(go.Scatter(
                x=xs, y=ys, name=split if single else f"{label} {split}", legendgroup=label,
                mode="lines+markers" if ys.size < 30 else "lines", marker=dict(size=5),
                line=dict(color=palette[label], width=2 if split == "test" else 1.6, dash=dash),
                hovertemplate=f"{split} %{{y:.1%}}",
            ))
            epochs_seen.extend([xs.min(), xs.max()])
            plotted += 1

    if isinstance(baseline, pd.DataFrame):
        if not baseline.empty:
            xs, ys = _xy(baseline, "epoch", "test_accuracy", label="non-private baseline", what="epochs")
            if ys.size:
                fig.add_trace(go.Scatter(
                    x=xs, y=ys, name="non-private baseline", mode="lines+markers" if ys.size < 30 else "lines",
                    marker=dict(size=4), line=dict(color=BASELINE_COLOR, width=1.8, dash="dot"),
                    hovertemplate="non-private %{y:.1%}",
                ))
    elif baseline is not None and math.isfinite(float(baseline)):
        lo, hi = (min(epochs_seen), max(epochs_seen)) if epochs_seen else (0.0, 1.0)
        if hi == lo:
            hi = lo + 1
        fig.add_trace(go.Scatter(
            x=[lo, hi], y=[float(baseline)] * 2, name="non-private baseline", mode="lines",
            line=dict(color=BASELINE_COLOR, width=1.8, dash="dot"), hovertemplate="non-private %{y:.1%}",
        ))
    if plotted == 0:
        add_no_data(fig)
    return fig


# --------------------------------------------------------------------------------------
# Attacks: ROC, score histograms, empirical epsilon
# --------------------------------------------------------------------------------------

RocCurve = tuple[str, Any, Any, float | None]


@_finished
def roc_chart(
    curves: Sequence[RocCurve] | None,
    *,
    log_scale: bool = False,
    n_non_members: int | None = None,
    colors: Mapping[str, str] | None = None,
    title: str | None = "Membership-inference ROC",
    bound: Any | None = None,
    bound_epsilon: float | None = None,
    run_bounds: Mapping[str, Any] | None = None,
) -> go.Figure:
    """ROC curves of membership-inference attacks, one per ``(label, fpr, tpr, auc)``, plus the chance diagonal.

    ``bound`` (a ``dpcore.privacy.tradeoff.TradeoffCurve``, or ``(fpr, tpr_max)`` arrays) adds the most any
    attacker can achieve under the run's DP guarantee, with the region above it (impossible for
    every attack) shaded; ``bound_epsilon`` puts the run's ε into its legend name. ``run_bounds``
    (curve label -> bound) draws one such line per run in the run's colour, unshaded, for overlays
    of runs with different ε.

    Legend names carry the AUC. ``colors`` (label -> colour, e.g. ``run_colors``) keeps a run's colour
    the same as in the other charts; unnamed curves take the palette in order. ``log_scale=True`` uses
    log-log axes (the low-FPR regime where an attack is dangerous): FPR starts at ``1 / n_non_members``
    (default: the smallest nonzero FPR of the curves) and zeros are clipped to that floor, so no point
    sits at 0. Rates are shown as %.
    """
    curves = list(curves or [])
    fig = base_figure(title=title, x_title="false positive rate (%)", y_title="true positive rate (%)")
    prepared = []
    for label, fpr, tpr, auc in curves:
        fpr = np.asarray(fpr, dtype=float).ravel()
        tpr = np.asarray(tpr, dtype=float).ravel()
        if fpr.shape != tpr.shape:
            raise ConfigError(f"ROC curve {label!r}: fpr has {fpr.size} values and tpr {tpr.size}; they must match")
        keep = np.isfinite(fpr) & np.isfinite(tpr)
        if keep.any():
            prepared.append((str(label), fpr[keep], tpr[keep], auc))

    if log_scale:
        if n_non_members:
            fpr_floor = 1.0 / n_non_members
        else:
            positives = [f[f > 0] for _, f, _, _ in prepared]
            positives = [p.min() for p in positives if p.size]
            fpr_floor = float(min(positives)) if positives else (1e-5 if bound is not None else 1e-3)
        tpr_positive = [t[t > 0].min() for _, _, t, _ in prepared if (t > 0).any()]
        tpr_floor = float(min([fpr_floor, *tpr_positive]))
        diagonal = [fpr_floor, 1.0]
        fig.update_xaxes(type="log", range=[math.log10(fpr_floor), 0], tickformat="~%")
        fig.update_yaxes(type="log", range=[math.log10(tpr_floor), 0.02], tickformat="~%")
    else:
        fpr_floor = tpr_floor = 0.0
        diagonal = [0.0, 1.0]
        fig.update_xaxes(range=[0, 1], tickformat="~%", constrain="domain")
        fig.update_yaxes(range=[0, 1.01], tickformat="~%")

    fig.add_trace(go.Scatter(x=diagonal, y=diagonal, name="chance", mode="lines",
                             line=dict(color=BASELINE_COLOR, width=1.2, dash="dot"), hoverinfo="skip"))
    if bound is not None:
        add_tradeoff_bound(fig, bound, fpr_floor=fpr_floor, epsilon=bound_epsilon)
    for index, (label, fpr, tpr, auc) in enumerate(prepared):
        if log_scale:
            fpr, tpr = np.clip(fpr, fpr_floor, 1.0), np.clip(tpr, tpr_floor, 1.0)
        has_auc = auc is not None and math.isfinite(float(auc))
        fig.add_trace(go.Scatter(
            x=fpr, y=tpr, name=f"{label} (AUC {float(auc):.3f})" if has_auc else label, mode="lines",
            line=dict(color=(colors or {}).get(label, RUN_PALETTE[index % len(RUN_PALETTE)]), width=2, shape="hv"),
            hovertemplate="FPR %{x:.2%}<br>TPR %{y:.2%}",
        ))
        run_bound = (run_bounds or {}).get(label)
        if run_bound is not None and not getattr(run_bound, "unlimited", False):
            add_tradeoff_bound(fig, run_bound, fpr_floor=fpr_floor, shade=False, name=f"{label}: {BOUND_LABEL}",
                               color=(colors or {}).get(label, RUN_PALETTE[index % len(RUN_PALETTE)]))
    if not prepared and bound is None:
        add_no_data(fig)
    return fig


BOUND_LABEL = "most any attacker can achieve"
BOUND_COLOR = "#8c2d04"
IMPOSSIBLE_FILL = "rgba(140, 45, 4, 0.10)"


def add_tradeoff_bound(fig: go.Figure, bound: Any, *, fpr_floor: float = 0.0, epsilon: float | None = None,
                       shade: bool = True, name: str | None = None, color: str = BOUND_COLOR) -> go.Figure:
    """Draw the DP trade-off bound on a ROC figure (rates as fractions): its line and the shaded region above it.

    ``bound`` is a ``dpcore.privacy.tradeoff.TradeoffCurve`` (exact values at ``fpr_floor`` through ``tpr_at``)
    or ``(fpr, tpr_max)`` arrays. Only FPR >= ``fpr_floor`` is drawn (the log axes' left edge). A
    bound of 1 everywhere (no DP guarantee) is drawn as a line with no shading; ``shade=False``
    draws only the line (``name``/``color`` then tell runs apart).
    """
    fpr, tpr = (bound.fpr, bound.tpr_max) if hasattr(bound, "tpr_max") else bound
    fpr, tpr = np.asarray(fpr, dtype=float).ravel(), np.asarray(tpr, dtype=float).ravel()
    keep = fpr >= fpr_floor
    fpr, tpr = fpr[keep], tpr[keep]
    if fpr_floor > 0 and (fpr.size == 0 or fpr[0] > fpr_floor):
        edge = float(bound.tpr_at(fpr_floor)) if hasattr(bound, "tpr_at") else float(tpr[0] if tpr.size else 1.0)
        fpr, tpr = np.concatenate([[fpr_floor], fpr]), np.concatenate([[edge], tpr])
    if fpr.size == 0:
        return fig
    suffix = f" at ε = {epsilon:.3g}" if epsilon is not None and math.isfinite(epsilon) else ""
    name = name or f"{BOUND_LABEL}{suffix}"
    if getattr(bound, "caveat", None):
        name += f" ({bound.caveat})"
    if np.all(tpr >= 1.0):
        fig.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=f"{name}: no limit (no DP guarantee)",
                                 line=dict(color=color, width=1.5, dash="dash"), hoverinfo="skip"))
        return fig
    if shade:
        fig.add_trace(go.Scatter(
            x=np.concatenate([fpr, fpr[::-1]]), y=np.concatenate([tpr, np.ones_like(tpr)]), fill="toself",
            fillcolor=IMPOSSIBLE_FILL, line=dict(width=0), mode="lines", hoverinfo="skip",
            name="impossible for any attack (DP guarantee)",
        ))
    fig.add_trace(go.Scatter(
        x=fpr, y=tpr, mode="lines", name=name, line=dict(color=color, width=2 if shade else 1.3, dash="dash"),
        hovertemplate="FPR %{x:.2%}<br>any attack: TPR at most %{y:.2%}",
    ))
    return fig


def _shared_edges(values: np.ndarray, bins: int) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high == low:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, bins + 1)


@_finished
def score_histogram(
    member_scores: Any,
    non_member_scores: Any,
    *,
    title: str | None = "Attack scores",
    x_title: str = "attack score (higher = more likely a member)",
    bins: int = 40,
) -> go.Figure:
    """Overlaid histograms of an attack's scores for members and non-members, on shared bins.

    Bar heights are the % of each group (so unequal group sizes compare fairly); legend names
    give each group's size. Non-finite scores are dropped.
    """
    members = np.asarray(member_scores if member_scores is not None else [], dtype=float).ravel()
    non_members = np.asarray(non_member_scores if non_member_scores is not None else [], dtype=float).ravel()
    members, non_members = members[np.isfinite(members)], non_members[np.isfinite(non_members)]
    fig = base_figure(title=title, x_title=x_title, y_title="share of group (%)")
    fig.update_layout(barmode="overlay", bargap=0)
    if members.size + non_members.size == 0:
        return add_no_data(fig)
    edges = _shared_edges(np.concatenate([members, non_members]), bins)
    centers, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    for name, scores, color in (("members", members, MEMBER_COLOR), ("non-members", non_members, NON_MEMBER_COLOR)):
        if scores.size == 0:
            continue
        counts, _ = np.histogram(scores, bins=edges)
        fig.add_trace(go.Bar(
            x=centers, y=100.0 * counts / scores.size, width=widths, name=f"{name} (n={scores.size})",
            marker=dict(color=color, line=dict(width=0)), opacity=0.55,
            customdata=np.column_stack([edges[:-1], edges[1:], counts]),
            hovertemplate=f"score %{{customdata[0]:.3g}} to %{{customdata[1]:.3g}}<br>%{{y:.1f}} % of {name} "
                          f"(%{{customdata[2]}})<extra></extra>",
        ))
    return fig


@_finished
def epsilon_bounds_chart(df: pd.DataFrame | None, *, title: str | None = "Empirical vs theoretical ε") -> go.Figure:
    """Empirical epsilon lower bound (from an attack) against the accountant's epsilon, with the y = x line.

    Columns: label, theoretical_epsilon, empirical_lower_bound and optionally lower_ci (the lower
    end of the bound's confidence interval, drawn as a downward error bar). Points above y = x
    would mean the accounting (or the implementation) is wrong; that region is tinted.
    """
    fig = base_figure(title=title, x_title="theoretical ε (accountant)", y_title="empirical ε lower bound")
    if df is None or df.empty:
        return add_no_data(fig)
    theory = _column(df, "theoretical_epsilon", label="bounds", what="table")
    empirical = _column(df, "empirical_lower_bound", label="bounds", what="table")
    lower_ci = _column(df, "lower_ci", label="bounds", what="table") if "lower_ci" in df.columns else None
    labels = df["label"].astype(str).to_numpy() if "label" in df.columns else np.array([""] * len(df))
    keep = np.isfinite(theory) & np.isfinite(empirical)
    if not keep.any():
        return add_no_data(fig, "no finite ε to compare (non-private runs have ε = ∞)")
    theory, empirical, labels = theory[keep], empirical[keep], labels[keep]
    values = [theory, empirical]
    if lower_ci is not None:
        lower_ci = lower_ci[keep]
        values.append(lower_ci[np.isfinite(lower_ci)])
    top = max(float(np.max(np.concatenate(values))), 0.1) * 1.12
    fig.update_xaxes(range=[0, top])
    fig.update_yaxes(range=[-0.05 * top, top])  # a bound of 0 (the usual DP result) shows whole, label and all
    fig.add_shape(type="path", name="violation region", path=f"M 0,0 L 0,{top} L {top},{top} Z",
                  xref="x", yref="y", fillcolor="rgba(214, 39, 40, 0.06)", line_width=0, layer="below")
    fig.add_annotation(name="violation region", text="above y = x: guarantee violated", xref="paper", yref="paper",
                       x=0.02, y=0.98, xanchor="left", yanchor="top", showarrow=False,
                       font=dict(size=11, color="#b0504f"))
    fig.add_trace(go.Scatter(x=[0, top], y=[0, top], name="y = x (tight bound)", mode="lines",
                             line=dict(color=BASELINE_COLOR, width=1.2, dash="dot"), hoverinfo="skip"))
    error_y = None
    if lower_ci is not None:
        minus = np.where(np.isfinite(lower_ci), np.clip(empirical - lower_ci, 0, None), 0.0)
        error_y = dict(type="data", symmetric=False, array=np.zeros_like(minus), arrayminus=minus,
                       color="#555555", thickness=1.2, width=4)
    # Points that coincide (seeds of one setting, all with bound 0) share one label instead of overprinting.
    shown = [""] * len(labels)
    first_at: dict[tuple[float, float], int] = {}
    for index, (x, y) in enumerate(zip(np.round(theory, 6), np.round(empirical, 6), strict=True)):
        first = first_at.setdefault((float(x), float(y)), index)
        shown[first] = f"{shown[first]} / {labels[index]}" if shown[first] else str(labels[index])
    fig.add_trace(go.Scatter(
        x=theory, y=empirical, name="runs", mode="markers+text" if len(first_at) <= 8 else "markers",
        text=shown, textposition="top center", textfont=dict(size=11), cliponaxis=False,  # labels may overhang
        customdata=labels, marker=dict(size=9, color=RUN_PALETTE[0]), error_y=error_y,
        hovertemplate="%{customdata}<br>theoretical ε %{x:.3g}<br>empirical ε ≥ %{y:.3g}<extra></extra>",
    ))
    return fig


# --------------------------------------------------------------------------------------
# Clipping bound
# --------------------------------------------------------------------------------------

@_finished
def grad_norm_histogram(
    norms: Any,
    *,
    bound: float,
    clip_range: tuple[float, float] = (0.5, 0.8),
    bins: int = 40,
    title: str | None = "Per-sample gradient norms",
) -> go.Figure:
    """Histogram of per-sample gradient L2 norms with the clipping bound C and the share it clips.

    The x axis is logarithmic when the positive norms span more than two decades. A vertical
    line marks ``bound`` with a label 'C = ...: clips N%' (share of norms strictly above C, as
    Opacus scales exactly those); it is green when that share lies in ``clip_range``. The range
    of bounds that would clip ``clip_range`` of the samples is shaded.
    """
    if not (isinstance(bound, (int, float)) and math.isfinite(bound) and bound > 0):
        raise ConfigError(f"bound (max_grad_norm) must be a positive number, got {bound!r}")
    low, high = clip_range
    if not 0 <= low < high <= 1:
        raise ConfigError(f"clip_range must be two fractions 0 <= low < high <= 1, got {clip_range!r}")
    values = np.asarray(norms if norms is not None else [], dtype=float).ravel()
    values = values[np.isfinite(values) & (values >= 0)]
    fig = base_figure(title=title, x_title="per-sample gradient norm (L2)", y_title="samples")
    fig.update_layout(bargap=0, showlegend=False)
    if values.size == 0:
        return add_no_data(fig)

    clipped = float(np.mean(values > bound))
    positive = values[values > 0]
    log_x = positive.size > 0 and positive.max() / positive.min() > 100
    if log_x:
        lo = min(float(positive.min()), bound) / 1.05
        hi = max(float(positive.max()), bound) * 1.05
        edges = np.geomspace(lo, hi, bins + 1)
        counts, _ = np.histogram(np.clip(values, lo, hi), bins=edges)  # zero norms land in the first bin
        fig.update_xaxes(type="log", range=[math.log10(lo), math.log10(hi)], **_log_ticks(lo, hi))
    else:
        lo, hi = min(float(values.min()), bound), max(float(values.max()), bound)
        if hi == lo:
            lo, hi = lo * 0.9, hi * 1.1 + 1e-12
        edges = np.linspace(lo, hi, bins + 1)
        counts, _ = np.histogram(values, bins=edges)
        pad = 0.03 * (hi - lo)
        fig.update_xaxes(range=[lo - pad, hi + pad])
    # x at the arithmetic middle with the full width: the bar spans exactly [edge, next edge], also on log axes
    fig.add_trace(go.Bar(
        x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), name="samples",
        marker=dict(color=RUN_PALETTE[0], line=dict(width=0)), opacity=0.85,
        customdata=np.column_stack([edges[:-1], edges[1:]]),
        hovertemplate="norm %{customdata[0]:.3g} to %{customdata[1]:.3g}<br>%{y} samples<extra></extra>",
    ))

    # bounds between these quantiles clip between high and low of the samples
    band_lo, band_hi = np.quantile(values, [1 - high, 1 - low])
    if band_hi > band_lo:
        fig.add_shape(type="rect", name="clip range band", xref="x", x0=float(band_lo), x1=float(band_hi),
                      yref="paper", y0=0, y1=1, fillcolor=HEALTHY_FILL, line_width=0, layer="below")
        middle = math.sqrt(band_lo * band_hi) if log_x and band_lo > 0 else (band_lo + band_hi) / 2
        fig.add_annotation(name="clip range band", text=f"C clipping {low * 100:.0f}–{high * 100:.0f} %", xref="x",
                           x=math.log10(middle) if log_x else middle, yref="paper", y=1, yanchor="bottom",
                           showarrow=False, font=dict(size=11, color="#5a8f5a"))
    color = GOOD_COLOR if low <= clipped <= high else WARN_COLOR
    fig.add_shape(type="line", name="bound", xref="x", x0=bound, x1=bound, yref="paper", y0=0, y1=1,
                  line=dict(color=color, width=2, dash="dash"))
    fig.add_annotation(name="bound", text=f"C = {_fmt(bound)}: clips {_percent(clipped)}", xref="x",
                       x=math.log10(bound) if log_x else bound, yref="paper", y=0.9, xanchor="left",
                       showarrow=False, font=dict(size=12, color=color), bgcolor="rgba(255,255,255,0.8)")
    return fig


# --------------------------------------------------------------------------------------
# Accounting what-ifs
# --------------------------------------------------------------------------------------

@_finished
def epsilon_vs_epochs_chart(
    curves: pd.DataFrame | None,
    *,
    target_epsilon: float | None = None,
    delta: float | None = None,
    title: str | None = "ε vs epochs",
) -> go.Figure:
    """Epsilon after each epoch, one line per noise multiplier sigma (columns noise_multiplier, epoch, epsilon).

    Lines run from dark (small sigma, fast-growing epsilon) to light; EPSILON_BANDS shade the
    background up to 1.15 x max(curves, target) and ``target_epsilon`` is a dashed line.
    """
    y_title = "ε" + (f" (δ = {delta:g})" if delta else "")
    fig = base_figure(title=title, x_title="epoch", y_title=y_title, hovermode="x unified")
    fig.update_xaxes(unifiedhovertitle=dict(text="epoch %{x}"), rangemode="tozero")
    curve_max, plotted = 0.0, 0
    if curves is not None and not curves.empty:
        sigmas = _column(curves, "noise_multiplier", label="curves", what="table")
        unique = np.unique(sigmas[np.isfinite(sigmas)])
        shades = sample_colorscale("Viridis", list(np.linspace(0.0, 0.8, max(len(unique), 2))))
        for index, sigma in enumerate(unique):
            xs, ys = _xy(curves[sigmas == sigma], "epoch", "epsilon", label=f"σ = {sigma:g}", what="curves")
            if ys.size == 0:
                continue
            fig.add_trace(go.Scatter(x=xs, y=ys, name=f"σ = {sigma:g}", mode=_line_mode(ys.size),
                                     line=dict(color=shades[index], width=2), hovertemplate="ε %{y:.3f}"))
            curve_max = max(curve_max, float(ys.max()))
            plotted += 1
    _epsilon_axis(fig, curve_max, target_epsilon=target_epsilon)
    if plotted == 0:
        add_no_data(fig)
    return fig


@_finished
def accountant_comparison_chart(df: pd.DataFrame | None, *, title: str | None = "Accountants compared") -> go.Figure:
    """Bars of the epsilon each accountant reports for the same training (columns accountant, epsilon).

    Values are printed on the bars; an optional ``seconds`` column shows in the hover. Accountants
    that gave no finite epsilon are listed in a note instead of drawn.
    """
    from dpcore.views.explain import format_significant  # explain imports this module's ε bands

    fig = base_figure(title=title, x_title="accountant", y_title="ε")
    fig.update_layout(showlegend=False)
    if df is None or df.empty:
        return add_no_data(fig)
    names = df[_require(df, "accountant")].astype(str).str.upper().to_numpy()
    eps = _column(df, "epsilon", label="accountants", what="table")
    seconds = _column(df, "seconds", label="accountants", what="table") if "seconds" in df.columns else None
    finite = np.isfinite(eps)
    if not finite.any():
        return add_no_data(fig, "no accountant returned a finite ε")
    top = float(eps[finite].max()) * 1.2
    add_epsilon_bands(fig, upper=top)
    hover = "%{x}: ε = %{y:.4g}"
    customdata = None
    if seconds is not None:
        customdata = seconds[finite]
        hover += "<br>computed in %{customdata:.3g} s"
    fig.add_trace(go.Bar(
        x=names[finite], y=eps[finite], text=[format_significant(value) for value in eps[finite]],
        textposition="outside",
        marker=dict(color=[ACCOUNTANT_COLORS.get(name, RUN_PALETTE[3]) for name in names[finite]]),
        customdata=customdata, hovertemplate=hover + "<extra></extra>", width=0.55,
    ))
    fig.update_yaxes(range=[0, top])
    # a gutter right of the last bar, where the ε bands print their names
    fig.update_xaxes(range=[-0.5, int(finite.sum()) - 0.5 + 0.45])
    if not finite.all():
        add_note(fig, f"no finite ε from: {', '.join(names[~finite])}")
    return fig


def _require(df: pd.DataFrame, column: str) -> str:
    if column not in df.columns:
        raise ConfigError(f"table has no {column!r} column (columns given: {list(df.columns)})")
    return column


@_finished
def sigma_for_epsilon_chart(df: pd.DataFrame | None, *, title: str | None = "Noise needed") -> go.Figure:
    """Noise multiplier sigma needed to end training at each target epsilon (log x), bands along x.

    Columns: target_epsilon, noise_multiplier. Returns a plotly Figure.
    """
    fig = base_figure(title=title, x_title="target ε (log scale)", y_title="noise multiplier σ")
    fig.update_layout(showlegend=False)
    if df is None or df.empty:
        return add_no_data(fig)
    xs, ys = _xy(df, "target_epsilon", "noise_multiplier", label="sigma table", what="table")
    keep = xs > 0
    xs, ys = xs[keep], ys[keep]
    if xs.size == 0:
        return add_no_data(fig)
    lo, hi = _log_range(xs)
    fig.update_xaxes(type="log", range=[math.log10(lo), math.log10(hi)], **_log_ticks(lo, hi))
    fig.update_yaxes(rangemode="tozero")
    add_epsilon_bands(fig, lower=lo, upper=hi, axis="x", log=True)
    fig.add_trace(go.Scatter(x=xs, y=ys, name="σ needed", mode="lines+markers",
                             line=dict(color=RUN_PALETTE[0], width=2), marker=dict(size=6),
                             hovertemplate="target ε %{x:.3g}<br>σ = %{y:.3f}<extra></extra>"))
    return fig


def _epsilon_series(df: pd.DataFrame, value: str, *, label: str) -> tuple[np.ndarray, ...]:
    """Columns of an epsilon-frontier table: (epsilon, value, value_std, labels, is_baseline, private mask).

    ``<value>_std`` is optional (NaN when absent); baseline rows are flagged by is_baseline or,
    without that column, by a non-finite epsilon. ``private`` selects plottable private rows.
    """
    eps = _column(df, "epsilon", label=label, what="table")
    values = _column(df, value, label=label, what="table")
    std_column = f"{value}_std"
    std = _column(df, std_column, label=label, what="table") if std_column in df.columns \
        else np.full(len(df), np.nan)
    labels = df["label"].astype(str).to_numpy() if "label" in df.columns else np.array([""] * len(df))
    if "is_baseline" in df.columns:
        is_baseline = df["is_baseline"].fillna(False).astype(bool).to_numpy()
    else:
        is_baseline = ~np.isfinite(eps)
    private = ~is_baseline & np.isfinite(eps) & (eps > 0) & np.isfinite(values)
    return eps, values, std, labels, is_baseline, private


@_finished
def privacy_utility_chart(df: pd.DataFrame | None, *, title: str | None = "Privacy vs utility") -> go.Figure:
    """Test accuracy (%) against epsilon (log x) for private runs, with the non-private accuracy as a line.

    Columns: label, epsilon, test_accuracy (fraction 0..1), optional test_accuracy_std (error
    bars) and is_baseline (default: rows with non-finite epsilon). Several baseline rows are
    averaged. EPSILON_BANDS shade the x axis. An optional ``epsilon_note`` column (``dpcore.privacy.caveats``)
    rings the points whose ε is not a proven guarantee, with the note on hover.
    """
    fig = base_figure(title=title, x_title="ε (log scale)", y_title="test accuracy (%)")
    fig.update_yaxes(tickformat=".0%")
    if df is None or df.empty:
        return add_no_data(fig)
    eps, accuracy, std, labels, is_baseline, private = _epsilon_series(df, "test_accuracy",
                                                                       label="privacy/utility")
    baseline_acc = accuracy[is_baseline & np.isfinite(accuracy)]

    order = np.argsort(eps[private], kind="stable")
    xs, ys = eps[private][order], accuracy[private][order]
    lo, hi = _log_range(xs) if xs.size else (0.1, 100.0)
    fig.update_xaxes(type="log", range=[math.log10(lo), math.log10(hi)], **_log_ticks(lo, hi))
    add_epsilon_bands(fig, lower=lo, upper=hi, axis="x", log=True)
    if baseline_acc.size:
        value = float(baseline_acc.mean())
        fig.add_trace(go.Scatter(x=[lo, hi], y=[value, value], name=f"non-private baseline ({value:.1%})",
                                 mode="lines", line=dict(color=BASELINE_COLOR, width=1.8, dash="dot"),
                                 hovertemplate="non-private %{y:.1%}<extra></extra>"))
    if xs.size == 0:
        return add_no_data(fig, "no private runs yet")
    errors = std[private][order]
    error_y = None
    if np.isfinite(errors).any():
        error_y = dict(type="data", array=np.nan_to_num(errors, nan=0.0), color="#555555", thickness=1.2, width=4)
    fig.add_trace(go.Scatter(
        x=xs, y=ys, name="DP-SGD runs", mode="lines+markers", error_y=error_y,
        line=dict(color=RUN_PALETTE[0], width=2), marker=dict(size=8),
        text=labels[private][order], customdata=np.nan_to_num(errors, nan=0.0),
        hovertemplate="%{text}<br>ε %{x:.3g}<br>test accuracy %{y:.1%} ± %{customdata:.1%}<extra></extra>",
    ))
    if "epsilon_note" in df.columns:  # ε that is not a guarantee (dpcore.privacy.caveats): ringed, with its note
        notes = df["epsilon_note"].fillna("").astype(str).to_numpy()[private][order]
        flagged = notes != ""
        if flagged.any():
            fig.add_trace(go.Scatter(
                x=xs[flagged], y=ys[flagged], name="ε not a proven guarantee", mode="markers",
                marker=dict(size=16, symbol="circle-open", color=WARNING_RING_COLOR, line=dict(width=2)),
                text=notes[flagged], hovertemplate="ε %{x:.3g}: %{text}<extra></extra>"))
    return fig


# --------------------------------------------------------------------------------------
# Data preview
# --------------------------------------------------------------------------------------

def _as_uint8_images(images: Any) -> np.ndarray:
    """Images as uint8 (n, H, W, 3 or 4): adds a channel axis, repeats grey to RGB, scales [0, 1] floats."""
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4:
        raise ConfigError(f"images must have shape (n, H, W, C) or (n, H, W), got {array.shape}")
    if array.shape[-1] not in (1, 3, 4) and array.shape[1] in (1, 3, 4):
        array = array.transpose(0, 2, 3, 1)  # channels-first tensors
    if array.dtype != np.uint8:
        array = array.astype(float)
        if array.size and np.nanmax(array) <= 1.0:
            array = array * 255.0
        array = np.clip(np.nan_to_num(array), 0, 255).round().astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array


def tile_images(
    images: Any,
    *,
    columns: int = 8,
    scale: int = 1,
    gap: int = 4,
    label_height: int = 0,
) -> np.ndarray:
    """Tile images into one uint8 RGB(A) canvas, each upscaled ``scale`` x by nearest neighbour.

    Each cell is the scaled image plus ``label_height`` white rows under it, cells ``gap`` px
    apart on a white background. Returns an array (rows*cell_h, columns*cell_w, C).
    """
    array = _as_uint8_images(images)
    n, height, width, channels = array.shape
    columns = max(1, min(columns, n))
    rows = math.ceil(n / columns)
    tile_h, tile_w = height * scale, width * scale
    cell_h, cell_w = tile_h + label_height + gap, tile_w + gap
    canvas = np.full((rows * cell_h - gap, columns * cell_w - gap, channels), 255, dtype=np.uint8)
    for index in range(n):
        row, column = divmod(index, columns)
        tile = np.repeat(np.repeat(array[index], scale, axis=0), scale, axis=1)
        top, left = row * cell_h, column * cell_w
        canvas[top:top + tile_h, left:left + tile_w] = tile
    return canvas


def _png_data_uri(canvas: np.ndarray) -> str | None:
    try:
        from PIL import Image
    except ImportError:  # Pillow comes with Streamlit; without it the pixels go into the JSON as z
        return None
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image_grid(
    images: Any,
    labels: Sequence[str] | None = None,
    *,
    columns: int = 8,
    tile_px: int = 56,
    title: str | None = None,
) -> go.Figure:
    """A grid preview of images (uint8 (n, H, W, C); grey, RGB, RGBA) with a caption under each.

    Small images are upscaled by nearest neighbour to about ``tile_px`` pixels (8x8 digits
    become 56x56 blocks, never blurred); the figure's size matches the pixel grid so it is
    drawn 1:1. Returns a plotly Figure with one Image trace and one annotation per label.
    """
    array = _as_uint8_images(images) if images is not None and len(images) else None
    if array is None or array.shape[0] == 0:
        return empty_figure(title, height=160)
    n, height, width, _ = array.shape
    captions = [str(label) for label in (labels or [])][:n]
    captions += [""] * (n - len(captions))
    columns = max(1, min(columns, n))
    scale = max(1, round(tile_px / max(height, width)))
    gap = 4
    label_height = 18 if any(captions) else 0
    canvas = tile_images(array, columns=columns, scale=scale, gap=gap, label_height=label_height)

    margin_top = 40 if title else 8
    fig = go.Figure()
    fig.update_layout(
        template=TEMPLATE, title=dict(text=title or ""), showlegend=False, hovermode=False,
        margin=dict(l=4, r=4, t=margin_top, b=4),
        width=canvas.shape[1] + 8, height=canvas.shape[0] + margin_top + 4,
    )
    source = _png_data_uri(canvas)
    if source is not None:
        fig.add_trace(go.Image(source=source, hoverinfo="skip"))
    else:
        fig.add_trace(go.Image(z=canvas, hoverinfo="skip"))
    fig.update_xaxes(visible=False, range=[-0.5, canvas.shape[1] - 0.5], constrain="domain", showgrid=False)
    fig.update_yaxes(visible=False, range=[canvas.shape[0] - 0.5, -0.5], scaleanchor="x", showgrid=False)
    cell_h, cell_w = height * scale + label_height + gap, width * scale + gap
    for index, caption in enumerate(captions):
        if not caption:
            continue
        row, column = divmod(index, columns)
        fig.add_annotation(
            text=caption, x=column * cell_w + width * scale / 2, y=row * cell_h + height * scale + label_height / 2,
            xref="x", yref="y", showarrow=False, font=dict(size=11, color="#444444"),
        )
    return fig


# --------------------------------------------------------------------------------------
# Attack lab: the accountant's epsilon beside empirical lower bounds
# --------------------------------------------------------------------------------------

UPPER_BOUND_COLOR = "#4c72b0"
LOWER_BOUND_COLOR = MEMBER_COLOR
GAP_FILL = "rgba(120, 120, 120, 0.08)"


@_finished
def epsilon_audit_chart(
    df: pd.DataFrame | None,
    *,
    confidence: float = 0.95,
    title: str | None = "Guarantee vs what attacks show",
) -> go.Figure:
    """One run's privacy on one ε axis: the accountant's ε (an upper bound) and empirical lower bounds.

    ``df`` has columns label, kind ('upper' or 'lower'), epsilon (nats; NaN for the upper bound of a run
    trained without DP) and optionally detail (hover text); ``dpcore.jobs.attack.epsilon_table`` builds it.
    Horizontal bars, the guarantee first; the stretch between the largest lower bound and the guarantee
    (where the true ε of this training procedure lies) is shaded. Lower bounds are at ``confidence``.
    Optional columns ``compare_epsilon`` and ``power`` (nats, NaN where they do not apply) mark, on a lower
    bound's row, the ε of the run that bound must be compared with (a labelled diamond: the canary audit is
    its own run) and the most that audit could certify (an open circle).
    """
    fig = base_figure(title=title, x_title="ε (privacy loss, nats)", y_title=None,
                      height=max(200, 110 + 34 * (0 if df is None else len(df))))
    if df is None or df.empty:
        return add_no_data(fig)
    labels = df["label"].astype(str).tolist()
    kinds = df["kind"].astype(str).tolist()
    epsilon = _column(df, "epsilon", label="bounds", what="table")
    details = df["detail"].astype(str).tolist() if "detail" in df.columns else [""] * len(df)
    upper = [e for e, k in zip(epsilon, kinds, strict=True) if k == "upper" and math.isfinite(e)]
    lower = [e for e, k in zip(epsilon, kinds, strict=True) if k == "lower" and math.isfinite(e)]
    top = max([*upper, *lower, 0.5]) * 1.3  # room for the value written after the longest bar
    fig.update_xaxes(range=[0, top], rangemode="tozero")
    fig.update_yaxes(autorange="reversed", showgrid=False, ticks="")
    fig.update_layout(bargap=0.35, margin_l=8)
    # A bound with its own run's ε (the canary audit) says nothing about where this run's ε lies: no gap from it.
    own = (pd.to_numeric(df["compare_epsilon"], errors="coerce").tolist() if "compare_epsilon" in df.columns
           else [math.nan] * len(df))
    same_run = [e for e, k, o in zip(epsilon, kinds, own, strict=True)
                if k == "lower" and math.isfinite(e) and not (o is not None and math.isfinite(o))]
    if upper and same_run:
        fig.add_shape(type="rect", xref="x", yref="paper", x0=max(same_run), x1=min(upper), y0=0, y1=1,
                      fillcolor=GAP_FILL, line_width=0, layer="below", name="unknown gap")
        add_note(fig, "the true ε lies in the shaded range")
    for x, name, color in [(u, "guarantee", UPPER_BOUND_COLOR) for u in upper[:1]]:
        fig.add_shape(type="line", xref="x", yref="paper", x0=x, x1=x, y0=0, y1=1, name=name,
                      line=dict(color=color, width=1.4, dash="dash"), layer="above")
    for kind, name, color, sign in (("upper", "guarantee", UPPER_BOUND_COLOR, "≤"),
                                    ("lower", f"lower bound ({confidence:.0%} confidence)", LOWER_BOUND_COLOR, "≥")):
        rows = [i for i, k in enumerate(kinds) if k == kind]
        if not rows:
            continue
        values = [epsilon[i] if math.isfinite(epsilon[i]) else 0.0 for i in rows]
        texts = [f"ε {sign} {epsilon[i]:.2f}" if math.isfinite(epsilon[i]) else "no guarantee: ε = ∞ (no DP)"
                 for i in rows]
        fig.add_trace(go.Bar(
            x=values, y=[labels[i] for i in rows], orientation="h", name=name,
            marker=dict(color=color, line=dict(width=0)), text=texts, textposition="outside", cliponaxis=False,
            customdata=[details[i] for i in rows], hovertemplate="%{customdata}<extra></extra>",
        ))
    for column, name, symbol, template in (
            ("compare_epsilon", "its own run's ε (compare the bound with this)", "diamond", "its run's ε {:.2f}"),
            ("power", "audit power (the most it could certify)", "circle-open", "power {:.2f}")):
        if column not in df.columns:
            continue
        values = pd.to_numeric(df[column], errors="coerce").tolist()
        rows = [i for i, value in enumerate(values) if value is not None and math.isfinite(value)]
        if not rows:
            continue
        top = max(top, *(values[i] * 1.3 for i in rows))
        fig.update_xaxes(range=[0, top])
        fig.add_trace(go.Scatter(
            x=[values[i] for i in rows], y=[labels[i] for i in rows], mode="markers+text", name=name,
            marker=dict(symbol=symbol, size=12, color=UPPER_BOUND_COLOR if column == "compare_epsilon"
                        else LOWER_BOUND_COLOR, line=dict(width=2, color=UPPER_BOUND_COLOR if column ==
                                                          "compare_epsilon" else LOWER_BOUND_COLOR)),
            text=[template.format(values[i]) for i in rows], textposition="top center", cliponaxis=False,
            hovertemplate=f"{name}: %{{x:.2f}}<extra></extra>",
        ))
    if not upper:
        add_note(fig, "trained without DP: no upper bound")
    return fig


# --------------------------------------------------------------------------------------
# Tradeoffs: attacks against epsilon, sweep heatmaps, clickable run points
# --------------------------------------------------------------------------------------

#: What ``attack_vs_epsilon_chart`` can draw: column -> (axis title, chance level, chance label, hover format).
ATTACK_METRICS: dict[str, tuple[str, float, str, str]] = {
    "mia_auc": ("membership attack AUC", 0.5, "chance (AUC 0.5)", ".3f"),
    "mia_tpr_at_1pct_fpr": ("attack TPR at 1 % FPR (%)", 0.01, "chance (1 %)", ".1%"),
    "lira_auc": ("LiRA AUC", 0.5, "chance (AUC 0.5)", ".3f"),
    "lira_tpr_at_1pct_fpr": ("LiRA TPR at 1 % FPR (%)", 0.01, "chance (1 %)", ".1%"),
}


@_finished
def attack_vs_epsilon_chart(
    df: pd.DataFrame | None,
    *,
    metric: str = "mia_auc",
    title: str | None = None,
) -> go.Figure:
    """A membership attack's success against epsilon (log x): one point per privacy setting, seed error bars.

    Columns: epsilon, ``metric`` (a fraction: AUC or TPR), optional ``<metric>_std`` (error bars),
    is_baseline (default: rows with non-finite epsilon) and label. ``metric`` is one of
    ATTACK_METRICS. The non-private value is a grey dotted line and the chance level (what a
    coin-flipping attacker gets) a thin dashed one; EPSILON_BANDS shade the x axis.
    ``dpcore.jobs.sweep.frontier`` builds the frame.
    """
    if metric not in ATTACK_METRICS:
        raise ConfigError(f"metric must be one of {', '.join(ATTACK_METRICS)}, got {metric!r}")
    y_title, chance, chance_label, hover_format = ATTACK_METRICS[metric]
    percent = hover_format.endswith("%")
    short = y_title.split(" (")[0]
    fig = base_figure(title=title if title is not None else f"{short[0].upper()}{short[1:]} vs ε",
                      x_title="ε (log scale)", y_title=y_title)
    if percent:  # '~%' keeps the decimals small rates need: 0.5 %, 1 %, 1.5 %, not 0 %, 1 %, 1 %, 2 %
        fig.update_yaxes(tickformat="~%")
    if df is None or df.empty or metric not in df.columns:
        return add_no_data(fig)
    eps, values, std, labels, is_baseline, private = _epsilon_series(df, metric, label="attack vs epsilon")
    baseline_values = values[is_baseline & np.isfinite(values)]
    order = np.argsort(eps[private], kind="stable")
    xs, ys, errors = eps[private][order], values[private][order], std[private][order]
    lo, hi = _log_range(xs) if xs.size else (0.1, 100.0)
    fig.update_xaxes(type="log", range=[math.log10(lo), math.log10(hi)], **_log_ticks(lo, hi))
    add_epsilon_bands(fig, lower=lo, upper=hi, axis="x", log=True)
    shown = [*ys[np.isfinite(ys)], *baseline_values, chance]
    spread = np.nan_to_num(errors, nan=0.0)
    top = max(float(np.max(ys + spread)) if ys.size else 0.0, *shown)
    bottom = min(float(np.min(ys - spread)) if ys.size else 1.0, *shown)
    pad = max(0.02, 0.08 * (top - bottom))
    fig.update_yaxes(range=[max(0.0, bottom - pad), min(1.0, top + pad)])
    _add_hline(fig, chance, text=chance_label, color="#9a9a9a", dash="dash", name="chance", x=0.55)
    if baseline_values.size:
        value = float(baseline_values.mean())
        text = f"{value:{hover_format}}"
        fig.add_trace(go.Scatter(x=[lo, hi], y=[value, value], name=f"non-private baseline ({text})",
                                 mode="lines", line=dict(color=BASELINE_COLOR, width=1.8, dash="dot"),
                                 hovertemplate=f"non-private %{{y:{hover_format}}}<extra></extra>"))
    if xs.size == 0:
        return add_no_data(fig, "no private runs with this attack yet")
    error_y = None
    if np.isfinite(errors).any():
        error_y = dict(type="data", array=spread, color="#555555", thickness=1.2, width=4)
    fig.add_trace(go.Scatter(
        x=xs, y=ys, name="DP-SGD runs", mode="lines+markers", error_y=error_y,
        line=dict(color=RUN_PALETTE[1], width=2), marker=dict(size=8),
        text=labels[private][order], customdata=spread,
        hovertemplate=f"%{{text}}<br>ε %{{x:.3g}}<br>{short} %{{y:{hover_format}}}"
                      f" ± %{{customdata:{hover_format}}}<extra></extra>",
    ))
    return fig


@_finished
def sweep_heatmap(
    df: pd.DataFrame | None,
    *,
    value_title: str = "test accuracy",
    percent: bool = True,
    colorscale: str = "Viridis",
    mark_best: bool = True,
    title: str | None = "Accuracy by ε and clipping bound",
    value_range: tuple[float, float] | None = None,
) -> go.Figure:
    """A value over the (target epsilon, clipping bound C) grid of a sweep, one cell per pair (seeds averaged).

    Columns: target_epsilon, max_grad_norm, value (a fraction when ``percent``), optional
    value_std, n_runs, run_id (put in each cell's ``customdata`` so a click can open that run)
    and is_best (outlined: the bound chosen for that epsilon, on validation accuracy, when
    ``mark_best``). Cells print their value; empty cells are runs that have not finished.
    ``value_range`` fixes the colour scale (e.g. (0, 1) for a share); otherwise it spans the
    values, and a lone value gets a scale around it instead of one stretched past 100 %.
    ``dpcore.jobs.sweep.heatmap_data`` builds the frame.
    """
    fig = base_figure(title=title, x_title="target ε", y_title="clipping bound C (max_grad_norm)")
    fig.update_layout(showlegend=False)
    if df is None or df.empty:
        return add_no_data(fig)
    eps_values = sorted({float(v) for v in _column(df, "target_epsilon", label="heatmap", what="table")
                         if math.isfinite(v)})
    clip_values = sorted({float(v) for v in _column(df, "max_grad_norm", label="heatmap", what="table")
                          if math.isfinite(v)})
    if not eps_values or not clip_values:
        return add_no_data(fig)
    x_labels = [f"{v:g}" for v in eps_values]
    y_labels = [f"{v:g}" for v in clip_values]
    z = np.full((len(clip_values), len(eps_values)), np.nan)
    text = np.full(z.shape, "", dtype=object)
    fmt = ".0%" if percent else ".3g"
    rows = []
    for record in df.to_dict("records"):
        try:
            column = eps_values.index(float(record["target_epsilon"]))
            row = clip_values.index(float(record["max_grad_norm"]))
        except ValueError:
            continue
        value = float(record.get("value", np.nan))
        if not math.isfinite(value):
            continue
        z[row, column] = value
        std = record.get("value_std")
        spread = f" ± {float(std):{fmt}}" if std is not None and math.isfinite(float(std)) else ""
        text[row, column] = f"{value:{fmt}}"
        rows.append((x_labels[column], y_labels[row], value, spread, int(record.get("n_runs") or 1),
                     str(record.get("run_id") or ""), bool(record.get("is_best", False))))
    finite = z[np.isfinite(z)]
    zmin, zmax = value_range if value_range is not None else (
        (float(finite.min()), float(finite.max())) if finite.size else (None, None))
    if zmin is not None and zmin == zmax:  # one value: a small scale around it, inside [0, 1] for shares
        pad = max(abs(zmin) * 0.05, 0.01)
        zmin, zmax = zmin - pad, zmax + pad
        if percent:
            zmin, zmax = max(zmin, 0.0), min(zmax, 1.0)
    fig.add_trace(go.Heatmap(
        x=x_labels, y=y_labels, z=z, text=text, texttemplate="%{text}", textfont=dict(size=12),
        colorscale=colorscale, zmin=zmin, zmax=zmax, hoverinfo="skip", xgap=2, ygap=2,
        colorbar=dict(title=dict(text=value_title, side="right"), tickformat=fmt, thickness=12),
    ))
    if rows:
        # transparent markers on the cells carry the hover text and the run id for click-to-open
        fig.add_trace(go.Scatter(
            x=[r[0] for r in rows], y=[r[1] for r in rows], mode="markers", name="cells",
            marker=dict(size=28, color="rgba(0,0,0,0)", symbol="square"),
            customdata=[r[5] for r in rows],
            text=[f"ε {r[0]}, C {r[1]}<br>{value_title} {r[2]:{fmt}}{r[3]}<br>{r[4]} run(s); click to open one"
                  for r in rows],
            hovertemplate="%{text}<extra></extra>",
        ))
    if mark_best:
        best = [r for r in rows if r[6]]
        if best:
            fig.add_trace(go.Scatter(
                x=[r[0] for r in best], y=[r[1] for r in best], mode="markers", name="best C for this ε",
                marker=dict(size=34, symbol="square-open", color="#d62728", line=dict(width=2.5)),
                hoverinfo="skip",
            ))
            add_note(fig, "red outline: the clipping bound chosen for each ε (best validation accuracy)")
    fig.update_xaxes(type="category", showgrid=False, ticks="")
    fig.update_yaxes(type="category", showgrid=False, ticks="")
    return fig


def add_run_points(
    fig: go.Figure,
    df: pd.DataFrame | None,
    *,
    x: str,
    y: str,
    name: str = "single runs (click to open)",
    y_format: str = ".1%",
    hint: str | None = "click to open",
) -> go.Figure:
    """Overlay one small marker per run (columns ``x``, ``y``, run_id, optional label) and return the figure.

    Each marker's ``customdata`` is its run id, so a page can open the run a user clicks
    (``st.plotly_chart(on_select='rerun')``); ``hint`` is shown beside the hover text (None for
    static output such as reports). Rows with a non-finite or non-positive ``x`` on a log axis
    (non-private runs) are skipped.
    """
    if df is None or df.empty or x not in df.columns or y not in df.columns:
        return fig
    xs = _column(df, x, label="runs", what="table")
    ys = _column(df, y, label="runs", what="table")
    keep = np.isfinite(xs) & np.isfinite(ys)
    if fig.layout.xaxis.type == "log":
        keep &= xs > 0
    if not keep.any():
        return fig
    ids = df["run_id"].astype(str).to_numpy() if "run_id" in df.columns else np.array([""] * len(df))
    labels = df["label"].astype(str).to_numpy() if "label" in df.columns else ids
    fig.add_trace(go.Scatter(
        x=xs[keep], y=ys[keep], mode="markers", name=name, customdata=ids[keep], text=labels[keep],
        marker=dict(size=7, color="rgba(90, 90, 90, 0.45)", line=dict(width=0.8, color="white")),
        hovertemplate=f"%{{text}}<br>ε %{{x:.3g}}<br>%{{y:{y_format}}}<extra>{hint or ''}</extra>",
    ))
    fig.layout.showlegend = None  # let finish_figure count the new entry
    return finish_figure(fig)


# --------------------------------------------------------------------------------------
# Teaching: what clipping and noise do to one batch (the Guide page)
# --------------------------------------------------------------------------------------

def demo_gradients(n: int = 8, *, seed: int = 2) -> np.ndarray:
    """``n`` made-up 2-D per-example gradients (array (n, 2)): roughly aligned, lengths spread around 1.3.

    Deterministic for a ``seed``; for illustrations only.
    """
    rng = np.random.default_rng(seed)
    angles = 0.7 + rng.normal(0.0, 0.55, size=n)
    norms = np.exp(rng.normal(np.log(1.3), 0.6, size=n))
    return np.column_stack([norms * np.cos(angles), norms * np.sin(angles)])


def _arrows(fig: go.Figure, vectors: np.ndarray, *, name: str, color: str, width: float, hover: Sequence[str],
            origin: tuple[float, float] = (0.0, 0.0), showlegend: bool = True) -> None:
    """One legend entry: a line from ``origin`` to each vector's tip with an arrowhead at the tip."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    for vx, vy in vectors:
        xs += [origin[0], origin[0] + vx, None]
        ys += [origin[1], origin[1] + vy, None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, legendgroup=name, showlegend=showlegend,
                             line=dict(color=color, width=width), hoverinfo="skip"))
    angles = [90 - math.degrees(math.atan2(vy, vx)) for vx, vy in vectors]  # plotly: clockwise from 12 o'clock
    fig.add_trace(go.Scatter(x=origin[0] + vectors[:, 0], y=origin[1] + vectors[:, 1], mode="markers", name=name,
                             legendgroup=name, showlegend=False, text=list(hover),
                             marker=dict(symbol="arrow", size=11, angle=angles, color=color, line_width=0),
                             hovertemplate="%{text}<extra></extra>"))


def clipping_illustration(
    gradients: Any = None,
    *,
    max_grad_norm: float = 1.0,
    noise_multiplier: float = 1.0,
    seed: int = 2,
    title: str | None = "One DP-SGD step: clip each gradient, average, add noise",
) -> go.Figure:
    """Per-example gradients (2-D, array (n, 2); ``demo_gradients()`` by default) before and after clipping.

    Grey arrows are the raw gradients, blue ones the same gradients clipped to length at most
    ``max_grad_norm`` (the dashed circle), black is their average and red the average after
    Gaussian noise with standard deviation ``noise_multiplier * max_grad_norm / n`` per
    coordinate: a draw of typical length in a direction picked by ``seed``; the shaded disc
    (two standard deviations) holds 86 % of draws. Axes share one scale, in gradient units.
    Returns a plotly Figure.
    """
    grads = demo_gradients(seed=seed) if gradients is None else np.asarray(gradients, dtype=float)
    if grads.ndim != 2 or grads.shape[1] != 2 or len(grads) == 0:
        raise ConfigError(f"gradients must be an array of shape (n, 2) with n >= 1, got shape {grads.shape}")
    if not (math.isfinite(max_grad_norm) and max_grad_norm > 0):
        raise ConfigError(f"max_grad_norm must be a positive number, got {max_grad_norm!r}")
    if not (math.isfinite(noise_multiplier) and noise_multiplier >= 0):
        raise ConfigError(f"noise_multiplier must be zero or a positive number, got {noise_multiplier!r}")
    n = len(grads)
    norms = np.linalg.norm(grads, axis=1)
    factors = np.minimum(1.0, max_grad_norm / np.maximum(norms, 1e-12))
    clipped = grads * factors[:, None]
    mean = clipped.mean(axis=0)
    noise_std = noise_multiplier * max_grad_norm / n
    # a noise draw of typical length (the mean length of 2-D Gaussian noise, std * sqrt(pi / 2)) in a random
    # direction: a real single draw can land anywhere, which would make the picture depend on luck
    direction = np.random.default_rng(seed + 1).uniform(0.0, 2 * math.pi)
    noisy = mean + noise_std * math.sqrt(math.pi / 2) * np.array([math.cos(direction), math.sin(direction)])
    n_clipped = int((factors < 1).sum())

    fig = base_figure(title=title, x_title="gradient, coordinate 1", y_title="gradient, coordinate 2",
                      height=440)
    add_note(fig, f"{n_clipped} of {n} gradients clipped ({_percent(n_clipped / n)}); noise std σ·C/n = "
                  f"{noise_std:.3g}")
    circle = np.linspace(0, 2 * math.pi, 121)
    fig.add_trace(go.Scatter(x=max_grad_norm * np.cos(circle), y=max_grad_norm * np.sin(circle), mode="lines",
                             name=f"clipping bound C = {max_grad_norm:g}", hoverinfo="skip",
                             line=dict(color=TARGET_COLOR, width=1.2, dash="dash")))
    _arrows(fig, grads, name="raw per-example gradients", color="rgba(127, 127, 127, 0.55)", width=1.6,
            hover=[f"example {i + 1}: length {norm:.2f}" for i, norm in enumerate(norms)])
    _arrows(fig, clipped, name="after clipping", color=RUN_PALETTE[0], width=2.4,
            hover=[f"example {i + 1}: length {norm:.2f} → {min(norm, max_grad_norm):.2f}"
                   for i, norm in enumerate(norms)])
    if noise_std > 0:
        fig.add_trace(go.Scatter(x=mean[0] + 2 * noise_std * np.cos(circle),
                                 y=mean[1] + 2 * noise_std * np.sin(circle),
                                 mode="lines", fill="toself", fillcolor="rgba(214, 39, 40, 0.12)",
                                 line=dict(color="rgba(214, 39, 40, 0.35)", width=1), hoverinfo="skip",
                                 name="noise: most draws land here"))
    _arrows(fig, mean[None, :], name="average of clipped", color="#111111", width=3,
            hover=[f"average of the clipped gradients: length {np.linalg.norm(mean):.2f}"])
    _arrows(fig, noisy[None, :], name="after noise (what the model uses)", color=LIMIT_COLOR, width=3,
            hover=[f"noisy average: length {np.linalg.norm(noisy):.2f}"])
    # frame the circle and every tip (gradients usually share a direction, so no need to centre on 0)
    points = np.vstack([grads, noisy[None, :], [[-max_grad_norm, -max_grad_norm], [max_grad_norm, max_grad_norm]]])
    low, high = points.min(axis=0), points.max(axis=0)
    pad = 0.08 * float((high - low).max())
    fig.update_xaxes(range=[low[0] - pad, high[0] + pad], zeroline=True, zerolinecolor="#d0d0d0")
    fig.update_yaxes(range=[low[1] - pad, high[1] + pad], zeroline=True, zerolinecolor="#d0d0d0", scaleanchor="x",
                     scaleratio=1)
    # the square plot leaves room at its side: a vertical legend there instead of rows above that wrap
    fig.update_layout(showlegend=True, margin_t=66, margin_r=8,
                      legend=dict(orientation="v", x=1.02, xanchor="left", y=1.0, yanchor="top"))
    return fig


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
