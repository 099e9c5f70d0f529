"""Sweep charts: the privacy-utility frontier, an attack's success against ε, the (ε, C) heatmap and
clickable single-run points. ``dpcore.jobs.sweep`` builds their frames."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dpcore.errors import ConfigError
from dpcore.views.plots.base import (
    BASELINE_COLOR,
    RUN_PALETTE,
    WARNING_RING_COLOR,
    add_epsilon_bands,
    add_hline,
    add_no_data,
    add_note,
    add_references,
    base_figure,
    finish_figure,
    finished,
    log_range,
    log_ticks,
    numeric_column,
)


def _epsilon_series(df: pd.DataFrame, value: str, *, label: str) -> tuple[np.ndarray, ...]:
    """Columns of an epsilon-frontier table: (epsilon, value, value_std, labels, is_baseline, private mask).

    ``<value>_std`` is optional (NaN when absent); baseline rows are flagged by is_baseline or,
    without that column, by a non-finite epsilon. ``private`` selects plottable private rows.
    """
    eps = numeric_column(df, "epsilon", label=label, what="table")
    values = numeric_column(df, value, label=label, what="table")
    std_column = f"{value}_std"
    std = numeric_column(df, std_column, label=label, what="table") if std_column in df.columns \
        else np.full(len(df), np.nan)
    labels = df["label"].astype(str).to_numpy() if "label" in df.columns else np.array([""] * len(df))
    if "is_baseline" in df.columns:
        is_baseline = df["is_baseline"].fillna(False).astype(bool).to_numpy()
    else:
        is_baseline = ~np.isfinite(eps)
    private = ~is_baseline & np.isfinite(eps) & (eps > 0) & np.isfinite(values)
    return eps, values, std, labels, is_baseline, private


@finished
def privacy_utility_chart(df: pd.DataFrame | None, *, references: bool = True,
                          title: str | None = "Privacy vs utility") -> go.Figure:
    """Test accuracy (%) against epsilon (log x) for private runs, with the non-private accuracy as a line.

    Columns: label, epsilon, test_accuracy (fraction 0..1), optional test_accuracy_std (error
    bars) and is_baseline (default: rows with non-finite epsilon). Several baseline rows are
    averaged. EPSILON_BANDS shade the x axis. An optional ``epsilon_note`` column (``dpcore.privacy.caveats``)
    rings the points whose ε is not a proven guarantee, with the note on hover. ``references`` marks real
    deployments' published ε inside the x range (``base.add_references``; shapes only, no trace).
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
    lo, hi = log_range(xs) if xs.size else (0.1, 100.0)
    fig.update_xaxes(type="log", range=[math.log10(lo), math.log10(hi)], **log_ticks(lo, hi))
    add_epsilon_bands(fig, lower=lo, upper=hi, axis="x", log=True)
    if references and xs.size:
        add_references(fig, lower=lo, upper=hi, axis="x", log=True)
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


#: What ``attack_vs_epsilon_chart`` can draw: column -> (axis title, chance level, chance label, hover format).
ATTACK_METRICS: dict[str, tuple[str, float, str, str]] = {
    "mia_auc": ("membership attack AUC", 0.5, "chance (AUC 0.5)", ".3f"),
    "mia_tpr_at_1pct_fpr": ("attack TPR at 1 % FPR (%)", 0.01, "chance (1 %)", ".1%"),
    "lira_auc": ("LiRA AUC", 0.5, "chance (AUC 0.5)", ".3f"),
    "lira_tpr_at_1pct_fpr": ("LiRA TPR at 1 % FPR (%)", 0.01, "chance (1 %)", ".1%"),
}


@finished
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
    ``dpcore.views.frontier.frontier`` builds the frame.
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
    lo, hi = log_range(xs) if xs.size else (0.1, 100.0)
    fig.update_xaxes(type="log", range=[math.log10(lo), math.log10(hi)], **log_ticks(lo, hi))
    add_epsilon_bands(fig, lower=lo, upper=hi, axis="x", log=True)
    shown = [*ys[np.isfinite(ys)], *baseline_values, chance]
    spread = np.nan_to_num(errors, nan=0.0)
    top = max(float(np.max(ys + spread)) if ys.size else 0.0, *shown)
    bottom = min(float(np.min(ys - spread)) if ys.size else 1.0, *shown)
    pad = max(0.02, 0.08 * (top - bottom))
    fig.update_yaxes(range=[max(0.0, bottom - pad), min(1.0, top + pad)])
    add_hline(fig, chance, text=chance_label, color="#9a9a9a", dash="dash", name="chance", x=0.55)
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


