"""Tests for dpcore.jobs.queue: FIFO order, position, cancel, crash isolation, queue limits, progress writing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from dpcore.config import TrainConfig
from dpcore.errors import ConfigError, DPExplorerError
from dpcore.jobs import queue as jobs
from dpcore.jobs import training as job_training
from dpcore.jobs.queue import JobQueue, QueueClosed, QueueFull, StopCheck, get_queue
from dpcore.jobs.training import ProgressWriter
from dpcore.store.runs import CANCELLED, DONE, FAILED, QUEUED, RUNNING, RunStore

TIMEOUT = 5.0
CFG = TrainConfig(dataset="synthetic", target_epsilon=3.0)


@pytest.fixture
def queue(store):
    # thread executor: these runners are closures over in-process events/lists, and two tests patch train()
    queue = JobQueue(store, executor="thread")
    yield queue
    assert queue.shutdown(timeout=TIMEOUT)


class Blocker:
    """A runner that signals when it starts and holds the worker until released (or told to stop)."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.saw_stop = False

    def __call__(self, run_id, store, should_stop) -> None:
        self.started.set()
        while not self.release.is_set():
            if should_stop():
                self.saw_stop = True
                return
            time.sleep(0.005)


def recorder(log: list[str]):
    def run(run_id, store, should_stop) -> None:
        log.append(run_id)
    return run


def test_fifo_order_and_position(queue, store):
    order: list[str] = []
    blocker = Blocker()
    first = queue.submit(CFG, runner=lambda run_id, s, stop: (order.append(run_id), blocker(run_id, s, stop)))
    assert blocker.started.wait(TIMEOUT)
    rest = [queue.submit(CFG, name=f"job {i}", runner=recorder(order)) for i in range(3)]
    assert queue.position(first) == 0
    assert [queue.position(run_id) for run_id in rest] == [1, 2, 3]
    assert queue.position("unknown") is None
    assert queue.running() == [first] and queue.pending() == rest
    assert queue.snapshot() == ([first], rest)
    assert store.get(first).status == RUNNING and store.get(rest[0]).status == QUEUED
    assert store.get(rest[1]).name == "job 1"

    blocker.release.set()
    assert queue.join(TIMEOUT)
    assert order == [first, *rest]
    assert all(store.get(run_id).status == DONE for run_id in order)
    assert store.get(first).stop_status == "finished" and store.get(first).started <= store.get(first).finished
    assert queue.position(first) is None


def test_cancel_queued_job_never_runs(queue, store):
    ran: list[str] = []
    blocker = Blocker()
    first = queue.submit(CFG, runner=blocker)
    assert blocker.started.wait(TIMEOUT)
    doomed = queue.submit(CFG, runner=recorder(ran))
    after = queue.submit(CFG, runner=recorder(ran))
    assert queue.cancel(doomed) == CANCELLED
    assert queue.position(doomed) is None and queue.position(after) == 1
    rec = store.get(doomed)
    assert rec.status == CANCELLED and rec.started is None and rec.stop_reason == "cancelled before it started"
    assert queue.wait(doomed, TIMEOUT).status == CANCELLED  # returns at once
    blocker.release.set()
    assert queue.join(TIMEOUT)
    assert ran == [after] and store.get(first).status == DONE


def test_cancel_from_another_store_handle_before_start(queue, store):
    blocker = Blocker()
    queue.submit(CFG, runner=blocker)
    assert blocker.started.wait(TIMEOUT)
    ran: list[str] = []
    waiting = queue.submit(CFG, runner=recorder(ran))
    RunStore(store.root).request_cancel(waiting)  # e.g. another process sharing the runs directory
    blocker.release.set()
    assert queue.join(TIMEOUT)
    assert ran == [] and store.get(waiting).status == CANCELLED


def test_cancel_running_job(queue, store):
    blocker = Blocker()
    run_id = queue.submit(CFG, runner=blocker)
    assert blocker.started.wait(TIMEOUT)
    assert queue.cancel(run_id) == RUNNING  # stops at the runner's next poll
    rec = queue.wait(run_id, TIMEOUT)
    assert blocker.saw_stop and rec.status == CANCELLED and rec.stop_status == CANCELLED and rec.cancel_requested


