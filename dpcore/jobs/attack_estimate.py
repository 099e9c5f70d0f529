"""How long an attack job takes: ``estimate_seconds`` from this machine's measured speed (``attack_speed``).

Re-exported by ``dpcore.jobs.attack``. Times in seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dpcore.config import TrainConfig
from dpcore.engine.speed import Speed, calibrate, expected_steps, run_seconds
from dpcore.errors import DPExplorerError
from dpcore.jobs.attack_pool import reference_config
from dpcore.store.runs import RunRecord

#: Scoring the attacks after the pool is trained (s), besides one evaluation pass per model.
SCORING_S = 1.0


def estimate_seconds(summary: Mapping[str, Any], *, n_models: int, canaries: int = 0, needs_pool: bool = True,
                     cached: bool = False, seconds_per_model: float | None = None, speed: Speed | None = None,
                     config: TrainConfig | None = None) -> float | None:
    """Rough wall time (s) of an attack job. Each reference model trains on (members + non-members) / 2 examples.

    With ``speed`` (this machine's measured speed for the reference ``config``, see ``attack_speed``) a model
    costs ``run_seconds`` of its expected steps; without it, the target's training time scaled by the size
    ratio, or ``seconds_per_model`` when an earlier pool of this run measured it. A ``cached`` pool costs
    nothing; the canary model costs one target training; scoring costs an evaluation per model plus
    SCORING_S. None when the run's summary lacks its sizes (or, without ``speed``, its training time).
    """
    seconds, members = summary.get("seconds"), summary.get("n_members")
    non_members = summary.get("n_non_members") or 0
    if not members:
        return None
    if speed is not None and config is not None:
        def one(n: int) -> float:
            steps = expected_steps(n_examples=n, batch_size=int(config.batch_size), epochs=int(config.epochs))
            return run_seconds(speed, steps=steps, epochs=int(config.epochs), attack=False)
        per_model, canary_s = one((members + non_members) // 2), one(members)
        scoring = SCORING_S + (n_models + 1) * speed.eval_s
    elif seconds:
        per_model = seconds_per_model or float(seconds) * ((members + non_members) / 2) / members
        canary_s, scoring = float(seconds), 1.0
    else:
        return None
    pool = 0.0 if cached or not needs_pool else n_models * per_model
    return pool + (canary_s if canaries else 0.0) + scoring


def attack_speed(record: RunRecord) -> tuple[Speed, TrainConfig] | None:
    """This machine's measured speed for the reference models of ``record`` (``dpcore.engine.speed.calibrate``,
    once per process) and their config, for ``estimate_seconds``; None when it cannot be measured here."""
    try:
        ref_cfg = reference_config(record.train_config(), noise_multiplier=record.summary.get("noise_multiplier"),
                                   epochs_done=record.summary.get("epochs_done"))
    except DPExplorerError:
        return None
    measured = calibrate(ref_cfg)
    return None if measured is None else (measured[0], ref_cfg)


__all__ = ["SCORING_S", "attack_speed", "estimate_seconds"]
