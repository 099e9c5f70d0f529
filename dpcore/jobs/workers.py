"""Worker processes that run the job queue's jobs, so training never competes with the server process.

A ``WorkerProcess`` is a persistent process from ``multiprocessing.get_context("spawn")`` (spawned, not
forked, so CUDA works) that imports torch and Opacus once and then runs one job at a time: the queue's
dispatcher thread sends ``(runner, run_id, runs root)`` over a pipe, the worker builds ``RunStore(root)``
and a ``StopCheck`` (the store's cancel flag), calls the runner and answers ``(outcome, stopped, error)``.
The runner writes progress, metrics and results to the store itself, as on a thread. The process-wide
``POOL`` keeps idle workers warm for the next job of any queue.

The dispatcher notices a worker that died (``kill -9``, out of memory): the run is marked failed with the
reason and a fresh worker takes the next job. A job that ignores a cancel for ``CANCEL_GRACE_S`` seconds
has its worker terminated. ``default_workers()`` sizes the pool: ``$DPEXPLORER_WORKERS``, else one per
GPU, else half the CPU cores (at least 1); each worker gets ``torch_threads_for(workers=n, cores=...)`` and the
memory cap ``worker_memory_mb(workers=n)`` (``dpcore.jobs.worker_memory``). A job that runs out of memory (an
allocation refused at the cap, or a CUDA "out of memory") fails with a one-line reason, and its worker process is
replaced: a process whose allocation failed mid-job may hold half-built state and a fragmented heap.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dpcore.engine.threads import available_cores, set_process_threads, torch_threads_for
from dpcore.errors import DPExplorerError
from dpcore.jobs.worker_memory import (
    apply_memory_cap,
    describe_memory_cap,
    is_out_of_memory,
    out_of_memory_message,
    worker_memory_mb,
)
from dpcore.store.runs import RunNotFound, RunStore, format_error, utc_now
from dpcore.store.write_errors import storage_problem

log = logging.getLogger(__name__)
_SPAWN_LOCK = threading.Lock()
_BLANK_MAIN = types.ModuleType("__main__")

WORKERS_ENV = "DPEXPLORER_WORKERS"
SETTINGS_PREFIX = "DPEXPLORER_"
CANCEL_POLL_S = 0.2  # how stale a cancel pressed in another session may be when should_stop answers
CANCEL_GRACE_S = 10.0  # a running job that ignores a cancel this long has its worker process terminated
REPLY_POLL_S = 0.1  # how often the dispatcher looks at its worker while a job runs
OK, FAILED, DIED, KILLED = "ok", "failed", "died", "killed"
FAILED_UNRECORDED = "failed-unrecorded"  # the runner (or opening the store) raised and the worker could not store it


class StopCheck:
    """``should_stop`` for one run: True once the queue cancels it or the store's cancel flag is set.

    The store is read at most every ``interval_s`` seconds; once True it stays True.
    """

    def __init__(self, store: RunStore, run_id: str, event: threading.Event | None = None, *,
                 interval_s: float = CANCEL_POLL_S) -> None:
        self.store, self.run_id, self.interval_s = store, run_id, interval_s
        self.event = event if event is not None else threading.Event()
        self._next_poll = 0.0

    @property
    def triggered(self) -> bool:
        """Whether a stop has been requested (as last seen)."""
        return self.event.is_set()

    def __call__(self) -> bool:
        if self.event.is_set():
            return True
        now = time.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + self.interval_s
            try:
                if self.store.cancel_requested(self.run_id):
                    self.event.set()
            except RunNotFound:  # deleted under us: nobody wants the result
                self.event.set()
        return self.event.is_set()


def defined_in_main(runner: Callable[..., Any]) -> bool:
    """Whether ``runner`` (or the function a ``functools.partial`` wraps) lives in ``__main__``, which a
    worker process does not have: such a runner runs on a thread of this process instead."""
    func = getattr(runner, "func", runner)
    return getattr(func, "__module__", None) in ("__main__", "__mp_main__")


def default_workers() -> int:
    """Worker processes the machine can serve: ``$DPEXPLORER_WORKERS`` (an integer >= 1), else one per GPU,
    else half the available CPU cores (at least 1). A bad ``$DPEXPLORER_WORKERS`` is ignored with a warning."""
    raw = os.environ.get(WORKERS_ENV, "").strip()
    if raw:
        try:
            if int(raw) >= 1:
                return int(raw)
        except ValueError:
            pass
        log.warning("ignoring %s=%r: expected an integer >= 1", WORKERS_ENV, raw)
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return torch.cuda.device_count()
    return max(1, available_cores() // 2)


def threads_per_worker(workers: int) -> int:
    """Torch threads each of ``workers`` worker processes uses: ``torch_threads_for`` over the available cores."""
    return torch_threads_for(workers=workers, cores=available_cores())


def describe_pool(workers: int) -> str:
    """Sidebar text, e.g. '2 worker processes × 1 thread, up to 9,642 MB memory each'."""
    threads = threads_per_worker(workers)
    return (f"{workers} worker process{'es' if workers != 1 else ''} × "
            f"{threads} thread{'s' if threads != 1 else ''}, {describe_memory_cap(worker_memory_mb(workers=workers))}")


@dataclass(frozen=True)
class Outcome:
    """How a job ended in its worker: ``kind`` is OK (runner returned), FAILED (runner raised; the worker
    already stored the error), DIED (the process died: ``message`` says why) or KILLED (terminated after
    ignoring a cancel). ``stopped``: whether a stop had been requested. ``retire``: the job ran out of memory, so
    its worker process exits and is replaced rather than reused."""

    kind: str
    stopped: bool
    message: str | None = None
    retire: bool = False


def death_message(exitcode: int | None) -> str:
    """Why a worker process ended, for a failed run's error text."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "unknown signal"
        if -exitcode == signal.SIGKILL:
            return ("the worker process was killed (signal 9, SIGKILL) — possibly out of memory; "
                    "the run's last checkpoint is kept")
        return f"the worker process was killed by signal {-exitcode} ({name}); the run's last checkpoint is kept"
    return f"the worker process exited unexpectedly (exit code {exitcode}); the run's last checkpoint is kept"


