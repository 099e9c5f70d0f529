"""The loss attack after every epoch: its last row is the run's attack, and the store keeps every row."""

from __future__ import annotations

import numpy as np
import pytest

from dpcore.config import TrainConfig
from dpcore.engine.membership import MIA_COLUMNS
from dpcore.jobs.training import run_training
from dpcore.store.runs import EPOCH_COLUMNS

PRIVATE = TrainConfig(dataset="synthetic", target_epsilon=3.0, epochs=3, device="cpu")
NO_DP = PRIVATE.replace(private=False, target_epsilon=None)


@pytest.mark.parametrize("cfg", [PRIVATE, NO_DP], ids=["dp", "no-dp"])
def test_the_last_epoch_row_is_the_runs_membership_attack(store, cfg, one_thread_and_no_leftover_jobs):
    """Through the training job (live on_epoch rows, store.finish, record_result's attack via dpcore.attacks)."""
    run_id = store.create_run(cfg)
    result, attack = run_training(cfg, store=store, run_id=run_id)
    summary = store.get(run_id).summary
    epochs = store.epochs(run_id)
    assert list(epochs.columns) == list(EPOCH_COLUMNS) and len(epochs) == 3
    assert np.isfinite(epochs[list(MIA_COLUMNS)].to_numpy()).all()
    last = epochs.iloc[-1]
    assert abs(last["mia_auc"] - summary["mia_auc"]) <= 1e-9 and last["mia_auc"] == attack.auc
    assert abs(last["mia_tpr_at_1pct_fpr"] - summary["mia_tpr_at_1pct_fpr"]) <= 1e-9
    # the store returns what the trainer computed, every epoch (REAL columns hold a float64 exactly)
    assert epochs[list(MIA_COLUMNS)].to_numpy().tolist() == result.epochs[list(MIA_COLUMNS)].to_numpy().tolist()

