"""Sweeps: a grid of training runs (target epsilon x clipping bound x seed) and the tradeoff data built from them.

A ``SweepSpec`` expands into one ``TrainConfig`` per grid cell (plus one non-private baseline
per seed). ``submit_sweep`` records the sweep next to the run store
(``<runs dir>/sweeps/<sweep id>.json``) and queues its members as ordinary training runs whose
``group`` is the sweep id, a few at a time so other people's jobs are not stuck behind it;
each member that finishes queues the next ones. Nothing about a sweep lives only in memory:
after a restart ``resume_sweep`` queues exactly the cells that have no finished run, and a
cell that already has a done (or queued, or running) run is never run again.

``run_points``, ``frontier``, ``heatmap_data`` and ``bounds_data`` turn finished runs into the
DataFrames the tradeoff charts in ``dpcore.views.plots`` draw.

>>> spec = SweepSpec(base=TrainConfig(dataset="synthetic", epochs=1), epsilons=(1.0, 4.0),
...                  max_grad_norms=(0.5, 1.0), seeds=(0, 1))
>>> len(expand(spec)), spec.n_runs
(10, 10)
>>> sorted({m.key for m in expand(spec)})[:3]
['baseline|seed=0', 'baseline|seed=1', 'eps=1|C=0.5|seed=0']
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dpcore.config import TrainConfig
from dpcore.errors import ConfigError, DPExplorerError
from dpcore.privacy.caveats import row_status
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

if TYPE_CHECKING:
    import pandas as pd

    from dpcore.jobs.queue import JobQueue

log = logging.getLogger(__name__)

SWEEPS_DIR = "sweeps"
SWEEP_RECORD_VERSION = 1
DEFAULT_EPSILONS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
DEFAULT_MAX_GRAD_NORMS: tuple[float, ...] = (1.0,)
#: Share of the members every run of a new sweep (baseline included) holds out as its validation set:
#: the frontier chooses C on it, so no choice looks at the non-members (test set, attack negatives).
DEFAULT_VALIDATION_FRACTION = 0.1
#: Members of one sweep waiting in the job queue at a time; finished members queue the next ones.
SWEEP_WINDOW = 4
#: Sweeps this large get a warning in the dashboard; larger than MAX_SWEEP_RUNS is refused.
LARGE_SWEEP_RUNS = 30
MAX_SWEEP_RUNS = 500
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


# ---------------------------------------------------------------------- spec and expansion
def _floats(name: str, values: Iterable[Any], *, allow_empty: bool = False) -> tuple[float, ...]:
    try:
        items = [float(v) for v in values]
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{name} must be numbers, got {values!r}") from err
    if not items and not allow_empty:
        raise ConfigError(f"{name} needs at least one value; e.g. {name}=(1.0,)")
    for value in items:
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"every value in {name} must be a finite number > 0, got {value!r}")
    return tuple(sorted(set(items)))


def _ints(name: str, values: Iterable[Any]) -> tuple[int, ...]:
    items = list(values)
    if not items:
        raise ConfigError(f"{name} needs at least one value; e.g. {name}=(0,)")
    for value in items:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
            raise ConfigError(f"every value in {name} must be a whole number in [0, 2^32), got {value!r}")
    return tuple(sorted(set(items)))


@dataclass(frozen=True)
class SweepSpec:
    """A grid of runs on one dataset and model.

    ``base`` holds every knob the members share (dataset, model, epochs, batch size, lr,
    delta, accountant, ...); its ``target_epsilon``, ``max_grad_norm`` and ``seed`` are
    replaced by the grid values. ``epsilons`` are target epsilons (at ``base.target_delta``),
    ``max_grad_norms`` clipping bounds C, ``seeds`` training seeds (several give error bars).
    ``include_baseline`` adds one non-private run per seed (clipping does not apply to it).
    ``validation_fraction`` replaces ``base.validation_fraction`` for every member and the baseline
    alike: the share of members held out of training to choose on (see ``frontier``). A stored
    sweep without it (made before validation sets) reads as 0: its runs have none.
    """

    base: TrainConfig = field(default_factory=lambda: TrainConfig(dataset="synthetic"))
    epsilons: tuple[float, ...] = DEFAULT_EPSILONS
    max_grad_norms: tuple[float, ...] = DEFAULT_MAX_GRAD_NORMS
    seeds: tuple[int, ...] = (0,)
    include_baseline: bool = True
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION

    def normalized(self) -> SweepSpec:
        """A copy with sorted, de-duplicated grids; ConfigError for empty grids or bad values."""
        if not isinstance(self.base, TrainConfig):
            raise ConfigError(f"base must be a TrainConfig, got {type(self.base).__name__}")
        if self.base.noise_multiplier is not None:
            raise ConfigError(
                f"a sweep calibrates the noise to each target epsilon; remove noise_multiplier "
                f"({self.base.noise_multiplier}) from the base config"
            )
        base = self.base.replace(private=True, target_epsilon=None, noise_multiplier=None, seed=0,
                                 validation_fraction=self.validation_fraction)
        return SweepSpec(base=base, epsilons=_floats("epsilons", self.epsilons, allow_empty=True),
                         max_grad_norms=_floats("max_grad_norms", self.max_grad_norms),
                         seeds=_ints("seeds", self.seeds), include_baseline=bool(self.include_baseline),
                         validation_fraction=self.validation_fraction)

    @property
    def n_runs(self) -> int:
        """How many runs the grid holds (baseline runs included)."""
        spec = self.normalized()
        private = len(spec.epsilons) * len(spec.max_grad_norms) * len(spec.seeds)
        return private + (len(spec.seeds) if spec.include_baseline else 0)

    def validate(self) -> SweepSpec:
        """The normalized spec after checking every member config; ConfigError on the first bad one."""
        spec = self.normalized()
        if not spec.epsilons and not spec.include_baseline:
            raise ConfigError("the sweep has no runs: give at least one epsilon or include the baseline")
        if spec.n_runs > MAX_SWEEP_RUNS:
            raise ConfigError(
                f"the sweep has {spec.n_runs} runs, more than the {MAX_SWEEP_RUNS} allowed; "
                "use fewer epsilons, clipping bounds or seeds"
            )
        for member in expand(spec):
            member.config.validate()
        return spec

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (``base`` as ``TrainConfig.to_dict()``)."""
        return {"base": self.base.to_dict(), "epsilons": list(self.epsilons),
                "max_grad_norms": list(self.max_grad_norms), "seeds": list(self.seeds),
                "include_baseline": self.include_baseline, "validation_fraction": self.validation_fraction}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SweepSpec:
        """Inverse of ``to_dict``; ConfigError for unknown keys. No ``validation_fraction``: an old record, 0."""
        known = {"base", "epsilons", "max_grad_norms", "seeds", "include_baseline", "validation_fraction"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown sweep field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        base = values.get("base", {})
        return cls(base=base if isinstance(base, TrainConfig) else TrainConfig.from_dict(dict(base)),
                   epsilons=tuple(values.get("epsilons", DEFAULT_EPSILONS)),
                   max_grad_norms=tuple(values.get("max_grad_norms", DEFAULT_MAX_GRAD_NORMS)),
                   seeds=tuple(values.get("seeds", (0,))), include_baseline=values.get("include_baseline", True),
                   validation_fraction=values.get("validation_fraction", 0.0))

    def describe(self) -> str:
        """One line, e.g. 'synthetic mlp: ε 0.5, 1, 2 x C 1 x 2 seeds + no-DP baseline (8 runs)'."""
        spec = self.normalized()
        base = spec.base.resolve()
        eps = ", ".join(f"{e:g}" for e in spec.epsilons) or "-"
        clips = ", ".join(f"{c:g}" for c in spec.max_grad_norms)
        seeds = f"{len(spec.seeds)} seed{'s' if len(spec.seeds) != 1 else ''}"
        baseline = " + no-DP baseline" if spec.include_baseline else ""
        return f"{base.dataset} {base.model}: ε {eps} x C {clips} x {seeds}{baseline} ({spec.n_runs} runs)"


@dataclass(frozen=True)
class SweepMember:
    """One grid cell: its ``key`` (see ``cell_key``) and the config that trains it."""

    key: str
    config: TrainConfig


def cell_key(config: TrainConfig | dict[str, Any]) -> str:
    """The grid cell a config belongs to: 'eps=1|C=0.5|seed=0', or 'baseline|seed=0' for no DP.

    Computed from the config alone, so a stored run is matched to its cell without
    bookkeeping that could go stale.
    """
    values = config.to_dict() if isinstance(config, TrainConfig) else dict(config)
    seed = values.get("seed")
    if not values.get("private", True):
        return f"baseline|seed={seed}"
    eps = values.get("target_epsilon")
    clip = values.get("max_grad_norm")
    return f"eps={_num(eps)}|C={_num(clip)}|seed={seed}"


def _num(value: Any) -> str:
    return "none" if value is None else f"{float(value):g}"


def expand(spec: SweepSpec) -> list[SweepMember]:
    """One member per (epsilon, max_grad_norm, seed), then one baseline per seed; in that order."""
    spec = spec.normalized()
    members = []
    for eps in spec.epsilons:
        for clip in spec.max_grad_norms:
            for seed in spec.seeds:
                cfg = spec.base.replace(private=True, target_epsilon=eps, max_grad_norm=clip, seed=seed)
                members.append(SweepMember(cell_key(cfg), cfg))
    if spec.include_baseline:
        for seed in spec.seeds:
            cfg = spec.base.replace(private=False, target_epsilon=None, epsilon_limit=None, seed=seed)
            members.append(SweepMember(cell_key(cfg), cfg))
    return members


# ---------------------------------------------------------------------- the sweep record
@dataclass
class Sweep:
    """A stored sweep: its id (also the ``group`` of its runs), a name, the spec and its bookkeeping.

    ``cancelled`` stops finished members from queueing more. ``retry_after`` (UTC ISO time of
    the last explicit resume) lets cancelled runs that ended before it be queued again;
    ``retry_failed`` does the same for failed runs.
    """

    id: str
    name: str
    spec: SweepSpec
    created: str
    cancelled: bool = False
    retry_after: str | None = None
    retry_failed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what the record file holds)."""
        return {"version": SWEEP_RECORD_VERSION, "id": self.id, "name": self.name, "spec": self.spec.to_dict(),
                "created": self.created, "cancelled": self.cancelled, "retry_after": self.retry_after,
                "retry_failed": self.retry_failed}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Sweep:
        """Inverse of ``to_dict``."""
        return cls(id=values["id"], name=values.get("name") or values["id"],
                   spec=SweepSpec.from_dict(values["spec"]), created=values.get("created", ""),
                   cancelled=bool(values.get("cancelled", False)), retry_after=values.get("retry_after"),
                   retry_failed=bool(values.get("retry_failed", False)))


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
    """Write the record atomically (scratch file + rename): a crash never leaves half a record."""
    path = _record_path(store, sweep.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(3)}.partial")
    partial.write_text(json.dumps(sweep.to_dict(), indent=2, sort_keys=True))
    os.replace(partial, path)


def save_sweep(store: RunStore, spec: SweepSpec, *, name: str | None = None) -> Sweep:
    """Validate ``spec``, record a new sweep in ``store`` and return it (nothing is queued)."""
    spec = spec.validate()
    sweep = Sweep(id=new_sweep_id(), name=name or spec.describe(), spec=spec, created=utc_now())
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


def delete_sweep(store: RunStore, sweep_id: str, *, delete_runs: bool = False) -> None:
    """Forget the sweep; its runs stay in the store unless ``delete_runs`` (active runs raise RunActive)."""
    path = _record_path(store, sweep_id)
    if not path.is_file():
        raise SweepNotFound(f"no sweep {sweep_id!r} in {store.root}")
    if delete_runs:
        for record in store.records(group=sweep_id):
            store.delete(record.id)
    path.unlink()


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
    if record.summary.get("mia_status") != "pending" or record.pid is None:
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


def _member_runner(queue: JobQueue, sweep_id: str) -> Callable[..., Any]:
    """The job body of a sweep member: train, attack, then queue the sweep's next members."""
    def run(run_id: str, store: RunStore, should_stop: Callable[[], bool]) -> Any:
        try:
            return train_member(store, run_id, should_stop=should_stop)
        finally:
            if not should_stop():
                try:
                    top_up(queue, sweep_id, finishing=run_id)
                except DPExplorerError as err:  # queue closed or full, sweep deleted: resume picks it up
                    log.info("sweep %s: not queueing more members now: %s", sweep_id, err)
                except Exception:  # never let bookkeeping hide the run's own outcome
                    log.exception("sweep %s: could not queue more members", sweep_id)
    return run


