"""Attack charts: the membership-inference ROC with the DP trade-off bound, score histograms, and the
empirical ε lower bounds beside the accountant's ε (bounds and audit charts)."""

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
    MEMBER_COLOR,
    NON_MEMBER_COLOR,
    RUN_PALETTE,
    add_no_data,
    add_note,
    base_figure,
    finished,
    numeric_column,
)

RocCurve = tuple[str, Any, Any, float | None]


@finished
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


@finished
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


@finished
def epsilon_bounds_chart(df: pd.DataFrame | None, *, title: str | None = "Empirical vs theoretical ε") -> go.Figure:
    """Empirical epsilon lower bound (from an attack) against the accountant's epsilon, with the y = x line.

    Columns: label, theoretical_epsilon, empirical_lower_bound and optionally lower_ci (the lower
    end of the bound's confidence interval, drawn as a downward error bar). Points above y = x
    would mean the accounting (or the implementation) is wrong; that region is tinted.
    """
    fig = base_figure(title=title, x_title="theoretical ε (accountant)", y_title="empirical ε lower bound")
    if df is None or df.empty:
        return add_no_data(fig)
    theory = numeric_column(df, "theoretical_epsilon", label="bounds", what="table")
    empirical = numeric_column(df, "empirical_lower_bound", label="bounds", what="table")
    lower_ci = numeric_column(df, "lower_ci", label="bounds", what="table") if "lower_ci" in df.columns else None
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


UPPER_BOUND_COLOR = "#4c72b0"


LOWER_BOUND_COLOR = MEMBER_COLOR


GAP_FILL = "rgba(120, 120, 120, 0.08)"


@finished
def epsilon_audit_chart(
    df: pd.DataFrame | None,
    *,
    confidence: float = 0.95,
    title: str | None = "Guarantee vs what attacks show",
) -> go.Figure:
    """One run's privacy on one ε axis: the accountant's ε (an upper bound) and empirical lower bounds.

    ``df`` has columns label, kind ('upper' or 'lower'), epsilon (nats; NaN for the upper bound of a run
    trained without DP) and optionally detail (hover text); ``dpcore.jobs.attack_results.epsilon_table`` builds it.
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
    epsilon = numeric_column(df, "epsilon", label="bounds", what="table")
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
