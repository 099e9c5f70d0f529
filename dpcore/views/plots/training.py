"""Training charts: ε spent, share of clipped gradients, loss and accuracy, one line per run.

Charts that overlay runs take ``runs`` as a list of ``(label, DataFrame)`` pairs (a bare
DataFrame, a ``{label: DataFrame}`` dict or a list of ``on_step`` dicts per run also work).
Colours follow the order of the list, so passing the same list to every chart keeps a run's
colour the same everywhere; pass ``colors=run_colors(all_labels)`` to pin them explicitly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dpcore.errors import ConfigError
from dpcore.views.plots.base import (
    BASELINE_COLOR,
    HEALTHY_FILL,
    LIMIT_COLOR,
    add_hline,
    add_no_data,
    add_note,
    base_figure,
    epsilon_axis,
    finished,
    line_mode,
    run_colors,
    short_number,
    sorted_xy,
)

#: Step series with at least this many points get a smoothed line over faint raw values.
SMOOTH_MIN_STEPS = 30


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


def _smoothing_window(n: int) -> int:
    """Rolling-mean window: ~5 % of the points, between 3 and 50 steps."""
    return int(max(3, min(50, n // 20)))


def _rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    return pd.Series(values).rolling(window, min_periods=1).mean().to_numpy()


@finished
def epsilon_chart(
    runs: RunsInput,
    *,
    target_epsilon: float | None = None,
    epsilon_limit: float | None = None,
    x: str = "step",
    delta: float | None = None,
    colors: Mapping[str, str] | None = None,
    references: bool = True,
    title: str | None = "Privacy spent",
) -> go.Figure:
    """Epsilon spent (at ``delta``) against ``x`` ('step' or 'epoch'), one line per run.

    Draws a dashed line at ``target_epsilon``, a red line at the hard ``epsilon_limit`` and light
    EPSILON_BANDS behind the curves. The y axis runs from 0 to 1.15 x max(curve, target) (the
    limit when there is no target); a limit above that is named in a note instead of drawn.
    Non-private runs (epsilon all inf/NaN) are skipped with a note. ``references`` draws the published ε
    of real deployments that fall inside the axis (``base.add_references``; only when a curve is drawn).
    Returns a plotly Figure.
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
        xs, ys = sorted_xy(frame, x, "epsilon", label=label, what="history")
        if ys.size == 0:
            # rows exist but no finite epsilon: the non-private baseline (epsilon = inf)
            skipped.append(label)
            continue
        fig.add_trace(go.Scatter(
            x=xs, y=ys, name=label, mode=line_mode(ys.size), line=dict(color=palette[label], width=2),
            hovertemplate="ε %{y:.3f}",
        ))
        curve_max = max(curve_max, float(ys.max()))
        plotted += 1

    top = epsilon_axis(fig, curve_max, target_epsilon=target_epsilon,
                        extra=epsilon_limit if target_epsilon is None else None, references=references and plotted > 0)
    notes = []
    if epsilon_limit is not None:
        if epsilon_limit <= top:
            add_hline(fig, epsilon_limit, text=f"limit ε = {short_number(epsilon_limit)}", color=LIMIT_COLOR,
                       dash="solid", name="limit", x=0.45)
        else:
            notes.append(f"hard limit ε = {short_number(epsilon_limit)} (above the chart)")
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
        fig.add_trace(go.Scatter(x=xs, y=ys, name=label, legendgroup=label, mode=line_mode(ys.size),
                                 line=dict(color=color, width=2), hovertemplate=hover))
        return
    window = _smoothing_window(ys.size)
    # A downsampled history (dpcore.views.live) has steps more than 1 apart: say how many steps the mean spans.
    span = window if xs.size < 2 else max(window, round(window * float(xs[-1] - xs[0]) / (xs.size - 1)))
    fig.add_trace(go.Scatter(x=xs, y=ys, name=f"{label} (per step)", legendgroup=label, showlegend=False,
                             mode="lines", line=dict(color=color, width=1), opacity=0.3,
                             hovertemplate=hover + " (per step)"))
    fig.add_trace(go.Scatter(x=xs, y=_rolling_mean(ys, window), name=label, legendgroup=label, mode="lines",
                             line=dict(color=color, width=2.2),
                             hovertemplate=hover + f" (mean of {span} steps)"))


@finished
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
        xs, ys = sorted_xy(frame, "step", "clip_fraction", label=label, what="history")
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


@finished
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
        xs, ys = sorted_xy(frame, "step", "loss", label=label, what="history")
        if log_y:
            xs, ys = xs[ys > 0], ys[ys > 0]
        if ys.size == 0:
            continue
        _add_smoothed_series(fig, xs, ys, label=label, color=palette[label], hover="loss %{y:.4f}", smooth=smooth)
        plotted += 1
    if plotted == 0:
        add_no_data(fig)
    return fig


@finished
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
            xs, ys = sorted_xy(frame, "epoch", column, label=label, what="epochs")
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
            xs, ys = sorted_xy(baseline, "epoch", "test_accuracy", label="non-private baseline", what="epochs")
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