def train_member(store: RunStore, run_id: str, *, should_stop: Callable[[], bool] | None = None) -> Any:
    """Train the stored run ``run_id``, store its result, attack it and record the attack's bound.

    Like the default training job (``dpcore.jobs.training.record_result``: ``mia_auc``,
    ``mia_tpr_at_1pct_fpr``, ``roc.json``) plus ``mia_epsilon_lower``: the empirical epsilon
    lower bound of the loss-threshold attack (nats, at the run's delta, 95 % confidence) for the
    bounds chart. Returns the RunResult. Tests and scripts call it directly to fill a store
    without the job queue.
    """
    from dpcore.engine import training
    from dpcore.jobs import training as evaluation
    from dpcore.jobs.queue import ProgressWriter

    cfg = store.get(run_id).train_config()
    writer = ProgressWriter(store, run_id)
    result = training.train(cfg, on_step=writer.on_step, on_epoch=writer.on_epoch, should_stop=should_stop)
    writer.flush()
    attack = evaluation.record_result(store, run_id, result)
    if attack is not None and result.config.private:
        with contextlib.suppress(DPExplorerError):
            store.update_summary(run_id, **lower_bound_summary(attack, delta=result.config.target_delta))
    return result


def lower_bound_summary(attack: Any, *, delta: float, alpha: float = 0.05) -> dict[str, float | None]:
    """``{'mia_epsilon_lower': ...}``: the threshold-attack lower bound on epsilon (nats) from ``attack``'s scores.

    An indication from one model, not a proof (see ``dpcore.attacks.empirical_epsilon``).
    """
    from dpcore.attacks import empirical_epsilon

    bound = empirical_epsilon(attack.member_scores, attack.non_member_scores, delta=delta, alpha=alpha)
    value = float(bound.epsilon_lower)
    return {"mia_epsilon_lower": value if math.isfinite(value) else None}


