"""The engine's parts: the training plan (sigma, epsilon curve, hard stop) and atomic checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dpcore import TrainConfig
from dpcore.engine import checkpoint
from dpcore.engine.checkpoint import ResumeState, write_checkpoint
from dpcore.engine.training import plan_training
from dpcore.privacy import accounting

CFG = TrainConfig(dataset="synthetic", target_epsilon=3.0, target_delta=1e-5, epochs=3, batch_size=64, seed=0,
                  device="cpu", reproducible=True)


def test_plan_stops_at_the_last_step_within_the_epsilon_limit():
    plan = plan_training(CFG.replace(epsilon_limit=2.0))
    try:
        assert plan.planned_steps == 3 * math.ceil(800 / 64) and plan.sample_rate == 1 / math.ceil(800 / 64)
        assert 0 < plan.max_steps < plan.planned_steps
        assert plan.epsilon_at[plan.max_steps] <= 2.0 < plan.epsilon_at[plan.max_steps + 1]
        expected_sigma = accounting.noise_for_epsilon(target_epsilon=3.0, delta=1e-5, sample_rate=plan.sample_rate,
                                                      steps=plan.planned_steps, accountant=CFG.accountant)
        assert plan.noise_multiplier == pytest.approx(expected_sigma)
        assert plan.engine is not None and hasattr(plan.model, "_close")  # wrapped by Opacus
    finally:
        plan.model._close()


def test_baseline_plan_has_no_noise_and_no_hard_stop():
    plan = plan_training(CFG.replace(private=False, target_epsilon=None))
    assert plan.engine is None and plan.noise_multiplier is None
    assert plan.max_steps == plan.planned_steps and bool(np.isinf(plan.epsilon_at).all())


def _write(directory, *, steps_done):
    model = torch.nn.Linear(3, 2)
    return write_checkpoint(directory, model=model, optimizer_state={}, accountant_history=[(1.5, 0.1, steps_done)],
                            noise_multiplier=1.5, max_grad_norm=1.0, epochs_done=1, steps_done=steps_done,
                            sample_rate=0.1)


def test_checkpoint_round_trips_and_a_failed_write_keeps_the_old_one(tmp_path, monkeypatch):
    path = _write(tmp_path / "run", steps_done=10)
    state = ResumeState.load(tmp_path / "run")
    assert (state.steps_done, state.noise_multiplier, state.accountant_history) == (10, 1.5, [(1.5, 0.1, 10)])

    def full_disk(obj, handle):
        handle.write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(OSError, match="No space"):
        _write(tmp_path / "run", steps_done=20)
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "run").iterdir()] == [path.name]  # no scratch file left behind
    assert ResumeState.load(tmp_path / "run").steps_done == 10
