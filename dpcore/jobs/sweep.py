"""Sweeps: a grid of training runs (target epsilon x clipping bound x seed), recorded and run a few at a time.

A ``SweepSpec`` (``dpcore.jobs.grid``) expands into one ``TrainConfig`` per grid cell (plus one
non-private baseline per seed). ``submit_sweep`` records the sweep next to the run store
(``<runs dir>/sweeps/<sweep id>.json``) and queues its members as ordinary training runs whose
``group`` is the sweep id, a few at a time so other people's jobs are not stuck behind it;
each member that finishes queues the next ones. Nothing about a sweep lives only in memory:
after a restart ``resume_sweep`` queues exactly the cells that have no finished run, and a
cell that already has a done (or queued, or running) run is never run again.

``dpcore.views.frontier`` turns the finished runs (``sweep_runs``) into the tradeoff charts' data."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import re
import secrets
import statistics
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dpcore.atomic import atomic_write_text
from dpcore.config import TrainConfig
from dpcore.engine import data
from dpcore.engine import speed as speed_lib
from dpcore.engine.speed import Speed
from dpcore.errors import DPExplorerError
from dpcore.jobs.grid import (  # the grid is part of the sweep API: sweeps.SweepSpec, sweeps.expand, ...
    DEFAULT_EPSILONS,
    DEFAULT_VALIDATION_FRACTION,
    LARGE_SWEEP_RUNS,
    MAX_SWEEP_RUNS,
    SweepMember,
    SweepSpec,
    cell_key,
    expand,
)
from dpcore.jobs.queue import JobQueue, QueueFull
from dpcore.jobs.speed_history import member_seconds, recent_costs
from dpcore.jobs.training import train_stored_run
from dpcore.store.records import StoredRun
from dpcore.store.runs import (
    ACTIVE_STATUSES,
    CANCELLED,
    DONE,
    FAILED,
    INTERRUPTED,
    RunRecord,
    RunStore,
    process_token,
    utc_now,
)

if TYPE_CHECKING:  # pandas is imported lazily by the store
    import pandas as pd

log = logging.getLogger(__name__)

SWEEPS_DIR = "sweeps"
SWEEP_RECORD_VERSION = 1
#: Members of one sweep waiting in the job queue at a time; finished members queue the next ones.
SWEEP_WINDOW = 4
#: Per-step time assumed before any run of a dataset has finished here (CPU, measured on small models):
#: FALLBACK_MS_BASE + FALLBACK_MS_PER_VALUE x batch size x input values per example.
FALLBACK_MS_BASE = 10.0
FALLBACK_MS_PER_VALUE = 0.006
PER_RUN_OVERHEAD_S = 2.0  # data loading, noise calibration, the membership attack

# Member states (a cell of the grid): the status of its newest run, or 'missing' when it has none.
MISSING = "missing"
MEMBER_STATES = ("done", "running", "queued", "failed", "cancelled", "interrupted", MISSING)

_SWEEP_ID = re.compile(r"sw-[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")
_record_lock = threading.Lock()
_submit_locks: dict[str, threading.Lock] = {}


# ---------------------------------------------------------------------- the sweep record
@dataclass
class Sweep:
    """A stored sweep: its id (also the ``group`` of its runs), a name, the spec and its bookkeeping.

    ``cancelled`` stops finished members from queueing more. ``retry_after`` (UTC ISO time of
    the last explicit resume) lets cancelled runs that ended before it be queued again;
    ``retry_failed`` does the same for failed runs. ``estimate_s``: the estimate (s) shown when it was started,
    which its ETA blends with its own measured speed.
    """

    id: str
    name: str
    spec: SweepSpec
    created: str
    cancelled: bool = False
    retry_after: str | None = None
    retry_failed: bool = False
    estimate_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what the record file holds)."""
        return {"version": SWEEP_RECORD_VERSION, "id": self.id, "name": self.name, "spec": self.spec.to_dict(),
                "created": self.created, "cancelled": self.cancelled, "retry_after": self.retry_after,
                "retry_failed": self.retry_failed, "estimate_s": self.estimate_s}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Sweep:
        """Inverse of ``to_dict``."""
        return cls(id=values["id"], name=values.get("name") or values["id"],
                   spec=SweepSpec.from_dict(values["spec"]), created=values.get("created", ""),
                   cancelled=bool(values.get("cancelled", False)), retry_after=values.get("retry_after"),
                   retry_failed=bool(values.get("retry_failed", False)), estimate_s=values.get("estimate_s"))


