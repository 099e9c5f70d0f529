"""Jobs as Ray tasks: the executor a ``JobQueue`` uses when ``DPEXPLORER_RAY_ADDRESS`` (or ``--ray-address``) is set.

``RayExecutor(address)`` joins a Ray cluster (``'auto'``: the one running on this machine; ``'local'``: start
one here with the machine's CPUs; ``HOST:PORT`` or ``ray://HOST:PORT``: a remote one). Each training, sweep
member or baseline becomes one Ray task (``dpcore.jobs.ray_task.run_task``; ``num_gpus=1`` when the cluster
has GPUs, ``max_retries=1``); each reference model of an attack's pool becomes one task too (the attack job
itself runs on the queue's dispatcher thread, which owns the store, and sends its models out through
``dpcore.attacks.reference.using_model_mapper``). The task never opens the runs directory: its writes come
back through a channel actor and this process applies them to the store while the task runs, so progress,
metrics and artifacts land where local workers put them. Cancel raises the channel's flag (the task's
``should_stop``) and, when the task ignores it for ``grace_s`` seconds, ``ray.cancel(force=True)``. A task
lost twice (worker process or node died) leaves the run failed with the reason. ``import ray`` happens only
when an executor is made.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from dpcore.attacks.reference import using_model_mapper
from dpcore.errors import DPExplorerError
from dpcore.jobs import ray_task
from dpcore.jobs.workers import DIED, KILLED, OK, Outcome
from dpcore.store.runs import RunNotFound, RunStore

log = logging.getLogger(__name__)

RAY_ADDRESS_ENV = "DPEXPLORER_RAY_ADDRESS"
ATTACK_KIND = "attack"  # dpcore.jobs.attack.ATTACK_KIND (that module imports the queue, which imports this one)
POLL_S = 0.25  # how often a dispatcher thread applies its task's shipped writes and looks for a cancel
REACH_TIMEOUT_S = 3.0  # a HOST:PORT that does not answer this fast is reported as unreachable
MAX_RETRIES = 1  # a task lost with its worker or node is run once more
ADVICE = ("Start a cluster with `ray start --head` and give its address (or 'auto' on that machine), use 'local' "
          f"to start one inside DP Explorer, or unset {RAY_ADDRESS_ENV} (no --ray-address) to run jobs in local "
          "worker processes.")


_connected: str | None = None  # the address this process joined (None: not joined by ``connect``)


class RayUnavailable(DPExplorerError):
    """Ray is not installed, or the cluster named by the address cannot be reached."""


def ray_address_setting() -> str | None:
    """``$DPEXPLORER_RAY_ADDRESS`` (stripped), or None when it is unset or empty."""
    return os.environ.get(RAY_ADDRESS_ENV, "").strip() or None


def _import_ray() -> Any:
    try:
        import ray  # deferred: Ray is an optional extra (requirements-ray.txt), imported only when asked for
    except ImportError:
        raise RayUnavailable("jobs are meant to run on Ray, but Ray is not installed: "
                             "`pip install -r requirements-ray.txt`, or unset "
                             f"{RAY_ADDRESS_ENV} (no --ray-address) to run jobs in local worker processes") from None
    return ray


def check_reachable(address: str, *, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Raise RayUnavailable unless ``address`` (``HOST:PORT`` or ``ray://HOST:PORT``) accepts a TCP connection
    within ``timeout_s`` seconds (``ray.init`` itself would wait much longer before failing)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RayUnavailable(f"{address!r} is not a Ray address: use 'auto', 'local', HOST:PORT or "
                             "ray://HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise RayUnavailable(f"cannot reach a Ray cluster at {address!r} "
                             f"({err.strerror or type(err).__name__}). {ADVICE}") from None


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _cause(err: BaseException) -> str:
    """What Ray says only in an error's cause (e.g. that the cluster wants its auth token), as ' (...)'."""
    text = str(err.__cause__ or "")
    if "InvalidAuthToken" in text or "Authentication token" in text:
        return (" (the cluster uses token authentication: set RAY_AUTH_MODE=token here and give this process the "
                "cluster's token in ~/.ray/auth_token or RAY_AUTH_TOKEN)")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f" ({lines[-1]})" if lines else ""


