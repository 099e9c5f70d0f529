"""dpcore.views.live: downsampled live charts and the live view's redraw interval."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dpcore.errors import ConfigError
from dpcore.views import live, plots

ROOT = Path(__file__).resolve().parents[2]


def _history(n: int, steps_per_epoch: int) -> pd.DataFrame:
    steps = np.arange(n)
    return pd.DataFrame({"step": steps, "epoch": steps // steps_per_epoch, "epsilon": np.sqrt(steps / n),
                         "loss": np.exp(-steps / n), "clip_fraction": 0.5, "batch_size": 64})


def _epoch_ends(frame: pd.DataFrame) -> set[int]:
    return set(frame.groupby("epoch")["step"].max())


@pytest.mark.parametrize(("n", "per_epoch", "max_points"), [(5000, 333, 300), (1001, 7, 300), (10_000, 3, 300),
                                                             (301, 10, 300), (50, 4, 2)])
def test_downsample_keeps_at_most_n_points_first_last_and_epoch_ends(n, per_epoch, max_points):
    frame = _history(n, per_epoch)
    thin = live.downsample_history(frame, max_points=max_points)
    assert len(thin) <= max_points
    assert thin["step"].iloc[0] == 0 and thin["step"].iloc[-1] == n - 1
    assert thin["step"].is_monotonic_increasing and thin["step"].is_unique
    kept = set(thin["step"])
    ends = _epoch_ends(frame)
    if len(ends) <= max_points - 1:  # every epoch boundary fits: all of them are kept
        assert ends <= kept
    # Kept rows are the original rows, unchanged.
    pd.testing.assert_frame_equal(thin, frame.set_index("step").loc[thin["step"]].reset_index()[frame.columns])
    if n > max_points and len(ends) < max_points // 2:
        assert len(thin) == max_points  # the spare budget is used for evenly spaced steps
        gaps = np.diff(thin["step"].to_numpy())
        assert gaps.max() <= 2 * n / max_points + 1


def test_downsample_leaves_a_short_history_alone_and_rejects_a_budget_below_two():
    frame = _history(120, 10)
    assert live.downsample_history(frame, max_points=300) is frame
    assert len(live.downsample_history(frame.drop(columns="epoch"), max_points=40)) == 40
    with pytest.raises(ConfigError, match="at least 2"):
        live.downsample_history(frame, max_points=1)


def test_live_charts_draw_at_most_max_points_per_trace():
    thin = live.downsample_history(_history(20_000, 250), max_points=live.MAX_POINTS)
    for figure in (plots.loss_chart([("run", thin)]), plots.epsilon_chart([("run", thin)]),
                   plots.clip_fraction_chart([("run", thin)])):
        assert figure.data and all(len(trace.x) <= live.MAX_POINTS for trace in figure.data if trace.x is not None)
    smoothed = [trace for trace in plots.loss_chart([("run", thin)]).data if "mean of" in (trace.hovertemplate or "")]
    assert smoothed and "mean of 15 steps" not in smoothed[0].hovertemplate  # spans steps, not points


def _fragment_interval(path: Path, function: str) -> str:
    """The name passed as ``run_every`` to the fragment decorating ``function`` in ``path``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef) and node.name == function:
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call):
                    for keyword in decorator.keywords:
                        if keyword.arg == "run_every" and isinstance(keyword.value, ast.Name):
                            return keyword.value.id
    raise AssertionError(f"no @st.fragment(run_every=NAME) on {function} in {path}")


def test_live_view_redraws_every_one_to_two_seconds():
    import pages.run_view as run_view  # deferred: streamlit (a page module)
    import pages.ui as ui  # deferred: streamlit (a page module)

    assert 1.0 <= live.REDRAW_S <= 2.0
    name = _fragment_interval(ROOT / "pages" / "run_view.py", "_live_fragment")
    assert 1.0 <= getattr(run_view, name) <= 2.0
    assert 1.0 <= ui.QUEUE_POLL_S <= 2.0
