"""The one training runner (runs, baselines, continuations, sweep members, the CLI) and its evaluation.

``run_training`` trains a config and attacks the result with the loss-threshold membership
attack every training run gets. With a store it is a training job: progress rows go to the
store as they come (``ProgressWriter``), the result is stored (``store.finish``) before the
attack, the ROC lands in ``roc.json`` in the run's artifacts and the attack's headline numbers
(``mia_auc``, ``mia_tpr_at_1pct_fpr``, ``mia_advantage``) in the run's summary (``record_result``).
``train_and_evaluate`` is the store-free call (for the CLI and scripts); the job queue's
``train_runner`` (plain runs, baselines, continuations) and ``sweep.train_member`` are thin calls too.
``find_baseline`` finds the non-private run a private run is compared against.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dpcore.attacks import AttackResult, empirical_epsilon, loss_threshold_attack, loss_threshold_attack_on_logits
from dpcore.config import TrainConfig
from dpcore.engine import ddp
from dpcore.engine.checkpoint import ResumeState
from dpcore.engine.result import RunResult
from dpcore.engine.training import train
from dpcore.errors import ConfigError, DPExplorerError
from dpcore.jobs import group_results
from dpcore.jsonable import json_number
from dpcore.store.artifacts import ROC_FILE, write_roc
from dpcore.store.heartbeat import Heartbeat
from dpcore.store.records import StoredRun
from dpcore.store.runs import ACTIVE_STATUSES, DONE, RunNotFound, RunRecord, RunStore, format_error

log = logging.getLogger(__name__)

MIA_FPR = 0.01  # the low false-positive rate at which the attack's TPR is reported
STEP_FLUSH_S = 0.5  # step rows are written at most this often (and at every epoch and at the end)

# ``summary['mia_status']``: 'pending' while the attack runs, then 'done', 'failed' or 'skipped'.
MIA_PENDING, MIA_DONE, MIA_FAILED, MIA_SKIPPED = "pending", "done", "failed", "skipped"

# Knobs that must match for a non-private run to count as the same training without DP.
BASELINE_KEYS = ("dataset", "model", "seed", "data_path", "label_column", "feature_columns")
BASELINE_PREFERRED_KEYS = ("epochs", "batch_size", "lr", "optimizer", "momentum", "validation_fraction")

StepCallback = Callable[[dict[str, Any]], None]


class ProgressWriter:
    """Trainer callbacks that write progress to the store.

    ``on_step`` buffers step rows and flushes them (with steps_done/total_steps) at most
    every ``flush_s`` seconds; ``on_epoch`` flushes and writes the epoch row at once;
    call ``flush()`` at the end. ``warm_ms_per_step`` is the run's time per step after its first (ms).
    """

    def __init__(self, store: RunStore, run_id: str, *, flush_s: float = STEP_FLUSH_S) -> None:
        self.store, self.run_id, self.flush_s = store, run_id, flush_s
        self._rows: list[dict[str, Any]] = []
        self._last_flush = float("-inf")
        self.steps_done = 0
        self.total_steps: int | None = None
        self._first_s: float | None = None  # elapsed_s at the end of the first step, then of the latest one
        self._last_s: float | None = None
        self._steps_timed = 0

    def on_step(self, row: Mapping[str, Any]) -> None:
        self._rows.append(dict(row))
        if row.get("elapsed_s") is not None:
            self._last_s = float(row["elapsed_s"])
            self._first_s = self._last_s if self._first_s is None else self._first_s
            self._steps_timed += 1
        self.steps_done = int(row.get("step") or self.steps_done + 1)
        if row.get("total_steps") is not None:
            self.total_steps = int(row["total_steps"])
        if time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    @property
    def warm_ms_per_step(self) -> float | None:
        """Time per step (ms) from the end of the run's first step to the end of its last: the steps, the per-epoch
        evaluation and checkpoints, without the set-up and the first step (where a worker's first job pays its one-off
        warm-ups: ``dpcore.jobs.speed_history``); None before two steps."""
        if self._first_s is None or self._last_s is None or self._steps_timed < 2:
            return None
        return round(1000.0 * (self._last_s - self._first_s) / (self._steps_timed - 1), 3)

    def on_epoch(self, row: Mapping[str, Any]) -> None:
        self.flush()
        self.store.append_epoch(self.run_id, row)

    def flush(self) -> None:
        """Write buffered step rows and the progress counters."""
        self._last_flush = time.monotonic()
        if self._rows:
            rows, self._rows = self._rows, []
            self.store.append_steps(self.run_id, rows)
        self.store.set_progress(self.run_id, self.steps_done, self.total_steps)


# ---------------------------------------------------------------------- the attack
def evaluate_membership(result: RunResult) -> AttackResult:
    """The loss-threshold attack on ``result.model`` with ``result.data``'s members and non-members.

    From the run end's eval pass (``result.final_logits``) when there is one that fits ``result.data``: the same
    AttackResult without another forward pass; else (no epoch row, an older caller's RunResult) by evaluating.
    """
    logits = result.final_logits
    if logits is not None and logits.fits(result.data):
        return loss_threshold_attack_on_logits(logits)
    return loss_threshold_attack(result.model, result.data)


def membership_summary(attack: AttackResult) -> dict[str, float | None]:
    """The summary fields of an attack: ``mia_auc`` (0.5 = chance), ``mia_tpr_at_1pct_fpr`` and
    ``mia_advantage`` (max TPR - FPR), all fractions in [0, 1]; None where not finite."""
    return {
        "mia_auc": json_number(attack.auc),
        "mia_tpr_at_1pct_fpr": json_number(attack.tpr_at_fpr(MIA_FPR)),
        "mia_advantage": json_number(attack.advantage),
    }


def lower_bound_summary(attack: AttackResult, *, delta: float, alpha: float = 0.05) -> dict[str, float | None]:
    """``{'mia_epsilon_lower': ...}``: the threshold-attack lower bound on epsilon (nats) from ``attack``'s scores.

    An indication from one model, not a proof (see ``dpcore.attacks.empirical_epsilon``).
    """
    bound = empirical_epsilon(attack.member_scores, attack.non_member_scores, delta=delta, alpha=alpha)
    return {"mia_epsilon_lower": json_number(bound.epsilon_lower)}


def roc_payload(attack: AttackResult) -> dict[str, Any]:
    """What ``roc.json`` holds: the down-sampled ROC (``fpr``, ``tpr`` lists) plus ``attack.to_dict()``."""
    return {**attack.to_dict(), **attack.roc_points()}


def save_roc(directory: str | Path, attack: AttackResult) -> Path:
    """Write ``roc_payload(attack)`` to ``directory/roc.json`` (atomically); return the path.

    Read it back with ``dpcore.store.artifacts.load_roc`` (or ``roc_curve``, ready to plot).
    """
    return write_roc(directory, roc_payload(attack))


# ---------------------------------------------------------------------- pipelines
def record_result(store: RunStore, run_id: str, result: RunResult, *,
                  timing: Mapping[str, Any] | None = None) -> AttackResult | None:
    """Store a training result and evaluate it: ``store.finish``, then the membership attack.

    The attack runs after the result is saved, so a failing attack never loses a trained run;
    while it runs the summary says ``mia_status='pending'``. On success ``roc.json`` lands in
    the run's artifacts and the summary gets ``mia_auc``, ``mia_tpr_at_1pct_fpr``,
    ``mia_advantage`` and ``mia_status='done'``; on failure ``mia_status='failed'`` and
    ``mia_error``. Runs that took no step are not attacked (``'skipped'``). The attack and the
    per-example outputs (``group_results.record_outputs``) reuse the trainer's last eval pass
    (``result.final_logits``): the model is evaluated once at the run's end. ``timing``: more summary
    fields written with the first update (``run_training``: ``warm_ms_per_step``). Returns the attack
    result, or None when there is none.
    """
    attack_it = result.steps > 0
    store.update_summary(run_id, mia_status=MIA_PENDING if attack_it else MIA_SKIPPED, **dict(timing or {}))
    store.finish(run_id, result)
    if not attack_it:
        return None
    try:
        attack = evaluate_membership(result)
        save_roc(store.artifacts_dir(run_id, create=True), attack)
    except RunNotFound:
        return None  # deleted meanwhile: nobody wants the numbers
    except Exception as exc:  # the attack is an extra: the trained run stays 'done'
        if not isinstance(exc, DPExplorerError):
            log.exception("run %s: membership attack failed", run_id)
        try:
            store.update_summary(run_id, mia_status=MIA_FAILED, mia_error=format_error(exc).splitlines()[0])
        except RunNotFound:
            pass
        return None
    try:
        store.update_summary(run_id, mia_status=MIA_DONE, **membership_summary(attack))
    except RunNotFound:
        return None
    group_results.record_outputs(store, run_id, model=result.model, data=result.data,  # "Results by class"
                                 logits=result.final_logits)  # the attack's pass again, not a third one
    return attack


def run_training(cfg: TrainConfig, *, store: RunStore | None = None, run_id: str | None = None,
                 should_stop: Callable[[], bool] | None = None, resume: ResumeState | None = None,
                 checkpoint: bool = False, lower_bound: bool = False, on_step: StepCallback | None = None,
                 on_epoch: StepCallback | None = None) -> tuple[RunResult, AttackResult | None]:
    """THE training runner: train ``cfg``, then the loss-threshold membership attack.

    Returns ``(RunResult, AttackResult or None)``; None when no step was taken (or, with a
    store, when the attack failed). ``resume`` (a parent's checkpoint) continues that run.
    Without ``store`` the step/epoch rows go to ``on_step``/``on_epoch`` and an attack error
    raises. With ``store`` and ``run_id`` it is a training job: the rows go to the store
    (``ProgressWriter``; ``on_step``/``on_epoch`` must be None), ``checkpoint`` writes
    ``checkpoint.pt`` into the run's artifacts at every epoch end, the result is stored and
    attacked by ``record_result`` (all under a ``Heartbeat``; the summary also gets the writer's
    ``warm_ms_per_step``), and ``lower_bound`` (private runs with an attack) adds
    ``mia_epsilon_lower`` (``lower_bound_summary``) to the summary. Raises ConfigError or
    DatasetError for bad input before training starts; ConfigError for ``nproc`` > 1 outside the processes
    torchrun started (``dpcore.jobs.distributed`` starts them).
    """
    if cfg.nproc > 1 and not ddp.is_distributed():
        raise ConfigError(f"nproc {cfg.nproc} trains one model in {cfg.nproc} processes under torchrun: use "
                          f"`python -m dpcore train --nproc {cfg.nproc}` or the app's job queue, or set nproc 1")
    if store is None:
        result = train(cfg, on_step=on_step, on_epoch=on_epoch, should_stop=should_stop, resume=resume)
        return result, (evaluate_membership(result) if result.steps > 0 else None)
    if run_id is None or on_step is not None or on_epoch is not None:
        raise ValueError("a stored training job needs run_id and writes its own progress (no on_step/on_epoch)")
    writer = ProgressWriter(store, run_id)
    checkpoint_dir = store.artifacts_dir(run_id, create=True) if checkpoint else None
    with Heartbeat(store, run_id):  # readers tell a lost process from a slow phase (dpcore.store.heartbeat)
        result = train(cfg, on_step=writer.on_step, on_epoch=writer.on_epoch, should_stop=should_stop,
                       resume=resume, checkpoint_dir=checkpoint_dir)
        writer.flush()
        warm = writer.warm_ms_per_step  # the sweep estimate's figure for a worker's first run (speed_history)
        attack = record_result(store, run_id, result, timing={} if warm is None else {"warm_ms_per_step": warm})
    if lower_bound and attack is not None and result.config.private:
        with contextlib.suppress(DPExplorerError):
            store.update_summary(run_id, **lower_bound_summary(attack, delta=result.config.target_delta))
    return result, attack


def train_and_evaluate(cfg: TrainConfig, *, on_step: StepCallback | None = None,
                       on_epoch: StepCallback | None = None, should_stop: Callable[[], bool] | None = None,
                       resume: ResumeState | None = None) -> tuple[RunResult, AttackResult | None]:
    """Train ``cfg`` and attack the result without a store (for the CLI and scripts): ``run_training``."""
    return run_training(cfg, on_step=on_step, on_epoch=on_epoch, should_stop=should_stop, resume=resume)


def train_stored_run(store: RunStore, run_id: str, *, should_stop: Callable[[], bool] | None = None,
                     resume: ResumeState | None = None, checkpoint: bool = True,
                     lower_bound: bool = False) -> RunResult:
    """Train the stored run ``run_id`` from its stored config as a job (``run_training`` with the store).

    Returns the RunResult (whose artifacts are in ``store.artifacts_dir(run_id)``).
    """
    cfg = store.get(run_id).train_config()
    result, _ = run_training(cfg, store=store, run_id=run_id, should_stop=should_stop, resume=resume,
                             checkpoint=checkpoint, lower_bound=lower_bound)
    return result


# ---------------------------------------------------------------------- the baseline
def _resolved(config: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return TrainConfig.from_dict(config).resolve().to_dict()
    except DPExplorerError:
        return None


def find_baseline(store: RunStore, run_id: str) -> RunRecord | None:
    """The non-private run to compare run ``run_id`` with, or None.

    The run's own link (``summary['baseline_run']``, set when both were submitted together)
    wins, whatever its status; a continuation (``config.extra['resume_from']``) uses its
    parent's baseline. Otherwise the newest finished non-private training run on the
    same data, model and seed, preferring one with the same epochs, batch size, lr and
    optimizer. Non-private runs themselves have no baseline.
    """
    record = store.get(run_id)
    run = StoredRun.from_record(record)
    linked = run.baseline_run
    if isinstance(linked, str) and linked and store.exists(linked):
        return store.get(linked)
    parent = run.parent
    if parent is not None and parent != run_id and store.exists(parent):
        return find_baseline(store, parent)  # a continuation compares with its parent's baseline
    config = _resolved(record.config)
    if config is None or not config.get("private", True):
        return None
    return find_baseline_for_config(store, TrainConfig.from_dict(record.config))


def find_baseline_for_config(store: RunStore, cfg: TrainConfig, *, exact: bool = False,
                             active: bool = False) -> RunRecord | None:
    """The newest finished non-private training run matching ``cfg`` on BASELINE_KEYS, or None.

    Runs that also match on BASELINE_PREFERRED_KEYS (epochs, batch size, lr, optimizer, momentum, validation)
    come first; with ``exact`` only those count. ``active`` also accepts queued and running runs
    (to reuse a baseline that is on its way instead of training it twice).
    """
    wanted = cfg.resolve().to_dict()
    close: RunRecord | None = None
    statuses = (DONE, *ACTIVE_STATUSES) if active else DONE
    for candidate in store.records(kind="train", status=statuses):  # newest first
        config = _resolved(candidate.config)
        if config is None or config.get("private", True):
            continue
        if any(config.get(key) != wanted.get(key) for key in BASELINE_KEYS):
            continue
        if all(config.get(key) == wanted.get(key) for key in BASELINE_PREFERRED_KEYS):
            return candidate
        close = close or candidate
    return None if exact else close


def link_baseline(store: RunStore, run_id: str, baseline_id: str) -> None:
    """Record that ``baseline_id`` is the non-private baseline of ``run_id`` (in both summaries)."""
    store.update_summary(run_id, baseline_run=baseline_id)
    store.update_summary(baseline_id, baseline_for=run_id)


def baseline_config(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` without DP: same data, model, seed and training knobs; no noise, clipping or epsilon limit, and in
    one process (DPDDP, ``nproc`` > 1, is for private runs)."""
    return cfg.replace(private=False, target_epsilon=None, noise_multiplier=None, epsilon_limit=None, nproc=1)


__all__ = [
    "MIA_DONE",
    "MIA_FAILED",
    "MIA_FPR",
    "MIA_PENDING",
    "MIA_SKIPPED",
    "ROC_FILE",
    "ProgressWriter",
    "baseline_config",
    "evaluate_membership",
    "find_baseline",
    "find_baseline_for_config",
    "link_baseline",
    "lower_bound_summary",
    "membership_summary",
    "record_result",
    "roc_payload",
    "run_training",
    "save_roc",
    "train_and_evaluate",
    "train_stored_run",
]