def connect(address: str, *, num_cpus: int | None = None) -> Any:
    """Join (or, for ``'local'``, start) the Ray cluster at ``address``; return the ``ray`` module.

    ``num_cpus`` (``'local'`` only; None: this machine's CPUs) is what the local cluster offers. A process
    already connected keeps its cluster (RayUnavailable when asked for another one). A remote cluster gets this
    ``dpcore`` package shipped with the job (``runtime_env py_modules``), so its nodes need only the requirements
    installed. RayUnavailable, with what to do, when Ray is missing or the cluster cannot be reached.
    """
    global _connected
    ray = _import_ray()
    address = address.strip()
    if ray.is_initialized():
        if _connected is not None and address != _connected:
            raise RayUnavailable(f"this process already uses the Ray cluster at {_connected!r}; restart it to use "
                                 f"{address!r}")
        return ray
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address == "local":
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, **options)  # never an existing one
        else:
            if address != "auto":
                check_reachable(address)
            package = str(Path(__file__).resolve().parents[1])
            ray.init(address=address, runtime_env={"py_modules": [package]}, **options)
    except RayUnavailable:
        raise
    except Exception as err:  # ConnectionError, RuntimeError, ValueError: one line for the UI and the CLI
        reason = _first_line(err) + _cause(err)
        raise RayUnavailable(f"could not join the Ray cluster at {address!r}: {reason}. {ADVICE}") from None
    _connected = address
    return ray


class RayExecutor:
    """Runs a ``JobQueue``'s jobs as Ray tasks on the cluster at ``address`` (see the module docstring)."""

    def __init__(self, address: str, *, num_cpus: int | None = None) -> None:
        self.address = address.strip()
        self._ray = connect(self.address, num_cpus=num_cpus)
        self._task = self._ray.remote(ray_task.run_task)
        self._score = self._ray.remote(ray_task.score_reference_model)
        self._channel: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RayExecutor({self.address!r})"

    def resources(self) -> tuple[float, float]:
        """(CPUs, GPUs) the cluster has in all."""
        found = self._ray.cluster_resources()
        return float(found.get("CPU", 0.0)), float(found.get("GPU", 0.0))

    @property
    def slots(self) -> int:
        """Jobs the cluster can run at once: one per GPU when it has GPUs, else one per CPU (at least 1)."""
        cpus, gpus = self.resources()
        return max(1, int(gpus) if gpus >= 1 else int(cpus))

    def describe(self) -> str:
        """Where jobs run, for the sidebar and the CLI: 'Ray at ADDRESS — X CPUs, Y GPUs'."""
        cpus, gpus = self.resources()
        where = "local (started here)" if self.address == "local" else self.address
        if self.address == "auto":
            with contextlib.suppress(Exception):  # name the cluster 'auto' found
                where = f"{self._ray.get_runtime_context().gcs_address} (auto)"
        return f"Ray at {where} — {cpus:g} CPUs, {gpus:g} GPUs"

    def task_options(self) -> dict[str, Any]:
        """Ray options of every task: one CPU, one GPU when the cluster has any, one retry after a lost worker."""
        return {"num_cpus": 1, "num_gpus": 1 if self.resources()[1] >= 1 else 0, "max_retries": MAX_RETRIES,
                "retry_exceptions": False}

    def channel(self) -> Any:
        """The channel actor between tasks and this process (made on first use)."""
        with self._lock:
            if self._channel is None:
                self._channel = self._ray.remote(num_cpus=0)(ray_task.Channel).remote()
            return self._channel

    def close(self) -> None:
        """Stop the channel actor (the cluster itself stays up; ``ray.shutdown()`` leaves it)."""
        with self._lock:
            channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(Exception):
                self._ray.kill(channel)

    # ------------------------------------------------------------------ jobs
    def run(self, runner: Callable[..., Any], run_id: str, store: RunStore, *, should_stop: Callable[[], bool],
            grace_s: float, run_here: Callable[[], Outcome]) -> Outcome:
        """Run one job and return its Outcome (kinds of ``dpcore.jobs.workers``).

        An attack job runs ``run_here()`` (on this thread, which owns the store) with its reference models
        sent out as Ray tasks; any other job is one Ray task whose shipped writes are applied to ``store``
        here until it ends.
        """
        record = store.get(run_id)
        if record.kind == ATTACK_KIND:
            with using_model_mapper(self.map_models):
                return run_here()
        channel = self.channel()
        settings = ray_task.task_settings(os.environ)
        ref = self._task.options(**self.task_options()).remote(runner, record, channel, settings)
        try:
            return self._follow(ref, store, run_id, should_stop=should_stop, grace_s=grace_s)
        finally:
            channel.forget.remote(run_id)

    def _apply(self, store: RunStore, run_id: str) -> None:
        """Apply what the run's task shipped so far to ``store`` (nothing when the run was deleted)."""
        ops = self._ray.get(self.channel().drain.remote(run_id))
        with contextlib.suppress(RunNotFound):
            ray_task.apply_ops(store, run_id, ops)

    def _follow(self, ref: Any, store: RunStore, run_id: str, *, should_stop: Callable[[], bool],
                grace_s: float) -> Outcome:
        """Apply the task's writes while it runs, pass a cancel on, force-cancel it after ``grace_s``."""
        ray, kill_at = self._ray, None
        while True:
            ready, _ = ray.wait([ref], timeout=POLL_S)
            self._apply(store, run_id)
            if ready:
                break
            if kill_at is None and should_stop():
                self.channel().cancel.remote(run_id)
                kill_at = time.monotonic() + grace_s
            elif kill_at is not None and time.monotonic() >= kill_at:
                ray.cancel(ref, force=True)
                break
        try:
            kind, stopped, message = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            self._apply(store, run_id)
            return Outcome(KILLED, True, f"the job did not stop within {grace_s:g} s of the cancel; its Ray task "
                                         "was cancelled")
        except ray.exceptions.RayError as err:
            self._apply(store, run_id)
            reason = _first_line(err)
            return Outcome(DIED, kill_at is not None, f"its Ray task was lost (retried {MAX_RETRIES} time"
                           f"{'s' if MAX_RETRIES != 1 else ''}, worker process or node died): {reason}; the run's "
                           "last checkpoint is kept")
        self._apply(store, run_id)
        if kind == ray_task.ALREADY_DONE:
            _close_pending_attack(store, run_id)
            return Outcome(OK, bool(stopped))
        return Outcome(kind, bool(stopped) or kill_at is not None, message)

    # ------------------------------------------------------------------ reference models
    def map_models(self, score_model: Callable[[int], Any], indices: Sequence[int]
                   ) -> Iterator[tuple[int, Any]]:
        """``dpcore.attacks.reference.ModelMapper``: one Ray task per reference model, yielded as each finishes;
        closing the iterator cancels the ones still queued or running."""
        ray = self._ray
        shared = ray.put(score_model)
        pending = {self._score.options(**self.task_options()).remote(shared, i): i for i in indices}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    index = pending.pop(ref)
                    try:
                        row = ray.get(ref)
                    except ray.exceptions.RayError as err:
                        reason = _first_line(err)
                        raise DPExplorerError(f"reference model {index + 1} could not be trained on Ray: "
                                              f"{reason}") from None
                    yield index, row
        finally:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)


