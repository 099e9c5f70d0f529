"""Results by group: attack AUC per class or slice beside test accuracy per group, DP against its baseline."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dpcore.views.plots.base import (
    BASELINE_COLOR,
    DEFAULT_HEIGHT,
    MEMBER_COLOR,
    RUN_PALETTE,
    TEMPLATE,
    add_no_data,
    finished,
)

ALL_ROW = "all examples"  # dpcore.attacks.groups.ALL_GROUP: the whole run, drawn in grey
CHANCE_COLOR = "#555555"


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        return np.full(len(frame), math.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)


def _chance_line(fig: go.Figure) -> None:
    fig.add_vline(x=0.5, row=1, col=1, line=dict(color=CHANCE_COLOR, width=1.4, dash="dash"),
                  annotation=dict(text="chance", font=dict(size=11, color=CHANCE_COLOR),
                                  bgcolor="rgba(255,255,255,0.7)"), annotation_position="bottom right")


@finished
def group_chart(table: pd.DataFrame | None, *, title: str | None = "Results by group",
                attack: str = "loss threshold") -> go.Figure:
    """Two panels sharing one row per group: the attack's AUC as bars from 0.5 (chance, dashed line), right = the
    attack tells that group's members apart better, with their bootstrap interval; and the test accuracy in % (the
    DP run, and its baseline beside it when ``table`` has ``baseline_test_accuracy``).

    ``table`` is a ``dpcore.attacks.groups.group_results`` table (optionally with ``compare_groups``' columns), in
    its row order; the 'all examples' row (the whole run) is drawn in grey. A group with no AUC shows no AUC bar.
    """
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06)
    fig.update_layout(template=TEMPLATE, title=dict(text=title or ""), barmode="group", hovermode="closest")
    if table is None or table.empty:
        fig.update_layout(height=DEFAULT_HEIGHT)
        return add_no_data(fig)
    names = table["group"].astype(str).tolist()
    is_all = np.array([name == ALL_ROW for name in names])
    auc, low, high = _column(table, "auc"), _column(table, "auc_low"), _column(table, "auc_high")
    counts = np.column_stack([table["n_members"], table["n_non_members"]])
    fig.add_trace(go.Bar(
        y=names, x=auc - 0.5, base=0.5, orientation="h", name="attack AUC", showlegend=False,
        marker_color=np.where(is_all, BASELINE_COLOR, MEMBER_COLOR).tolist(),
        error_x=dict(type="data", symmetric=False, array=np.nan_to_num(high - auc), arrayminus=np.nan_to_num(auc - low),
                     thickness=1.2, width=3, color="#444444"),
        customdata=np.column_stack([auc, low, high, counts]),
        hovertemplate="%{y}: AUC %{customdata[0]:.3f} [%{customdata[1]:.3f}, %{customdata[2]:.3f}]<br>"
                      "%{customdata[3]} members, %{customdata[4]} non-members<extra></extra>"), row=1, col=1)
    _chance_line(fig)
    has_baseline = "baseline_test_accuracy" in table.columns
    accuracy = "%{y}: %{x:.1f} % right<extra>%{fullData.name}</extra>"
    fig.add_trace(go.Bar(y=names, x=100 * _column(table, "test_accuracy"), orientation="h", hovertemplate=accuracy,
                         name="with DP" if has_baseline else "test accuracy", marker_color=RUN_PALETTE[0]),
                  row=1, col=2)
    if has_baseline:
        fig.add_trace(go.Bar(y=names, x=100 * _column(table, "baseline_test_accuracy"), orientation="h",
                             name="without DP (baseline)", marker_color=BASELINE_COLOR, hovertemplate=accuracy),
                      row=1, col=2)
    ends = np.concatenate([auc, low, high])
    ends = ends[np.isfinite(ends)]
    reach = max(0.1, float(np.max(np.abs(ends - 0.5)))) + 0.02 if ends.size else 0.5
    fig.update_xaxes(range=[max(0.0, 0.5 - reach), min(1.0, 0.5 + reach)],
                     title_text=f"attack AUC ({attack}; 0.5 = chance)", row=1, col=1)
    fig.update_xaxes(range=[0, 100], title_text="test accuracy (% of non-members right)", row=1, col=2)
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_layout(height=max(DEFAULT_HEIGHT, 120 + 30 * len(names) * (2 if has_baseline else 1)))
    return fig
