"""What runs inside a Ray task, and the channel actor between it and the process that owns the run store.

A Ray task never opens the runs directory (there is no shared filesystem): ``run_task`` gives the job's
runner a ``ShippingStore``, a scratch ``RunStore`` in a temporary folder on the task's node holding a copy
of the one run, which also *ships* every write about that run (progress, step/epoch rows, summary,
heartbeat, the finished result with its artifact files, a failure) to a ``Channel`` actor. The owner
drains the channel while the task runs and applies the writes to the real store
(``dpcore.jobs.ray_executor``), so the live view moves as it does with local workers. The cancel flag
lives in the channel too (``ShippingStore.cancel_requested``).

Each attempt of a task has its own token. Once one attempt has shipped ``finish``, the channel refuses
writes from any other attempt and a retry (after the worker or node was lost) returns ``ALREADY_DONE``
without training again: nothing finished runs twice. Nothing here imports Ray at module level.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dpcore.atomic import atomic_write
from dpcore.config import TrainConfig
from dpcore.errors import DPExplorerError
from dpcore.store.heartbeat import host_name
from dpcore.store.owners import own_token
from dpcore.store.runs import RUNNING, RunRecord, RunStore, format_error, utc_now
from dpcore.store.schema import as_rows

log = logging.getLogger(__name__)

# The Outcome kinds and settings prefix of dpcore.jobs.workers, which is not imported here: it loads torch, and a
# Ray worker should pay for torch only in jobs that train (tests/jobs/test_ray_executor.py checks they match).
OK, FAILED, FAILED_UNRECORDED = "ok", "failed", "failed-unrecorded"
SETTINGS_PREFIX = "DPEXPLORER_"
CANCEL_POLL_S = 0.2  # how stale the cancel flag a task sees may be (dpcore.jobs.workers.CANCEL_POLL_S)
ALREADY_DONE = "already-done"  # a retried attempt found the run's result already shipped by an earlier one
SCRATCH_PREFIX = "dpexplorer-ray-"
CANCEL_ANSWER_S = 10.0  # how long the task waits for the channel to say whether the run was cancelled
#: Store writes a task may ship; the owner applies exactly these (``apply_ops``), nothing else.
SHIPPED_OPS = frozenset({"set_status", "set_progress", "update_summary", "append_steps", "append_epoch", "beat",
                         "finish", "fail", "write_files"})
#: RunStore methods whose calls stay in the task: reads, and writes that are not about the task's own run. Every
#: public RunStore method is in this set or in SHIPPED_OPS (tests/jobs/test_ray_executor.py checks it), so a new
#: write method cannot silently stay in the scratch store.
NOT_SHIPPED = frozenset({"artifacts_dir", "artifacts_path", "cancel_requested", "close", "create_run", "delete",
                         "epochs", "exists", "finished_stamp", "get", "list_runs", "load_weights", "records",
                         "recover", "request_cancel", "save_upload", "steps"})
#: Settings of the owner that never reach a task: where runs are stored and how jobs are executed.
OWNER_ONLY_SETTINGS = frozenset({"DPEXPLORER_RUNS_DIR", "DPEXPLORER_EXECUTOR", "DPEXPLORER_RAY_ADDRESS",
                                 "DPEXPLORER_WORKERS"})

Op = tuple[str, tuple[Any, ...], dict[str, Any]]


class Channel:
    """The actor (one per executor, no CPU) that carries store writes from tasks to the owner and the cancel
    flag from the owner to tasks. Its state: writes waiting per run, cancelled runs, and which attempt (token)
    shipped each run's finished result."""

    def __init__(self) -> None:
        self._ops: dict[str, list[Op]] = {}
        self._cancelled: set[str] = set()
        self._finished_by: dict[str, str] = {}

    def push(self, run_id: str, token: str, ops: list[Op]) -> bool:
        """Queue ``ops`` of attempt ``token``; False (dropped) once another attempt finished the run."""
        owner = self._finished_by.get(run_id)
        if owner is not None and owner != token:
            return False
        self._ops.setdefault(run_id, []).extend(ops)
        if any(op[0] == "finish" for op in ops):
            self._finished_by[run_id] = token
        return True

    def drain(self, run_id: str) -> list[Op]:
        """The run's queued writes, oldest first (and forget them)."""
        return self._ops.pop(run_id, [])

    def claim(self, run_id: str, token: str) -> bool:
        """Whether attempt ``token`` may run the job: False when an earlier attempt already shipped its result."""
        return self._finished_by.get(run_id, token) == token

    def cancel(self, run_id: str) -> None:
        """Raise the run's cancel flag."""
        self._cancelled.add(run_id)

    def cancelled(self, run_id: str) -> bool:
        """Whether the run's cancel flag is raised."""
        return run_id in self._cancelled

    def forget(self, run_id: str) -> None:
        """Drop everything about the run (its job has ended on the owner's side)."""
        self._ops.pop(run_id, None)
        self._cancelled.discard(run_id)
        self._finished_by.pop(run_id, None)