def _submit(queue: JobQueue, sweep: Sweep, members: Sequence[MemberState], limit: int | None) -> list[str]:
    from dpcore.jobs.queue import QueueFull

    submitted: list[str] = []
    runner = _member_runner(queue, sweep.id)
    for member in members:
        if limit is not None and len(submitted) >= limit:
            break
        try:
            submitted.append(queue.submit(member.config, group=sweep.id, runner=runner))
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
                 window: int | None = SWEEP_WINDOW) -> Sweep:
    """Record a new sweep in ``queue.store`` and queue its first ``window`` members (None: all); return it.

    Members queue the next ones as they finish. ConfigError for a bad spec (nothing is recorded).
    """
    sweep = save_sweep(queue.store, spec, name=name)
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
    """Rough duration of a sweep: ``seconds`` in total (one job at a time), and what it is based on."""

    n_runs: int
    steps_per_run: int | None
    seconds: float | None
    basis: str


def _n_members(dataset: str) -> int | None:
    from dpcore.engine import data

    spec = data.DATASETS.get(dataset)
    if spec is None:
        return None
    if spec.n_train:
        return int(spec.n_train)
    if spec.n_examples:
        return round(spec.n_examples * (1 - data.NON_MEMBER_FRACTION))
    return None


def estimate(spec: SweepSpec, *, store: RunStore | None = None) -> SweepEstimate:
    """How long the sweep should take, from finished runs of the same dataset and model in ``store``.

    Steps per run = epochs x expected batches per epoch. Without such runs a per-step guess by
    dataset kind is used (and ``basis`` says so). ConfigError for a bad spec.
    """
    import statistics

    spec = spec.normalized()
    base = spec.base.resolve()
    n = _n_members(base.dataset)
    steps = None if n is None else int(base.epochs) * max(1, math.ceil(n / min(int(base.batch_size), n)))
    private_runs = len(spec.epsilons) * len(spec.max_grad_norms) * len(spec.seeds)
    baseline_runs = spec.n_runs - private_runs
    measured: dict[bool, list[float]] = {True: [], False: []}
    if store is not None:
        for record in store.records(kind="train", status=DONE):
            if record.config.get("dataset") != base.dataset or record.config.get("model") != base.model:
                continue
            ms = record.summary.get("ms_per_step")
            if isinstance(ms, (int, float)) and ms > 0:
                measured[bool(record.config.get("private", True))].append(float(ms))
    if steps is None:
        return SweepEstimate(spec.n_runs, None, None, "unknown: the dataset size is not known before loading")
    if measured[True]:
        private_ms = statistics.median(measured[True])
        basis = f"from {len(measured[True])} finished private run(s) of {base.dataset} {base.model} here"
    else:
        from dpcore.engine import data

        shape = getattr(data.DATASETS.get(base.dataset), "input_shape", None) or (100,)
        private_ms = FALLBACK_MS_BASE + FALLBACK_MS_PER_VALUE * min(int(base.batch_size), n) * math.prod(shape)
        basis = f"a rough CPU guess ({private_ms:.0f} ms per step); no finished runs of {base.dataset} here yet"
    baseline_ms = statistics.median(measured[False]) if measured[False] else private_ms / 5
    seconds = (steps * (private_runs * private_ms + baseline_runs * baseline_ms) / 1000.0
               + spec.n_runs * PER_RUN_OVERHEAD_S)
    return SweepEstimate(spec.n_runs, steps, seconds, basis)