def test_cancel_flag_from_another_session_reaches_should_stop(queue, store):
    blocker = Blocker()
    run_id = queue.submit(CFG, runner=blocker)
    assert blocker.started.wait(TIMEOUT)
    started = time.monotonic()
    assert RunStore(store.root).request_cancel(run_id) == RUNNING  # not through the queue object
    assert queue.wait(run_id, TIMEOUT).status == CANCELLED
    assert blocker.saw_stop and time.monotonic() - started < 1.0  # polled every 0.2 s


def test_crash_marks_failed_and_next_job_runs(queue, store):
    def crash(run_id, store, should_stop):
        raise RuntimeError("boom in the trainer")

    def user_error(run_id, store, should_stop):
        raise ConfigError("lr must be in (0, 100], got -1")

    ran: list[str] = []
    crashed = queue.submit(CFG, runner=crash)
    refused = queue.submit(CFG, runner=user_error)
    after = queue.submit(CFG, runner=recorder(ran))
    assert queue.join(TIMEOUT)
    rec = store.get(crashed)
    assert rec.status == FAILED and rec.error_message == "RuntimeError: boom in the trainer"
    assert "Traceback" in rec.error and "def crash" not in rec.error_message
    assert store.get(refused).error == "lr must be in (0, 100], got -1"  # user errors: the message only
    assert ran == [after] and store.get(after).status == DONE


def test_queue_full(store):
    queue = JobQueue(store, max_pending=2, executor="thread")
    try:
        blocker = Blocker()
        queue.submit(CFG, runner=blocker)
        assert blocker.started.wait(TIMEOUT)
        queue.submit(CFG, runner=recorder([]))
        queue.submit(CFG, runner=recorder([]))
        with pytest.raises(QueueFull, match="queue is full") as info:
            queue.submit(CFG, runner=recorder([]))
        assert isinstance(info.value, DPExplorerError)
        assert len(store.list_runs()) == 3  # the refused job left no run behind
        blocker.release.set()
        assert queue.join(TIMEOUT)
        queue.submit(CFG, runner=recorder([]))  # room again
        assert queue.join(TIMEOUT)
    finally:
        queue.shutdown(timeout=TIMEOUT)


def test_submit_validates_training_configs(queue, store):
    with pytest.raises(ConfigError, match="target_epsilon or noise_multiplier"):
        queue.submit(TrainConfig(dataset="synthetic"))
    with pytest.raises(ConfigError, match="unknown config field"):
        queue.submit({"dataset": "synthetic", "epsilon": 3})
    assert store.list_runs().empty


def test_custom_kind_and_group(queue, store):
    seen = {}

    def attack(run_id, store, should_stop):
        seen["config"] = store.get(run_id).config
        store.update_summary(run_id, mia_auc=0.51)

    run_id = queue.submit({"target": "abc", "attack": "loss"}, kind="attack", group="g1", runner=attack)
    rec = queue.wait(run_id, TIMEOUT)
    assert rec.status == DONE and rec.kind == "attack" and rec.group == "g1" and rec.summary == {"mia_auc": 0.51}
    assert seen["config"] == {"target": "abc", "attack": "loss"}


def test_several_workers_run_in_parallel(store):
    queue = JobQueue(store, workers=2, executor="thread")
    try:
        blockers = [Blocker(), Blocker()]
        ids = [queue.submit(CFG, runner=b) for b in blockers]
        assert all(b.started.wait(TIMEOUT) for b in blockers)
        assert [queue.position(run_id) for run_id in ids] == [0, 0]
        for b in blockers:
            b.release.set()
        assert queue.join(TIMEOUT)
    finally:
        queue.shutdown(timeout=TIMEOUT)


def test_shutdown_cancels_waiting_and_running(store):
    queue = JobQueue(store, executor="thread")
    blocker = Blocker()
    running = queue.submit(CFG, runner=blocker)
    assert blocker.started.wait(TIMEOUT)
    waiting = queue.submit(CFG, runner=recorder([]))
    assert queue.shutdown(timeout=TIMEOUT)
    assert blocker.saw_stop
    assert store.get(running).status == CANCELLED and store.get(waiting).status == CANCELLED
    with pytest.raises(QueueClosed):
        queue.submit(CFG, runner=recorder([]))


