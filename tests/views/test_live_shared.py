"""Work shared by every session watching a run: live charts built once per new step, find_baseline cached."""

from __future__ import annotations

from dpcore.config import TrainConfig
from dpcore.jobs import training
from dpcore.store.records import StoredRun
from dpcore.store.runs import DONE, RUNNING, RunStore
from dpcore.views import live
from dpcore.views import run_summary as rs

CFG = TrainConfig(dataset="synthetic", target_epsilon=3.0, epochs=1)


def _steps(start: int, stop: int) -> list[dict[str, float]]:
    return [dict(step=s, epoch=s // 100, epsilon=0.001 * s, clip_fraction=0.6, loss=1.0 / (1 + s), batch_size=64)
            for s in range(start, stop)]


def _live_specs(store: RunStore, run_id: str, cache: live.StepCache):
    """What one session's redraw asks for: the run, its steps through the shared cache, the live charts."""
    run = StoredRun.load(store, run_id)
    steps, epochs = live.live_metrics(run, cache=cache)
    return rs.live_chart_specs(run, live.downsample_history(steps), epochs, baseline_epochs=None)


def test_two_sessions_get_the_same_live_figures_built_once_until_new_steps_arrive(store, monkeypatch):
    figures = live.SharedCache(max_items=16)
    monkeypatch.setattr(live, "FIGURES", figures)
    run_id = store.create_run(CFG.resolve())
    store.set_status(run_id, RUNNING)
    store.set_progress(run_id, 500, 1000)
    store.append_steps(run_id, _steps(0, 500))
    steps = live.StepCache()

    first = _live_specs(store, run_id, steps)
    second = _live_specs(store, run_id, steps)  # another session, same moment
    assert [name for _, name, _ in first] == ["eps", "clip", "acc", "vuln-auc", "loss", "vuln-tpr"]
    loss = 4  # the per-step loss chart: the one new steps change
    assert figures.builds == 1
    assert all(a[0] is b[0] for a, b in zip(first, second, strict=True))  # the very same figures, not rebuilt

    store.append_steps(run_id, _steps(500, 600))
    third = _live_specs(store, run_id, steps)
    assert figures.builds == 2  # new steps: built again, once
    assert third[loss][0] is not first[loss][0]
    assert max(third[loss][0].data[0].x) == 599 and max(first[loss][0].data[0].x) == 499
    _live_specs(store, run_id, steps)
    assert figures.builds == 2


def test_a_stopped_runs_result_charts_are_built_once_for_every_session_until_its_summary_changes(store, monkeypatch):
    figures = live.SharedCache(max_items=16)
    monkeypatch.setattr(live, "FIGURES", figures)
    run_id = store.create_run(CFG.resolve())
    store.append_steps(run_id, _steps(0, 300))
    store.set_status(run_id, DONE)

    def result_specs():  # what one session's result view asks for
        run = StoredRun.load(store, run_id)
        steps, epochs = rs.metrics(run)
        return rs.shared_chart_specs(run, steps, epochs, baseline_epochs=None, live=False)

    first, second = result_specs(), result_specs()
    assert figures.builds == 1
    assert all(a[0] is b[0] for a, b in zip(first, second, strict=True))
    store.update_summary(run_id, mia_auc=0.61)  # the attack finished: captions may change, so build again
    third = result_specs()
    assert figures.builds == 2 and third[0][0] is not first[0][0]
    live_specs = _live_specs(store, run_id, live.StepCache())  # the live view of the same run is its own entry
    assert figures.builds == 3 and live_specs[0][0] is not third[0][0]


def test_cached_find_baseline_scans_once_and_again_when_a_baseline_finishes(store, monkeypatch):
    monkeypatch.setattr(rs, "BASELINES", live.SharedCache(ttl_s=60.0))
    scans = []
    monkeypatch.setattr(rs, "find_baseline",
                        lambda s, run_id: scans.append(run_id) or training.find_baseline(s, run_id))
    private = store.create_run(CFG.resolve())
    run = StoredRun.load(store, private)
    assert rs.cached_find_baseline(run) is None
    assert rs.cached_find_baseline(run) is None and scans == [private]  # the second call is served from the cache

    baseline = store.create_run(training.baseline_config(CFG).resolve())
    store.set_status(baseline, RUNNING)
    assert rs.cached_find_baseline(run) is None and len(scans) == 1  # nothing finished: still cached
    store.set_status(baseline, DONE)  # the baseline finishes
    found = rs.cached_find_baseline(run)
    assert found is not None and found.id == baseline and len(scans) == 2
    assert rs.baseline_of(StoredRun.load(store, private))[0].id == baseline and len(scans) == 2
