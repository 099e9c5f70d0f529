"""Tests for dpcore.views.plots: every builder returns a Figure with the right traces, lines, bands and labels.

Data is read from the figure objects (``fig.data[i].x``), not from JSON: plotly 7 encodes arrays as base64.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from dpcore.errors import ConfigError
from dpcore.views import plots

# ---------------------------------------------------------------------------- sample data


def history(n: int = 50, *, sigma: float = 1.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    step = np.arange(1, n + 1)
    return pd.DataFrame({
        "step": step,
        "epoch": (step - 1) // 10 + 1,
        "epsilon": 0.2 * np.sqrt(step) / sigma,
        "clip_fraction": np.clip(0.7 + rng.normal(0, 0.05, n), 0, 1),
        "loss": 2.0 * np.exp(-step / 20) + 0.2 + rng.normal(0, 0.02, n),
        "batch_size": 64,
    })


def baseline_history(n: int = 20) -> pd.DataFrame:
    return history(n).assign(epsilon=math.inf, clip_fraction=np.nan)


def epochs(n: int = 5, *, accuracy: float = 0.9) -> pd.DataFrame:
    epoch = np.arange(1, n + 1)
    return pd.DataFrame({
        "epoch": epoch,
        "epsilon": np.linspace(0.5, 3.0, n),
        "train_loss": np.linspace(1.0, 0.3, n),
        "train_accuracy": accuracy + 0.02 - 0.2 / epoch,
        "test_accuracy": accuracy - 0.2 / epoch,
    })


def annotation_texts(fig: go.Figure) -> list[str]:
    return [annotation.text or "" for annotation in fig.layout.annotations]


def shapes_named(fig: go.Figure, prefix: str) -> list:
    return [shape for shape in fig.layout.shapes if (shape.name or "").startswith(prefix)]


def has_no_data(fig: go.Figure) -> bool:
    return plots.NO_DATA_TEXT in annotation_texts(fig)


# ---------------------------------------------------------------------------- epsilon_chart


def test_epsilon_chart_target_limit_and_visible_bands_only():
    run = history(100)  # epsilon reaches 2.0
    fig = plots.epsilon_chart([("a", run)], target_epsilon=3.0, epsilon_limit=3.2)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 1 and fig.data[0].name == "a"
    np.testing.assert_allclose(fig.data[0].y, run["epsilon"])

    top = 3.0 * 1.15  # the range follows max(curve, target), not the limit
    assert fig.layout.yaxis.range == pytest.approx((0, top))
    (target,) = shapes_named(fig, "target")
    assert target.y0 == target.y1 == 3.0 and target.line.dash == "dash"
    assert any("target ε = 3" in text for text in annotation_texts(fig))
    (limit,) = shapes_named(fig, "limit")
    assert limit.y0 == 3.2 and limit.line.color == plots.LIMIT_COLOR

    bands = {shape.name: shape for shape in shapes_named(fig, "band: ")}
    assert set(bands) == {"band: strong", "band: moderate"}  # 5-10 and >10 lie above the visible range
    assert (bands["band: strong"].y0, bands["band: strong"].y1) == (0, 1)
    assert bands["band: moderate"].y1 == pytest.approx(top)  # clipped to the top of the chart


def test_epsilon_chart_draws_all_bands_for_large_epsilon_and_notes_a_limit_off_the_chart():
    run = history(100, sigma=0.1)  # epsilon reaches 20
    fig = plots.epsilon_chart(run, target_epsilon=15, epsilon_limit=100)
    assert {shape.name for shape in shapes_named(fig, "band: ")} == {
        "band: strong", "band: moderate", "band: weak", "band: very weak"}
    assert fig.layout.yaxis.range[1] == pytest.approx(20 * 1.15)
    assert not shapes_named(fig, "limit")
    assert "hard limit ε = 100" in fig.layout.title.subtitle.text
    # without a target the limit sets the scale, so a fixed-sigma run shows how close it is to its budget
    assert plots.epsilon_chart(run, epsilon_limit=30).layout.yaxis.range[1] == pytest.approx(30 * 1.15)


def test_epsilon_chart_skips_baseline_with_a_note_and_accepts_epoch_axis():
    fig = plots.epsilon_chart([("dp", history(30)), ("no-dp", baseline_history())], x="epoch")
    assert [trace.name for trace in fig.data] == ["dp"]
    assert np.all(np.diff(fig.data[0].x) >= 0)
    assert "no-dp" in fig.layout.title.subtitle.text
    assert fig.layout.xaxis.title.text == "epoch"
    only_baseline = plots.epsilon_chart([("no-dp", baseline_history())])
    assert len(only_baseline.data) == 0 and not has_no_data(only_baseline)
    with pytest.raises(ConfigError, match="'step' or 'epoch'"):
        plots.epsilon_chart(history(), x="time")


def test_epsilon_chart_before_first_step_shows_target_and_no_data():
    fig = plots.epsilon_chart([("live", pd.DataFrame())], target_epsilon=3.0)
    assert has_no_data(fig)
    assert shapes_named(fig, "target")
    assert fig.layout.yaxis.range == pytest.approx((0, 3.45))


def test_runs_accepted_as_dict_and_as_on_step_dicts():
    rows = [{"step": 1, "epoch": 1, "epsilon": 0.1}, {"step": 2, "epoch": 1, "epsilon": 0.2}]
    fig = plots.epsilon_chart({"live": rows})
    assert list(fig.data[0].x) == [1, 2] and fig.data[0].name == "live"
    with pytest.raises(ConfigError, match="no 'epsilon' column"):
        plots.epsilon_chart([("bad", pd.DataFrame({"step": [1]}))])
    with pytest.raises(ConfigError, match=r"\(label, DataFrame\)"):
        plots.epsilon_chart([history()])  # a list of bare DataFrames


# ---------------------------------------------------------------------------- colours


def legend_colours(fig: go.Figure) -> dict[str, str]:
    return {trace.name: trace.line.color for trace in fig.data if trace.showlegend is not False}


def test_runs_get_distinct_colours_consistent_across_figures():
    runs = [(f"run {i}", history(40, sigma=1 + i / 10, seed=i)) for i in range(4)]
    eps_colours = legend_colours(plots.epsilon_chart(runs))
    assert len(set(eps_colours.values())) == 4
    assert legend_colours(plots.loss_chart(runs)) == eps_colours
    assert legend_colours(plots.clip_fraction_chart(runs)) == eps_colours
    # a run missing from one figure keeps its colour when colours are pinned
    pinned = plots.run_colors([label for label, _ in runs])
    assert legend_colours(plots.loss_chart(runs[2:], colors=pinned)) == {
        "run 2": pinned["run 2"], "run 3": pinned["run 3"]}


def test_single_run_hides_the_legend_several_runs_show_it():
    assert plots.epsilon_chart(history()).layout.showlegend is False
    assert plots.epsilon_chart([("a", history()), ("b", history(sigma=2))]).layout.showlegend is True
    assert plots.epsilon_chart(history()).layout.template.layout.legend.orientation == "h"  # legends on top


# ---------------------------------------------------------------------------- clip fraction, loss


def test_clip_fraction_chart_band_and_rolling_mean():
    run = history(200)
    fig = plots.clip_fraction_chart([("a", run)])
    (band,) = shapes_named(fig, "healthy band")
    assert (band.y0, band.y1) == (0.5, 0.8)
    assert any("healthy 50–80 %" in text for text in annotation_texts(fig))
    assert fig.layout.yaxis.tickformat == ".0%"
    raw, smoothed = fig.data
    assert raw.showlegend is False and raw.opacity < 1
    window = plots.training._smoothing_window(200)
    expected = run["clip_fraction"].rolling(window, min_periods=1).mean().to_numpy()
    np.testing.assert_allclose(smoothed.y, expected)
    assert len(plots.clip_fraction_chart([("a", history(10))]).data) == 1  # few steps: no rolling mean
    assert len(plots.clip_fraction_chart([("a", run)], smooth=False).data) == 1
    with pytest.raises(ConfigError, match="band"):
        plots.clip_fraction_chart(run, band=(0.8, 0.5))


def test_clip_fraction_chart_notes_baseline():
    fig = plots.clip_fraction_chart([("no-dp", baseline_history())])
    assert len(fig.data) == 0 and "no-dp" in fig.layout.title.subtitle.text


def test_loss_chart_raw_and_smoothed_and_drops_non_finite():
    run = history(100)
    run.loc[50, "loss"] = np.nan
    run.loc[60, "loss"] = np.inf
    fig = plots.loss_chart([("a", run)])
    assert len(fig.data) == 2
    assert len(fig.data[0].x) == 98 and np.all(np.isfinite(fig.data[0].y))
    assert "nats" in fig.layout.yaxis.title.text
    assert plots.loss_chart([("a", run)], log_y=True).layout.yaxis.type == "log"


# ---------------------------------------------------------------------------- accuracy


def test_accuracy_chart_train_dashed_test_solid_and_float_baseline():
    fig = plots.accuracy_chart([("a", epochs()), ("b", epochs(accuracy=0.8))], baseline=0.97)
    by_name = {trace.name: trace for trace in fig.data}
    assert by_name["a test"].line.dash == "solid" and by_name["a train"].line.dash == "dash"
    assert by_name["a test"].line.color == by_name["a train"].line.color != by_name["b test"].line.color
    base = by_name["non-private baseline"]
    assert base.line.dash == "dot" and base.line.color == plots.BASELINE_COLOR
    assert list(base.y) == [0.97, 0.97] and list(base.x) == [1, 5]


def test_accuracy_chart_dataframe_baseline_and_single_run_names():
    fig = plots.accuracy_chart([("a", epochs())], baseline=epochs(accuracy=0.97))
    assert [trace.name for trace in fig.data] == ["test", "train", "non-private baseline"]
    np.testing.assert_allclose(fig.data[2].y, epochs(accuracy=0.97)["test_accuracy"])
    live = plots.accuracy_chart([], baseline=0.9)
    assert has_no_data(live) and live.data[0].name == "non-private baseline"


# ---------------------------------------------------------------------------- ROC


def roc_curves() -> list:
    fpr = np.array([0.0, 0.0, 0.01, 0.1, 0.5, 1.0])
    tpr = np.array([0.0, 0.05, 0.1, 0.3, 0.7, 1.0])
    return [("loss", fpr, tpr, 0.6789), ("shadow", fpr, np.sqrt(tpr), 0.75)]


def test_roc_chart_diagonal_and_auc_in_legend():
    fig = plots.roc_chart(roc_curves())
    chance = fig.data[0]
    assert chance.name == "chance" and list(chance.x) == [0, 1] and list(chance.y) == [0, 1]
    assert [trace.name for trace in fig.data[1:]] == ["loss (AUC 0.679)", "shadow (AUC 0.750)"]
    assert fig.data[1].line.color != fig.data[2].line.color
    assert fig.layout.xaxis.type != "log"


def test_roc_chart_takes_run_colours():
    pinned = plots.run_colors(["skipped run", "shadow"])  # 'loss' is not pinned: it takes the palette
    fig = plots.roc_chart(roc_curves(), colors=pinned)
    assert fig.data[2].line.color == pinned["shadow"] and fig.data[1].line.color == plots.RUN_PALETTE[0]


def test_narrow_charts_reserve_room_for_more_legend_rows():
    runs = [(f"a rather long run name number {i}", history()) for i in range(3)]
    fig = plots.epsilon_chart(runs)
    wide_top = fig.layout.margin.t
    assert plots.finish_figure(fig, width=440).layout.margin.t > wide_top


def test_roc_chart_log_scale_has_log_axes_and_no_zeros():
    fig = plots.roc_chart(roc_curves(), log_scale=True, n_non_members=200)
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert fig.layout.xaxis.range[0] == pytest.approx(math.log10(1 / 200))
    for trace in fig.data:
        assert np.min(trace.x) > 0 and np.min(trace.y) > 0
    assert np.min(fig.data[1].x) == pytest.approx(1 / 200)
    # without n, the floor is the smallest nonzero FPR
    assert plots.roc_chart(roc_curves(), log_scale=True).layout.xaxis.range[0] == pytest.approx(-2)


# ---------------------------------------------------------------------------- gradient norms


def test_grad_norm_histogram_bound_label_reports_clipped_fraction():
    norms = np.arange(1.0, 11.0)  # 8, 9, 10 are above the bound 7: 30 %
    fig = plots.grad_norm_histogram(norms, bound=7.0)
    (bound_line,) = shapes_named(fig, "bound")
    assert bound_line.x0 == bound_line.x1 == 7.0
    (label,) = [a.text for a in fig.layout.annotations if a.name == "bound"]
    assert label == "C = 7: clips 30%"
    assert bound_line.line.color == plots.WARN_COLOR  # 30 % is outside the 50-80 % range
    assert sum(fig.data[0].y) == 10
    assert fig.layout.xaxis.type != "log"
    good = plots.grad_norm_histogram(norms, bound=4.0)  # clips 60 %
    assert "clips 60%" in annotation_texts(good)[-1] and shapes_named(good, "bound")[0].line.color == plots.GOOD_COLOR
    (band,) = shapes_named(good, "clip range band")
    assert (band.x0, band.x1) == pytest.approx(tuple(np.quantile(norms, [0.2, 0.5])))


def test_grad_norm_histogram_log_axis_when_norms_span_decades():
    norms = np.exp(np.random.default_rng(0).normal(0, 2, 1000))
    fig = plots.grad_norm_histogram(np.r_[norms, 0.0], bound=1.0)
    assert fig.layout.xaxis.type == "log"
    assert sum(fig.data[0].y) == 1001  # the zero norm is counted in the first bin
    expected = f"clips {np.mean(np.r_[norms, 0.0] > 1.0):.0%}"
    assert any(expected in text for text in annotation_texts(fig))
    with pytest.raises(ConfigError, match="positive"):
        plots.grad_norm_histogram(norms, bound=0)


# ---------------------------------------------------------------------------- accounting what-ifs


def sigma_curves() -> pd.DataFrame:
    frames = [pd.DataFrame({"noise_multiplier": sigma, "epoch": np.arange(1, 11),
                            "epsilon": np.sqrt(np.arange(1, 11)) / sigma}) for sigma in (1.5, 0.5, 1.0)]
    return pd.concat(frames, ignore_index=True)


def test_epsilon_vs_epochs_one_line_per_sigma_with_bands_and_target():
    fig = plots.epsilon_vs_epochs_chart(sigma_curves(), target_epsilon=4.0)
    assert [trace.name for trace in fig.data] == ["σ = 0.5", "σ = 1", "σ = 1.5"]
    assert len({trace.line.color for trace in fig.data}) == 3
    assert shapes_named(fig, "target")[0].y0 == 4.0
    top = math.sqrt(10) / 0.5 * 1.15
    assert fig.layout.yaxis.range[1] == pytest.approx(top)
    assert len(shapes_named(fig, "band: ")) == 3  # strong, moderate, weak (top < 10)


def test_accountant_comparison_bars_and_missing_values():
    df = pd.DataFrame({"accountant": ["rdp", "prv", "gdp"], "epsilon": [3.1, 2.8, np.inf]})
    fig = plots.accountant_comparison_chart(df)
    (bars,) = fig.data
    assert isinstance(bars, go.Bar)
    assert list(bars.x) == ["RDP", "PRV"] and list(bars.y) == [3.1, 2.8]
    assert list(bars.text) == ["3.10", "2.80"]  # same precision on every bar
    assert "GDP" in fig.layout.title.subtitle.text


def test_sigma_for_epsilon_chart_log_x_sorted():
    df = pd.DataFrame({"target_epsilon": [8, 1, 0.5, 3], "noise_multiplier": [0.7, 2.2, 4.0, 1.1]})
    fig = plots.sigma_for_epsilon_chart(df)
    assert fig.layout.xaxis.type == "log"
    assert list(fig.data[0].x) == [0.5, 1, 3, 8] and list(fig.data[0].y) == [4.0, 2.2, 1.1, 0.7]
    assert list(fig.layout.xaxis.tickvals) == [0.5, 1, 2, 5, 10]  # 1-2-5 ticks, no crowded minor labels
    # vertical bands on a log axis: shapes in data units, inside the visible range
    for shape in shapes_named(fig, "band: "):
        assert 0.5 / 1.3 - 1e-9 <= shape.x0 < shape.x1 <= 8 * 1.3 + 1e-9


# ---------------------------------------------------------------------------- images


def test_tile_images_upscales_by_nearest_neighbour():
    images = np.arange(2 * 8 * 8, dtype=np.uint8).reshape(2, 8, 8, 1)
    canvas = plots.tile_images(images, columns=2, scale=7, gap=4)
    assert canvas.shape == (56, 2 * 56 + 4, 3)
    np.testing.assert_array_equal(canvas[:7, :7, 0], np.full((7, 7), images[0, 0, 0, 0]))
    np.testing.assert_array_equal(canvas[::7, 60::7, 1][:8, :8], images[1, :, :, 0])
    assert np.all(canvas[:, 56:60] == 255)  # white gap between tiles


def test_image_grid_labels_and_layout():
    images = np.random.default_rng(0).integers(0, 256, size=(10, 8, 8, 1), dtype=np.uint8)
    fig = plots.image_grid(images, [str(i) for i in range(10)], columns=4)
    (image,) = fig.data
    assert isinstance(image, go.Image)
    assert (image.source or "").startswith("data:image/png;base64,") or image.z is not None
    assert annotation_texts(fig) == [str(i) for i in range(10)]
    # 3 rows x (56 px tile + 18 px caption) + gaps: drawn 1:1 so 8x8 digits stay legible
    assert fig.layout.height >= 3 * (56 + 18)
    chw = plots.image_grid(np.zeros((3, 3, 32, 32), dtype=np.float32), ["a", "b", "c"])
    assert isinstance(chw.data[0], go.Image)


# ---------------------------------------------------------------------------- attacks


def test_score_histogram_shared_bins_and_percentages():
    rng = np.random.default_rng(0)
    fig = plots.score_histogram(rng.normal(1, 1, 300), rng.normal(0, 1, 100), title="Loss attack")
    members, non_members = fig.data
    assert members.name == "members (n=300)" and non_members.name == "non-members (n=100)"
    np.testing.assert_allclose(members.x, non_members.x)
    assert sum(members.y) == pytest.approx(100) and sum(non_members.y) == pytest.approx(100)
    assert fig.layout.barmode == "overlay" and fig.layout.title.text == "Loss attack"


def test_privacy_utility_chart_error_bars_and_baseline_line():
    df = pd.DataFrame({
        "label": ["ε=8", "ε=1", "ε=3", "no DP"],
        "epsilon": [8.0, 1.0, 3.0, math.inf],
        "test_accuracy": [0.92, 0.8, 0.88, 0.96],
        "test_accuracy_std": [0.01, 0.03, 0.02, np.nan],
        "is_baseline": [False, False, False, True],
    })
    fig = plots.privacy_utility_chart(df)
    assert fig.layout.xaxis.type == "log"
    baseline, runs = fig.data
    assert baseline.name.startswith("non-private baseline") and list(baseline.y) == [0.96, 0.96]
    assert baseline.line.dash == "dot"
    assert list(runs.x) == [1, 3, 8] and list(runs.error_y.array) == [0.03, 0.02, 0.01]
    assert list(runs.text) == ["ε=1", "ε=3", "ε=8"]


def test_epsilon_bounds_chart_identity_line_and_ci():
    df = pd.DataFrame({"label": ["a", "b"], "theoretical_epsilon": [1.0, 4.0],
                       "empirical_lower_bound": [0.4, 1.5], "lower_ci": [0.1, 1.0]})
    fig = plots.epsilon_bounds_chart(df)
    identity, points = fig.data
    assert identity.name.startswith("y = x") and list(identity.x) == list(identity.y)
    assert list(points.error_y.arrayminus) == pytest.approx([0.3, 0.5])
    assert list(points.x) == [1.0, 4.0]
    low, high = fig.layout.yaxis.range
    assert low < 0 < 4.0 < high  # a bound of exactly 0 is drawn inside the plot, not on its edge


# ---------------------------------------------------------------------------- empty inputs, JSON

EMPTY_BUILDERS = {
    "epsilon": lambda: plots.epsilon_chart(pd.DataFrame()),
    "epsilon-list": lambda: plots.epsilon_chart([]),
    "epsilon-none": lambda: plots.epsilon_chart(None),
    "clip": lambda: plots.clip_fraction_chart([("a", pd.DataFrame())]),
    "loss": lambda: plots.loss_chart(pd.DataFrame()),
    "accuracy": lambda: plots.accuracy_chart([]),
    "roc": lambda: plots.roc_chart([]),
    "roc-log": lambda: plots.roc_chart([], log_scale=True),
    "grad-norms": lambda: plots.grad_norm_histogram(np.array([]), bound=1.0),
    "epsilon-vs-epochs": lambda: plots.epsilon_vs_epochs_chart(pd.DataFrame()),
    "accountants": lambda: plots.accountant_comparison_chart(pd.DataFrame()),
    "sigma": lambda: plots.sigma_for_epsilon_chart(pd.DataFrame()),
    "images": lambda: plots.image_grid(np.zeros((0, 8, 8, 1), dtype=np.uint8), []),
    "scores": lambda: plots.score_histogram([], []),
    "privacy-utility": lambda: plots.privacy_utility_chart(pd.DataFrame()),
    "bounds": lambda: plots.epsilon_bounds_chart(pd.DataFrame()),
}


@pytest.mark.parametrize("name", sorted(EMPTY_BUILDERS))
def test_empty_inputs_say_no_data_yet(name):
    fig = EMPTY_BUILDERS[name]()
    assert isinstance(fig, go.Figure)
    assert has_no_data(fig)
    json.loads(fig.to_json())


FULL_BUILDERS = {
    "epsilon": lambda: plots.epsilon_chart([("a", history()), ("b", baseline_history())], target_epsilon=2,
                                           epsilon_limit=2.5, delta=1e-5),
    "clip": lambda: plots.clip_fraction_chart([("a", history(100))]),
    "loss": lambda: plots.loss_chart([("a", history(100))]),
    "accuracy": lambda: plots.accuracy_chart([("a", epochs())], baseline=epochs(accuracy=0.95)),
    "roc": lambda: plots.roc_chart(roc_curves(), log_scale=True),
    "grad-norms": lambda: plots.grad_norm_histogram(np.linspace(0.1, 3, 50), bound=1.0),
    "epsilon-vs-epochs": lambda: plots.epsilon_vs_epochs_chart(sigma_curves(), target_epsilon=3),
    "accountants": lambda: plots.accountant_comparison_chart(
        pd.DataFrame({"accountant": ["rdp", "prv"], "epsilon": [3.0, 2.9], "seconds": [0.01, 0.3]})),
    "sigma": lambda: plots.sigma_for_epsilon_chart(
        pd.DataFrame({"target_epsilon": [1, 2], "noise_multiplier": [2, 1]})),
    "images": lambda: plots.image_grid(np.zeros((4, 8, 8, 1), dtype=np.uint8), ["0", "1", "2", "3"]),
    "scores": lambda: plots.score_histogram([0.1, 0.2], [0.3]),
    "privacy-utility": lambda: plots.privacy_utility_chart(
        pd.DataFrame({"label": ["a"], "epsilon": [2.0], "test_accuracy": [0.9], "is_baseline": [False]})),
    "bounds": lambda: plots.epsilon_bounds_chart(
        pd.DataFrame({"label": ["a"], "theoretical_epsilon": [2.0], "empirical_lower_bound": [0.5]})),
}


@pytest.mark.parametrize("name", sorted(FULL_BUILDERS))
def test_figures_serialise_with_the_shared_template(name):
    fig = FULL_BUILDERS[name]()
    assert not has_no_data(fig)
    assert fig.layout.template.layout.plot_bgcolor == "white"
    parsed = json.loads(fig.to_json())
    assert parsed["data"]


def test_sweep_heatmap_colour_scale_stays_inside_the_values_range():
    cells = pd.DataFrame({"target_epsilon": [1.0, 3.0], "max_grad_norm": [1.0, 1.0], "value": [1.0, 1.0]})
    (lone, *_) = plots.sweep_heatmap(cells, mark_best=False).data  # one value, all 100 %
    assert 0.9 <= lone.zmin < 1.0 and lone.zmax == 1.0  # never a scale stretched past 100 %
    (fixed, *_) = plots.sweep_heatmap(cells, mark_best=False, value_range=(0.0, 1.0)).data
    assert (fixed.zmin, fixed.zmax) == (0.0, 1.0)
    spread = cells.assign(value=[0.52, 0.59])
    (auto, *_) = plots.sweep_heatmap(spread, mark_best=False).data
    assert (auto.zmin, auto.zmax) == (0.52, 0.59)