# ---------------------------------------------------------------------- tradeoff data
POINT_COLUMNS = (
    "run_id", "label", "status", "is_baseline", "dataset", "model", "target_epsilon", "noise_multiplier",
    "epsilon", "target_delta", "max_grad_norm", "seed", "test_accuracy", "train_accuracy", "mia_auc",
    "mia_tpr_at_1pct_fpr", "final_clip_fraction", "empirical_epsilon_lower", "mia_epsilon_lower",
    "validation_accuracy", "epsilon_note", "epsilon_bound",
)


def sweep_runs(store: RunStore, sweep: Sweep | str) -> pd.DataFrame:
    """``store.list_runs`` of the sweep's runs (every attempt), newest first."""
    sweep_id = sweep if isinstance(sweep, str) else sweep.id
    return store.list_runs(group=sweep_id)


def run_points(runs: pd.DataFrame, *, only_done: bool = True) -> pd.DataFrame:
    """One row per finished run: the numbers the tradeoff charts need (POINT_COLUMNS).

    ``runs`` is a ``RunStore.list_runs`` frame. ``epsilon`` is the epsilon actually spent
    (inf for non-private runs), accuracies and attack rates are fractions in [0, 1]
    (``validation_accuracy`` NaN for runs without a validation set, e.g. stored before it existed),
    ``mia_auc`` 0.5 = chance. ``only_done`` drops runs that are not 'done'. Jobs that are not
    training runs (other ``kind``) are left out.
    """
    import numpy as np
    import pandas as pd

    if runs is None or runs.empty:
        return pd.DataFrame(columns=list(POINT_COLUMNS))
    frame = runs.copy()
    if only_done:
        frame = frame[frame["status"] == DONE]
    frame = frame[frame["kind"].fillna("train") == "train"] if "kind" in frame.columns else frame
    if frame.empty:
        return pd.DataFrame(columns=list(POINT_COLUMNS))
    private = frame["private"].map(_is_private)
    out = pd.DataFrame({
        "run_id": frame["id"].astype(str),
        "label": frame["name"].astype(str),
        "status": frame["status"],
        "is_baseline": ~private.astype(bool),
    }, index=frame.index)
    for column in POINT_COLUMNS:
        if column in out.columns:
            continue
        source = "final_epsilon" if column == "epsilon" else column
        if source in frame.columns:
            out[column] = frame[source]
        else:
            out[column] = np.nan
    numeric = [c for c in POINT_COLUMNS
               if c not in ("run_id", "label", "status", "is_baseline", "dataset", "model", "epsilon_note")]
    for column in numeric:
        out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    out.loc[out["is_baseline"], "epsilon"] = math.inf
    # Which epsilons are not a guarantee (GDP, no Poisson sampling, seeded noise) and their proven bound.
    statuses = [row_status(row) for row in frame.to_dict("records")]
    out["epsilon_note"] = [status.note(".2f") for status in statuses]
    out["epsilon_bound"] = [math.nan if status.bound is None else status.bound for status in statuses]
    return out.reset_index(drop=True)[list(POINT_COLUMNS)]