def new_sweep_id() -> str:
    """'sw-YYYYMMDD-HHMMSS-' + 6 random hex digits (sorts by creation second)."""
    return "sw-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def is_sweep_id(text: str) -> bool:
    """Whether ``text`` looks like a sweep id (not whether that sweep exists)."""
    return bool(_SWEEP_ID.fullmatch(str(text)))


def _sweeps_dir(store: RunStore) -> Path:
    return store.root / SWEEPS_DIR


def _record_path(store: RunStore, sweep_id: str) -> Path:
    if not is_sweep_id(sweep_id):
        raise SweepNotFound(f"{sweep_id!r} is not a sweep id (they look like sw-20250101-120000-a1b2c3)")
    return _sweeps_dir(store) / f"{sweep_id}.json"


class SweepNotFound(DPExplorerError, LookupError):
    """No sweep with the given id is stored in this runs directory."""


def _write_record(store: RunStore, sweep: Sweep) -> None:
    """Write the record atomically (``dpcore.atomic``): a crash never leaves half a record."""
    atomic_write_text(_record_path(store, sweep.id), json.dumps(sweep.to_dict(), indent=2, sort_keys=True))


def save_sweep(store: RunStore, spec: SweepSpec, *, name: str | None = None,
               estimate_s: float | None = None) -> Sweep:
    """Validate ``spec``, record a new sweep in ``store`` (with the ``estimate_s`` seconds shown) and return it
    (nothing is queued)."""
    spec = spec.validate()
    sweep = Sweep(id=new_sweep_id(), name=name or spec.describe(), spec=spec, created=utc_now(),
                  estimate_s=None if estimate_s is None else round(float(estimate_s), 3))
    with _record_lock:
        _write_record(store, sweep)
    return sweep


def load_sweep(store: RunStore, sweep_id: str) -> Sweep:
    """The stored sweep; SweepNotFound for an unknown id, DPExplorerError for an unreadable record."""
    path = _record_path(store, sweep_id)
    if not path.is_file():
        raise SweepNotFound(f"no sweep {sweep_id!r} in {store.root}; list the stored sweeps with list_sweeps()")
    try:
        return Sweep.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError) as err:
        raise DPExplorerError(f"could not read sweep record {path}: {err}") from err


def sweep_exists(store: RunStore, sweep_id: str) -> bool:
    """Whether a sweep with this id is stored."""
    return is_sweep_id(sweep_id) and _record_path(store, sweep_id).is_file()


def _update_record(store: RunStore, sweep_id: str, **changes: Any) -> Sweep:
    with _record_lock:
        sweep = load_sweep(store, sweep_id)
        for key, value in changes.items():
            setattr(sweep, key, value)
        _write_record(store, sweep)
    return sweep


def list_sweeps(store: RunStore) -> list[Sweep]:
    """Every readable stored sweep, newest first (unreadable records are skipped with a log line)."""
    folder = _sweeps_dir(store)
    sweeps = []
    for path in sorted(folder.glob("sw-*.json"), reverse=True) if folder.is_dir() else []:
        try:
            sweeps.append(load_sweep(store, path.stem))
        except DPExplorerError as err:
            log.warning("skipping sweep record %s: %s", path, err)
    return sweeps


# ---------------------------------------------------------------------- member state
@dataclass(frozen=True)
class MemberState:
    """One cell of a sweep and where it stands: ``state`` is its newest run's status or 'missing'."""

    key: str
    config: TrainConfig
    state: str
    run: RunRecord | None
    attempts: int

    @property
    def run_id(self) -> str | None:
        """Id of the newest run of this cell, or None."""
        return self.run.id if self.run is not None else None


def member_states(store: RunStore, sweep: Sweep | str) -> list[MemberState]:
    """Every cell of the sweep, in grid order, with its newest run (matched by ``cell_key``).

    A cell that has a done run counts as done even when a later attempt exists.
    """
    sweep = load_sweep(store, sweep) if isinstance(sweep, str) else sweep
    by_key: dict[str, list[RunRecord]] = {}
    for record in store.records(group=sweep.id):  # newest first
        by_key.setdefault(cell_key(record.config), []).append(record)
    states = []
    for member in expand(sweep.spec):
        runs = by_key.get(member.key, [])
        done = next((r for r in runs if r.status == DONE), None)
        newest = done or (runs[0] if runs else None)
        states.append(MemberState(member.key, member.config, newest.status if newest else MISSING, newest,
                                  len(runs)))
    return states


