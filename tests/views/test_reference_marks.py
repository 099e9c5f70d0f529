"""Reference points on ε charts (issue 12 §5): marks only inside the visible ε range, never a stretched axis."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from dpcore.privacy.deployments import DEPLOYMENTS
from dpcore.views import plots
from dpcore.views.plots.base import REFERENCE_MIN_GAP

EXTREMES = [0.0, 1e-6, 1.0, 3.0, 1e3, 1e6, math.inf]


def reference_marks(fig: go.Figure) -> tuple[list, list]:
    shapes = [s for s in fig.layout.shapes if (s.name or "").startswith("reference: ")]
    labels = [a for a in fig.layout.annotations if (a.name or "").startswith("reference: ")]
    return shapes, labels


def history(final: float, n: int = 50) -> pd.DataFrame:
    epsilon = np.linspace(final / n, final, n) if math.isfinite(final) else np.full(n, final)
    return pd.DataFrame({"step": np.arange(1, n + 1), "epsilon": epsilon})


def test_epsilon_chart_marks_the_references_inside_the_axis_only():
    fig = plots.epsilon_chart([("run", history(9.0))], target_epsilon=8.0)
    top = fig.layout.yaxis.range[1]
    assert top == pytest.approx(9.0 * 1.15)  # the marks do not move the axis
    shapes, labels = reference_marks(fig)
    assert shapes and len(shapes) == len(labels)
    assert all(0 < shape.y0 <= top for shape in shapes)
    inside = {ref.label for ref in DEPLOYMENTS if ref.epsilon <= top}
    drawn = {shape.name.removeprefix("reference: ") for shape in shapes}
    assert drawn <= inside and "US Census 2020" not in drawn  # 17.14 is above the axis
    assert any("δ" in label.hovertext and "unit" in label.hovertext for label in labels)


def test_a_run_at_epsilon_one_is_not_stretched_to_the_census():
    fig = plots.epsilon_chart([("run", history(1.0))], target_epsilon=1.0)
    assert fig.layout.yaxis.range[1] == pytest.approx(1.15)
    shapes, _ = reference_marks(fig)
    assert all(shape.y0 <= 1.15 for shape in shapes)


def test_references_can_be_switched_off_and_are_off_without_data():
    assert reference_marks(plots.epsilon_chart([("run", history(9.0))], references=False)) == ([], [])
    assert reference_marks(plots.epsilon_chart(None)) == ([], [])


def test_marks_never_pile_up():
    fig = plots.epsilon_vs_epochs_chart(pd.DataFrame({"noise_multiplier": [1.0] * 3, "epoch": [1, 2, 3],
                                                      "epsilon": [5.0, 12.0, 20.0]}), target_epsilon=3.0)
    top = fig.layout.yaxis.range[1]
    positions = sorted(shape.y0 / top for shape in reference_marks(fig)[0])
    assert positions and positions[0] >= REFERENCE_MIN_GAP
    assert all(b - a >= REFERENCE_MIN_GAP for a, b in itertools.pairwise(positions))


@pytest.mark.parametrize("final", EXTREMES)
def test_extreme_epsilons_draw_no_mark_outside_the_axis(final):
    fig = plots.epsilon_chart([("run", history(final))], target_epsilon=final if math.isfinite(final) else None)
    fig.to_json()  # serialisable, no exception
    top = fig.layout.yaxis.range[1]
    shapes, labels = reference_marks(fig)
    assert len(shapes) == len(labels)
    assert all(0 < shape.y0 <= top for shape in shapes)
    if 0 < final <= 1e-6 or final >= 1e3:
        assert shapes == []  # far below every reference, or all of them squashed at the axis' foot
    if final == 0:
        assert top == 1.0  # the default axis of a flat zero curve, not stretched by a mark


def test_log_axis_charts_mark_vertically_in_data_units():
    table = pd.DataFrame({"target_epsilon": [0.5, 1, 2, 3, 5, 8, 10, 20, 50],
                          "noise_multiplier": [5, 3, 2, 1.5, 1.1, 0.9, 0.8, 0.6, 0.5]})
    fig = plots.sigma_for_epsilon_chart(table)
    lo, hi = (10 ** v for v in fig.layout.xaxis.range)
    shapes, labels = reference_marks(fig)
    assert shapes and all(lo <= shape.x0 == shape.x1 <= hi for shape in shapes)
    for shape, label in zip(shapes, labels, strict=True):  # annotations take log10 positions on a log axis
        assert label.x == pytest.approx(math.log10(shape.x0))
    assert reference_marks(plots.sigma_for_epsilon_chart(table, references=False)) == ([], [])


def test_frontier_gets_marks_but_no_trace_and_one_point_far_away_gets_none():
    front = pd.DataFrame({"label": list("abcd"), "epsilon": [0.5, 1.0, 3.0, 10.0],
                          "test_accuracy": [0.6, 0.7, 0.8, 0.85]})
    fig = plots.privacy_utility_chart(front)
    assert reference_marks(fig)[0]
    assert not any((trace.name or "").startswith("reference") for trace in fig.data)  # fit_fraction_axis reads traces
    lonely = plots.privacy_utility_chart(front.iloc[[0]].assign(epsilon=1e6))
    assert reference_marks(lonely) == ([], [])


def test_accountant_bars_mark_inside_their_range():
    fig = plots.accountant_comparison_chart(pd.DataFrame({"accountant": ["rdp", "prv", "gdp"],
                                                          "epsilon": [3.1, 2.9, 2.8]}))
    top = fig.layout.yaxis.range[1]
    shapes, _ = reference_marks(fig)
    assert {shape.y0 for shape in shapes} == {ref.epsilon for ref in DEPLOYMENTS if 0.05 * top <= ref.epsilon <= top}