def _is_private(value: Any) -> bool:
    """A list_runs 'private' cell: missing means private (the TrainConfig default)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return bool(value)


def _privacy_group(row: Any) -> tuple[str, float]:
    """(label, sort value) of a run's privacy setting: 'ε 1' for a target, 'σ 1.1' for a fixed sigma."""
    if row["is_baseline"]:
        return "no DP", math.inf
    if math.isfinite(row["target_epsilon"]):
        return f"ε {row['target_epsilon']:g}", row["target_epsilon"]
    if math.isfinite(row["noise_multiplier"]):
        return f"σ {row['noise_multiplier']:g}", row["epsilon"]
    return "ε ?", row["epsilon"]


def _aggregate(points: pd.DataFrame, by: list[str], metrics: Sequence[str]) -> pd.DataFrame:
    grouped = points.groupby(by, sort=True, dropna=False)
    out = grouped.agg(n_runs=("run_id", "size"), run_ids=("run_id", list), epsilon=("epsilon", "mean"))
    for metric in metrics:
        out[metric] = grouped[metric].mean()
        out[f"{metric}_std"] = grouped[metric].std(ddof=1)  # NaN with one seed: no error bar
    return out.reset_index()


FRONTIER_METRICS = ("test_accuracy", "mia_auc", "mia_tpr_at_1pct_fpr", "final_clip_fraction", "validation_accuracy")
#: How a frontier row's clipping bound was chosen (its ``chosen_on`` column).
CHOSEN_ON_VALIDATION = "validation"  # best mean validation accuracy: no choice saw the non-members
CHOSEN_ON_TEST = "test"  # old runs without a validation set: chosen on the non-members, flattering
CHOSEN_ON_NOTHING = "single"  # one bound (or a fixed one, or the baseline): nothing was chosen