def _needs_run(member: MemberState, sweep: Sweep, *, explicit: bool) -> bool:
    """Whether a cell should be queued again: never when done or active."""
    if member.state == MISSING or member.state == INTERRUPTED:
        return True
    if member.state not in (CANCELLED, FAILED):
        return False  # done, queued, running
    if member.state == FAILED and not sweep.retry_failed:
        return False
    if explicit:
        return True
    ended = (member.run.finished or "") if member.run is not None else ""
    return sweep.retry_after is not None and ended < sweep.retry_after


@dataclass(frozen=True)
class SweepProgress:
    """Counts of cells by state, and the sweep's overall status.

    ``status``: 'done' (every cell done), 'running' (some queued or running, or a done run's
    membership attack still being computed), 'cancelled',
    'incomplete' (nothing active, some cells not done: resume it) or 'failed' (nothing left to
    run but some cells failed).
    """

    total: int
    counts: dict[str, int]
    status: str

    @property
    def done(self) -> int:
        """Cells with a finished run."""
        return self.counts.get(DONE, 0)

    @property
    def fraction(self) -> float:
        """Share of cells done, in [0, 1]."""
        return self.done / self.total if self.total else 1.0

    @property
    def active(self) -> int:
        """Cells queued or running now."""
        return self.counts.get("queued", 0) + self.counts.get("running", 0)


def _attack_pending(record: RunRecord) -> bool:
    """Whether a stored run's membership attack is still being computed by a live process."""
    if StoredRun.from_record(record).mia_status != "pending" or record.pid is None:
        return False
    return record.pid == os.getpid() or process_token(record.pid) is not None


def sweep_progress(store: RunStore, sweep: Sweep | str, *, states: list[MemberState] | None = None) -> SweepProgress:
    """Where the sweep stands (see ``SweepProgress``)."""
    sweep = load_sweep(store, sweep) if isinstance(sweep, str) else sweep
    states = member_states(store, sweep) if states is None else states
    counts = {state: 0 for state in MEMBER_STATES}
    for member in states:
        counts[member.state] = counts.get(member.state, 0) + 1
    total = len(states)
    # a done run's membership attack runs after it is stored: still busy until that is recorded too
    attacking = any(m.state == DONE and _attack_pending(m.run) for m in states)
    if counts["queued"] or counts["running"] or attacking:
        status = "running"
    elif counts[DONE] == total:
        status = "done"
    elif sweep.cancelled:
        status = "cancelled"
    elif counts[MISSING] or counts[INTERRUPTED] or counts[CANCELLED]:
        status = "incomplete"
    else:
        status = "failed"
    return SweepProgress(total=total, counts=counts, status=status)


# ---------------------------------------------------------------------- submission
def _submit_lock(sweep_id: str) -> threading.Lock:
    with _record_lock:
        return _submit_locks.setdefault(sweep_id, threading.Lock())


def member_runner(run_id: str, store: RunStore, should_stop: Callable[[], bool]) -> Any:
    """The job body of a sweep member (runs in a worker process): ``train_member``."""
    return train_member(store, run_id, should_stop=should_stop)


def _after_member(queue: JobQueue, sweep_id: str, run_id: str, status: str) -> None:
    """A member's job ended (``on_done``, in the server process): queue the sweep's next members unless cancelled."""
    if status == CANCELLED:
        return
    try:
        top_up(queue, sweep_id, finishing=run_id)
    except DPExplorerError as err:  # queue closed or full, sweep deleted: resume picks it up
        log.info("sweep %s: not queueing more members now: %s", sweep_id, err)
    except Exception:  # never let bookkeeping hide the run's own outcome
        log.exception("sweep %s: could not queue more members", sweep_id)