def test_get_queue_is_shared_per_directory(tmp_path, monkeypatch):
    try:
        a = get_queue(tmp_path / "one")
        assert get_queue(tmp_path / "one") is a and get_queue(str(tmp_path / "one" / ".." / "one")) is a
        assert get_queue(tmp_path / "two") is not a
        monkeypatch.setenv("DPEXPLORER_RUNS_DIR", str(tmp_path / "one"))
        assert get_queue() is a
        assert a.store.root == (tmp_path / "one").resolve()
    finally:
        jobs.shutdown(timeout=TIMEOUT)
    assert a.closed and get_queue(tmp_path / "one") is not a
    jobs.shutdown(timeout=TIMEOUT)


def test_stop_check_caches_store_reads(store):
    run_id = store.create_run(CFG)
    reads = []
    original = store.cancel_requested
    store.cancel_requested = lambda rid: reads.append(rid) or original(rid)
    check = StopCheck(store, run_id, interval_s=10.0)
    assert [check() for _ in range(100)] == [False] * 100 and len(reads) == 1
    store.request_cancel(run_id)
    assert not check()  # cached for interval_s
    check.interval_s, check._next_poll = 0.0, 0.0
    assert check() and check.triggered and check()


def test_progress_writer_batches_steps(store):
    run_id = store.create_run(CFG)
    writer = ProgressWriter(store, run_id, flush_s=60.0)
    writes = []
    original = store.append_steps
    store.append_steps = lambda rid, rows: writes.append(len(rows)) or original(rid, rows)
    for step in range(1, 11):
        writer.on_step(dict(step=step, epoch=1, epsilon=0.1 * step, clip_fraction=0.5, loss=1.0, batch_size=64,
                            total_steps=20, elapsed_s=0.01 * step))
    assert writes == [1]  # first step at once (the page learns the total), then buffered
    rec = store.get(run_id)
    assert (rec.steps_done, rec.total_steps) == (1, 20)
    writer.on_epoch(dict(epoch=1, epsilon=1.0, train_loss=0.5, train_accuracy=0.7, test_accuracy=0.6, total_epochs=2))
    assert writes == [1, 9] and len(store.steps(run_id)) == 10 and len(store.epochs(run_id)) == 1
    assert store.get(run_id).steps_done == 10 and store.get(run_id).progress == 0.5
    assert writer.warm_ms_per_step == pytest.approx(10.0)  # steps 2..10: 0.09 s over 9 steps, the first left out