def _choice_column(cells: pd.DataFrame, *, validation: str, test: str) -> tuple[pd.Series, str]:
    """(the score to pick the best of ``cells`` on, what it is): validation when every cell has it, else test."""
    if len(cells) < 2:
        return cells[validation].where(cells[validation].notna(), cells[test]), CHOSEN_ON_NOTHING
    if cells[validation].notna().all():
        return cells[validation], CHOSEN_ON_VALIDATION
    return cells[test], CHOSEN_ON_TEST


def frontier(points: pd.DataFrame, *, max_grad_norm: float | None = None) -> pd.DataFrame:
    """Privacy/utility frontier: one row per privacy setting (seeds averaged) plus one non-private row.

    Columns: label, target_epsilon, epsilon (mean spent; inf for the baseline), max_grad_norm,
    n_runs, run_ids, is_baseline, for each of FRONTIER_METRICS its mean and ``<metric>_std``
    (sample std over seeds; NaN with one seed), ``n_candidates`` (clipping bounds compared) and
    ``chosen_on``. With several clipping bounds per epsilon the bound with the best mean
    VALIDATION accuracy is kept (``chosen_on`` 'validation'); the row reports that bound's test
    accuracy, on non-members no choice has seen. Runs stored without a validation set fall back to
    test accuracy (``chosen_on`` 'test'; see ``frontier_note``). One bound, a bound fixed by
    ``max_grad_norm`` or the baseline: 'single'. Picking the best of k runs costs privacy that one
    run's epsilon does not include (``dpcore.views.explain.SELECTION_COST``). ``epsilon_note`` marks an
    epsilon that is not a guarantee (``dpcore.privacy.caveats``: GDP, no Poisson sampling, seeded noise; '' when
    it is one) and ``epsilon_bound`` is the mean proven bound (RDP for GDP runs). The frame feeds
    ``plots.privacy_utility_chart`` and ``plots.attack_vs_epsilon_chart``.
    """
    import pandas as pd

    columns = ["label", "target_epsilon", "epsilon", "max_grad_norm", "n_runs", "run_ids", "is_baseline",
               *[c for m in FRONTIER_METRICS for c in (m, f"{m}_std")], "n_candidates", "chosen_on",
               "epsilon_note", "epsilon_bound"]
    if points is None or points.empty:
        return pd.DataFrame(columns=columns)
    frame = points.copy()
    if "validation_accuracy" not in frame.columns:  # points built before validation sets existed
        frame["validation_accuracy"] = math.nan
    groups = frame.apply(_privacy_group, axis=1, result_type="expand")
    frame["label"], frame["_order"] = groups[0], groups[1]
    private = frame[~frame["is_baseline"]]
    if max_grad_norm is not None:
        private = private[(private["max_grad_norm"] - max_grad_norm).abs() < 1e-12]
    rows = []
    if not private.empty:
        cells = _aggregate(private.fillna({"max_grad_norm": -1.0}), ["label", "_order", "max_grad_norm"],
                           FRONTIER_METRICS)
        cells["max_grad_norm"] = cells["max_grad_norm"].where(cells["max_grad_norm"] >= 0)
        picked = []
        for _, group in cells.groupby("label", sort=False):
            score, chosen_on = _choice_column(group, validation="validation_accuracy", test="test_accuracy")
            ranked = group.assign(_score=score).sort_values(["_score", "max_grad_norm"], ascending=[False, True],
                                                            na_position="last")
            picked.append(ranked.head(1).assign(n_candidates=len(group), chosen_on=chosen_on))
        best = pd.concat(picked).drop(columns="_score").sort_values("_order")
        best["target_epsilon"] = best["label"].map(
            private.drop_duplicates("label").set_index("label")["target_epsilon"])
        best["is_baseline"] = False
        if "epsilon_note" in private.columns:  # ε that is not a guarantee: its note and the proven bound
            notes = private.groupby("label")["epsilon_note"].agg(
                lambda values: "; ".join(dict.fromkeys(v for v in values if isinstance(v, str) and v)))
            best["epsilon_note"] = best["label"].map(notes).fillna("")
            best["epsilon_bound"] = best["label"].map(private.groupby("label")["epsilon_bound"].mean())
        rows.append(best)
    baseline = frame[frame["is_baseline"]]
    if not baseline.empty:
        agg = _aggregate(baseline.assign(_all="no DP"), ["_all"], FRONTIER_METRICS).rename(columns={"_all": "label"})
        agg["label"] = "non-private baseline"
        agg["epsilon"] = math.inf
        agg["target_epsilon"] = math.nan
        agg["max_grad_norm"] = math.nan
        agg["is_baseline"] = True
        agg["n_candidates"] = 1
        agg["chosen_on"] = CHOSEN_ON_NOTHING
        agg["epsilon_note"] = ""
        rows.append(agg)
    if not rows:
        return pd.DataFrame(columns=columns)
    return pd.concat(rows, ignore_index=True).reindex(columns=columns)


