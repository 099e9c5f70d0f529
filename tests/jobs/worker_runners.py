"""Module-level job runners for tests/jobs/test_workers.py: they must pickle to reach a worker process."""

from __future__ import annotations

import os
import signal
import time


def record_pid(run_id, store, should_stop) -> None:
    """Store the pid of the process that ran the job."""
    store.update_summary(run_id, runner_pid=os.getpid())


def save_result(run_id, store, should_stop) -> None:
    """Store a small result: summary values and an artifact file."""
    store.update_summary(run_id, runner_pid=os.getpid(), accuracy=0.875)
    (store.artifacts_dir(run_id, create=True) / "result.txt").write_text("kept\n")


def wait_for_stop(run_id, store, should_stop) -> None:
    """Say it started, then poll ``should_stop`` for up to 60 s."""
    store.update_summary(run_id, started=True, runner_pid=os.getpid())
    deadline = time.monotonic() + 60
    while not should_stop() and time.monotonic() < deadline:
        time.sleep(0.01)


def ignore_stop(run_id, store, should_stop) -> None:
    """Say it started, then sleep 60 s without looking at ``should_stop``."""
    store.update_summary(run_id, started=True)
    time.sleep(60)


def die_like_oom(run_id, store, should_stop) -> None:
    """Allocate a little, then die the way the kernel's OOM killer ends a process (SIGKILL)."""
    store.update_summary(run_id, started=True)
    ballast = bytearray(16 * 2**20)
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)
    del ballast


def fail(run_id, store, should_stop) -> None:
    """Raise an ordinary error."""
    raise ValueError("boom in the worker")


def record_env(run_id, store, should_stop) -> None:
    """Store the worker's DPEXPLORER_DATA_DIR."""
    store.update_summary(run_id, data_dir=os.environ.get("DPEXPLORER_DATA_DIR"))


def write_until_refused(run_id, store, should_stop) -> None:
    """Write one small artifact file every 50 ms (progress counts them) until a write is refused, a stop, or 60 s."""
    from dpcore.atomic import atomic_write_text

    folder = store.artifacts_dir(run_id, create=True)
    deadline = time.monotonic() + 60
    written = 0
    while not should_stop() and time.monotonic() < deadline:
        atomic_write_text(folder / f"part-{written}.txt", "x" * 100)
        written += 1
        store.set_progress(run_id, written, 10_000)
        time.sleep(0.05)


def train_with_refused_writes(run_id, store, should_stop, *, code: int) -> None:
    """Train the run's config (``train_runner``) with every file write of ``dpcore.atomic`` refused with errno
    ``code`` (EROFS: a read-only disk, ENOSPC: a full one) from the first one on: the first epoch's checkpoint.
    The run database itself stays writable. The worker process is put back as it was afterwards."""
    import builtins

    import dpcore.atomic
    from dpcore.jobs.queue import train_runner

    def refuse(path, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(path))

    dpcore.atomic.open = refuse  # shadows the builtin in that module only
    try:
        train_runner(run_id, store, should_stop)
    finally:
        del dpcore.atomic.open
        assert dpcore.atomic.__dict__.get("open", builtins.open) is builtins.open


def allocate_twice_the_cap(run_id, store, should_stop) -> None:
    """Say it started, then ask torch for a tensor twice this worker's memory cap (its ``RLIMIT_DATA``), which the
    cap refuses. Raises AssertionError, allocating nothing, when the worker has no cap of at most 4 GiB: without
    one it could take real memory from the machine."""
    import resource

    import torch

    cap, _ = resource.getrlimit(resource.RLIMIT_DATA)
    if cap == resource.RLIM_INFINITY or cap > 4 * 2**30:
        raise AssertionError(f"this worker has no small memory cap (RLIMIT_DATA = {cap}); not allocating")
    store.update_summary(run_id, started=True, memory_cap_bytes=cap)
    ballast = torch.ones(2 * cap // 4, dtype=torch.float32)
    store.update_summary(run_id, allocated_bytes=ballast.numel() * 4)  # not reached: the cap refuses it