# ---------------------------------------------------------------------- the worker's side
def _run_one(runner: Callable[..., Any], run_id: str, root: str, *, job_number: int = 0,
             memory_mb: int | None = None) -> tuple[str, bool, str | None, bool]:
    """Run one job here; return the reply ``(kind, stopped, message, retire)`` (see ``Outcome``)."""
    store: RunStore | None = None
    should_stop: StopCheck | None = None
    error: BaseException | str | None = None
    retire = False
    try:
        store = RunStore(root)
        should_stop = StopCheck(store, run_id)
        # worker_job 1: the process's first job, slowed by one-off warm-ups (speed_history leaves its set-up out);
        # job_began: the job's start in this process, after the worker's own start (a cold run's fixed cost)
        store.update_summary(run_id, worker_pid=os.getpid(), worker_job=job_number, job_began=utc_now())
        runner(run_id, store, should_stop)
    except Exception as exc:
        if is_out_of_memory(exc):  # one line for the user; the traceback (and what its frames hold) is let go
            error, retire = out_of_memory_message(exc, memory_mb=memory_mb), True
            log.warning("job %s: %s", run_id, error)
        else:
            error = exc
            if storage_problem(exc) is not None:  # a read-only or full runs folder: one line, no traceback
                log.warning("job %s failed: %s", run_id, format_error(exc, root=root))
            elif not isinstance(exc, DPExplorerError):
                log.exception("job %s failed", run_id)
    try:
        stopped = should_stop is not None and should_stop.triggered
        if error is None:
            return OK, stopped, None, False
        text = format_error(error, root=root)
        if store is None:
            return FAILED_UNRECORDED, False, text, retire
        try:
            store.fail(run_id, error)
        except Exception:  # deleted, or the store itself is what failed: the dispatcher records it
            return FAILED_UNRECORDED, stopped, text, retire
        return FAILED, stopped, text, retire
    finally:
        if store is not None:
            store.close()


def _settings() -> dict[str, str]:
    """This process's ``DPEXPLORER_*`` environment (data cache, runs directory, ...), sent along with each job."""
    return {key: value for key, value in os.environ.items() if key.startswith(SETTINGS_PREFIX)}


def _apply_settings(settings: dict[str, str]) -> None:
    """Make the worker's ``DPEXPLORER_*`` environment the dispatching process's (it may have changed since the
    worker started, e.g. between tests)."""
    for key in [k for k in os.environ if k.startswith(SETTINGS_PREFIX) and k not in settings]:
        del os.environ[key]
    os.environ.update(settings)


def _serve(conn: Any, threads: int, workers: int, memory_mb: int | None = None) -> None:
    """Main loop of a worker process: run jobs sent on ``conn`` until it closes or sends None, or a job ran out of
    memory (``memory_mb``: this process's cap in MiB, None for none)."""
    set_process_threads(threads, workers=workers)
    import dpcore.jobs.training  # noqa: F401  # deferred: torch, Opacus (warm the worker before its first job)

    apply_memory_cap(memory_mb)  # after the imports: the cap is what jobs may grow to
    jobs_run = 0
    while True:
        try:
            raw = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            message = pickle.loads(raw)
            if message is None:
                return
            runner, run_id, root, settings = message
            _apply_settings(settings)
            jobs_run += 1
            reply = _run_one(runner, run_id, root, job_number=jobs_run, memory_mb=memory_mb)
        except Exception as exc:  # e.g. the runner cannot be unpickled here: answer rather than die
            if is_out_of_memory(exc):
                reply = (FAILED_UNRECORDED, False, out_of_memory_message(exc, memory_mb=memory_mb), True)
            else:
                reply = (FAILED_UNRECORDED, False, format_error(exc), False)
        conn.send(reply)
        if reply[3]:  # out of memory: the dispatcher starts a fresh process rather than trust this one
            return