def heatmap_data(points: pd.DataFrame, *, value: str = "test_accuracy") -> pd.DataFrame:
    """One row per (target_epsilon, max_grad_norm) cell of the private runs, seeds averaged.

    Columns: target_epsilon, max_grad_norm, value (mean of ``value`` over seeds), value_std,
    n_runs, run_id (the run closest to the mean, to open on click), is_best (the bound with the
    best mean validation accuracy for that epsilon, as ``frontier`` chooses; test accuracy for
    runs stored without a validation set). Runs without a target epsilon are left out.
    """
    import pandas as pd

    columns = ["target_epsilon", "max_grad_norm", "value", "value_std", "n_runs", "run_id", "is_best"]
    if points is None or points.empty:
        return pd.DataFrame(columns=columns)
    private = points[~points["is_baseline"] & points["target_epsilon"].notna() & points["max_grad_norm"].notna()]
    if private.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for (eps, clip), cell in private.groupby(["target_epsilon", "max_grad_norm"], sort=True):
        values = cell[value]
        mean = float(values.mean()) if values.notna().any() else math.nan
        closest = (values - mean).abs().idxmin() if values.notna().any() else cell.index[0]
        rows.append({"target_epsilon": eps, "max_grad_norm": clip, "value": mean,
                     "value_std": float(values.std(ddof=1)) if values.notna().sum() > 1 else math.nan,
                     "n_runs": len(cell), "run_id": cell.loc[closest, "run_id"],
                     "_test": float(cell["test_accuracy"].mean()),
                     "_validation": float(cell["validation_accuracy"].mean()) if "validation_accuracy" in cell
                     else math.nan})
    frame = pd.DataFrame(rows)
    frame["_accuracy"] = math.nan
    for _, group in frame.groupby("target_epsilon", sort=False):
        frame.loc[group.index, "_accuracy"] = _choice_column(group, validation="_validation", test="_test")[0]
    best = frame.sort_values(["_accuracy", "max_grad_norm"], ascending=[False, True], na_position="last")
    best = best.drop_duplicates("target_epsilon")
    frame["is_best"] = frame.index.isin(best.index) & frame["_accuracy"].notna()
    return frame[columns]


