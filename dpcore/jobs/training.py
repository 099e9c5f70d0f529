"""Evaluation after training: the loss-threshold membership attack every training run gets, and its baseline.

``record_result`` is what a training job does with a finished ``RunResult``: store it, attack
the trained model, write the ROC to ``roc.json`` in the run's artifacts and the attack's headline
numbers (``mia_auc``, ``mia_tpr_at_1pct_fpr``, ``mia_advantage``) into the run's summary.
``train_and_evaluate`` is the same pipeline without a store (for the CLI and scripts).
``find_baseline`` finds the non-private run a private run is compared against.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dpcore.config import TrainConfig
from dpcore.errors import DPExplorerError
from dpcore.jobs.resume import parent_of
from dpcore.store.runs import ACTIVE_STATUSES, DONE, RunNotFound, RunRecord, RunStore, format_error

if TYPE_CHECKING:
    from dpcore.attacks import AttackResult
    from dpcore.engine.training import ResumeState, RunResult

log = logging.getLogger(__name__)

ROC_FILE = "roc.json"
MIA_FPR = 0.01  # the low false-positive rate at which the attack's TPR is reported

# ``summary['mia_status']``: 'pending' while the attack runs, then 'done', 'failed' or 'skipped'.
MIA_PENDING, MIA_DONE, MIA_FAILED, MIA_SKIPPED = "pending", "done", "failed", "skipped"

# Knobs that must match for a non-private run to count as the same training without DP.
BASELINE_KEYS = ("dataset", "model", "seed", "data_path", "label_column")
BASELINE_PREFERRED_KEYS = ("epochs", "batch_size", "lr", "optimizer", "momentum", "validation_fraction")


# ---------------------------------------------------------------------- the attack
def evaluate_membership(result: RunResult) -> AttackResult:
    """The loss-threshold attack on ``result.model`` with ``result.data``'s members and non-members."""
    from dpcore.attacks import loss_threshold_attack

    return loss_threshold_attack(result.model, result.data)


def membership_summary(attack: AttackResult) -> dict[str, float | None]:
    """The summary fields of an attack: ``mia_auc`` (0.5 = chance), ``mia_tpr_at_1pct_fpr`` and
    ``mia_advantage`` (max TPR - FPR), all fractions in [0, 1]; None where not finite."""
    def number(value: float) -> float | None:
        value = float(value)
        return value if math.isfinite(value) else None

    return {
        "mia_auc": number(attack.auc),
        "mia_tpr_at_1pct_fpr": number(attack.tpr_at_fpr(MIA_FPR)),
        "mia_advantage": number(attack.advantage),
    }


def roc_payload(attack: AttackResult) -> dict[str, Any]:
    """What ``roc.json`` holds: the down-sampled ROC (``fpr``, ``tpr`` lists) plus ``attack.to_dict()``."""
    return {**attack.to_dict(), **attack.roc_points()}


def save_roc(directory: str | Path, attack: AttackResult) -> Path:
    """Write ``roc_payload(attack)`` to ``directory/roc.json`` (atomically); return the path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ROC_FILE
    partial = directory / f".{ROC_FILE}.partial"
    partial.write_text(json.dumps(roc_payload(attack)))
    partial.replace(path)
    return path


def load_roc(directory: str | Path) -> dict[str, Any] | None:
    """The stored ROC of a run (``fpr``, ``tpr``, ``auc``, ...) or None when there is none.

    Raises DPExplorerError when the file exists but cannot be read.
    """
    path = Path(directory) / ROC_FILE
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DPExplorerError(f"could not read the attack's ROC from {path}: {err}; re-run the attack") from err
    if not isinstance(payload, dict) or "fpr" not in payload or "tpr" not in payload:
        raise DPExplorerError(f"{path} holds no ROC curve (fpr/tpr lists); re-run the attack")
    return payload


# ---------------------------------------------------------------------- pipelines
def record_result(store: RunStore, run_id: str, result: RunResult) -> AttackResult | None:
    """Store a training result and evaluate it: ``store.finish``, then the membership attack.

    The attack runs after the result is saved, so a failing attack never loses a trained run;
    while it runs the summary says ``mia_status='pending'``. On success ``roc.json`` lands in
    the run's artifacts and the summary gets ``mia_auc``, ``mia_tpr_at_1pct_fpr``,
    ``mia_advantage`` and ``mia_status='done'``; on failure ``mia_status='failed'`` and
    ``mia_error``. Runs that took no step are not attacked (``'skipped'``). Returns the attack
    result, or None when there is none.
    """
    attack_it = result.steps > 0
    store.update_summary(run_id, mia_status=MIA_PENDING if attack_it else MIA_SKIPPED)
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
    return attack


def train_and_evaluate(cfg: TrainConfig, *, on_step: Callable[[dict[str, Any]], None] | None = None,
                       on_epoch: Callable[[dict[str, Any]], None] | None = None,
                       should_stop: Callable[[], bool] | None = None,
                       resume: ResumeState | None = None) -> tuple[RunResult, AttackResult | None]:
    """Train ``cfg`` and attack the result: ``(RunResult, AttackResult or None when no step was taken)``.

    The store-free twin of a training job, for the CLI and scripts. Raises ConfigError or
    DatasetError for bad input before training starts.
    """
    from dpcore.engine.training import train

    result = train(cfg, on_step=on_step, on_epoch=on_epoch, should_stop=should_stop, resume=resume)
    attack = evaluate_membership(result) if result.steps > 0 else None
    return result, attack


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
    linked = record.summary.get("baseline_run")
    if isinstance(linked, str) and linked and store.exists(linked):
        return store.get(linked)
    parent = parent_of(record)
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
    """``cfg`` without DP: same data, model, seed and training knobs; no noise, clipping or epsilon limit."""
    return cfg.replace(private=False, target_epsilon=None, noise_multiplier=None, epsilon_limit=None)


__all__ = [
    "MIA_DONE",
    "MIA_FAILED",
    "MIA_FPR",
    "MIA_PENDING",
    "MIA_SKIPPED",
    "ROC_FILE",
    "baseline_config",
    "evaluate_membership",
    "find_baseline",
    "find_baseline_for_config",
    "link_baseline",
    "load_roc",
    "membership_summary",
    "record_result",
    "roc_payload",
    "save_roc",
    "train_and_evaluate",
]