def train_member(store: RunStore, run_id: str, *, should_stop: Callable[[], bool] | None = None) -> Any:
    """Train the stored run ``run_id``, store its result, attack it and record the attack's bound.

    ``dpcore.jobs.training.train_stored_run`` like every training job (``mia_auc``,
    ``mia_tpr_at_1pct_fpr``, ``roc.json``, ``checkpoint.pt`` at every epoch end so an interrupted member
    can be continued) plus ``mia_epsilon_lower``: the empirical
    epsilon lower bound of the loss-threshold attack (nats, at the run's delta, 95 % confidence) for
    the bounds chart. Returns the RunResult. Tests and scripts call it directly to fill a store
    without the job queue. ``summary['job_ended']`` (UTC ISO) is when all of that was done: with the record's
    ``started`` it gives the member's whole wall time, which ``speed_history.recent_costs`` reads.
    """
    result = train_stored_run(store, run_id, should_stop=should_stop, checkpoint=True, lower_bound=True)
    store.update_summary(run_id, job_ended=utc_now())
    return result


def _submit(queue: JobQueue, sweep: Sweep, members: Sequence[MemberState], limit: int | None) -> list[str]:
    submitted: list[str] = []
    on_done = functools.partial(_after_member, queue, sweep.id)
    for member in members:
        if limit is not None and len(submitted) >= limit:
            break
        try:
            submitted.append(queue.submit(member.config, group=sweep.id, runner=member_runner, on_done=on_done))
        except QueueFull:
            break  # the rest are queued when members finish, or on resume
    return submitted


def top_up(queue: JobQueue, sweep: Sweep | str, *, window: int = SWEEP_WINDOW, finishing: str | None = None,
           explicit: bool = False) -> list[str]:
    """Queue the sweep's cells that need a run until ``window`` of them are waiting or running.

    ``finishing`` is a member whose job is ending (not counted as active). ``explicit`` (a
    resume) also re-queues cancelled runs. Cells that are done, queued or running are never
    queued again; a cancelled sweep queues nothing. Returns the new run ids.
    """
    store = queue.store
    sweep_id = sweep if isinstance(sweep, str) else sweep.id
    with _submit_lock(sweep_id):
        sweep = load_sweep(store, sweep_id)
        if sweep.cancelled:
            return []
        states = member_states(store, sweep)
        active = sum(1 for m in states if m.state in ACTIVE_STATUSES and m.run_id != finishing)
        wanted = [m for m in states if _needs_run(m, sweep, explicit=explicit)]
        room = None if window is None else max(0, window - active)
        return _submit(queue, sweep, wanted, room)


def submit_sweep(queue: JobQueue, spec: SweepSpec, *, name: str | None = None,
                 window: int | None = SWEEP_WINDOW, estimate_s: float | None = None) -> Sweep:
    """Record a new sweep in ``queue.store`` and queue its first ``window`` members (None: all); return it.

    Members queue the next ones as they finish. ``estimate_s``: the estimate shown (``estimate``), kept for the
    sweep's ETA. ConfigError for a bad spec (nothing is recorded).
    """
    sweep = save_sweep(queue.store, spec, name=name, estimate_s=estimate_s)
    top_up(queue, sweep, window=window)
    return sweep


def resume_sweep(queue: JobQueue, sweep_id: str, *, retry_failed: bool = False,
                 window: int | None = SWEEP_WINDOW) -> list[str]:
    """Queue again the cells that are not done: missing, interrupted (app restarted) or cancelled.

    Done, queued and running cells are left alone, so nothing runs twice. ``retry_failed``
    also re-runs failed cells. Clears a cancel of the whole sweep. Returns the new run ids
    (the rest follow as members finish).
    """
    queue.store.recover()  # runs of a process that died since the store was opened become 'interrupted'
    _update_record(queue.store, sweep_id, cancelled=False, retry_after=utc_now(), retry_failed=retry_failed)
    return top_up(queue, sweep_id, window=window, explicit=True)


