"""dpcore.views.live: downsampled live charts and the live view's redraw interval."""

from __future__ import annotations

import ast
import threading
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
    """The source of the ``run_every`` passed to ``st.fragment(function, run_every=...)`` in ``path``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Name)
                and node.args[0].id == function):
            for keyword in node.keywords:
                if keyword.arg == "run_every":
                    return ast.unparse(keyword.value)
    raise AssertionError(f"no st.fragment({function}, run_every=...) in {path}")


def test_live_view_redraws_every_one_to_two_seconds(monkeypatch):
    import pages.ui as ui  # deferred: streamlit (a page module)

    assert 1.0 <= live.REDRAW_S <= 2.0
    source = (ROOT / "pages" / "live_view.py").read_text()
    assert _fragment_interval(ROOT / "pages" / "live_view.py", "_progress_fragment") == "every"
    assert _fragment_interval(ROOT / "pages" / "live_view.py", "_charts_fragment") == "live.chart_interval(every)"
    assert "every = live.redraw_interval(ui.watcher_id())" in source
    assert _fragment_interval(ROOT / "pages" / "ui.py", "_queue_panel") == "poll_interval() if busy else None"
    monkeypatch.setattr(live, "_watchers", {})  # no session seen by other tests
    later = 1e12
    assert live.redraw_interval("solo", now=later) == live.REDRAW_S  # one watcher: 1-2 s
    assert 1.0 <= ui.QUEUE_POLL_S <= 2.0
    assert live.chart_interval(live.REDRAW_S) == live.CHART_EVERY * live.REDRAW_S <= 3.0  # charts: every 3 s


def test_redraws_back_off_so_all_watchers_together_stay_within_the_budget(monkeypatch):
    monkeypatch.setattr(live, "_watchers", {})
    later = 2e12
    intervals = [live.redraw_interval(f"watcher-{i}", now=later) for i in range(40)]
    assert intervals[:3] == [live.REDRAW_S] * 3 and intervals == sorted(intervals)
    for n, every in enumerate(intervals, start=1):  # n sessions, each redrawing every ``every`` s
        assert n / every <= live.REDRAWS_PER_S or every == live.MAX_REDRAW_S
    assert intervals[19] == pytest.approx(20 / live.REDRAWS_PER_S)  # 20 watchers: 10 s
    assert intervals[-1] == live.MAX_REDRAW_S
    # sessions that stopped watching no longer count
    assert live.redraw_interval("back-alone", now=later + live.WATCHER_WINDOW_S + 1) == live.REDRAW_S


def test_late_redraws_under_load_keep_the_count_and_the_interval_steady(monkeypatch):
    """20 sessions whose redraws come 40 % late (every 14 s, measured under load) still count as 20: the interval
    stays put, so no session redraws its whole page to take up a new one (a flickering count did, 18 times in 30 s)."""
    monkeypatch.setattr(live, "_watchers", {})
    start, late = 3e12, 1.4 * live.MAX_REDRAW_S
    registered = [live.redraw_interval(f"w{i}", now=start + i * late / 20) for i in range(20)][-1]
    seen = [live.redraw_interval(f"w{i}", now=start + late * (1 + i / 20)) for i in range(20)]
    assert not any(live.interval_changed(registered, every) for every in seen)
    assert live.interval_changed(registered, live.REDRAW_S) and live.interval_changed(live.REDRAW_S, registered)
    assert not live.interval_changed(8.0, 9.0) and not live.interval_changed(9.0, 8.0)


def test_followed_run_is_the_first_shown_running_then_queued_run():
    assert live.followed_run([], []) is None
    assert live.followed_run(["a"], ["b"]) == "a"
    assert live.followed_run([], ["b", "c"]) == "b"
    training = {"b", "c"}.__contains__  # "a" is, say, an attack-lab job
    assert live.followed_run(["a"], ["b", "c"], shown=training) == "b"
    assert live.followed_run(["a"], [], shown=training) is None


def test_shared_cache_builds_once_for_every_caller_and_again_for_a_new_key():
    cache, built = live.SharedCache(max_items=2), []

    def build(tag):
        built.append(tag)
        return object()

    first = cache.get(("run", 10), lambda: build("a"))
    assert cache.get(("run", 10), lambda: build("b")) is first  # a second caller: same object, not rebuilt
    assert built == ["a"] and cache.builds == 1
    assert cache.get(("run", 20), lambda: build("c")) is not first  # new steps: a new key, built again
    cache.get(("run", 30), lambda: build("d"))
    cache.get(("run", 10), lambda: build("e"))  # evicted (max_items=2): built again
    assert built == ["a", "c", "d", "e"]
    expiring = live.SharedCache(ttl_s=0.0)
    expiring.get("k", lambda: build("f"))
    expiring.get("k", lambda: build("g"))
    assert built[-2:] == ["f", "g"]


def test_a_shared_build_may_get_other_keys_of_the_same_cache():
    """The live charts' SVG is built from the cached figures: a nested get must not wait for its own lock."""
    cache = live.SharedCache()
    done = threading.Event()
    worker = threading.Thread(target=lambda: (cache.get("svg", lambda: "<svg>" + cache.get("figures", lambda: "f")),
                                              done.set()), daemon=True)
    worker.start()
    assert done.wait(10), "a nested get deadlocked"
    assert cache.get("svg", lambda: "rebuilt") == "<svg>f" and cache.builds == 2