def train_on_ray(cfg: Any, *, address: str, on_epoch: Callable[[dict[str, Any]], Any] | None = None
                 ) -> tuple[Any, Any]:
    """``dpcore.jobs.training.train_and_evaluate(cfg)`` as one Ray task on the cluster at ``address`` (the CLI's
    ``train --ray-address``): ``on_epoch`` gets each epoch row here while it trains. Returns ``(RunResult,
    AttackResult or None)`` with the model on the CPU; DPExplorerError for bad input or a lost task."""
    cfg.validate()
    executor = RayExecutor(address)
    ray, channel, key = executor._ray, executor.channel(), f"train-{uuid.uuid4().hex}"
    task = ray.remote(ray_task.train_task).options(**executor.task_options())
    ref = task.remote(cfg, channel, key, ray_task.task_settings(os.environ))
    try:
        while True:
            ready, _ = ray.wait([ref], timeout=POLL_S)
            for _name, (_key, row), _kwargs in ray.get(channel.drain.remote(key)):
                if on_epoch is not None:
                    on_epoch(row)
            if ready:
                break
        try:
            answer = ray.get(ref)
        except ray.exceptions.RayError as err:
            reason = _first_line(err)
            raise DPExplorerError(f"the training's Ray task failed: {reason}") from None
    finally:
        executor.close()
    if answer[0] == "error":
        raise DPExplorerError(answer[1])
    return answer


def _close_pending_attack(store: RunStore, run_id: str) -> None:
    """A retried task found the run already stored: an attack its lost attempt left pending will not come."""
    with contextlib.suppress(RunNotFound):
        if store.get(run_id).summary.get("mia_status") == "pending":
            store.update_summary(run_id, mia_status="failed",
                                 mia_error="the Ray task was lost after the run was stored, before its attack ended")


__all__ = ["RAY_ADDRESS_ENV", "RayExecutor", "RayUnavailable", "check_reachable", "connect", "ray_address_setting",
           "train_on_ray"]
