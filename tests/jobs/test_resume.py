"""Continuing a stored run (dpcore.jobs.resume, JobQueue.resume): numbering, budget, limits and clear refusals."""

from __future__ import annotations

import math

import pytest

from dpcore.config import TrainConfig
from dpcore.errors import ConfigError
from dpcore.jobs.queue import JobQueue
from dpcore.jobs.resume import (
    NotResumable,
    continuation_name,
    plan_resume,
    resume_problem,
)
from dpcore.store.records import parent_of
from dpcore.store.runs import DONE, FAILED, INTERRUPTED, RUNNING, RunActive, RunNotFound, RunStore

torch = pytest.importorskip("torch")
TIMEOUT = 60
CFG = TrainConfig(dataset="synthetic", noise_multiplier=1.0, epochs=1, batch_size=200, device="cpu")


@pytest.fixture
def queue(store):
    torch.set_num_threads(1)
    queue = JobQueue(store)
    yield queue
    assert queue.shutdown(timeout=TIMEOUT)


def trained(store: RunStore, cfg: TrainConfig = CFG, **kwargs) -> str:
    """A finished run trained in this thread (no attack: faster), with its checkpoint."""
    from dpcore.engine.training import train

    run_id = store.create_run(cfg, **kwargs)
    store.set_status(run_id, RUNNING)
    store.finish(run_id, train(cfg))
    return run_id


def test_continuation_carries_on_where_the_parent_stopped(store, queue):
    parent_id = trained(store)
    parent = store.get(parent_id)
    plan = plan_resume(store, parent_id, epochs=2)
    child_id = queue.resume(parent_id, epochs=2)
    child = queue.wait(child_id, TIMEOUT)
    assert child.status == DONE, child.error

    # a new run linked to its parent, with fresh randomness and the parent's sigma
    assert child.kind == "train" and child.group == parent_id and parent_of(child) == parent_id
    assert child.config["epochs"] == 2 and child.config["extra"]["epochs_before"] == 1
    assert child.config["extra"]["steps_before"] == parent.summary["steps"]
    assert child.name == f"{parent.name} (+2 epochs)"
    assert child.config["seed"] == CFG.seed
    assert child.summary["noise_multiplier"] == pytest.approx(parent.summary["noise_multiplier"])

    # the stored history is the parent's rows, then the continuation's, numbered on
    parent_steps, steps = store.steps(parent_id), store.steps(child_id)
    n = len(parent_steps)
    assert steps["step"].tolist() == list(range(1, len(steps) + 1)) and len(steps) == 3 * n
    assert steps.iloc[:n].reset_index(drop=True).equals(parent_steps)
    assert store.epochs(child_id)["epoch"].tolist() == [1, 2, 3]
    assert child.summary["steps"] == 3 * n and child.summary["epochs_done"] == 3

    # epsilon is spent on top of the parent's budget, as planned
    parent_eps = parent.summary["final_epsilon"]
    assert steps["epsilon"].iloc[n] > parent_eps
    assert steps["epsilon"].is_monotonic_increasing
    assert child.summary["final_epsilon"] > parent_eps
    assert child.summary["final_epsilon"] == pytest.approx(plan.projected_epsilon, rel=1e-6)
    assert store.get(parent_id).summary == parent.summary  # the parent is untouched


def test_epsilon_limit_holds_for_the_total(store, queue):
    parent_id = trained(store)
    spent = store.get(parent_id).summary["final_epsilon"]
    limit = spent + 0.6  # room for a step or two, not for two epochs
    plan = plan_resume(store, parent_id, epochs=2, epsilon_limit=limit)
    assert plan.stops_at_limit and plan.final_epsilon == limit
    child = queue.wait(queue.resume(parent_id, epochs=2, epsilon_limit=limit), TIMEOUT)
    assert child.status == DONE and child.stop_status == "epsilon_limit", child.error
    assert spent < child.summary["final_epsilon"] <= limit


def test_the_parents_limit_is_kept_and_cannot_be_passed(store):
    parent_id = trained(store, CFG.replace(epsilon_limit=50.0))
    assert plan_resume(store, parent_id, epochs=1).config.epsilon_limit == 50.0
    spent = store.get(parent_id).summary["final_epsilon"]
    with pytest.raises(ConfigError, match=r"already spent epsilon .* Set a higher limit"):
        plan_resume(store, parent_id, epochs=1, epsilon_limit=spent / 2)


