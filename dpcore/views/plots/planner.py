"""Planning charts: the per-sample gradient-norm histogram (choosing C), ε against epochs per σ, the
accountants compared, and the σ each target ε needs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from dpcore.errors import ConfigError
from dpcore.privacy.bands import format_significant
from dpcore.views.plots.base import (
    ACCOUNTANT_COLORS,
    GOOD_COLOR,
    HEALTHY_FILL,
    RUN_PALETTE,
    WARN_COLOR,
    add_epsilon_bands,
    add_no_data,
    add_note,
    add_references,
    base_figure,
    epsilon_axis,
    finished,
    line_mode,
    log_range,
    log_ticks,
    numeric_column,
    percent_text,
    short_number,
    sorted_xy,
)


@finished
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
        fig.update_xaxes(type="log", range=[math.log10(lo), math.log10(hi)], **log_ticks(lo, hi))
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
    fig.add_annotation(name="bound", text=f"C = {short_number(bound)}: clips {percent_text(clipped)}", xref="x",
                       x=math.log10(bound) if log_x else bound, yref="paper", y=0.9, xanchor="left",
                       showarrow=False, font=dict(size=12, color=color), bgcolor="rgba(255,255,255,0.8)")
    return fig


@finished
def epsilon_vs_epochs_chart(
    curves: pd.DataFrame | None,
    *,
    target_epsilon: float | None = None,
    delta: float | None = None,
    references: bool = True,
    title: str | None = "ε vs epochs",
) -> go.Figure:
    """Epsilon after each epoch, one line per noise multiplier sigma (columns noise_multiplier, epoch, epsilon).

    Lines run from dark (small sigma, fast-growing epsilon) to light; EPSILON_BANDS shade the
    background up to 1.15 x max(curves, target) and ``target_epsilon`` is a dashed line; ``references``
    marks real deployments' published ε inside that range (``base.add_references``).
    """
    y_title = "ε" + (f" (δ = {delta:g})" if delta else "")
    fig = base_figure(title=title, x_title="epoch", y_title=y_title, hovermode="x unified")
    fig.update_xaxes(unifiedhovertitle=dict(text="epoch %{x}"), rangemode="tozero")
    curve_max, plotted = 0.0, 0
    if curves is not None and not curves.empty:
        sigmas = numeric_column(curves, "noise_multiplier", label="curves", what="table")
        unique = np.unique(sigmas[np.isfinite(sigmas)])
        shades = sample_colorscale("Viridis", list(np.linspace(0.0, 0.8, max(len(unique), 2))))
        for index, sigma in enumerate(unique):
            xs, ys = sorted_xy(curves[sigmas == sigma], "epoch", "epsilon", label=f"σ = {sigma:g}", what="curves")
            if ys.size == 0:
                continue
            fig.add_trace(go.Scatter(x=xs, y=ys, name=f"σ = {sigma:g}", mode=line_mode(ys.size),
                                     line=dict(color=shades[index], width=2), hovertemplate="ε %{y:.3f}"))
            curve_max = max(curve_max, float(ys.max()))
            plotted += 1
    epsilon_axis(fig, curve_max, target_epsilon=target_epsilon, references=references and plotted > 0)
    if plotted == 0:
        add_no_data(fig)
    return fig


@finished
def accountant_comparison_chart(df: pd.DataFrame | None, *, references: bool = True,
                                title: str | None = "Accountants compared") -> go.Figure:
    """Bars of the epsilon each accountant reports for the same training (columns accountant, epsilon).

    Values are printed on the bars; an optional ``seconds`` column shows in the hover. Accountants
    that gave no finite epsilon are listed in a note instead of drawn. ``references`` marks real
    deployments' published ε inside the y range (``base.add_references``).
    """

    fig = base_figure(title=title, x_title="accountant", y_title="ε")
    fig.update_layout(showlegend=False)
    if df is None or df.empty:
        return add_no_data(fig)
    names = df[_require(df, "accountant")].astype(str).str.upper().to_numpy()
    eps = numeric_column(df, "epsilon", label="accountants", what="table")
    seconds = numeric_column(df, "seconds", label="accountants", what="table") if "seconds" in df.columns else None
    finite = np.isfinite(eps)
    if not finite.any():
        return add_no_data(fig, "no accountant returned a finite ε")
    top = float(eps[finite].max()) * 1.2
    add_epsilon_bands(fig, upper=top)
    if references:
        add_references(fig, lower=0.0, upper=top)
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


@finished
def sigma_for_epsilon_chart(df: pd.DataFrame | None, *, references: bool = True,
                            title: str | None = "Noise needed") -> go.Figure:
    """Noise multiplier sigma needed to end training at each target epsilon (log x), bands along x.

    Columns: target_epsilon, noise_multiplier. ``references`` marks real deployments' published ε inside
    the x range (``base.add_references``). Returns a plotly Figure.
    """
    fig = base_figure(title=title, x_title="target ε (log scale)", y_title="noise multiplier σ")
    fig.update_layout(showlegend=False)
    if df is None or df.empty:
        return add_no_data(fig)
    xs, ys = sorted_xy(df, "target_epsilon", "noise_multiplier", label="sigma table", what="table")
    keep = xs > 0
    xs, ys = xs[keep], ys[keep]
    if xs.size == 0:
        return add_no_data(fig)
    lo, hi = log_range(xs)
    fig.update_xaxes(type="log", range=[math.log10(lo), math.log10(hi)], **log_ticks(lo, hi))
    fig.update_yaxes(rangemode="tozero")
    add_epsilon_bands(fig, lower=lo, upper=hi, axis="x", log=True)
    if references:
        add_references(fig, lower=lo, upper=hi, axis="x", log=True)
    fig.add_trace(go.Scatter(x=xs, y=ys, name="σ needed", mode="lines+markers",
                             line=dict(color=RUN_PALETTE[0], width=2), marker=dict(size=6),
                             hovertemplate="target ε %{x:.3g}<br>σ = %{y:.3f}<extra></extra>"))
    return fig
