"""The live run view (AppTest, through the Train page): downsampled static-SVG charts fed by incremental reads."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
from streamlit.testing.v1 import AppTest

from dpcore.config import TrainConfig
from dpcore.store.records import StoredRun
from dpcore.store.runs import RUNNING, RunStore, default_root
from dpcore.views import live
from dpcore.views import run_summary as rs

PAGE = "../../pages/train.py"
SVG = "{http://www.w3.org/2000/svg}"


def _steps(start: int, stop: int) -> list[dict[str, float]]:
    return [dict(step=s, epoch=s // 100, epsilon=0.001 * s, clip_fraction=0.6, loss=1.0 / (1 + s), batch_size=64)
            for s in range(start, stop)]


def _charts(at: AppTest) -> list[ET.Element]:
    """The live charts: the SVG elements of the one Markdown block that holds them (static, not plotly)."""
    html = next(md.value for md in at.markdown if 'class="dpx-charts"' in md.value)
    return list(ET.fromstring(html).iter(f"{SVG}svg"))


def _step_xs(at: AppTest, store: RunStore, run_id: str) -> list[np.ndarray]:
    """The x values of every trace on an optimizer-step axis in the figures the live SVG was drawn from (the
    shared ones: the page and this call read the same downsampled rows, so they hit the same cached figures)."""
    run = StoredRun.load(store, run_id)
    steps, epochs = live.live_metrics(run, cache=at.session_state[live.CACHE_KEY])
    specs = rs.live_chart_specs(run, live.downsample_history(steps), epochs, baseline_epochs=None)
    return [np.asarray(trace.x) for figure, _, _ in specs if "step" in (figure.layout.xaxis.title.text or "")
            for trace in figure.data if trace.x is not None and len(trace.x) > 1]


def _drawn_points(chart: ET.Element) -> list[int]:
    """The number of points of each curve drawn in one SVG chart."""
    return [path.get("d").count("L") + path.get("d").count("M") for path in chart.iter(f"{SVG}path")
            if path.get("class") == "line"]


def test_live_view_draws_at_most_max_points_per_trace_and_reads_only_new_rows():
    store = RunStore(default_root())
    run_id = store.create_run(TrainConfig(dataset="synthetic", target_epsilon=3.0).resolve())
    store.set_status(run_id, RUNNING)
    store.set_progress(run_id, 2000, 4000)
    store.append_steps(run_id, _steps(0, 2000))

    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["run"] = run_id
    at.run()
    assert not at.exception
    charts = _charts(at)
    assert len(charts) == 6 and not at.get("plotly_chart")  # ε, clipping, accuracy, attack AUC, loss, TPR
    assert all(0 < n <= live.MAX_POINTS for chart in charts for n in _drawn_points(chart))
    xs = _step_xs(at, store, run_id)
    assert len(xs) >= 3 and all(0 < len(x) <= live.MAX_POINTS for x in xs)
    assert all(x[-1] == 1999 for x in xs)  # the last step is drawn
    cache = at.session_state[live.CACHE_KEY]
    assert run_id in cache

    store.append_steps(run_id, _steps(2000, 2500))
    at.run()
    assert not at.exception
    assert len(cache.steps(store, run_id)) == 2500  # the cached history grew by the new rows only
    before = charts
    charts = _charts(at)
    assert [ET.tostring(c) for c in charts] != [ET.tostring(c) for c in before]  # redrawn with the new rows
    xs = _step_xs(at, store, run_id)
    assert len(xs) >= 3 and all(x[-1] == 2499 and 0 < len(x) <= live.MAX_POINTS for x in xs)
    store.close()