def test_runs_that_cannot_be_continued_say_why(store, queue):
    failed = store.create_run(CFG)
    store.fail(failed, "dataset 'nope' is unknown")
    interrupted = store.create_run(CFG)
    store.set_status(interrupted, INTERRUPTED)
    running = store.create_run(CFG)
    store.set_status(running, RUNNING)

    with pytest.raises(NotResumable, match=r"no checkpoint: run .* failed before its first epoch ended"):
        queue.resume(failed, epochs=1)
    with pytest.raises(NotResumable, match=r"no checkpoint: .*interrupted before its first epoch ended"):
        queue.resume(interrupted, epochs=1)
    with pytest.raises(RunActive, match="still running"):
        queue.resume(running, epochs=1)
    with pytest.raises(RunNotFound):
        queue.resume("20000101-000000-abcdef", epochs=1)
    assert resume_problem(store, failed).startswith("no checkpoint")
    assert store.get(failed).status == FAILED and len(store.records()) == 3  # nothing was queued


def test_diverged_runs_and_bad_epochs_are_refused(store):
    parent_id = trained(store)
    with pytest.raises(ConfigError, match="between 1 and 1000"):
        plan_resume(store, parent_id, epochs=0)
    store.set_status(parent_id, DONE, stop_status="diverged")
    with pytest.raises(NotResumable, match="diverged"):
        plan_resume(store, parent_id, epochs=1)


def test_baseline_continues_without_privacy(store, queue):
    parent_id = trained(store, CFG.replace(private=False, noise_multiplier=None))
    plan = plan_resume(store, parent_id, epochs=1)
    assert plan.noise_multiplier is None and math.isinf(plan.final_epsilon) and not plan.over_target
    child = queue.wait(queue.resume(parent_id, epochs=1), TIMEOUT)
    assert child.status == DONE and child.summary["final_epsilon"] is None  # JSON has no infinity
    assert store.steps(child_id := child.id)["step"].tolist() == list(range(1, len(store.steps(child_id)) + 1))


def test_continuation_names_add_up():
    assert continuation_name("digits mlp, eps 3", 1) == "digits mlp, eps 3 (+1 epoch)"
    assert continuation_name("digits mlp, eps 3 (+2 epochs)", 3) == "digits mlp, eps 3 (+5 epochs)"


def test_a_run_the_process_lost_mid_epoch_continues_from_its_last_epoch_checkpoint(store, queue):
    """Simulate a crash: 3 epochs logged, a 4th epoch half done, no final save, status interrupted."""
    from dpcore.engine.training import train

    cfg = CFG.replace(epochs=4)
    run_id = store.create_run(cfg)
    store.set_status(run_id, RUNNING)
    calls = {"n": 0}

    def crash_in_epoch_four() -> bool:
        calls["n"] += 1
        return calls["n"] > 3 * 4 + 2  # 4 steps per epoch (800 / 200): stop 2 steps into epoch 4

    steps_seen = []
    partial = train(cfg, should_stop=crash_in_epoch_four, on_step=steps_seen.append,
                    checkpoint_dir=store.artifacts_dir(run_id, create=True))
    store.append_steps(run_id, steps_seen)  # what the progress writer had flushed before the "crash"
    store.append_epoch(run_id, partial.epochs[partial.epochs.epoch <= 3])
    store.set_status(run_id, INTERRUPTED)

    assert resume_problem(store, run_id) is None
    plan = plan_resume(store, run_id, epochs=1)
    assert (plan.steps_done, plan.epochs_done) == (12, 3)
    assert plan.spent_epsilon == pytest.approx(partial.epochs.epsilon.iloc[2], rel=1e-6)
    child = queue.wait(queue.resume(run_id, epochs=1), TIMEOUT)
    assert child.status == DONE
    steps = store.steps(child.id)["step"].tolist()
    assert steps == list(range(1, 17))  # the parent's 12 checkpointed steps, then 4 new ones: no duplicates
    assert store.epochs(child.id)["epoch"].tolist() == [1, 2, 3, 4]
