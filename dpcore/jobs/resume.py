"""Continuing a stored run for more epochs: what can be continued, what it will cost, and the new run's config.

A continuation is a **new run** linked to its parent: kind 'train', ``group`` = the
parent's id, ``config.extra['resume_from']`` = the parent's id (plus ``epochs_before`` and
``steps_before``: where it starts; ``config.epochs`` counts only the extra epochs), name
'<parent name> (+N epochs)'. It starts from the parent's ``checkpoint.pt`` (weights,
optimizer state, accountant history), keeps the parent's noise multiplier, and spends
epsilon *on top of* the budget the parent already spent: the guarantee of the
continued model is the total epsilon, never the extra part alone. The parent's
``epsilon_limit`` still holds unless a new one is given. The continuation keeps the
parent's seed (which fixes only the initial weights, overwritten by the checkpoint) and its
``reproducible`` switch. ``train`` draws the sampling and noise of a default run from fresh secret
OS entropy, and for a reproducible run derives them from (seed, privacy knobs, steps already taken),
so a continuation never replays the noise the parent added. Its stored step and epoch
tables begin with a copy of the parent's rows, so charts show the whole history.
``JobQueue.resume`` (dpcore.jobs.queue) queues one; this module has the pieces without a queue.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

from dpcore.config import MAX_EPOCHS, TrainConfig
from dpcore.engine.checkpoint import ResumeState
from dpcore.errors import ConfigError, DPExplorerError
from dpcore.privacy import accounting
from dpcore.store.artifacts import CHECKPOINT_FILE
from dpcore.store.records import RESUME_KEY, StoredRun
from dpcore.store.runs import ACTIVE_STATUSES, RunActive, RunRecord, RunStore

# config.extra keys with where the continuation starts: its config's ``epochs`` counts only the extra
# epochs, so a progress display shows 'epoch 7 of epochs_before + epochs'.
EPOCHS_BEFORE_KEY = "epochs_before"
STEPS_BEFORE_KEY = "steps_before"
CONTINUATION_SUFFIX = re.compile(r" \(\+(\d+) epochs?\)$")  # what continuation_name appends


class NotResumable(DPExplorerError):
    """The run cannot be continued (no checkpoint, still active, diverged, not a training run)."""


def resume_problem(store: RunStore, run_id: str) -> str | None:
    """Why run ``run_id`` cannot be continued (a sentence for the user), or None when it can.

    RunNotFound for an unknown id. A run can be continued when it is a finished,
    cancelled, interrupted or failed training run whose ``checkpoint.pt`` was saved
    and whose loss did not diverge.
    """
    record = store.get(run_id)
    if record.kind != "train":
        return f"run {run_id} is a '{record.kind}' job, not a training run: only training runs can be continued"
    if record.status in ACTIVE_STATUSES:
        return (f"run {run_id} is still {record.status}; wait until it stops (or cancel it), "
                "then continue it from its checkpoint")
    if record.stop_status == "diverged":
        return (f"run {run_id} diverged (its loss became NaN or infinite), so its weights are broken; "
                "start a new run with a lower learning rate or noise instead of continuing this one")
    checkpoint = store.artifacts_path(run_id) / CHECKPOINT_FILE
    if not checkpoint.is_file():
        why = {
            "interrupted": "it was interrupted before its first epoch ended (checkpoints are written at "
                           "every epoch end)",
            "failed": "it failed before its first epoch ended",
        }.get(record.status, "its artifacts folder has no checkpoint.pt")
        return f"no checkpoint: run {run_id} cannot be continued because {why}; start a new run instead"
    return None


def check_resumable(store: RunStore, run_id: str) -> RunRecord:
    """The run's record when it can be continued; RunActive / NotResumable with the reason otherwise."""
    problem = resume_problem(store, run_id)
    if problem is None:
        return store.get(run_id)
    if store.get(run_id).status in ACTIVE_STATUSES:
        raise RunActive(problem)
    raise NotResumable(problem)


def load_state(store: RunStore, run_id: str) -> ResumeState:
    """The parent's checkpoint as a ``training.ResumeState`` (NotResumable when it cannot be read)."""
    check_resumable(store, run_id)
    try:
        return ResumeState.load(store.artifacts_dir(run_id))
    except DPExplorerError:
        raise
    except Exception as exc:  # a truncated or foreign file: say so instead of a torch traceback
        raise NotResumable(f"the checkpoint of run {run_id} could not be read ({type(exc).__name__}: {exc}); "
                           "it cannot be continued, start a new run instead") from exc


def continuation_name(parent_name: str, epochs: int) -> str:
    """'<name> (+N epochs)'; continuing a continuation adds up: 'x (+2 epochs)' + 3 -> 'x (+5 epochs)'."""
    match = CONTINUATION_SUFFIX.search(parent_name)
    base, before = (parent_name[:match.start()], int(match.group(1))) if match else (parent_name, 0)
    total = before + epochs
    return f"{base} (+{total} epoch{'s' if total != 1 else ''})"


def _checkpoint_summary(store: RunStore, run_id: str, cfg: TrainConfig) -> dict[str, Any]:
    """The summary fields a plan needs, read from the checkpoint of a run that never finished."""
    state = load_state(store, run_id)
    spent = accounting.schedule_epsilon(state.accountant_history, delta=cfg.target_delta,
                                        accountant=cfg.accountant) if cfg.private else None
    return {"steps": state.steps_done, "epochs_done": state.epochs_done, "final_epsilon": spent,
            "noise_multiplier": state.noise_multiplier, "sample_rate": state.sample_rate}


