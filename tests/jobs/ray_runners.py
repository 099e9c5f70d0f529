"""Module-level job runners for tests/jobs/test_ray_executor.py: Ray workers import them by name."""

from __future__ import annotations

import os
import signal
import time


def slow_progress(run_id, store, should_stop) -> None:
    """Report its pid and store root, count 40 progress steps over ~4 s (stopping early when asked), then write
    an artifact file and a summary field the owner must receive."""
    store.update_summary(run_id, runner_pid=os.getpid(), task_store_root=str(store.root),
                         task_runs_dir=os.environ.get("DPEXPLORER_RUNS_DIR"))
    for step in range(1, 41):
        if should_stop():
            store.update_summary(run_id, stopped_at=step)
            return
        store.set_progress(run_id, step, 40)
        time.sleep(0.1)
    (store.artifacts_dir(run_id, create=True) / "note.txt").write_text(f"written by {os.getpid()}")
    store.update_summary(run_id, finished_by=os.getpid())


def ignore_stop(run_id, store, should_stop) -> None:
    """Say it started, then sleep 60 s without looking at ``should_stop``."""
    store.update_summary(run_id, runner_pid=os.getpid())
    time.sleep(60)


def always_die(run_id, store, should_stop) -> None:
    """Kill its own worker process (SIGKILL) every time, as a lost node would."""
    store.update_summary(run_id, runner_pid=os.getpid())
    time.sleep(0.3)  # let the summary reach the owner
    os.kill(os.getpid(), signal.SIGKILL)

