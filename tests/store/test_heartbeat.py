"""No run stays 'running' when its process is gone (issue 13): heartbeats, stale runs, deferred failures."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dpcore.config import TrainConfig
from dpcore.store import heartbeat
from dpcore.store.heartbeat import Heartbeat, host_name
from dpcore.store.runs import CANCELLED, FAILED, INTERRUPTED, QUEUED, RUNNING, RunNotFound, RunStore

ROOT = Path(__file__).resolve().parents[2]
CFG = TrainConfig(dataset="synthetic", target_epsilon=3.0)


def _force(store: RunStore, run_id: str, **columns) -> None:
    sets = ", ".join(f"{name} = ?" for name in columns)
    with store._write() as conn:
        conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*columns.values(), run_id))


def _row(store: RunStore, run_id: str) -> tuple:
    return store._conn().execute("SELECT heartbeat, pid, host FROM runs WHERE id = ?", (run_id,)).fetchone()


def test_a_stale_heartbeat_on_another_host_interrupts_the_run_then_cancel_and_delete_work(store):
    run_id = store.create_run(CFG)
    store.set_status(run_id, RUNNING)
    _force(store, run_id, host="lab-node-7", pid=4242, owner_token="other", heartbeat=time.time() - 60)

    record = RunStore(store.root).get(run_id)  # any reader: the store reaps when opened and on reads

    assert record.status == INTERRUPTED and record.stop_status == INTERRUPTED and record.finished
    assert "its process (pid 4242 on lab-node-7) stopped while it was running" in record.stop_reason
    assert "without recording an outcome" in record.stop_reason and "no heartbeat for 60 s" in record.stop_reason
    assert store.request_cancel(run_id) == INTERRUPTED  # no "cancel requested" that nothing answers
    assert store.delete(run_id) == [run_id]
    with pytest.raises(RunNotFound):
        store.get(run_id)


def test_a_live_heartbeat_is_left_alone(store):
    run_id = store.create_run(CFG)
    store.set_status(run_id, RUNNING)
    _force(store, run_id, host="lab-node-7", pid=4242, owner_token="other", heartbeat=time.time() - 1)
    assert store.recover() == []
    assert RunStore(store.root).get(run_id).status == RUNNING
    # A heartbeat older than the window is stale, whatever the host says about its pid.
    assert store.recover(stale_s=0.5) == [run_id]


def test_heartbeat_thread_refreshes_the_run_while_the_job_works(store):
    run_id = store.create_run(CFG)
    store.set_status(run_id, RUNNING)
    with Heartbeat(store, run_id, interval_s=0.05):
        first = _row(store, run_id)
        time.sleep(0.3)
        later = _row(store, run_id)
    assert first[1] == os.getpid() and first[2] == host_name()
    assert later[0] > first[0]
    assert store.beat(store.create_run(CFG)) is False  # only running runs beat


def test_a_killed_process_is_marked_interrupted_within_seconds_by_any_reader(store):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from dpcore.config import TrainConfig
        from dpcore.store.heartbeat import Heartbeat
        from dpcore.store.runs import RUNNING, RunStore
        store = RunStore({str(store.root)!r})
        run_id = store.create_run(TrainConfig(dataset="synthetic"))
        store.set_status(run_id, RUNNING)
        with Heartbeat(store, run_id, interval_s=0.1):
            print(run_id, flush=True)
            time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        run_id = child.stdout.readline().strip()
        assert store.get(run_id).status == RUNNING  # alive: left alone
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        started = time.monotonic()
        while store.get(run_id).status == RUNNING and time.monotonic() - started < 10:
            time.sleep(0.1)
        waited = time.monotonic() - started
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        child.wait()
    record = store.get(run_id)
    assert record.status == INTERRUPTED and f"pid {child.pid} on {host_name()}" in record.stop_reason
    assert waited <= heartbeat.REAP_EVERY_S + 1.0
    assert store.delete(run_id) == [run_id]


def test_a_queued_run_of_a_dead_process_is_interrupted_and_can_be_cancelled(store):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    run_id = store.create_run(CFG)
    _force(store, run_id, pid=int(finished.stdout), owner_token="gone")
    store._next_reap = 0.0
    assert store.get(run_id).status == INTERRUPTED
    live = store.create_run(CFG)
    assert store.request_cancel(live) == CANCELLED and store.get(live).status == CANCELLED
    assert store.get(store.create_run(CFG)).status == QUEUED


def test_an_outcome_a_full_disk_refused_is_recorded_as_failed_once_space_returns(store, monkeypatch):
    run_id = store.create_run(CFG)
    store.set_status(run_id, RUNNING)
    real_write, disk_full = store._write, [True]

    def write():
        if disk_full[0]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write()

    monkeypatch.setattr(store, "_write", write)
    monkeypatch.setattr(heartbeat, "REAP_EVERY_S", 0.05)
    outcome = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "runs/artifacts/x/model.pt")
    with pytest.raises(OSError):
        store.fail(run_id, outcome)
    store._next_reap = 0.0
    assert store.get(run_id).status == RUNNING  # nothing written, and its own live process is not "gone"

    disk_full[0] = False  # space returns: the retry thread (or the next read) writes the failure
    deadline = time.monotonic() + 5
    while store.get(run_id).status == RUNNING and time.monotonic() < deadline:
        time.sleep(0.05)
    record = store.get(run_id)
    assert record.status == FAILED and "No space left on device" in record.stop_reason
    assert store._unrecorded == {}
