"""An empty Poisson batch (likely with tiny batches, and per process under DPDDP) is a step with noise only."""

from __future__ import annotations

import pytest

from dpcore.config import TrainConfig
from dpcore.engine.training import train


@pytest.mark.parametrize("mode", ["ghost", "bookkeeping", "hooks"])
def test_a_run_with_empty_batches_finishes_and_counts_them_as_steps(mode):
    cfg = TrainConfig(dataset="breast-cancer", target_epsilon=3.0, batch_size=2, epochs=1, lr=0.01,
                      grad_sample_mode=mode, reproducible=True, seed=1)
    result = train(cfg, threads=1)
    assert result.status == "finished"
    assert (result.history["batch_size"] == 0).any()  # e^-2 per step: some of the ~180 steps are empty
    assert len(result.history) == result.steps == sum(n for _, _, n in result.accountant_history)
