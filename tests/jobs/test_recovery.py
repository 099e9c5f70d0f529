"""What survives a killed process (issue 13): queued baselines, sweep members' checkpoints, half-trained pools."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from dpcore.attacks import reference
from dpcore.config import TrainConfig
from dpcore.engine.checkpoint import CHECKPOINT_FILE
from dpcore.jobs import sweep as sweeps
from dpcore.jobs.recovery import requeue_baselines
from dpcore.jobs.training import baseline_config, link_baseline
from dpcore.store.runs import INTERRUPTED, QUEUED, RunStore

PRIVATE = TrainConfig(dataset="synthetic", target_epsilon=3.0, epochs=1)


class _Queue:
    """Just what ``requeue_baselines`` uses of a JobQueue: the store and ``submit`` (nothing trains)."""

    def __init__(self, store: RunStore) -> None:
        self.store, self.submitted = store, []

    def submit(self, config, *, name=None, **_):
        run_id = self.store.create_run(config, name=name)
        self.submitted.append(run_id)
        return run_id


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


def test_a_queued_baseline_of_a_dead_server_is_queued_again_on_restart(tmp_path):
    store = RunStore(tmp_path / "runs")
    private = store.create_run(PRIVATE)
    baseline = store.create_run(baseline_config(PRIVATE), name="baseline of it")
    link_baseline(store, private, baseline)
    plain = store.create_run(baseline_config(PRIVATE).replace(seed=7))  # not a baseline: stays interrupted
    with store._write() as conn:  # the server that queued them was killed
        conn.execute("UPDATE runs SET pid = ?, owner_token = 'gone'", (_dead_pid(),))

    restarted = RunStore(store.root)
    assert restarted.get(baseline).status == INTERRUPTED
    queue = _Queue(restarted)
    moved = requeue_baselines(queue)

    assert list(moved) == [baseline] and queue.submitted == [moved[baseline]]
    new = restarted.get(moved[baseline])
    assert new.status == QUEUED and new.name == "baseline of it" and new.config["private"] is False
    assert not restarted.exists(baseline)
    assert restarted.get(private).summary["baseline_run"] == new.id and new.summary["baseline_for"] == private
    assert restarted.get(plain).status == INTERRUPTED
    assert requeue_baselines(_Queue(RunStore(store.root))) == {}  # nothing is queued twice


def test_sweep_members_write_the_per_epoch_checkpoint(tmp_path):
    store = RunStore(tmp_path / "runs")
    run_id = store.create_run(TrainConfig(dataset="synthetic", target_epsilon=3.0, epochs=2, reproducible=True))
    store.set_status(run_id, "running")
    sweeps.train_member(store, run_id)
    assert (store.artifacts_dir(run_id) / CHECKPOINT_FILE).stat().st_size > 0


class _Interrupted(Exception):
    pass


def _linear(x: torch.Tensor, y: torch.Tensor, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Linear(x.shape[1], 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(5):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


def test_an_interrupted_pool_keeps_its_models_and_trains_only_the_missing_ones(tmp_path):
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 3, generator=generator), torch.randint(0, 2, (40,), generator=generator)
    cache = tmp_path / "pool.npz"
    trained: list[int] = []

    def train_fn(xs, ys, seed):
        trained.append(seed)
        return _linear(xs, ys, seed)

    def stop_after_three(done, total):
        if done == 3:
            raise _Interrupted

    with pytest.raises(_Interrupted):
        reference.reference_pool(train_fn, x, y, n_models=8, seed=1, cache_path=cache, cache_key="k",
                                 on_model=stop_after_three)
    assert reference.partial_pool_path(cache).exists() and not cache.exists() and len(trained) == 3

    # Another config (cache key) must not reuse them.
    other = tmp_path / "other.npz"
    reference.partial_pool_path(cache).rename(reference.partial_pool_path(other))
    first_three = reference.ReferencePool.load(reference.partial_pool_path(other)).scores
    reference.partial_pool_path(other).rename(reference.partial_pool_path(cache))

    progress: list[int] = []
    pool = reference.reference_pool(train_fn, x, y, n_models=8, seed=1, cache_path=cache, cache_key="k",
                                    on_model=lambda done, total: progress.append(done))
    assert len(trained) == 8 and len(set(trained)) == 8  # the 5 missing models, each trained once overall
    assert progress == [4, 5, 6, 7, 8]
    np.testing.assert_array_equal(pool.scores[:3], first_three)
    assert cache.exists() and not reference.partial_pool_path(cache).exists()
    fresh = reference.reference_pool(train_fn, x, y, n_models=8, seed=1, cache_path=tmp_path / "fresh.npz",
                                     cache_key="k")
    np.testing.assert_allclose(fresh.scores, pool.scores)  # a resumed pool equals one trained in one go


def test_a_partial_pool_of_another_config_is_not_reused(tmp_path):
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 3, generator=generator), torch.randint(0, 2, (20,), generator=generator)
    cache, trained = tmp_path / "pool.npz", []

    def stop(done, total):
        if done == 2:
            raise _Interrupted

    def train_fn(xs, ys, seed):
        trained.append(seed)
        return _linear(xs, ys, seed)

    with pytest.raises(_Interrupted):
        reference.reference_pool(train_fn, x, y, n_models=4, seed=0, cache_path=cache, cache_key="a", on_model=stop)
    trained.clear()
    reference.reference_pool(train_fn, x, y, n_models=4, seed=0, cache_path=cache, cache_key="b")
    assert len(trained) == 4
