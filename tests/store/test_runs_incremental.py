"""RunStore.steps(run_id, after_step=k): a live view reads only the rows written since its last read."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dpcore.config import TrainConfig
from dpcore.store.records import StoredRun
from dpcore.store.runs import RunNotFound
from dpcore.views.live import StepCache, live_metrics


def _rows(start: int, stop: int, *, steps_per_epoch: int = 7) -> list[dict[str, float]]:
    return [dict(step=s, epoch=s // steps_per_epoch, epsilon=0.01 * s, clip_fraction=(s % 5) / 5,
                 loss=1.0 / (s + 1), batch_size=32) for s in range(start, stop)]


def test_after_step_returns_only_the_newer_rows(store):
    run_id = store.create_run(TrainConfig(dataset="synthetic", target_epsilon=3.0))
    store.append_steps(run_id, _rows(0, 20))
    newer = store.steps(run_id, after_step=12)
    assert newer["step"].tolist() == list(range(13, 20))
    assert store.steps(run_id, after_step=19).empty
    assert list(store.steps(run_id, after_step=19).columns) == list(store.steps(run_id).columns)
    with pytest.raises(RunNotFound):
        store.steps("no-such-run", after_step=3)


def test_cached_reads_merge_to_a_full_read(store, monkeypatch):
    run_id = store.create_run(TrainConfig(dataset="synthetic", target_epsilon=3.0))
    cache, asked = StepCache(), []
    full_steps = store.steps

    def spy(rid, *, after_step=None):
        frame = full_steps(rid, after_step=after_step)
        asked.append((after_step, len(frame)))
        return frame

    monkeypatch.setattr(store, "steps", spy)
    assert cache.steps(store, run_id).empty  # nothing written yet
    bounds = [(0, 5), (5, 6), (6, 6), (6, 40), (40, 41)]
    for start, stop in bounds:
        rows = _rows(start, stop)
        if start == 6 and stop == 40:
            rows[3]["epsilon"] = math.nan  # a missing value survives the merge as NaN
        store.append_steps(run_id, rows)
        merged = cache.steps(store, run_id)
        pd.testing.assert_frame_equal(merged, full_steps(run_id))
    # After the first read, each read asked only for the rows after the last cached step and got just the new ones.
    assert asked[1:] == [(None, 5), (4, 1), (5, 0), (5, 34), (39, 1)]


def test_live_metrics_reads_steps_incrementally_and_tolerates_a_deleted_run(store):
    run_id = store.create_run(TrainConfig(dataset="synthetic", target_epsilon=3.0))
    store.append_steps(run_id, _rows(0, 10))
    store.append_epoch(run_id, dict(epoch=0, epsilon=0.5, train_loss=0.9, train_accuracy=0.6, test_accuracy=0.55))
    cache = StepCache()
    steps, epochs = live_metrics(StoredRun.load(store, run_id), cache=cache)
    assert len(steps) == 10 and len(epochs) == 1 and run_id in cache
    store.append_steps(run_id, _rows(10, 15))
    steps, _ = live_metrics(StoredRun.load(store, run_id), cache=cache)
    pd.testing.assert_frame_equal(steps, store.steps(run_id))
    run = StoredRun.load(store, run_id)
    store.delete(run_id, force=True)
    steps, epochs = live_metrics(run, cache=cache)
    assert steps.empty and epochs.empty and run_id not in cache


def test_cache_keeps_only_the_most_recent_runs(store):
    ids = [store.create_run(TrainConfig(dataset="synthetic", target_epsilon=3.0)) for _ in range(3)]
    cache = StepCache(max_runs=2)
    for run_id in ids:
        store.append_steps(run_id, _rows(0, 3))
        cache.steps(store, run_id)
    assert ids[0] not in cache and ids[1] in cache and ids[2] in cache
