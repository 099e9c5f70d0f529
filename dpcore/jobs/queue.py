"""A bounded job queue that runs training (and other long jobs) in worker processes, off the server.

Each job is a run in a ``RunStore``: ``submit`` records it as 'queued', a dispatcher thread marks it
'running', has a worker process (``dpcore.jobs.workers``) call its runner and leaves it 'done',
'cancelled' or 'failed' (also when the worker process dies: killed, out of memory). Progress,
metrics and the cancel flag live in the store, so any thread, browser session or
process that opens the same runs directory sees them. ``get_queue()`` returns the one
queue per runs directory that all Streamlit sessions of a process share.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import pickle
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dpcore.config import TrainConfig
from dpcore.engine.checkpoint import ResumeState
from dpcore.errors import DPExplorerError
from dpcore.jobs import resume as resuming
from dpcore.jobs.distributed import train_stored_run_distributed
from dpcore.jobs.ray_executor import RayExecutor, ray_address_setting
from dpcore.jobs.training import train_stored_run
from dpcore.jobs.worker_memory import is_out_of_memory, out_of_memory_message
from dpcore.jobs.workers import (
    CANCEL_GRACE_S,
    CANCEL_POLL_S,
    DIED,
    FAILED,
    FAILED_UNRECORDED,
    KILLED,
    POOL,
    Outcome,
    StopCheck,
    default_workers,
    defined_in_main,
    describe_pool,
    threads_per_worker,
)
from dpcore.store.runs import (
    CANCELLED,
    DONE,
    QUEUED,
    RUNNING,
    TERMINAL_STATUSES,
    RunNotFound,
    RunRecord,
    RunStore,
    default_root,
)

__all__ = ["CANCEL_POLL_S", "EXECUTORS", "JobQueue", "QueueClosed", "QueueFull", "Runner", "StopCheck",
           "get_queue", "shutdown", "train_runner"]

log = logging.getLogger(__name__)

DEFAULT_MAX_PENDING = 32
EXECUTORS = ("process", "thread", "ray")
EXECUTOR_ENV = "DPEXPLORER_EXECUTOR"  # 'thread' for get_queue: tests that monkeypatch a runner's code in-process


class QueueFull(DPExplorerError):
    """The queue already holds its maximum number of waiting jobs."""


class QueueClosed(DPExplorerError):
    """The queue was shut down and takes no more jobs."""


class Runner(Protocol):
    """A job body: does the work for ``run_id``, writing progress and results to ``store``.

    It should poll ``should_stop()`` and return early when it answers True. If it
    returns with the run still 'running', the queue marks it 'done' (or 'cancelled'
    when a stop was requested); an exception marks it 'failed'.
    """

    def __call__(self, run_id: str, store: RunStore, should_stop: Callable[[], bool]) -> Any: ...


@dataclass
class _Job:
    run_id: str
    runner: Runner
    on_done: Callable[[str, str], Any] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


def train_runner(run_id: str, store: RunStore, should_stop: Callable[[], bool], *,
                 resume: ResumeState | None = None) -> Any:
    """The default runner (plain runs, baselines, continuations): ``dpcore.jobs.training.train_stored_run``.

    It trains the run's stored config, stores the result (``store.finish``) and runs the loss-threshold
    membership attack (``roc.json`` in the artifacts, ``mia_auc``/``mia_tpr_at_1pct_fpr``/``mia_advantage``
    in the summary). ``resume`` (a parent's checkpoint, see ``JobQueue.resume``) continues that run instead
    of starting fresh. A checkpoint is written at every epoch end, so a run the process lost can be
    continued too. Returns the RunResult (whose artifacts are in ``store.artifacts_dir(run_id)``). A config with
    ``nproc`` > 1 trains under torchrun instead (``dpcore.jobs.distributed``; rank 0 stores it) and returns None.
    """
    if store.get(run_id).train_config().nproc > 1:
        return train_stored_run_distributed(store, run_id, should_stop=should_stop, resume=resume)
    return train_stored_run(store, run_id, should_stop=should_stop, resume=resume)


class JobQueue:
    """Runs jobs from a FIFO, ``workers`` at a time (default one), each in a worker process.

    At most ``max_pending`` jobs wait; ``submit`` beyond that raises QueueFull. Jobs are
    runs in ``store``; their status, progress and results are read from the store. One dispatcher
    thread per worker slot holds the order, positions and cancels; with ``executor='process'`` (the
    default) it hands each job to a warm process of ``dpcore.jobs.workers.POOL`` (threads per process:
    ``threads_per_worker(workers)``). ``executor='thread'`` runs runners on the dispatcher thread itself:
    only for tests that monkeypatch a runner's code in this process. A runner that cannot be pickled
    (a lambda, a closure) also runs on the dispatcher thread, with a warning; ``cancel_grace_s`` is how
    long a running job may ignore a cancel before its worker process is terminated.
    ``executor='ray'`` sends jobs to the Ray cluster at ``ray_address`` (None: ``$DPEXPLORER_RAY_ADDRESS``)
    as Ray tasks (``dpcore.jobs.ray_executor``), at least as many at once as the cluster has slots;
    RayUnavailable when Ray is missing or the cluster cannot be reached.
    """

    def __init__(self, store: RunStore, *, workers: int = 1, max_pending: int = DEFAULT_MAX_PENDING,
                 executor: str = "process", cancel_grace_s: float = CANCEL_GRACE_S,
                 ray_address: str | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}; got {executor!r}")
        self.store = store
        self.max_pending = max_pending
        self.ray = RayExecutor(ray_address or ray_address_setting() or "local") if executor == "ray" else None
        workers = max(workers, self.ray.slots) if self.ray is not None else workers
        self.workers, self.executor, self.cancel_grace_s = workers, executor, cancel_grace_s
        self.threads_per_worker = threads_per_worker(workers)
        self._cond = threading.Condition()
        self._pending: collections.deque[_Job] = collections.deque()
        self._running: dict[str, _Job] = {}
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"dpexplorer-worker-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def __repr__(self) -> str:
        return (f"JobQueue({self.store.root!s}, workers={len(self._threads)}, executor={self.executor}, "
                f"pending={len(self._pending)})")

    # ------------------------------------------------------------------ submitting
    def submit(self, config: TrainConfig | Mapping[str, Any], *, name: str | None = None, kind: str = "train",
               group: str | None = None, runner: Runner | None = None,
               on_done: Callable[[str, str], Any] | None = None) -> str:
        """Record a queued run and enqueue it; return its run id.

        Without ``runner``, ``config`` must be a TrainConfig (validated here, so a bad
        setting fails before it queues) and the run trains with ``train_runner``. A runner runs in a
        worker process, so it must pickle: a module-level function or a ``functools.partial`` of one.
        ``on_done(run_id, status)`` runs in this process after the job ended with ``status`` (for work
        the server must do, e.g. queueing a sweep's next members); its exceptions are logged.
        Raises QueueFull when ``max_pending`` jobs are already waiting.
        """
        if runner is None:
            if isinstance(config, Mapping):
                config = TrainConfig.from_dict(dict(config))
            if not isinstance(config, TrainConfig):
                raise TypeError(f"config must be a TrainConfig for training jobs, got {type(config).__name__}")
            config.validate()
            runner = train_runner
        with self._cond:
            if self._closed:
                raise QueueClosed("the job queue has been shut down; start a new one to run more jobs")
            if len(self._pending) >= self.max_pending:
                raise QueueFull(
                    f"queue is full: {len(self._pending)} jobs are waiting (limit {self.max_pending}); "
                    "wait for some to finish or cancel queued ones, then submit again"
                )
            run_id = self.store.create_run(config, kind=kind, name=name, group=group)
            self._pending.append(_Job(run_id, runner, on_done))
            self._cond.notify()
        return run_id

    def resume(self, run_id: str, *, epochs: int, epsilon_limit: float | None = None,
               name: str | None = None) -> str:
        """Queue a continuation of run ``run_id`` for ``epochs`` more epochs; return the new run's id.

        The continuation is a new 'train' run (group = ``run_id``, ``config.extra['resume_from']`` =
        ``run_id``, default name '<name> (+N epochs)') that starts from the parent's checkpoint, keeps
        its noise multiplier and spends epsilon on top of what the parent spent; ``epsilon_limit``
        (None: the parent's limit) caps the total. Its step/epoch tables start with a copy of the
        parent's rows. Raises RunNotFound, RunActive (parent still queued/running), NotResumable (no
        checkpoint, diverged, not a training run), ConfigError (bad epochs, limit already reached) or
        QueueFull. See ``dpcore.jobs.resume`` for the rules.
        """
        plan = resuming.plan_resume(self.store, run_id, epochs=epochs, epsilon_limit=epsilon_limit, name=name)
        state = resuming.load_state(self.store, run_id)  # read now: the parent may be deleted while this waits
        runner = functools.partial(train_runner, resume=state)
        new_id = self.submit(plan.config, name=plan.name, group=run_id, runner=runner)
        try:
            # Continuation rows have higher step/epoch numbers, so copying while the job starts is safe.
            resuming.copy_history(self.store, source=run_id, target=new_id, up_to_step=plan.steps_done,
                                  up_to_epoch=plan.epochs_done)
        except RunNotFound:
            pass  # parent or continuation deleted meanwhile: the continuation still has its own rows
        return new_id

    # ------------------------------------------------------------------ inspecting
    def position(self, run_id: str) -> int | None:
        """0 while the job runs, k >= 1 for the k-th waiting job, None when it is not in this queue."""
        with self._cond:
            if run_id in self._running:
                return 0
            for index, job in enumerate(self._pending, start=1):
                if job.run_id == run_id:
                    return index
        return None

    def pending(self) -> list[str]:
        """Ids of waiting jobs, next first."""
        with self._cond:
            return [job.run_id for job in self._pending]

    def running(self) -> list[str]:
        """Ids of jobs being run now."""
        with self._cond:
            return list(self._running)

    def snapshot(self) -> tuple[list[str], list[str]]:
        """(running ids, waiting ids) read under one lock.

        Two separate calls to ``running()`` and ``pending()`` can straddle the moment a worker
        moves a job from waiting to running and see it in neither list: an idle-looking queue.
        """
        with self._cond:
            return list(self._running), [job.run_id for job in self._pending]

    def wait(self, run_id: str, timeout: float | None = None, *, poll_s: float = 0.05) -> RunRecord:
        """Block until the run leaves queued/running (or ``timeout`` seconds pass); return its record.

        Works for runs of other queues or processes too (by polling the store).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            job = self._running.get(run_id) or next((j for j in self._pending if j.run_id == run_id), None)
        if job is not None:
            job.done.wait(timeout)
        while True:
            record = self.store.get(run_id)
            if record.status in TERMINAL_STATUSES or (deadline is not None and time.monotonic() >= deadline):
                return record
            time.sleep(poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic())))

    def join(self, timeout: float | None = None) -> bool:
        """Wait until no job is waiting or running; return False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending or self._running:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    # ------------------------------------------------------------------ cancelling
    def cancel(self, run_id: str) -> str:
        """Cancel a job; return the run's status afterwards.

        A waiting job is removed and becomes 'cancelled' without ever starting. A
        running job is asked to stop (its ``should_stop`` turns True) and stays
        'running' until its runner returns. Runs owned by other queues or processes get
        the store's cancel flag, which their ``should_stop`` reads.
        """
        with self._cond:
            job = next((j for j in self._pending if j.run_id == run_id), None)
            if job is not None:
                self._pending.remove(job)
                job.cancel.set()
            running = self._running.get(run_id)
            if running is not None:
                running.cancel.set()
            self._cond.notify_all()
        status = self.store.request_cancel(run_id)
        if job is not None:
            job.done.set()
        return status

    def shutdown(self, *, wait: bool = True, timeout: float | None = 10.0) -> bool:
        """Stop taking jobs, cancel waiting ones and ask running ones to stop.

        Returns False when a worker was still busy after ``timeout`` seconds.
        """
        with self._cond:
            self._closed = True
            dropped = list(self._pending)
            self._pending.clear()
            for job in self._running.values():
                job.cancel.set()
            self._cond.notify_all()
        for job in dropped:
            job.cancel.set()
            try:
                self.store.request_cancel(job.run_id)
            except RunNotFound:
                pass
            job.done.set()
        if not wait:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        stopped = not any(thread.is_alive() for thread in self._threads)
        if stopped and self.ray is not None:
            self.ray.close()
        return stopped

    @property
    def closed(self) -> bool:
        """Whether ``shutdown`` was called."""
        return self._closed

    def describe_executor(self) -> str:
        """Where jobs run, for the sidebar: 'Ray at ADDRESS — X CPUs, Y GPUs', the worker processes, or threads."""
        if self.ray is not None:
            return self.ray.describe()
        if self.executor == "process":
            return f"local workers ({describe_pool(self.workers)})"
        return f"{self.workers} job thread{'s' if self.workers != 1 else ''} in the server"

    # ------------------------------------------------------------------ workers
    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._pending.popleft()
                self._running[job.run_id] = job
            status = None
            try:
                status = self._run(job)
            except Exception:
                log.exception("job %s: could not record its outcome", job.run_id)
            finally:
                with self._cond:
                    self._running.pop(job.run_id, None)
                    self._cond.notify_all()
                job.done.set()
            if job.on_done is not None and status is not None:
                try:
                    job.on_done(job.run_id, status)
                except Exception:
                    log.exception("job %s: its on_done callback failed", job.run_id)

    def _run(self, job: _Job) -> str | None:
        """Run one job and record how it ended; return that status (None: it never started)."""
        store, run_id = self.store, job.run_id
        try:
            claimed = store.set_status(run_id, RUNNING, only_from=(QUEUED,))
        except RunNotFound:
            return None  # deleted while waiting
        if not claimed:
            return None  # cancelled (possibly from another process) before it started
        should_stop = StopCheck(store, run_id, job.cancel)
        if should_stop():
            store.set_status(run_id, CANCELLED, only_from=(RUNNING,), stop_status=CANCELLED,
                             stop_reason="cancelled before it started")
            return CANCELLED
        outcome = self._run_in_worker(job, should_stop) if self.executor == "process" else None
        if self.ray is not None:
            outcome = self.ray.run(job.runner, run_id, store, should_stop=should_stop, grace_s=self.cancel_grace_s,
                                   run_here=functools.partial(_run_here, job, store, should_stop))
        if outcome is None:
            outcome = _run_here(job, store, should_stop)
        return _record_outcome(store, run_id, outcome, stopped=outcome.stopped or should_stop.triggered)

    def _run_in_worker(self, job: _Job, should_stop: StopCheck) -> Outcome | None:
        """Run ``job`` in a worker process of the pool; None when its runner cannot be pickled."""
        forwarded = False

        def stop_requested() -> bool:
            nonlocal forwarded
            if job.cancel.is_set() and not forwarded:  # shutdown(): tell the worker through the store
                forwarded = True
                try:
                    self.store.request_cancel(job.run_id)
                except RunNotFound:
                    pass
            return should_stop()

        if defined_in_main(job.runner):
            log.warning("job %s: its runner %r is defined in __main__, which a worker process cannot import; "
                        "running it on a thread of this process", job.run_id, job.runner)
            return None
        for attempt in range(2):
            worker = POOL.acquire(threads=self.threads_per_worker, workers=self.workers)
            try:
                outcome = worker.run(job.runner, job.run_id, self.store.root, stop_requested=stop_requested,
                                     grace_s=self.cancel_grace_s)
            except (pickle.PicklingError, TypeError, AttributeError) as err:
                POOL.release(worker)
                log.warning("job %s: its runner %r cannot be sent to a worker process (%s); running it on a "
                            "thread of this process", job.run_id, job.runner, err)
                return None
            except OSError:  # the idle worker died before it got the job: take a fresh one
                worker.close(timeout=0)
                if attempt:
                    raise
                continue
            POOL.release(worker)
            return outcome
        return None


def _run_here(job: _Job, store: RunStore, should_stop: StopCheck) -> Outcome:
    """Run ``job`` on this thread (executor 'thread', or a runner that cannot be pickled)."""
    try:
        job.runner(job.run_id, store, should_stop)
    except Exception as exc:
        error: BaseException | str = exc
        if is_out_of_memory(exc):  # one line, as from a worker process (no cap on this process's memory)
            error = out_of_memory_message(exc, memory_mb=None)
            log.warning("job %s: %s", job.run_id, error)
        elif not isinstance(exc, DPExplorerError):
            log.exception("job %s failed", job.run_id)
        try:
            store.fail(job.run_id, error)
        except RunNotFound:
            pass
        return Outcome(FAILED, should_stop.triggered)
    return Outcome("ok", should_stop.triggered)


def _record_outcome(store: RunStore, run_id: str, outcome: Outcome, *, stopped: bool) -> str | None:
    """Leave the run 'done', 'cancelled' or 'failed' after ``outcome``; return that status."""
    try:
        if outcome.kind == FAILED:
            return FAILED
        if outcome.kind in (DIED, FAILED_UNRECORDED):
            log.warning("job %s: %s", run_id, outcome.message)
            store.fail(run_id, outcome.message or "the worker process died")
            return FAILED
        if outcome.kind == KILLED or stopped:
            store.set_status(run_id, CANCELLED, only_from=(RUNNING,), stop_status=CANCELLED,
                             stop_reason=outcome.message if outcome.kind == KILLED else "cancelled by request")
            return CANCELLED
        store.set_status(run_id, DONE, only_from=(RUNNING,), stop_status="finished")
        return DONE
    except RunNotFound:
        return None


# ---------------------------------------------------------------------- process-wide queues
_queues: dict[Path, JobQueue] = {}
_queues_lock = threading.Lock()


def get_queue(store_root: str | Path | None = None, *, workers: int | None = None,
              max_pending: int = DEFAULT_MAX_PENDING) -> JobQueue:
    """The process's shared queue for a runs directory (default ``$DPEXPLORER_RUNS_DIR`` or ``./runs``).

    Every caller (every Streamlit session) with the same directory gets the same
    queue; ``workers`` (None: ``default_workers()``, i.e. ``$DPEXPLORER_WORKERS``, one per GPU or half
    the cores) and ``max_pending`` apply only when it is first created, which also starts its worker
    processes so the first job finds them warm. ``$DPEXPLORER_EXECUTOR=thread`` makes it run jobs on
    threads of this process (for tests that monkeypatch job code); ``$DPEXPLORER_RAY_ADDRESS`` sends them to a
    Ray cluster (RayUnavailable, saying what to do, when it cannot be reached).
    """
    root = Path(store_root if store_root is not None else default_root()).expanduser().resolve()
    with _queues_lock:
        queue = _queues.get(root)
        if queue is None or queue.closed:
            executor = os.environ.get(EXECUTOR_ENV, "").strip() or ("ray" if ray_address_setting() else "process")
            queue = _queues[root] = JobQueue(RunStore(root), workers=workers or default_workers(),
                                             max_pending=max_pending, executor=executor)
            if queue.executor == "process":
                POOL.prestart(threads=queue.threads_per_worker, workers=queue.workers, count=queue.workers)
        return queue


def shutdown(*, timeout: float | None = 10.0) -> None:
    """Shut down every queue made by ``get_queue`` (cancelling their jobs) and forget them. For tests and exit."""
    with _queues_lock:
        queues = list(_queues.values())
        _queues.clear()
    for queue in queues:
        queue.shutdown(timeout=timeout)
