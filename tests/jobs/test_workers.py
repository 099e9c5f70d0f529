"""Jobs run in worker processes: another pid, kill -9 / out-of-memory deaths, cancel, the thread rule."""

from __future__ import annotations

import functools
import os
import pickle
import signal
import sys
import time
import types

import pytest
import torch
import worker_runners as runners

from dpcore.config import TrainConfig
from dpcore.engine import threads as threads_lib
from dpcore.engine.threads import SMALL_MODEL_PARAMS, torch_threads_for, training_threads
from dpcore.jobs import worker_memory, workers
from dpcore.jobs.attack import attack_runner
from dpcore.jobs.queue import JobQueue, train_runner
from dpcore.jobs.sweep import member_runner
from dpcore.store.runs import CANCELLED, DONE, FAILED, RunStore

TIMEOUT = 120.0  # a fresh worker imports torch and Opacus: slow on a loaded 2-core machine
CFG = TrainConfig(dataset="synthetic", target_epsilon=3.0, epochs=2, device="cpu")


@pytest.fixture
def queue(store):
    queue = JobQueue(store, cancel_grace_s=1.0)
    assert queue.executor == "process"
    yield queue
    assert queue.shutdown(timeout=30)


def wait_started(store: RunStore, run_id: str, timeout: float = TIMEOUT) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        summary = store.get(run_id).summary
        if summary.get("started"):
            return summary
        time.sleep(0.02)
    raise AssertionError(f"job {run_id} did not start within {timeout} s")


def test_job_runs_in_another_process(queue, store):
    first = store.get(queue.wait(queue.submit({"what": "pid"}, kind="test", runner=runners.record_pid), TIMEOUT).id)
    second = queue.wait(queue.submit({"what": "pid"}, kind="test", runner=runners.record_pid), TIMEOUT)
    assert first.status == DONE and second.status == DONE
    pid = first.summary["runner_pid"]
    assert pid != os.getpid() and first.summary["worker_pid"] == pid
    assert second.summary["runner_pid"] == pid  # the worker is kept warm and reused
    assert second.summary["worker_job"] == first.summary["worker_job"] + 1  # its jobs counted (1: its first)
    assert first.started <= first.summary["job_began"] <= second.started  # the job's start in the worker (UTC ISO)


def test_a_warm_worker_sees_the_settings_of_the_process_that_sends_the_job(queue, monkeypatch, tmp_path):
    for name in ("one", "two"):
        monkeypatch.setenv("DPEXPLORER_DATA_DIR", str(tmp_path / name))
        record = queue.wait(queue.submit({"what": "env"}, kind="test", runner=runners.record_env), TIMEOUT)
        assert record.summary["data_dir"] == str(tmp_path / name)


def test_training_run_in_a_worker_stores_its_result_and_attack(queue, store):
    record = queue.wait(queue.submit(CFG), TIMEOUT)
    assert record.status == DONE, record.error_message
    assert record.summary["worker_pid"] != os.getpid()
    assert 0.0 <= record.summary["mia_auc"] <= 1.0 and record.summary["final_epsilon"] <= 3.0
    assert len(store.epochs(record.id)) == 2


@pytest.mark.parametrize("how", ["kill -9", "out of memory"])
def test_dead_worker_fails_the_run_and_the_next_job_runs(queue, store, how):
    runner = runners.wait_for_stop if how == "kill -9" else runners.die_like_oom
    doomed = queue.submit({"what": how}, kind="test", runner=runner)
    after = queue.submit({"what": "after"}, kind="test", runner=runners.record_pid)
    summary = wait_started(store, doomed)
    if how == "kill -9":
        os.kill(store.get(doomed).summary["worker_pid"], signal.SIGKILL)
    record = queue.wait(doomed, TIMEOUT)
    assert record.status == FAILED
    assert "worker process was killed (signal 9" in record.error_message
    assert "out of memory" in record.error_message
    nxt = queue.wait(after, TIMEOUT)
    assert nxt.status == DONE and nxt.summary["runner_pid"] != summary["worker_pid"] != os.getpid()


