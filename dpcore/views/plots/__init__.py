"""Figures for DP Explorer: pure functions from plain data (DataFrames, arrays) to plotly Figures.

Split by chart family: ``base`` (the template, colours, ``base_figure``, ``add_no_data``,
``finish_figure``, axis helpers), ``training`` (ε, clipping, loss, accuracy), ``attacks`` (ROC with
the trade-off bound, score histograms, bounds and audit charts), ``planner`` (gradient norms, ε vs
epochs, accountants, σ), ``sweeps`` (privacy-utility frontier, attack vs ε, heatmap, run points)
and ``illustrations`` (image grids, the clipping picture); ``svg`` draws any of these figures as one line of static
inline SVG (``figure_svg``, for the live charts). Every public builder is re-exported
here, so ``from dpcore.views import plots; plots.epsilon_chart(...)`` works.

Every chart shares one look (``TEMPLATE`` through ``base_figure``), one colour per run
(``run_colors``) and one way of saying that there is nothing to show yet (``add_no_data``),
so the dashboard, the HTML report and scripts draw the same pictures. No Streamlit, no I/O.

Charts that overlay runs take ``runs`` as a list of ``(label, DataFrame)`` pairs (a bare
DataFrame, a ``{label: DataFrame}`` dict or a list of ``on_step`` dicts per run also work).
Colours follow the order of the list, so passing the same list to every chart keeps a run's
colour the same everywhere; pass ``colors=run_colors(all_labels)`` to pin them explicitly.
"""

from __future__ import annotations

from dpcore.views.plots.attacks import (
    BOUND_COLOR,
    BOUND_LABEL,
    GAP_FILL,
    IMPOSSIBLE_FILL,
    LOWER_BOUND_COLOR,
    UPPER_BOUND_COLOR,
    RocCurve,
    add_tradeoff_bound,
    epsilon_audit_chart,
    epsilon_bounds_chart,
    roc_chart,
    score_histogram,
)
from dpcore.views.plots.base import (
    ACCOUNTANT_COLORS,
    BASELINE_COLOR,
    DEFAULT_HEIGHT,
    EPSILON_BAND_COLORS,
    GOOD_COLOR,
    HEALTHY_FILL,
    LIMIT_COLOR,
    MEMBER_COLOR,
    NO_DATA_TEXT,
    NON_MEMBER_COLOR,
    REFERENCE_COLOR,
    RUN_PALETTE,
    TARGET_COLOR,
    TEMPLATE,
    WARN_COLOR,
    WARNING_RING_COLOR,
    add_epsilon_bands,
    add_no_data,
    add_note,
    add_references,
    base_figure,
    empty_figure,
    finish_figure,
    fit_fraction_axis,
    run_colors,
)
from dpcore.views.plots.groups import group_chart
from dpcore.views.plots.illustrations import clipping_illustration, demo_gradients, image_grid, tile_images
from dpcore.views.plots.planner import (
    accountant_comparison_chart,
    epsilon_vs_epochs_chart,
    grad_norm_histogram,
    sigma_for_epsilon_chart,
)
from dpcore.views.plots.svg import figure_svg
from dpcore.views.plots.sweeps import (
    ATTACK_METRICS,
    add_run_points,
    attack_vs_epsilon_chart,
    privacy_utility_chart,
    sweep_heatmap,
)
from dpcore.views.plots.training import (
    SMOOTH_MIN_STEPS,
    RunsInput,
    accuracy_chart,
    clip_fraction_chart,
    epsilon_chart,
    loss_chart,
)
from dpcore.views.plots.vulnerability import VULNERABILITY_TITLE, vulnerability_chart

__all__ = [
    "ACCOUNTANT_COLORS", "ATTACK_METRICS", "BASELINE_COLOR", "BOUND_COLOR", "BOUND_LABEL", "DEFAULT_HEIGHT",
    "EPSILON_BAND_COLORS", "GAP_FILL", "GOOD_COLOR", "HEALTHY_FILL", "IMPOSSIBLE_FILL", "LIMIT_COLOR",
    "LOWER_BOUND_COLOR", "MEMBER_COLOR", "NON_MEMBER_COLOR", "NO_DATA_TEXT", "REFERENCE_COLOR", "RUN_PALETTE",
    "SMOOTH_MIN_STEPS", "TARGET_COLOR", "TEMPLATE", "UPPER_BOUND_COLOR", "WARNING_RING_COLOR", "WARN_COLOR", "RocCurve",
    "RunsInput", "accountant_comparison_chart", "accuracy_chart", "add_epsilon_bands", "add_no_data", "add_note",
    "add_references", "add_run_points", "add_tradeoff_bound", "attack_vs_epsilon_chart", "base_figure",
    "clip_fraction_chart", "clipping_illustration", "demo_gradients", "empty_figure", "epsilon_audit_chart",
    "epsilon_bounds_chart", "epsilon_chart", "epsilon_vs_epochs_chart", "finish_figure", "fit_fraction_axis",
    "grad_norm_histogram", "image_grid", "loss_chart", "privacy_utility_chart", "roc_chart", "run_colors",
    "score_histogram", "sigma_for_epsilon_chart", "sweep_heatmap", "tile_images",
]

__all__ += ["group_chart"]
__all__ += ["VULNERABILITY_TITLE", "vulnerability_chart"]
__all__ += ["figure_svg"]
