"""The reference-model pool of an attack: models trained like the target on random halves of its examples.

``reference_config`` is the config they (and the canary model) train with, ``pool_cache_path`` where a
pool is cached in the target's artifacts, ``train_pool`` trains (or loads) one and ``leave_one_out``
evaluates an attack on it with each reference model in turn as the target.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dpcore import attacks as attack_lib
from dpcore.config import TrainConfig
from dpcore.engine.data import SplitData
from dpcore.errors import ConfigError, DPExplorerError
from dpcore.store.runs import RunRecord, RunStore

# Reference models train on half of (members + non-members); training time scales about linearly.
POOL_NOTE = (
    "Reference models are trained with the target's exact settings (model, optimizer, epochs, batch size, "
    "clipping bound) on random halves of the target's members and non-members together; every example is in "
    "the training set of exactly half of them. "
)
POOL_SIGMA_NOTE = ("Their noise multiplier is fixed to the target's σ = {sigma} (not re-calibrated for the smaller "
                   "half-size training sets, so their own ε differs from the target's).")

def reference_config(config: TrainConfig, *, noise_multiplier: float | None, epochs_done: int | None = None
                     ) -> TrainConfig:
    """The config reference models (and the canary model) train with: the target's resolved config with
    sigma fixed to the target's ``noise_multiplier`` (a private run is not re-calibrated for half-size
    training sets), no epsilon limit, and ``epochs_done`` epochs when the target stopped early. The target's
    ``reproducible`` switch is kept: reference and canary models draw secret noise and batches unless the
    target followed its seed; their own seeds fix only their initial weights (the pool halves follow the
    pool's seed)."""
    config = config.resolve()
    changes: dict[str, Any] = {"epsilon_limit": None, "extra": {}}
    if config.private:
        if noise_multiplier is None:
            raise DPExplorerError("the target run has no recorded noise multiplier; train it again to attack it")
        changes.update(target_epsilon=None, noise_multiplier=float(noise_multiplier))
    if epochs_done:
        changes["epochs"] = int(epochs_done)
    return dataclasses.replace(config, **changes)


def _config_key(config: TrainConfig, *parts: Any) -> str:
    values = {k: v for k, v in config.to_dict().items() if k != "device"}  # CPU and GPU pools are interchangeable
    digest = hashlib.sha256(json.dumps([values, *parts], sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def pool_key(config: TrainConfig, *parts: Any) -> str:
    """16 hex digits naming a pool of reference models trained with ``config`` (and ``parts``: size, seed)."""
    values = {k: v for k, v in config.to_dict().items() if k != "device"}  # CPU and GPU pools are interchangeable
    digest = hashlib.sha256(json.dumps([values, *parts], sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def pool_cache_path(store: RunStore, record: RunRecord, *, n_models: int, seed: int = 0) -> Path:
    """Where the reference pool of this run for ``n_models`` and ``seed`` is cached (it may not exist yet):
    ``pool-<hash of the reference config>-M<n_models>.npz`` in the run's artifacts."""
    ref_cfg = reference_config(record.train_config(), noise_multiplier=record.summary.get("noise_multiplier"),
                               epochs_done=record.summary.get("epochs_done"))
    return store.artifacts_path(record.id) / f"pool-{pool_key(ref_cfg, n_models, seed)}-M{n_models}.npz"


def train_pool(store: RunStore, record: RunRecord, data: SplitData, ref_cfg: TrainConfig, *, n_models: int,
               seed: int, on_model: Callable[[int, int], None]) -> tuple[attack_lib.ReferencePool, dict[str, Any]]:
    """Train ``n_models`` reference models on halves of ``data``'s members and non-members (or load them from the
    run's cache; models an interrupted call trained are kept and not trained again); ``on_model(done, n_models)``
    after each (it may raise to stop). Returns the pool and its stored
    description (sizes, cache file, seconds, sigma, the config, a note)."""
    x = torch.cat([data.x_members, data.x_non_members])
    y = torch.cat([data.y_members, data.y_non_members])
    cache_path = pool_cache_path(store, record, n_models=n_models, seed=seed)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    trained = 0
    started = time.perf_counter()

    def count(done: int, total: int) -> None:
        nonlocal trained
        trained += 1  # models trained in this call (a resumed pool starts with those kept from before)
        on_model(done, total)

    pool = attack_lib.reference_pool(attack_lib.trainer_train_fn(ref_cfg, data), x, y, n_models=n_models, seed=seed,
                                     cache_path=cache_path, cache_key=pool_key(ref_cfg, n_models, seed),
                                     on_model=count)
    seconds = time.perf_counter() - started
    sigma = ref_cfg.noise_multiplier
    info = {
        "n_models": pool.n_models, "seed": seed, "examples_per_model": len(x) // 2,
        "cache_file": cache_path.name, "cached": trained == 0,
        "seconds": round(seconds, 3), "seconds_per_model": round(seconds / trained, 3) if trained else None,
        "noise_multiplier": sigma, "config": ref_cfg.to_dict(),
        "note": POOL_NOTE + (POOL_SIGMA_NOTE.format(sigma=f"{sigma:.3g}") if sigma is not None else
                             "Like the target, they train without differential privacy."),
    }
    return pool, info


def leave_one_out(pool: attack_lib.ReferencePool, name: str, *, seed: int, confidence: float) -> dict[str, Any]:
    """Attack ``name`` evaluated leave-one-out on the pool (each reference model in turn the target), as stored;
    ``{'name', 'error'}`` when the pool is too small for it."""
    try:
        result = pool.leave_one_out(name, seed=seed, confidence=confidence, n_bootstrap=100)
    except ConfigError as exc:
        return {"name": name, "error": str(exc)}
    return {**result.to_dict(), "title": attack_lib.ATTACKS[name].title, "roc": result.roc_points(),
            "tpr_at_fpr_raw": {f"{f:g}": result.tpr_at_fpr(f) for f in attack_lib.DEFAULT_FPRS}}


__all__ = ["POOL_NOTE", "POOL_SIGMA_NOTE", "leave_one_out", "pool_cache_path", "pool_key", "reference_config",
           "train_pool"]
