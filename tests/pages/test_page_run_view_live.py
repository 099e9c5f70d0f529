"""The live run view (AppTest, through the Train page): downsampled charts fed by incremental reads."""

from __future__ import annotations

import base64
import json

import numpy as np
from streamlit.testing.v1 import AppTest

from dpcore.config import TrainConfig
from dpcore.store.runs import RUNNING, RunStore, default_root
from dpcore.views import live

PAGE = "../../pages/train.py"


def _steps(start: int, stop: int) -> list[dict[str, float]]:
    return [dict(step=s, epoch=s // 100, epsilon=0.001 * s, clip_fraction=0.6, loss=1.0 / (1 + s), batch_size=64)
            for s in range(start, stop)]


def _values(array) -> np.ndarray:
    """A trace's x values, decoded when plotly sent them as a typed array ({"dtype", "bdata"})."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"]))
    return np.asarray(array)


def _step_xs(at: AppTest) -> list[np.ndarray]:
    """The x values of every trace in the page's charts whose x axis is the optimizer step."""
    figures = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    return [_values(trace["x"]) for figure in figures
            if "step" in json.dumps(figure["layout"].get("xaxis", {}).get("title", ""))
            for trace in figure["data"] if trace.get("x") is not None]


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
    xs = _step_xs(at)
    assert len(xs) >= 3 and all(0 < len(x) <= live.MAX_POINTS for x in xs)
    assert all(x[-1] == 1999 for x in xs)  # the last step is drawn
    cache = at.session_state[live.CACHE_KEY]
    assert run_id in cache

    store.append_steps(run_id, _steps(2000, 2500))
    at.run()
    assert not at.exception
    assert len(cache.steps(store, run_id)) == 2500  # the cached history grew by the new rows only
    xs = _step_xs(at)
    assert len(xs) >= 3 and all(x[-1] == 2499 and 0 < len(x) <= live.MAX_POINTS for x in xs)
    store.close()