def test_a_job_over_the_memory_cap_fails_with_the_reason_and_its_worker_is_replaced(queue, store, monkeypatch):
    # A real allocation (torch, twice the cap) refused by the worker's RLIMIT_DATA: the cap, not the machine's
    # memory, stops it (1 GiB cap, 2 GiB asked; the runner allocates nothing without a cap of at most 4 GiB).
    monkeypatch.setenv(worker_memory.MEMORY_ENV, "1024")
    workers.POOL.prestart(threads=queue.threads_per_worker, workers=queue.workers, count=2)  # start both at once
    try:
        saved = queue.wait(queue.submit({"what": "saved"}, kind="test", runner=runners.save_result), TIMEOUT)
        assert saved.status == DONE, saved.error_message
        doomed = queue.submit({"what": "too big"}, kind="test", runner=runners.allocate_twice_the_cap)
        after = queue.submit({"what": "after"}, kind="test", runner=runners.record_pid)  # queued behind it
        record = queue.wait(doomed, TIMEOUT)
        nxt = queue.wait(after, TIMEOUT)
    finally:
        workers.POOL.close()  # no 1 GiB workers left for later tests
    assert record.status == FAILED and record.summary["memory_cap_bytes"] == 1024 * 2**20
    assert "allocated_bytes" not in record.summary
    message = record.error  # the whole stored text: one line, no traceback
    assert message.startswith("out of memory: the job needed more than the worker's memory cap of 1,024 MB")
    assert "(it asked for 2,048 MB at once)" in message and "raise DPEXPLORER_WORKER_MEMORY_MB" in message
    assert "smaller batch size" in message and "Traceback" not in message and "\n" not in message
    # the worker that ran out was replaced, not reused; the next job ran to the end in another one
    assert nxt.status == DONE, nxt.error_message
    assert nxt.summary["runner_pid"] not in (record.summary["worker_pid"], os.getpid())
    with pytest.raises(ProcessLookupError):
        os.kill(record.summary["worker_pid"], 0)
    # the run stored before is untouched
    again = store.get(saved.id)
    assert again.status == DONE and again.summary == saved.summary and again.summary["accuracy"] == 0.875
    assert (store.artifacts_dir(saved.id) / "result.txt").read_text() == "kept\n"


def test_runner_error_in_a_worker_fails_the_run(queue):
    record = queue.wait(queue.submit({"what": "fail"}, kind="test", runner=runners.fail), TIMEOUT)
    assert record.status == FAILED and "boom in the worker" in record.error_message


def test_cancel_of_a_running_job(queue, store):
    run_id = queue.submit({"what": "wait"}, kind="test", runner=runners.wait_for_stop)
    summary = wait_started(store, run_id)
    started = time.monotonic()
    queue.cancel(run_id)
    record = queue.wait(run_id, TIMEOUT)
    assert record.status == CANCELLED and record.stop_reason == "cancelled by request"
    assert time.monotonic() - started < 5
    # the worker stopped cooperatively and stays in use
    again = queue.wait(queue.submit({"what": "pid"}, kind="test", runner=runners.record_pid), TIMEOUT)
    assert again.summary["runner_pid"] == summary["runner_pid"]


def test_cancel_of_a_job_that_ignores_it_terminates_its_worker(queue, store):
    run_id = queue.submit({"what": "stubborn"}, kind="test", runner=runners.ignore_stop)
    after = queue.submit({"what": "after"}, kind="test", runner=runners.record_pid)
    wait_started(store, run_id)
    queue.cancel(run_id)
    record = queue.wait(run_id, 30)
    assert record.status == CANCELLED and "terminated" in record.stop_reason
    assert queue.wait(after, TIMEOUT).status == DONE


def test_every_runner_the_app_submits_pickles():
    for runner in (train_runner, attack_runner, member_runner, functools.partial(train_runner, resume=None)):
        assert pickle.loads(pickle.dumps(runner)) is not None