def resume_after_restart(queue: JobQueue, *, window: int | None = SWEEP_WINDOW) -> dict[str, list[str]]:
    """Continue the sweeps a stopped process left unfinished; return ``{sweep id: new run ids}``.

    The app calls this once when it starts. A sweep is continued when it was not cancelled,
    none of its cells is queued or running (in this or another live process), and some cell
    was interrupted by the stop or never queued. Only those cells run again, as in
    ``top_up``: a run the user cancelled or one that failed stays as it is (``resume_sweep``
    re-runs those on request), and nothing done runs twice.
    """
    store = queue.store
    store.recover()  # runs owned by a process that is gone become 'interrupted'
    resumed: dict[str, list[str]] = {}
    for sweep in list_sweeps(store):
        if sweep.cancelled:
            continue
        states = member_states(store, sweep)
        if any(m.state in ACTIVE_STATUSES for m in states):
            continue
        if not any(m.state in (MISSING, INTERRUPTED) for m in states):
            continue
        new_runs = top_up(queue, sweep, window=window)
        if new_runs:
            log.info("sweep %s: continued after a restart (%d run(s) queued)", sweep.id, len(new_runs))
            resumed[sweep.id] = new_runs
    return resumed


def cancel_sweep(queue: JobQueue, sweep_id: str) -> int:
    """Stop the sweep: no more members are queued, queued ones are dropped, running ones asked to stop.

    Returns how many runs were cancelled or asked to stop. Finished runs are kept.
    """
    with _submit_lock(sweep_id):
        _update_record(queue.store, sweep_id, cancelled=True)
        active = queue.store.records(group=sweep_id, status=ACTIVE_STATUSES)
        for record in active:
            with contextlib.suppress(DPExplorerError):
                queue.cancel(record.id)
    return len(active)


# ---------------------------------------------------------------------- estimates
@dataclass(frozen=True)
class SweepEstimate:
    """Rough duration of a sweep: ``seconds`` in total (members running ``parallel`` at a time), and what it is based
    on."""

    n_runs: int
    steps_per_run: int | None
    seconds: float | None
    basis: str
    parallel: int = 1


def _n_members(dataset: str) -> int | None:
    spec = data.DATASETS.get(dataset)
    if spec is None:
        return None
    if spec.n_train:
        return int(spec.n_train)
    if spec.n_examples:
        return round(spec.n_examples * (1 - data.NON_MEMBER_FRACTION))
    return None


def estimate(spec: SweepSpec, *, store: RunStore | None = None, speeds: Mapping[bool, Speed] | None = None,
             calibrate: bool = True, parallel: int = 1, now: float | None = None) -> SweepEstimate:
    """How long the sweep should take (s) on this machine, from what recent runs here really took.

    A member (private, or the baseline) costs the measured whole wall time of the recent comparable finished runs
    in ``store`` (``speed_history.recent_costs``: same dataset, model, batch size and privacy, finished within
    ``RECENT_S`` of ``now``; training, membership attack, writing and the load, in the worker processes), scaled to
    the member's steps (``speed_history.member_seconds``). When the only such run is a worker's first (cold) job,
    its time per step after its first step (its set-up, slowed by one-off warm-ups, left out) plus the calibration's
    set-up (``Speed.setup_s``; none for the fallbacks). Without such runs: ``dpcore.engine.speed.run_seconds`` of
    ``speeds`` (private True / baseline False; tests, or a caller that measured already), else of a calibration (with
    ``calibrate``: a few steps of the sweep's private and baseline configs, once per process, with the threads a
    worker uses), else the median ms per step of finished runs of the dataset and model in ``store``, else a per-step
    guess by input size (``basis`` says which). Steps per run = epochs x batches per epoch. ``parallel``: members
    running at once (the queue's workers); the total is divided by it, up to SWEEP_WINDOW and the members there are.
    ConfigError for a bad spec.
    """
    spec = spec.normalized()
    members = expand(spec)
    private_runs = len(spec.epsilons) * len(spec.max_grad_norms) * len(spec.seeds)
    runs = {True: private_runs, False: spec.n_runs - private_runs}
    base = spec.base.resolve()
    history = {private: [] if store is None or not count else recent_costs(
        store, dataset=base.dataset, model=base.model, batch_size=int(base.batch_size), private=private, now=now)
        for private, count in runs.items()}
    found = dict(speeds or {})
    n = _n_members(base.dataset)
    warm = {private: any(not c.cold for c in costs) for private, costs in history.items()}
    if calibrate and not found and (n is None or not all(warm[p] for p, count in runs.items() if count)):
        configs = {m.config.private: m.config.resolve() for m in reversed(members)}
        for private, cfg in configs.items():
            measured = speed_lib.calibrate(cfg)
            if measured is not None:
                found[private], n = measured
    if n is None:
        return SweepEstimate(spec.n_runs, None, None, "unknown: the dataset size is not known before loading")
    steps = speed_lib.expected_steps(n_examples=n, batch_size=int(base.batch_size), epochs=int(base.epochs))
    basis = found[True].basis if True in found else found[False].basis if False in found else ""
    if True not in found:
        found[True], basis = _stored_or_guessed_speed(store, base, n)
    if False not in found:
        found[False] = Speed(ms_per_step=found[True].ms_per_step / 3, setup_s=found[True].setup_s / 3,
                             eval_s=found[True].eval_s, basis=found[True].basis)
    seconds = 0.0
    for private, count in runs.items():
        setup_s = found[private].setup_s if found[private].basis not in _UNCALIBRATED else 0.0  # a cold run's set-up
        measured = member_seconds(history[private], steps=steps, setup_s=setup_s)
        calibrated = speed_lib.run_seconds(found[private], steps=steps, epochs=int(base.epochs))
        seconds += count * (calibrated if measured is None else measured)
    kind = True if history[True] or private_runs else False
    if history[kind]:
        basis = (f"from the whole wall time of {len(history[kind])} recent run(s) of {base.dataset} {base.model} here: "
                 "training, membership attack and writing, at this machine's load" if warm[kind] else
                 f"from a worker's first run of {base.dataset} here (its steps after the first, without its one-off "
                 f"warm-ups), and a member's set-up {basis}")
    parallel = max(1, min(int(parallel), SWEEP_WINDOW, spec.n_runs))  # the sweep never has more members queued
    return SweepEstimate(spec.n_runs, steps, seconds / parallel, basis, parallel)