@dataclass
class ShippedResult:
    """A finished training result as it travels to the owner: what ``RunStore.finish`` reads of a ``RunResult``
    (``config``, ``status``, ``stop_reason``, ``steps``, ``device``, the ``history``/``epochs`` tables and
    ``summary()``), plus the artifact files ``RunResult.save`` wrote on the task's node (name -> bytes)."""

    config: TrainConfig
    status: str
    stop_reason: str
    steps: int
    device: str
    history: Any
    epochs: Any
    summary_fields: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The result's summary numbers (``RunResult.summary()`` on the task's node)."""
        return dict(self.summary_fields)

    def save(self, directory: str | Path) -> Path:
        """Write the shipped artifact files into ``directory`` (each atomically); return it."""
        write_files(directory, self.files)
        return Path(directory)


def write_files(directory: str | Path, files: Mapping[str, bytes]) -> None:
    """Write each ``name -> bytes`` into ``directory`` atomically (plain names only: no folders)."""
    for name, data in files.items():
        if Path(name).name != name or name.startswith("."):
            raise DPExplorerError(f"refusing to write an artifact named {name!r} shipped by a Ray task")
        atomic_write(Path(directory) / name, lambda handle, data=data: handle.write(data))


class ShippingStore(RunStore):
    """A scratch ``RunStore`` holding one run, in a Ray task: every write about that run is applied here and
    shipped to the owner through the channel; the cancel flag is read from the channel."""

    def __init__(self, root: str | Path, *, record: RunRecord, channel: Any, token: str) -> None:
        super().__init__(root)
        self.run_id, self._channel, self._token = record.id, channel, token
        self._sent: dict[str, tuple[int, int]] = {}
        self._last_push: Any = None
        with self._write() as conn:
            conn.execute(
                "INSERT INTO runs (id, name, kind, group_id, config, status, created, started, summary, pid, "
                "owner_token, host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.id, record.name, record.kind, record.group, json.dumps(record.config), RUNNING,
                 record.created or utc_now(), record.started, json.dumps(record.summary), os.getpid(), own_token(),
                 host_name()),
            )

    def _ship(self, op: str, *args: Any, **kwargs: Any) -> None:
        self._last_push = self._channel.push.remote(self.run_id, self._token, [(op, args, kwargs)])

    def set_status(self, run_id: str, status: str, **kwargs: Any) -> bool:
        changed = super().set_status(run_id, status, **kwargs)
        self._ship("set_status", run_id, status, **kwargs)
        return changed

    def set_progress(self, run_id: str, steps_done: int, total_steps: int | None = None) -> None:
        super().set_progress(run_id, steps_done, total_steps)
        self._ship("set_progress", run_id, steps_done, total_steps)

    def update_summary(self, run_id: str, **fields: Any) -> dict[str, Any]:
        summary = super().update_summary(run_id, **fields)
        self._ship("update_summary", run_id, **fields)
        return summary

    def append_steps(self, run_id: str, rows: Any) -> int:
        rows = [dict(row) for row in as_rows(rows)]
        written = super().append_steps(run_id, rows)
        self._ship("append_steps", run_id, rows)
        return written

    def append_epoch(self, run_id: str, row: Any) -> int:
        rows = [dict(item) for item in as_rows(row)]
        written = super().append_epoch(run_id, rows)
        self._ship("append_epoch", run_id, rows)
        self.ship_files(run_id)  # the epoch's checkpoint, so a lost task leaves the owner something to resume
        return written

    def beat(self, run_id: str) -> bool:
        self._ship("beat", run_id)
        return super().beat(run_id)

    def finish(self, run_id: str, result: Any) -> RunRecord:
        record = super().finish(run_id, result)  # writes the artifacts into the scratch folder
        shipped = ShippedResult(
            config=result.config, status=getattr(result, "status", None) or "finished",
            stop_reason=getattr(result, "stop_reason", None) or "", steps=int(getattr(result, "steps", 0) or 0),
            device=str(getattr(result, "device", "") or ""), history=getattr(result, "history", None),
            epochs=getattr(result, "epochs", None), summary_fields=dict(result.summary()),
            files=self._changed_files(run_id))
        self._ship("finish", run_id, shipped)
        return record

    def fail(self, run_id: str, error: BaseException | str) -> None:
        super().fail(run_id, error)
        self._ship("fail", run_id, format_error(error))

    def cancel_requested(self, run_id: str) -> bool:
        import ray  # deferred: only Ray tasks build a ShippingStore

        return bool(ray.get(self._channel.cancelled.remote(run_id), timeout=CANCEL_ANSWER_S))

    def _changed_files(self, run_id: str) -> dict[str, bytes]:
        """Artifact files of the run written or changed since they were last shipped (name -> bytes)."""
        folder = self.artifacts_path(run_id)
        files: dict[str, bytes] = {}
        if not folder.is_dir():
            return files
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.name.startswith("."):
                continue
            stat = path.stat()
            stamp = (stat.st_size, stat.st_mtime_ns)
            if self._sent.get(path.name) != stamp:
                files[path.name] = path.read_bytes()
                self._sent[path.name] = stamp
        return files

    def ship_files(self, run_id: str) -> None:
        """Ship the run's new or changed artifact files (ROC, checkpoint, pool caches)."""
        files = self._changed_files(run_id)
        if files:
            self._ship("write_files", run_id, files)

    def flush(self) -> None:
        """Ship the last artifact files and wait until the channel holds everything shipped so far."""
        import ray  # deferred: only Ray tasks build a ShippingStore

        self.ship_files(self.run_id)
        if self._last_push is not None:
            ray.get(self._last_push)