def test_progress_writer_times_the_steps_after_the_first(store):
    writer = ProgressWriter(store, store.create_run(CFG), flush_s=60.0)
    assert writer.warm_ms_per_step is None
    writer.on_step(dict(step=1, epoch=1, loss=1.0, batch_size=64, total_steps=4, elapsed_s=5.0))  # a slow set-up
    assert writer.warm_ms_per_step is None  # one step: nothing after the first
    for step, elapsed in ((2, 5.02), (3, 5.10), (4, 5.12)):  # an epoch end's evaluation before step 3
        writer.on_step(dict(step=step, epoch=1 + step // 3, loss=1.0, batch_size=64, total_steps=4, elapsed_s=elapsed))
    assert writer.warm_ms_per_step == pytest.approx(40.0)  # 0.12 s over 3 steps; the 5 s before step 1 left out


class FakeRunResult:
    def __init__(self, cfg, steps, status):
        self.config, self.steps, self.status = cfg.resolve(), steps, status
        self.stop_reason = "done" if status == "finished" else "cancelled by request"
        self.device = "cpu"
        self.history = pd.DataFrame([dict(step=s, epoch=1, epsilon=0.1 * s, clip_fraction=0.5, loss=1.0,
                                          batch_size=64) for s in range(1, steps + 1)])
        self.epochs = pd.DataFrame([dict(epoch=1, epsilon=0.1 * steps, train_loss=0.5, train_accuracy=0.7,
                                         test_accuracy=0.6)])

    def summary(self):
        return {"final_epsilon": 0.1 * self.steps, "test_accuracy": 0.6, "status": self.status}

    def save(self, directory):
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "summary.json").write_text("{}")


def test_default_runner_with_fake_trainer(queue, store, monkeypatch):
    calls = {}

    def train(cfg, on_step=None, on_epoch=None, should_stop=None, **options):
        calls["cfg"] = cfg
        step = 0
        for step in range(1, 6):
            if should_stop():
                return FakeRunResult(cfg, step - 1, "cancelled")
            on_step(dict(step=step, epoch=1, epsilon=0.1 * step, clip_fraction=0.5, loss=1.0, batch_size=64,
                         total_steps=5, elapsed_s=0.0))
        on_epoch(dict(epoch=1, epsilon=0.5, train_loss=0.5, train_accuracy=0.7, test_accuracy=0.6, total_epochs=1))
        return FakeRunResult(cfg, step, "finished")

    monkeypatch.setattr(job_training, "train", train)
    run_id = queue.submit(CFG)
    rec = queue.wait(run_id, TIMEOUT)
    assert rec.status == DONE, rec.error
    assert calls["cfg"] == CFG and rec.config["model"] == "mlp"
    assert (rec.steps_done, rec.total_steps, rec.progress) == (5, 5, 1.0)
    assert rec.summary["final_epsilon"] == pytest.approx(0.5)
    assert list(store.steps(run_id)["step"]) == [1, 2, 3, 4, 5] and len(store.epochs(run_id)) == 1
    assert (store.artifacts_dir(run_id) / "summary.json").exists()


def test_default_runner_reports_missing_dataset_cleanly(queue, store, monkeypatch):
    from dpcore.errors import DatasetError

    def train(cfg, on_step=None, on_epoch=None, should_stop=None, **options):
        raise DatasetError("dataset 'nope' is unknown; available: synthetic, digits")

    monkeypatch.setattr(job_training, "train", train)
    rec = queue.wait(queue.submit(CFG.replace(dataset="nope")), TIMEOUT)
    assert rec.status == FAILED and rec.error == "dataset 'nope' is unknown; available: synthetic, digits"


@pytest.mark.slow  # ~5 s: torch/opacus import plus noise calibration
def test_trains_synthetic_through_the_queue(queue, store):
    """Integration: the real trainer, one epoch on the built-in synthetic data."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("dpcore.engine.training")
    torch.set_num_threads(1)
    cfg = TrainConfig(dataset="synthetic", target_epsilon=3.0, epochs=1)
    run_id = queue.submit(cfg)
    rec = queue.wait(run_id, 120)
    assert rec.status == DONE, rec.error
    assert rec.stop_status == "finished" and rec.device.startswith(("cpu", "cuda"))
    assert rec.total_steps and rec.steps_done == rec.total_steps and rec.progress == 1.0
    assert 0 < rec.summary["final_epsilon"] <= 3.0 + 1e-6
    assert rec.config["model"] == "mlp" and rec.config["epochs"] == 1  # the resolved config is stored
    steps = store.steps(run_id)
    assert list(steps["step"]) == list(range(1, rec.steps_done + 1))
    assert steps["epsilon"].is_monotonic_increasing and steps["epsilon"].iloc[-1] == rec.summary["final_epsilon"]
    assert steps["clip_fraction"].between(0, 1).all()
    epochs = store.epochs(run_id)
    assert list(epochs["epoch"]) == [1] and 0 <= epochs["test_accuracy"].iloc[0] <= 1
    folder = store.artifacts_dir(run_id)
    expected = {"model.pt", "checkpoint.pt", "history.csv", "epochs.csv", "summary.json"}
    assert expected <= {p.name for p in folder.iterdir()}
    weights = store.load_weights(run_id)
    assert weights and all(isinstance(value, torch.Tensor) for value in weights.values())
    row = store.list_runs().set_index("id").loc[run_id]
    assert row["dataset"] == "synthetic" and row["mode"] == "epsilon" and row["status"] == DONE
    assert row["test_accuracy"] == rec.summary["test_accuracy"]