@finished
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
    ``dpcore.views.frontier.heatmap_data`` builds the frame.
    """
    fig = base_figure(title=title, x_title="target ε", y_title="clipping bound C (max_grad_norm)")
    fig.update_layout(showlegend=False)
    if df is None or df.empty:
        return add_no_data(fig)
    eps_values = sorted({float(v) for v in numeric_column(df, "target_epsilon", label="heatmap", what="table")
                         if math.isfinite(v)})
    clip_values = sorted({float(v) for v in numeric_column(df, "max_grad_norm", label="heatmap", what="table")
                          if math.isfinite(v)})
    if not eps_values or not clip_values:
        return add_no_data(fig)
    x_labels = [f"{v:g}" for v in eps_values]
    y_labels = [f"{v:g}" for v in clip_values]
    fmt = ".0%" if percent else ".3g"
    z, text, cells = _heatmap_cells(df, eps_values=eps_values, clip_values=clip_values, fmt=fmt)
    zmin, zmax = _colour_range(z, value_range=value_range, percent=percent)
    fig.add_trace(go.Heatmap(
        x=x_labels, y=y_labels, z=z, text=text, texttemplate="%{text}", textfont=dict(size=12),
        colorscale=colorscale, zmin=zmin, zmax=zmax, hoverinfo="skip", xgap=2, ygap=2,
        colorbar=dict(title=dict(text=value_title, side="right"), tickformat=fmt, thickness=12),
    ))
    _add_cell_markers(fig, cells, value_title=value_title, fmt=fmt, mark_best=mark_best)
    fig.update_xaxes(type="category", showgrid=False, ticks="")
    fig.update_yaxes(type="category", showgrid=False, ticks="")
    return fig


def _heatmap_cells(df: pd.DataFrame, *, eps_values: list[float], clip_values: list[float],
                   fmt: str) -> tuple[np.ndarray, np.ndarray, list[tuple[Any, ...]]]:
    """The heatmap's values z (rows: C, columns: ε; NaN where no run finished), the text printed in each
    cell, and one (x label, y label, value, '± std' text, n_runs, run_id, is_best) per filled cell."""
    x_labels = [f"{v:g}" for v in eps_values]
    y_labels = [f"{v:g}" for v in clip_values]
    z = np.full((len(clip_values), len(eps_values)), np.nan)
    text = np.full(z.shape, "", dtype=object)
    cells = []
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
        cells.append((x_labels[column], y_labels[row], value, spread, int(record.get("n_runs") or 1),
                      str(record.get("run_id") or ""), bool(record.get("is_best", False))))
    return z, text, cells


def _colour_range(z: np.ndarray, *, value_range: tuple[float, float] | None,
                  percent: bool) -> tuple[float | None, float | None]:
    """(zmin, zmax) of the colour scale: ``value_range``, else the values' span; a lone value gets a small
    scale around it (inside [0, 1] for shares). (None, None) when there are no values."""
    finite = z[np.isfinite(z)]
    zmin, zmax = value_range if value_range is not None else (
        (float(finite.min()), float(finite.max())) if finite.size else (None, None))
    if zmin is not None and zmin == zmax:
        pad = max(abs(zmin) * 0.05, 0.01)
        zmin, zmax = zmin - pad, zmax + pad
        if percent:
            zmin, zmax = max(zmin, 0.0), min(zmax, 1.0)
    return zmin, zmax


def _add_cell_markers(fig: go.Figure, cells: list[tuple[Any, ...]], *, value_title: str, fmt: str,
                      mark_best: bool) -> None:
    """Transparent markers on the cells (hover text and the run id for click-to-open), and red outlines on
    the cells marked best when ``mark_best``."""
    if cells:
        fig.add_trace(go.Scatter(
            x=[r[0] for r in cells], y=[r[1] for r in cells], mode="markers", name="cells",
            marker=dict(size=28, color="rgba(0,0,0,0)", symbol="square"),
            customdata=[r[5] for r in cells],
            text=[f"ε {r[0]}, C {r[1]}<br>{value_title} {r[2]:{fmt}}{r[3]}<br>{r[4]} run(s); click to open one"
                  for r in cells],
            hovertemplate="%{text}<extra></extra>",
        ))
    best = [r for r in cells if r[6]] if mark_best else []
    if best:
        fig.add_trace(go.Scatter(
            x=[r[0] for r in best], y=[r[1] for r in best], mode="markers", name="best C for this ε",
            marker=dict(size=34, symbol="square-open", color="#d62728", line=dict(width=2.5)),
            hoverinfo="skip",
        ))
        add_note(fig, "red outline: the clipping bound chosen for each ε (best validation accuracy)")


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
    xs = numeric_column(df, x, label="runs", what="table")
    ys = numeric_column(df, y, label="runs", what="table")
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