def task_settings(settings: Mapping[str, str]) -> dict[str, str]:
    """The owner's ``DPEXPLORER_*`` settings a task gets (data cache, recipes...; never the runs directory)."""
    return {k: v for k, v in settings.items() if k.startswith(SETTINGS_PREFIX) and k not in OWNER_ONLY_SETTINGS}


def _use_settings(settings: Mapping[str, str], scratch: str) -> None:
    for key in [k for k in os.environ if k.startswith(SETTINGS_PREFIX)]:
        del os.environ[key]
    os.environ.update(task_settings(settings))
    os.environ["DPEXPLORER_RUNS_DIR"] = scratch  # anything that opens "the" runs directory opens the scratch one


def _task_threads() -> None:
    """One torch thread per CPU Ray gave the task: ``OMP_NUM_THREADS`` (which ``train`` follows, see
    ``dpcore.engine.threads.user_threads``) and torch's count when an earlier task already loaded torch."""
    import ray  # deferred: only called inside Ray tasks

    cpus = max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
    os.environ["OMP_NUM_THREADS"] = str(cpus)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(cpus)


class ChannelStop:
    """``should_stop`` of a job in a Ray task: True once the owner raised the run's cancel flag in the channel
    (read at most every ``interval_s`` seconds; once True it stays True)."""

    def __init__(self, store: ShippingStore, run_id: str, *, interval_s: float = CANCEL_POLL_S) -> None:
        self.store, self.run_id, self.interval_s = store, run_id, interval_s
        self.triggered = False
        self._next_poll = 0.0

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.triggered and now >= self._next_poll:
            self._next_poll = now + self.interval_s
            self.triggered = self.store.cancel_requested(self.run_id)
        return self.triggered


