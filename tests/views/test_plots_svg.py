"""figure_svg: our plotly figures as one line of static inline SVG (the live charts), well-formed, safe and finite."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from dpcore.errors import ConfigError
from dpcore.privacy import tradeoff
from dpcore.store.records import StoredRun
from dpcore.store.runs import RunRecord
from dpcore.views import plots
from dpcore.views import run_summary as rs
from dpcore.views.plots import svg_text
from dpcore.views.plots.svg import MAX_POINTS, figure_svg

NS = "{http://www.w3.org/2000/svg}"
GEOMETRY = ("x", "y", "x1", "x2", "y1", "y2", "cx", "cy", "r", "width", "height", "d", "transform")
EVIL = "<script>alert(1)</script>\"&'"


def parse(svg: str) -> ET.Element:
    """The SVG as XML (it must be well-formed), after the checks every output must pass."""
    assert svg.startswith("<svg ") and svg.endswith("</svg>") and "\n" not in svg and "\r" not in svg
    root = ET.fromstring(svg)
    assert root.get("width") == "100%" and root.get("role") == "img" and root.get("viewBox").startswith("0 0 ")
    return root


def coordinates(root: ET.Element) -> list[float]:
    """Every number in the geometry attributes; fails on nan/inf."""
    values = []
    for element in root.iter():
        for name in GEOMETRY:
            text = element.get(name)
            if text is not None:
                assert "nan" not in text.lower() and "inf" not in text.lower(), (element.tag, name, text)
                values += [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", text)]
    assert all(math.isfinite(v) for v in values)
    return values


def title_of(root: ET.Element) -> str:
    return root.find(f"{NS}title").text.replace("\u2060", "")


def lines(root: ET.Element) -> list[ET.Element]:
    return [path for path in root.iter(f"{NS}path") if path.get("class") == "line"]


def subpaths(path: ET.Element) -> list[list[tuple[float, float]]]:
    """The (x, y) points of each 'M ... L ...' piece of a path."""
    return [[tuple(float(v) for v in pair.split(",")) for pair in piece.split(" L")]
            for piece in path.get("d").split("M")[1:]]


def texts(root: ET.Element) -> list[str]:
    """What each <text> shows (svg_text's invisible word joiners, U+2060, removed)."""
    return ["".join(element.itertext()).replace("\u2060", "") for element in root.iter(f"{NS}text")]


def _stored(*, private: bool) -> StoredRun:
    config = {"dataset": "synthetic", "model": "mlp", "private": private, "target_epsilon": 3.0 if private else None,
              "epsilon_limit": 5.0 if private else None, "target_delta": 1e-5, "epochs": 6}
    record = RunRecord(id="r1", name="run one", kind="train", group=None, status="running", config=config,
                       total_steps=600, summary={})
    return StoredRun.from_record(record, store=None)


def _steps(n: int, *, private: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    step = np.arange(1, n + 1)
    return pd.DataFrame({"step": step, "epoch": 1 + step // 100,
                         "epsilon": 0.01 * step if private else np.inf, "clip_fraction": 0.6 + 0.1 * rng.random(n),
                         "loss": 2.0 / np.sqrt(step) + 0.05 * rng.random(n), "batch_size": 64})


def _epochs(n: int, *, auc: float = 0.5) -> pd.DataFrame:
    epoch = np.arange(1, n + 1)
    return pd.DataFrame({"epoch": epoch, "epsilon": 0.5 * epoch, "train_loss": 1.0 / epoch,
                         "train_accuracy": 0.7 + 0.03 * epoch, "test_accuracy": 0.65 + 0.02 * epoch,
                         "mia_auc": auc + 0.02 * epoch, "mia_tpr_at_1pct_fpr": 0.01 * epoch})


def _drawn_traces(fig: go.Figure) -> int:
    """Visible scatter traces with at least one finite point."""
    count = 0
    for trace in fig.data:
        ys = np.asarray(trace.y if trace.y is not None else [], dtype=float)
        count += trace.visible not in (False, "legendonly") and bool(np.isfinite(ys).any())
    return count


@pytest.mark.parametrize("private", [True, False])
def test_every_live_chart_renders_its_title_and_one_line_per_trace(private):
    specs = rs.chart_specs(_stored(private=private), _steps(300, private=private), _epochs(3),
                           baseline_epochs=_epochs(3, auc=0.6) if private else None, live=True)
    assert len(specs) == (6 if private else 4)
    for fig, name, _ in specs:
        before = fig.to_json()
        root = parse(figure_svg(fig))
        assert fig.to_json() == before  # live figures are shared by every session: drawing must not change them
        coordinates(root)
        title = fig.layout.title.text
        assert title_of(root) == title and root.get("aria-label") == title and title in texts(root)
        assert len(lines(root)) == _drawn_traces(fig) > 0, name
        if fig.layout.showlegend:
            assert all(trace.name in texts(root) for trace in fig.data if trace.showlegend is not False)


def test_known_points_land_on_the_expected_pixels_and_ticks_are_nice():
    fig = go.Figure(go.Scatter(x=[0, 5, 10], y=[0, 0.5, 1], mode="lines"))
    fig.update_layout(title_text="known", height=300)
    fig.update_xaxes(range=[0, 10], title_text="x")
    fig.update_yaxes(range=[0, 1], title_text="y")
    root = parse(figure_svg(fig, width=400))
    assert root.get("viewBox") == "0 0 400 300"
    rect = next(root.iter(f"{NS}rect"))  # the plot area's clip rectangle
    left, top, width, height = (float(rect.get(k)) for k in ("x", "y", "width", "height"))
    assert 20 < left < 100 and 20 < top < 80 and left + width <= 400 and top + height <= 300 and width > 250
    (points,) = subpaths(lines(root)[0])
    expected = [(left, top + height), (left + width / 2, top + height / 2), (left + width, top)]
    assert np.allclose(points, expected, atol=0.051)
    labels = texts(root)
    assert {"0", "2", "4", "6", "8", "10"} <= set(labels) and {"0", "0.2", "1"} <= set(labels)


def test_gaps_split_lines_and_non_finite_values_are_never_drawn():
    nan_inside = go.Figure(go.Scatter(x=[1, 2, 3, 4, 5], y=[1, 2, np.nan, 3, 4], mode="lines"))
    assert [len(piece) for piece in subpaths(lines(parse(figure_svg(nan_inside)))[0])] == [2, 2]
    mixed = go.Figure(go.Scatter(x=[1, 2, 3, 4, 5, 6, 7], y=[1, np.inf, 2, None, 3, -np.inf, 4], mode="lines+markers"))
    root = parse(figure_svg(mixed))
    coordinates(root)
    assert sum(len(piece) for piece in subpaths(lines(root)[0])) == 4 == len(list(root.iter(f"{NS}circle")))


@pytest.mark.parametrize("epsilon", [[0.0, 1e6, np.inf], [2.0], [1.5, 1.5, 1.5, 1.5], [0.0, 0.0]])
def test_extreme_single_and_flat_series_give_finite_coordinates(epsilon):
    steps = pd.DataFrame({"step": np.arange(1, len(epsilon) + 1), "epsilon": epsilon, "loss": epsilon,
                          "clip_fraction": 0.5})
    for fig in (plots.epsilon_chart([("run", steps)], target_epsilon=3.0, epsilon_limit=10.0),
                plots.loss_chart([("run", steps)]), plots.clip_fraction_chart([("run", steps)]),
                rs.stretch_steps(plots.epsilon_chart([("run", steps)]), 1000)):
        root = parse(figure_svg(fig))
        coordinates(root)
        assert len(lines(root)) == 1
    if max(epsilon) == 1e6:
        labels = texts(parse(figure_svg(plots.epsilon_chart([("run", steps)]))))
        assert any(label.endswith("M") for label in labels) and not any("e+" in label for label in labels)


def test_log_axes_roc_with_the_tradeoff_bound_renders_finite_power_of_ten_ticks():
    fpr = np.concatenate([[0.0], np.logspace(-3, 0, 120)])
    tpr = np.sqrt(fpr)
    bound = tradeoff.tradeoff_from_epsilon_delta(epsilon=2.0, delta=1e-5)
    fig = plots.roc_chart([("run", fpr, tpr, 0.7)], log_scale=True, bound=bound, bound_epsilon=2.0,
                          n_non_members=1000)
    root = parse(figure_svg(fig))
    values = coordinates(root)
    assert max(abs(v) for v in values) < 1e4
    assert len(lines(root)) == 3 and any(p.get("class") == "fill" for p in root.iter(f"{NS}path"))  # chance, bound, run
    assert {"0.1%", "1%", "10%", "100%"} <= set(texts(root))
    linear = parse(figure_svg(plots.roc_chart([("run", fpr, tpr, 0.7)], bound=bound)))
    assert {"0%", "100%"} <= set(texts(linear))


def test_user_text_is_escaped_inert_to_markdown_and_cannot_break_out():
    frame = _steps(40)
    name = EVIL + " *a* _b_ `c` $d$ :red[e] www.x.io https://y.io a@b.io"
    other = '"><svg onload=alert(1) x<y & z'  # no closing '>': not a tag, so drawn as text, escaped
    fig = plots.loss_chart([(name, frame), (other, frame)], title=name)
    svg = figure_svg(fig)
    root = parse(svg)
    assert "<script" not in svg and svg.count("<svg") == 1 and other in texts(root)
    shown = name.replace("<script>", "").replace("</script>", "")  # tags dropped as plotly does, the rest as typed
    assert title_of(root) == shown and shown in texts(root) and root.get("aria-label") == shown
    body = svg.split('style="', 1)[1].split('"', 1)[1]  # after the font-family and style attributes
    assert not set("*_`$[:@") & set(body) and "www." not in body  # GFM autolinks need 'www.', '://' or '@'
    assert "https&#58;&#8288;//" in body and "&#64;&#8288;b" in body
    # plotly validates colours and dashes; these helpers hold even for values that skipped it
    assert svg_text.safe_color('red" onload="alert(1)', "#000") == "#000"
    assert svg_text.safe_color("#333333", "#000") == "currentColor" and svg_text.safe_color("#1f77b4", "") == "#1f77b4"
    assert svg_text.dasharray('5px" onload="x', 2) == "" and svg_text.dasharray("dot", 2) == ' stroke-dasharray="3,3"'


def test_empty_and_placeholder_figures_show_their_message():
    root = parse(figure_svg(plots.empty_figure("T", "no data yet")))
    assert title_of(root) == "T" and "no data yet" in texts(root) and not lines(root)
    placeholder = parse(figure_svg(rs.placeholder("Accuracy", "accuracy appears after the first epoch")))
    assert "accuracy appears after the first epoch" in texts(placeholder)


def test_subplots_draw_each_panel_in_its_own_domain():
    epochs = _epochs(4)
    fig = plots.vulnerability_chart([("a", epochs), ("b", _epochs(4, auc=0.55))])
    root = parse(figure_svg(fig))
    paths = lines(root)
    assert len(paths) == 4
    top_panel = max(y for piece in subpaths(paths[0]) for _, y in piece)
    bottom_panel = min(y for piece in subpaths(paths[2]) for _, y in piece)
    assert top_panel < bottom_panel  # AUC above, TPR below
    assert len({group.get("clip-path") for group in root.iter(f"{NS}g") if group.get("class") == "trace"}) == 2


def test_long_traces_are_thinned_keeping_both_ends_and_markers_only_when_few():
    xs = np.arange(5000, dtype=float)
    fig = go.Figure(go.Scatter(x=xs, y=np.sin(xs / 300), mode="lines+markers"))
    root = parse(figure_svg(fig))
    (points,) = subpaths(lines(root)[0])
    assert len(points) <= MAX_POINTS and points[0][0] < points[1][0] and not list(root.iter(f"{NS}circle"))
    rect = next(root.iter(f"{NS}rect"))
    assert math.isclose(points[0][0], float(rect.get("x")), abs_tol=0.05)
    assert math.isclose(points[-1][0], float(rect.get("x")) + float(rect.get("width")), abs_tol=0.05)


def test_bands_lie_behind_curves_dashes_map_and_off_plot_notes_are_skipped():
    fig = plots.epsilon_chart([("run", _steps(50))], target_epsilon=3.0)
    fig.add_annotation(text="far away", xref="paper", yref="paper", x=1.6, y=0.5, showarrow=False)
    svg = figure_svg(fig)
    root = parse(svg)
    band, curve, target = svg.index("<rect x="), svg.index('class="trace"'), svg.index('stroke-dasharray="9,9"')
    assert band < curve < target
    assert "far away" not in texts(root) and "target ε = 3" in texts(root)


def test_sizes_come_from_the_figure_or_the_arguments():
    fig = plots.empty_figure("T", height=280)
    assert parse(figure_svg(fig)).get("viewBox") == "0 0 520 280"
    assert parse(figure_svg(fig, width=300, height=200)).get("viewBox") == "0 0 300 200"
    with pytest.raises(ConfigError, match="width"):
        figure_svg(fig, width=0)


def _odd_figures() -> list[go.Figure]:
    def line(y, **axis) -> go.Figure:
        fig = go.Figure(go.Scatter(x=list(range(len(y))), y=y))
        return fig.update_yaxes(**axis)
    return [line([1e308, -1e308]), line([1, 2], range=[5, 0]), line([1, 2], range=[None, 0.5]),
            line([1, 2], type="log", range=[0, 0]), line([0, -1], type="log"), line([1e-9, 1.0000001e-9]),
            go.Figure(go.Scatter(x=["a", "b"], y=[1, 2])), go.Figure(go.Bar(x=[1, 2], y=[1, 2])),
            go.Figure(go.Scatter(y=[3, 1, 2], mode="markers", marker=dict(color=[1, 2, 3]), visible="legendonly"))]


def test_odd_figures_never_crash_and_give_finite_coordinates_and_distinct_ticks():
    for fig in _odd_figures():
        root = parse(figure_svg(fig))
        coordinates(root)
        y_labels = ["".join(text.itertext()) for text in root.iter(f"{NS}text") if text.get("text-anchor") == "end"]
        assert len(y_labels) == len(set(y_labels)) >= 2
    assert not lines(parse(figure_svg(_odd_figures()[-1])))  # legendonly: not drawn


def test_reference_lines_keep_their_hover_text_as_a_tooltip():
    """The ε chart's published-deployment lines say 'hover for δ and unit of privacy': the SVG keeps that text as
    the label's <title>, which a browser shows on hover."""
    steps = pd.DataFrame({"step": np.arange(1, 50), "epsilon": np.linspace(0.1, 3.0, 49)})
    fig = plots.epsilon_chart([("run", steps)], target_epsilon=3.0)
    hovers = [note.hovertext for note in fig.layout.annotations if note.hovertext]
    assert hovers, "the chart draws reference lines with hover text"
    root = parse(figure_svg(fig))
    tips = [title.text.replace("\u2060", "") for text in root.iter(f"{NS}text")
            for title in text.iter(f"{NS}title")]
    assert len(tips) == len(hovers) and all("δ =" in tip and "unit" in tip for tip in tips)
