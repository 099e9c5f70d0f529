"""The Ray executor (dpcore.jobs.ray_executor) on a local Ray cluster started here with 2 CPUs.

Jobs run as Ray tasks that never open the runs directory: their writes come back to the store's owner.
Compared with local worker processes: the same sweep (2 epsilons x 1 C x 2 seeds) and the same 4-model attack
pool give the same kind of results and the same epsilon. A killed task is retried, one lost twice fails with
the reason, cancel works, and a bad address gives one clear message.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import ray_runners as runners

from dpcore.cli import main
from dpcore.config import TrainConfig
from dpcore.jobs import ray_task, workers
from dpcore.jobs import sweep as sweeps
from dpcore.jobs.attack import ATTACK_FILE, submit_attack
from dpcore.jobs.queue import JobQueue
from dpcore.jobs.ray_executor import RayUnavailable, check_reachable, connect
from dpcore.jobs.training import train_stored_run
from dpcore.store.records import StoredRun
from dpcore.store.runs import CANCELLED, DONE, FAILED, RunStore

ray = pytest.importorskip("ray")

TIMEOUT = 120.0
BASE = TrainConfig(dataset="synthetic", epochs=2, reproducible=True, device="cpu")
SPEC = sweeps.SweepSpec(base=BASE, epsilons=(1.0, 4.0), max_grad_norms=(1.0,), seeds=(0, 1), include_baseline=False)
WORKER_KEYS = {"worker_pid", "worker_host", "executor", "worker_job", "job_began"}  # where it ran: differs by design


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray cluster (2 CPUs) for the whole module; test runners travel by value (Ray workers cannot
    import this test folder)."""
    connect("local", num_cpus=2)
    ray.cloudpickle.register_pickle_by_value(runners)
    yield
    ray.shutdown()


@pytest.fixture
def ray_queue(store, local_ray):
    queue = JobQueue(store, executor="ray", ray_address="local", cancel_grace_s=1.0)
    yield queue
    assert queue.shutdown(timeout=60)