_UNCALIBRATED = ("stored runs", "guess")  # ``Speed.basis`` of the fallbacks: no set-up added to a cold run's cost


def _stored_or_guessed_speed(store: RunStore | None, base: TrainConfig, n: int) -> tuple[Speed, str]:
    """A private run's speed when it cannot be measured: finished runs of the dataset and model (their ms per
    step includes set-up and evaluation), else FALLBACK_MS_BASE + FALLBACK_MS_PER_VALUE x batch x input values."""
    measured: list[float] = []
    if store is not None:
        for record in store.records(kind="train", status=DONE):
            run = StoredRun.from_record(record)
            if run.dataset == base.dataset and run.model == base.model and run.private and run.ms_per_step > 0:
                measured.append(run.ms_per_step)
    if measured:
        ms = statistics.median(measured)
        return (Speed(ms_per_step=ms, setup_s=PER_RUN_OVERHEAD_S / 4, basis="stored runs"),
                f"from {len(measured)} finished private run(s) of {base.dataset} {base.model} here")
    shape = getattr(data.DATASETS.get(base.dataset), "input_shape", None) or (100,)
    ms = FALLBACK_MS_BASE + FALLBACK_MS_PER_VALUE * min(int(base.batch_size), n) * math.prod(shape)
    return (Speed(ms_per_step=ms, setup_s=PER_RUN_OVERHEAD_S, basis="guess"),
            f"a rough CPU guess ({ms:.0f} ms per step); {base.dataset} could not be timed here yet")


# ---------------------------------------------------------------------- the sweep's runs
def sweep_runs(store: RunStore, sweep: Sweep | str) -> pd.DataFrame:
    """``store.list_runs`` of the sweep's runs (every attempt), newest first."""
    sweep_id = sweep if isinstance(sweep, str) else sweep.id
    return store.list_runs(group=sweep_id)




__all__ = [
    "DEFAULT_EPSILONS",
    "DEFAULT_VALIDATION_FRACTION",
    "LARGE_SWEEP_RUNS",
    "MAX_SWEEP_RUNS",
    "MISSING",
    "SWEEP_WINDOW",
    "MemberState",
    "Sweep",
    "SweepEstimate",
    "SweepMember",
    "SweepNotFound",
    "SweepProgress",
    "SweepSpec",
    "cancel_sweep",
    "cell_key",
    "estimate",
    "expand",
    "is_sweep_id",
    "list_sweeps",
    "load_sweep",
    "member_states",
    "new_sweep_id",
    "resume_after_restart",
    "resume_sweep",
    "save_sweep",
    "submit_sweep",
    "sweep_exists",
    "sweep_progress",
    "sweep_runs",
    "top_up",
    "train_member",
]