def test_a_runner_that_cannot_pickle_runs_on_a_thread(queue):
    seen: list[int] = []
    record = queue.wait(queue.submit({"what": "x"}, kind="test", runner=lambda *args: seen.append(os.getpid())),
                        TIMEOUT)
    assert record.status == DONE and seen == [os.getpid()]


def test_executor_must_be_known(store):
    with pytest.raises(ValueError, match="executor"):
        JobQueue(store, executor="fork")


# ---------------------------------------------------------------------- sizing
def test_torch_threads_for_never_oversubscribes():
    for cores in range(1, 33):
        for n_workers in range(1, 9):
            threads = torch_threads_for(workers=n_workers, cores=cores)
            assert threads >= 1
            assert n_workers * threads <= cores or threads == 1
    assert torch_threads_for(workers=1, cores=16) == 16 and torch_threads_for(workers=4, cores=16) == 4
    assert torch_threads_for(workers=1, cores=16, model_params=SMALL_MODEL_PARAMS) == 1
    assert torch_threads_for(workers=1, cores=16, model_params=SMALL_MODEL_PARAMS + 1) == 16
    with pytest.raises(ValueError):
        torch_threads_for(workers=0, cores=2)


def test_training_threads_follows_the_rule_and_the_user(monkeypatch):
    monkeypatch.delenv(threads_lib.THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads_lib, "_baseline", torch.get_num_threads())
    monkeypatch.setattr(threads_lib, "available_cores", lambda: 8)
    before = torch.get_num_threads()
    with training_threads(model_params=10) as chosen:
        assert chosen == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with training_threads(model_params=10**7, workers=2) as chosen:
        assert chosen == 4
    monkeypatch.setenv(threads_lib.THREADS_ENV, "3")
    with training_threads(model_params=10) as chosen:
        assert chosen == 3
    with training_threads(threads=2, model_params=10) as chosen:
        assert chosen == 2
    assert torch.get_num_threads() == before


def test_default_workers_setting(monkeypatch):
    monkeypatch.setenv(workers.WORKERS_ENV, "3")
    assert workers.default_workers() == 3
    monkeypatch.setenv(workers.WORKERS_ENV, "lots")
    assert workers.default_workers() >= 1
    monkeypatch.delenv(workers.WORKERS_ENV)
    monkeypatch.setattr(workers, "available_cores", lambda: 8)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert workers.default_workers() == 4
    monkeypatch.setenv(worker_memory.MEMORY_ENV, "4000")
    assert workers.describe_pool(1) == "1 worker process × 8 threads, up to 4,000 MB memory each"
    monkeypatch.setenv(worker_memory.MEMORY_ENV, "none")
    assert workers.describe_pool(4) == "4 worker processes × 2 threads, no memory cap"


def test_death_message_names_the_signal():
    assert "signal 9" in workers.death_message(-9) and "out of memory" in workers.death_message(-9)
    assert "SIGTERM" in workers.death_message(-15)
    assert "exit code 3" in workers.death_message(3)


def test_a_worker_started_while_a_streamlit_page_is_main_does_not_run_the_page(store, tmp_path, monkeypatch):
    # Streamlit runs each page as sys.modules["__main__"]; spawn would re-run that file in the worker.
    page = tmp_path / "page.py"
    page.write_text("raise SystemExit('the page ran in the worker')\n")
    fake_main = types.ModuleType("__main__")
    fake_main.__file__ = str(page)
    monkeypatch.setitem(sys.modules, "__main__", fake_main)
    worker = workers.WorkerProcess(threads=1, workers=1)
    try:
        run_id = store.create_run({"what": "pid"}, kind="test")
        outcome = worker.run(runners.record_pid, run_id, store.root, stop_requested=lambda: False)
        assert outcome.kind == workers.OK, outcome.message
        assert store.get(run_id).summary["runner_pid"] == worker.pid != os.getpid()
    finally:
        worker.close()
    assert sys.modules["__main__"] is fake_main