@dataclass(frozen=True)
class ResumePlan:
    """What continuing a run for ``epochs`` more epochs will do. Epsilon values are at the run's delta."""

    run_id: str
    config: TrainConfig  # the continuation's config (epochs = the extra epochs)
    name: str
    epochs_done: int
    steps_done: int
    more_steps: int  # planned optimizer steps (fewer if the epsilon limit stops it)
    noise_multiplier: float | None  # kept from the parent; None for the non-private baseline
    spent_epsilon: float  # before continuing (inf: no DP)
    projected_epsilon: float  # after all planned steps, ignoring the limit (inf: no DP)
    epsilon_limit: float | None
    target_epsilon: float | None

    @property
    def stops_at_limit(self) -> bool:
        """Whether the epsilon limit will end the continuation before all planned steps."""
        return self.epsilon_limit is not None and self.projected_epsilon > self.epsilon_limit

    @property
    def final_epsilon(self) -> float:
        """Epsilon expected after the continuation: the projection, capped by the limit."""
        if self.stops_at_limit:
            return float(self.epsilon_limit)
        return self.projected_epsilon

    @property
    def over_target(self) -> bool:
        """Whether the continued model will have spent more than the parent's target epsilon."""
        return self.target_epsilon is not None and self.final_epsilon > self.target_epsilon * (1 + 1e-9)


def plan_resume(store: RunStore, run_id: str, *, epochs: int, epsilon_limit: float | None = None,
                name: str | None = None) -> ResumePlan:
    """Plan continuing ``run_id`` for ``epochs`` more epochs; raise with a clear message when it cannot be.

    ``epsilon_limit`` None keeps the parent's limit; a limit at or below the epsilon
    already spent is a ConfigError (nothing could be trained). Returns a ResumePlan
    whose ``config`` is the continuation's validated TrainConfig.
    Raises RunNotFound, RunActive, NotResumable or ConfigError.
    """
    record = check_resumable(store, run_id)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= MAX_EPOCHS:
        raise ConfigError(f"epochs to continue for must be a whole number between 1 and {MAX_EPOCHS}, got {epochs!r}")
    parent_cfg = record.train_config()
    limit = parent_cfg.epsilon_limit if epsilon_limit is None else float(epsilon_limit)
    summary = dict(record.summary)
    if "steps" not in summary:
        # Never finished (interrupted, failed): the last epoch-end checkpoint says where it stands.
        summary.update(_checkpoint_summary(store, run_id, parent_cfg))
    steps_done = int(summary.get("steps") or 0)
    epochs_done = int(summary.get("epochs_done") or 0)
    spent = StoredRun.from_record(replace(record, summary=summary)).final_epsilon  # inf without DP
    if limit is not None and parent_cfg.private and math.isfinite(spent) and spent >= limit * (1 - 1e-9):
        raise ConfigError(
            f"run {run_id} has already spent epsilon {spent:.3g}, at or above the epsilon limit {limit:g}; "
            f"continuing would spend more. Set a higher limit (above {spent:.3g}) to continue it"
        )
    extra = dict(parent_cfg.extra or {})
    extra.update({RESUME_KEY: run_id, EPOCHS_BEFORE_KEY: epochs_done, STEPS_BEFORE_KEY: steps_done})
    # Same seed and reproducible switch as the parent: train() draws fresh secret noise and batches, or
    # (reproducible) derives them from (seed, privacy knobs, steps done): never the parent's.
    config = parent_cfg.replace(epochs=epochs, epsilon_limit=limit, extra=extra).validate()

    sigma = summary.get("noise_multiplier") if config.private else None
    sample_rate = summary.get("sample_rate")
    more_steps = 0
    projected = math.inf if not config.private else math.nan
    if isinstance(sample_rate, (int, float)) and sample_rate > 0:
        more_steps = round(1.0 / sample_rate) * epochs
        if config.private and isinstance(sigma, (int, float)):
            projected = accounting.epsilon_for(noise_multiplier=float(sigma), sample_rate=float(sample_rate),
                                               steps=steps_done + more_steps, delta=config.target_delta,
                                               accountant=config.accountant)
    return ResumePlan(
        run_id=run_id, config=config, name=name or continuation_name(record.name, epochs),
        epochs_done=epochs_done, steps_done=steps_done, more_steps=more_steps,
        noise_multiplier=float(sigma) if isinstance(sigma, (int, float)) else None,
        spent_epsilon=spent, projected_epsilon=projected, epsilon_limit=limit,
        target_epsilon=config.target_epsilon if config.private else None,
    )


def copy_history(store: RunStore, *, source: str, target: str, up_to_step: int | None = None,
                 up_to_epoch: int | None = None) -> tuple[int, int]:
    """Copy ``source``'s step and epoch rows into ``target`` (rows already there are replaced).

    ``up_to_step``/``up_to_epoch`` keep only the rows the continuation builds on: a run that was
    interrupted mid-epoch logged steps after its last checkpoint, which the continuation redoes.
    Returns (step rows, epoch rows) copied. Used so a continuation's tables show the parent's history first.
    """
    steps, epochs = store.steps(source), store.epochs(source)
    if up_to_step is not None:
        steps = steps[steps["step"] <= up_to_step]
    if up_to_epoch is not None:
        epochs = epochs[epochs["epoch"] <= up_to_epoch]
    return store.append_steps(target, steps), store.append_epoch(target, epochs)