def wait_for(predicate, timeout: float = TIMEOUT, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def sweep_runs(queue: JobQueue) -> dict[tuple[float, int], StoredRun]:
    sweep = sweeps.submit_sweep(queue, SPEC, window=None)
    assert queue.join(timeout=TIMEOUT)
    return {(m.config.target_epsilon, m.config.seed): StoredRun.from_record(queue.store.get(m.run_id),
                                                                            store=queue.store)
            for m in sweeps.member_states(queue.store, sweep)}


def test_a_bad_address_says_what_to_do(capsys):  # first: before this module starts its local cluster
    with pytest.raises(RayUnavailable, match=r"cannot reach a Ray cluster at 'no-such-host\.invalid:6379'.*"
                                             r"ray start --head"):
        check_reachable("no-such-host.invalid:6379", timeout_s=1)
    with pytest.raises(RayUnavailable, match="not a Ray address"):
        check_reachable("no-port-here")
    assert main(["train", "--ray-address", "no-such-host.invalid:6379", "--dataset", "synthetic", "--epochs", "1",
                 "--target-epsilon", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach a Ray cluster") and "Traceback" not in err
    assert not ray.is_initialized()


def test_outcome_kinds_match_the_workers():
    assert (ray_task.OK, ray_task.FAILED, ray_task.FAILED_UNRECORDED) == (workers.OK, workers.FAILED,
                                                                        workers.FAILED_UNRECORDED)
    assert (ray_task.SETTINGS_PREFIX, ray_task.CANCEL_POLL_S) == (workers.SETTINGS_PREFIX, workers.CANCEL_POLL_S)


def test_every_store_write_of_a_task_is_shipped_to_the_owner():
    public = {name for name in dir(RunStore) if not name.startswith("_") and callable(getattr(RunStore, name))}
    assert public <= ray_task.SHIPPED_OPS | ray_task.NOT_SHIPPED, public - ray_task.SHIPPED_OPS - ray_task.NOT_SHIPPED
    assert not ray_task.SHIPPED_OPS & ray_task.NOT_SHIPPED
    overridden = {name for name in ray_task.SHIPPED_OPS if name in vars(ray_task.ShippingStore)}
    assert overridden == ray_task.SHIPPED_OPS - {"write_files"}


def test_sweep_on_ray_matches_local_workers(ray_queue, tmp_path):
    on_ray = sweep_runs(ray_queue)
    local_queue = JobQueue(RunStore(tmp_path / "local-runs"), workers=1)
    try:
        local = sweep_runs(local_queue)
    finally:
        local_queue.shutdown(timeout=60)
    assert sorted(on_ray) == sorted(local) == [(1.0, 0), (1.0, 1), (4.0, 0), (4.0, 1)]
    for key, run in on_ray.items():
        twin = local[key]
        assert run.status == twin.status == DONE, run.error_message
        assert run.summary["executor"] == "ray" and run.summary["worker_pid"] != os.getpid()
        assert run.final_epsilon == pytest.approx(twin.final_epsilon, rel=1e-9)
        assert run.final_epsilon == pytest.approx(key[0], rel=0.02)  # calibrated to its target
        assert run.test_accuracy == pytest.approx(twin.test_accuracy, abs=1e-6)  # reproducible runs
        assert set(twin.summary) - WORKER_KEYS <= set(run.summary)  # the same kind of results
        assert run.mia_status == "done" and np.isfinite(run.summary["mia_epsilon_lower"])
        assert sorted(p.name for p in run.artifacts.iterdir()) == sorted(p.name for p in twin.artifacts.iterdir())
        assert len(run.steps_frame()) == len(twin.steps_frame()) == run.steps > 0
        assert len(run.epochs_frame()) == 2


def test_attack_pool_on_ray_matches_local_workers(ray_queue, store, tmp_path):
    target = store.create_run(BASE.replace(target_epsilon=3.0), kind="train")
    store.set_status(target, "running")
    train_stored_run(store, target)
    sent: list[int] = []
    mapper = ray_queue.ray.map_models
    ray_queue.ray.map_models = lambda score_model, indices: mapper(score_model, sent.extend(indices) or indices)

    def attack(queue: JobQueue) -> tuple[dict, np.ndarray]:
        job = submit_attack(queue, target, attacks=("loss", "lira-offline"), n_models=4)
        record = queue.wait(job, timeout=TIMEOUT)
        assert record.status == DONE, record.error
        folder = store.artifacts_dir(target)
        result = dict(StoredRun.load(store, target).summary), json.loads((folder / ATTACK_FILE).read_text())
        pool_file = next(folder.glob("pool-*-M4.npz"))
        scores = np.load(pool_file)["scores"]
        for path in [pool_file, folder / ATTACK_FILE]:
            path.unlink()  # the local run must train its own pool, not load this one
        return result, scores

    (ray_summary, ray_json), ray_scores = attack(ray_queue)
    assert sent == [0, 1, 2, 3]  # one Ray task per reference model
    local_queue = JobQueue(store, workers=1)
    try:
        (local_summary, local_json), local_scores = attack(local_queue)
    finally:
        local_queue.shutdown(timeout=60)
    assert ray_scores.shape == local_scores.shape == (4, ray_scores.shape[1])
    np.testing.assert_allclose(ray_scores, local_scores, rtol=1e-6)
    assert ray_summary["attack_models"] == local_summary["attack_models"] == 4
    for key in ("loss_auc", "lira_offline_auc", "empirical_epsilon_lower", "final_epsilon"):
        assert ray_summary[key] == pytest.approx(local_summary[key], rel=1e-6), key
    assert set(ray_json) == set(local_json) and set(ray_json["attacks"]) == {"loss", "lira-offline"}
    assert ray_json["epsilon"]["accountant"] == pytest.approx(local_json["epsilon"]["accountant"], rel=1e-9)
    assert ray_json["pool"]["noise_multiplier"] == local_json["pool"]["noise_multiplier"]


def test_progress_arrives_live_a_killed_task_is_retried_and_the_runs_dir_is_never_opened(ray_queue, store):
    run_id = ray_queue.submit({}, kind="job", runner=runners.slow_progress)
    first = wait_for(lambda: store.get(run_id).summary.get("runner_pid"), what="the task to start")
    wait_for(lambda: store.get(run_id).steps_done >= 3, what="live progress")  # the task is still running
    os.kill(first, signal.SIGKILL)
    record = ray_queue.wait(run_id, timeout=TIMEOUT)
    assert record.status == DONE, record.error
    assert record.summary["finished_by"] not in (first, os.getpid())  # the retry finished it
    assert record.steps_done == 40
    assert (store.artifacts_dir(run_id) / "note.txt").read_text().startswith("written by")
    task_root = Path(record.summary["task_store_root"]).resolve()
    assert task_root != store.root and store.root not in task_root.parents
    assert record.summary["task_runs_dir"] == str(task_root)  # not the owner's DPEXPLORER_RUNS_DIR


def test_a_task_lost_twice_fails_with_the_reason(ray_queue, store):
    record = ray_queue.wait(ray_queue.submit({}, kind="job", runner=runners.always_die), timeout=TIMEOUT)
    assert record.status == FAILED
    assert "Ray task was lost" in record.error and "retried 1 time" in record.error


def test_cancel_stops_a_polite_task_and_force_cancels_one_that_ignores_it(ray_queue, store):
    polite = ray_queue.submit({}, kind="job", runner=runners.slow_progress)
    stubborn = ray_queue.submit({}, kind="job", runner=runners.ignore_stop)
    for run_id in (polite, stubborn):
        wait_for(lambda run_id=run_id: store.get(run_id).summary.get("runner_pid"), what="both tasks to start")
    started = time.monotonic()
    ray_queue.cancel(polite)
    ray_queue.cancel(stubborn)
    polite_record = ray_queue.wait(polite, timeout=30)
    stubborn_record = ray_queue.wait(stubborn, timeout=30)
    assert time.monotonic() - started < 20
    assert polite_record.status == CANCELLED and "stopped_at" in polite_record.summary
    assert stubborn_record.status == CANCELLED and "Ray task was cancelled" in stubborn_record.stop_reason