# ---------------------------------------------------------------------- the dispatcher's side
class WorkerProcess:
    """One spawned worker process and the pipe to it; ``run`` sends it a job and waits for the outcome.

    ``memory_mb``: the process's memory cap in MiB (None: no cap; ``WorkerPool`` passes
    ``worker_memory_mb(workers=workers)``). ``retired`` turns True once a job ran out of memory in it.
    """

    def __init__(self, *, threads: int, workers: int, memory_mb: int | None = None) -> None:
        context = multiprocessing.get_context("spawn")
        self.threads, self.workers, self.memory_mb = threads, workers, memory_mb
        self.retired = False
        self._conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, threads, workers, self.memory_mb), daemon=True,
                                       name="dpexplorer-worker")
        with _SPAWN_LOCK:
            # Spawn re-runs the parent's __main__ file in the child. Under Streamlit that is the page being
            # run (app.py, pages/x.py): the worker would draw the app. Runners come from importable modules,
            # so the worker starts from a blank __main__ instead.
            main = sys.modules.get("__main__")
            sys.modules["__main__"] = _BLANK_MAIN
            try:
                self.process.start()
            finally:
                if main is not None:
                    sys.modules["__main__"] = main
        child.close()

    @property
    def pid(self) -> int | None:
        """The worker's process id."""
        return self.process.pid

    def alive(self) -> bool:
        """Whether the process is running."""
        return self.process.is_alive()

    def run(self, runner: Callable[..., Any], run_id: str, root: str | Path, *,
            stop_requested: Callable[[], bool], grace_s: float = CANCEL_GRACE_S) -> Outcome:
        """Run one job; return its Outcome. Raises TypeError/AttributeError/PicklingError when ``runner``
        cannot be sent to another process (nothing was sent then) and BrokenPipeError for a dead worker."""
        self._conn.send((runner, run_id, str(root), _settings()))
        kill_at: float | None = None
        while True:
            if self._conn.poll(REPLY_POLL_S):
                try:
                    outcome = Outcome(*self._conn.recv())
                except (EOFError, OSError):
                    return self._died()
                self.retired = outcome.retire
                return outcome
            if not self.process.is_alive():
                return self._died()
            if kill_at is None and stop_requested():
                kill_at = time.monotonic() + grace_s
            elif kill_at is not None and time.monotonic() >= kill_at:
                self.close(timeout=0)
                return Outcome(KILLED, True, f"the job did not stop within {grace_s:g} s of the cancel; "
                                             "its worker process was terminated")

    def _died(self) -> Outcome:
        self.process.join(5)
        outcome = Outcome(DIED, False, death_message(self.process.exitcode))
        self.close(timeout=0)
        return outcome

    def close(self, *, timeout: float = 2.0) -> None:
        """Ask the worker to exit (kill it after ``timeout`` seconds) and release the pipe."""
        if self.process.is_alive() and timeout > 0:
            try:
                self._conn.send(None)
            except OSError:
                pass
            self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self._conn.close()


class WorkerPool:
    """Idle worker processes of this process, kept warm for the next job of any queue (at most ``max_idle``)."""

    def __init__(self, *, max_idle: int | None = None) -> None:
        self._lock = threading.Lock()
        self._idle: list[WorkerProcess] = []
        self.max_idle = max_idle

    def acquire(self, *, threads: int, workers: int) -> WorkerProcess:
        """An idle live worker with ``threads`` threads and the memory cap ``worker_memory_mb(workers=workers)``,
        else a newly spawned one."""
        memory_mb = worker_memory_mb(workers=workers)
        with self._lock:
            for worker in list(self._idle):
                if not worker.alive():
                    self._idle.remove(worker)
                elif worker.threads == threads and worker.memory_mb == memory_mb:
                    self._idle.remove(worker)
                    return worker
        return WorkerProcess(threads=threads, workers=workers, memory_mb=memory_mb)

    def release(self, worker: WorkerProcess) -> None:
        """Keep ``worker`` for later (closing it when it died or the pool already holds enough). A retired worker
        (a job ran out of memory in it) is closed and a fresh one with the same settings starts in its place."""
        limit = self.max_idle if self.max_idle is not None else max(2, default_workers())
        if worker.retired:
            worker.close()
            with self._lock:
                if len(self._idle) < limit:
                    self._idle.append(WorkerProcess(threads=worker.threads, workers=worker.workers,
                                                    memory_mb=worker.memory_mb))
            return
        with self._lock:
            if worker.alive() and len(self._idle) < limit:
                self._idle.append(worker)
                return
        worker.close()

    def prestart(self, *, threads: int, workers: int, count: int) -> None:
        """Spawn idle workers until ``count`` with ``threads`` threads (and the current memory cap) wait; their
        imports run meanwhile."""
        memory_mb = worker_memory_mb(workers=workers)
        with self._lock:
            have = sum(1 for w in self._idle if w.threads == threads and w.memory_mb == memory_mb and w.alive())
            for _ in range(max(0, count - have)):
                self._idle.append(WorkerProcess(threads=threads, workers=workers, memory_mb=memory_mb))

    def close(self) -> None:
        """Stop every idle worker."""
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close()


POOL = WorkerPool()