def run_task(runner: Callable[..., Any], record: RunRecord, channel: Any,
             settings: Mapping[str, str]) -> tuple[str, bool, str | None]:
    """The body of a Ray task: run ``runner(run_id, store, should_stop)`` against a ``ShippingStore`` in a
    scratch folder (removed afterwards). Returns ``(kind, stopped, message)`` like a local worker: OK,
    FAILED (the error was shipped), FAILED_UNRECORDED (it could not be), or ALREADY_DONE (a retry found the
    result already shipped by an earlier attempt)."""
    import ray  # deferred: this function only runs inside Ray tasks

    token = uuid.uuid4().hex
    if not ray.get(channel.claim.remote(record.id, token)):
        return ALREADY_DONE, False, "an earlier attempt of this Ray task already stored the run's result"
    scratch = tempfile.mkdtemp(prefix=SCRATCH_PREFIX)
    store: ShippingStore | None = None
    should_stop: ChannelStop | None = None
    try:
        _use_settings(settings, scratch)
        _task_threads()
        store = ShippingStore(scratch, record=record, channel=channel, token=token)
        should_stop = ChannelStop(store, record.id)
        store.update_summary(record.id, worker_pid=os.getpid(), worker_host=host_name(), executor="ray")
        runner(record.id, store, should_stop)
        return OK, should_stop.triggered, None
    except Exception as exc:
        if not isinstance(exc, DPExplorerError):
            log.exception("job %s failed in its Ray task", record.id)
        stopped = should_stop is not None and should_stop.triggered
        if store is None:
            return FAILED_UNRECORDED, stopped, format_error(exc)
        try:
            store.fail(record.id, exc)
        except Exception:
            return FAILED_UNRECORDED, stopped, format_error(exc)
        return FAILED, stopped, format_error(exc)
    finally:
        if store is not None:
            try:
                store.flush()
            finally:
                store.close()
        shutil.rmtree(scratch, ignore_errors=True)


def train_task(cfg: TrainConfig, channel: Any, key: str, settings: Mapping[str, str]) -> tuple[Any, Any]:
    """The body of ``train --ray-address``'s task: ``train_and_evaluate(cfg)``, each epoch row pushed to the
    channel under ``key`` as it comes. Returns ``(RunResult with its model on the CPU, AttackResult or None)``,
    or ``("error", message)`` for a DPExplorerError (bad input the owner reports in one line)."""
    from dpcore.jobs.training import train_and_evaluate  # deferred: torch (only tasks that train load it)

    scratch = tempfile.mkdtemp(prefix=SCRATCH_PREFIX)
    try:
        _use_settings(settings, scratch)
        _task_threads()
        result, attack = train_and_evaluate(cfg, on_epoch=lambda row: channel.push.remote(
            key, key, [("epoch", (key, dict(row)), {})]))
        result.model = result.model.cpu()
        return result, attack
    except DPExplorerError as err:
        return "error", str(err)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def score_reference_model(score_model: Callable[[int], Any], index: int) -> Any:
    """The body of a reference-model task: ``score_model(index)`` (train model ``index`` of an attack's pool and
    return its scores row) with one torch thread per CPU Ray gave the task."""
    _task_threads()
    return score_model(index)


def apply_ops(store: RunStore, run_id: str, ops: Iterable[Op]) -> None:
    """Apply shipped writes of run ``run_id`` to the owner's ``store``, in order. Only ``SHIPPED_OPS`` about that
    run are applied; ``write_files`` lands in the run's artifacts folder. RunNotFound when the run was deleted."""
    for name, args, kwargs in ops:
        if name not in SHIPPED_OPS or not args or args[0] != run_id:
            log.warning("run %s: ignoring a write %r shipped by its Ray task", run_id, name)
            continue
        if name == "write_files":
            write_files(store.artifacts_dir(run_id, create=True), args[1])
        else:
            getattr(store, name)(*args, **kwargs)


__all__ = ["ALREADY_DONE", "Channel", "ShippedResult", "ShippingStore", "apply_ops", "run_task",
           "score_reference_model", "task_settings", "train_task", "write_files"]