def frontier_note(front: pd.DataFrame) -> str | None:
    """A warning to show beside a frontier whose bounds were chosen on test accuracy, else None.

    That happens for runs stored before validation sets existed: the non-members (test set and the
    attack's negatives) then took part in the choice, so the chosen run's test accuracy is optimistic.
    """
    if front is None or front.empty or "chosen_on" not in front.columns:
        return None
    on_test = front[front["chosen_on"] == CHOSEN_ON_TEST]
    if on_test.empty:
        return None
    labels = ", ".join(str(label) for label in on_test["label"])
    return (f"These runs have no validation set (stored before it existed), so the best clipping bound for "
            f"{labels} was chosen on test accuracy, over the non-members: that accuracy is optimistic and the "
            "non-members took part in a choice. Run the sweep again to choose on a validation split.")


def bounds_data(points: pd.DataFrame) -> pd.DataFrame:
    """One row per private run with an empirical lower bound, for ``plots.epsilon_bounds_chart``.

    Columns: run_id, label, theoretical_epsilon (the accountant's epsilon spent; for a GDP run the
    proven RDP bound of its schedule, since GDP's is an approximation),
    empirical_lower_bound (the attack lab's ``empirical_epsilon_lower`` when stored, else the
    loss attack's ``mia_epsilon_lower``), source.
    """
    import pandas as pd

    columns = ["run_id", "label", "theoretical_epsilon", "empirical_lower_bound", "source"]
    if points is None or points.empty:
        return pd.DataFrame(columns=columns)
    private = points[~points["is_baseline"] & points["epsilon"].map(lambda v: math.isfinite(v))].copy()
    lab = private["empirical_epsilon_lower"]
    private["empirical_lower_bound"] = lab.where(lab.notna(), private["mia_epsilon_lower"])
    private["source"] = ["attack lab" if v == v else "loss attack" for v in lab]
    private = private[private["empirical_lower_bound"].notna()]
    private["label"] = [_short_label(row) for _, row in private.iterrows()]
    if "epsilon_bound" in private.columns:  # a GDP ε is no upper bound: compare with the proven (RDP) one
        private["epsilon"] = private["epsilon_bound"].where(private["epsilon_bound"].notna(), private["epsilon"])
    private = private.rename(columns={"epsilon": "theoretical_epsilon"})
    return private[columns].reset_index(drop=True)


def _short_label(row: Any) -> str:
    parts = []
    if row.get("target_epsilon") == row.get("target_epsilon"):
        parts.append(f"ε {row['target_epsilon']:g}")
    if row.get("max_grad_norm") == row.get("max_grad_norm"):
        parts.append(f"C {row['max_grad_norm']:g}")
    if row.get("seed") == row.get("seed"):
        parts.append(f"s{int(row['seed'])}")
    return " ".join(parts) or str(row.get("label", ""))


def runs_of(store: RunStore, *, dataset: str, model: str | None = None) -> pd.DataFrame:
    """``list_runs`` of every training run on ``dataset`` (and ``model``): the page's 'all runs' view."""
    frame = store.list_runs(kind="train")
    if frame.empty:
        return frame
    keep = frame["dataset"] == dataset
    if model:
        keep &= frame["model"] == model
    return frame[keep]


__all__ = [
    "DEFAULT_EPSILONS",
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
    "bounds_data",
    "cancel_sweep",
    "cell_key",
    "delete_sweep",
    "estimate",
    "expand",
    "frontier",
    "frontier_note",
    "heatmap_data",
    "is_sweep_id",
    "list_sweeps",
    "load_sweep",
    "lower_bound_summary",
    "member_states",
    "new_sweep_id",
    "resume_after_restart",
    "resume_sweep",
    "run_points",
    "runs_of",
    "save_sweep",
    "submit_sweep",
    "sweep_exists",
    "sweep_progress",
    "sweep_runs",
    "top_up",
    "train_member",
]
