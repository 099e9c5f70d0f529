"""The DP trainer: the seed's four properties and the run mechanics (steps, clipping, limits, resume)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from dpcore import ConfigError, TrainConfig, train
from dpcore.attacks import loss_threshold_attack
from dpcore.engine.checkpoint import ResumeState
from dpcore.engine.data import load_for_config
from dpcore.engine.models import build_model, make_private_compatible
from dpcore.engine.probe import probe_grad_norms, suggest_max_grad_norm
from dpcore.privacy.checks import all_passed, seed_checks

# reproducible: with secret noise this config's test accuracy spreads over 0.545-0.595 (8 runs), around the seed
# suite's 0.55 line; the seeded streams give 0.565 every time.
SEED_CONFIG = TrainConfig(dataset="synthetic", target_epsilon=3.0, target_delta=1e-5, max_grad_norm=1.0,
                          epochs=10, batch_size=64, lr=1e-3, seed=42, reproducible=True)


@pytest.fixture(scope="module")
def seed_run():
    return train(SEED_CONFIG)


def test_seed_properties_hold_at_epsilon_3(seed_run):
    """The seed's unittest suite: budget kept, epsilon meaningful, attack near chance, model useful."""
    attack = loss_threshold_attack(seed_run.model, seed_run.data)
    assert seed_run.final_epsilon <= 1.1 * 3.0
    assert seed_run.final_epsilon < 10
    assert attack.auc < 0.60
    assert seed_run.test_accuracy > 0.55
    checks = seed_checks(final_epsilon=seed_run.final_epsilon, target_epsilon=3.0,
                         test_accuracy=seed_run.test_accuracy, mia_auc=attack.auc)
    assert all_passed(checks)


def test_history_has_one_row_per_logical_step_with_growing_epsilon(seed_run):
    history = seed_run.history
    assert list(history.columns) == ["step", "epoch", "epsilon", "clip_fraction", "loss", "batch_size"]
    assert history["step"].tolist() == list(range(1, seed_run.steps + 1))
    assert seed_run.steps == 13 * 10  # ceil(800 / 64) steps per epoch
    assert np.all(np.diff(history["epsilon"]) >= 0)
    assert history["epsilon"].iloc[-1] == pytest.approx(seed_run.final_epsilon)
    assert history["clip_fraction"].between(0, 1).all()
    assert list(seed_run.epochs["epoch"]) == list(range(1, 11))
    assert seed_run.epochs["epsilon"].iloc[-1] == pytest.approx(seed_run.final_epsilon)
    # Poisson sampling: batch sizes vary around the expected 800/13.
    assert history["batch_size"].nunique() > 1
    assert abs(history["batch_size"].mean() - 800 / 13) < 8


def test_result_contract_fields(seed_run):
    assert seed_run.status == "finished"
    assert seed_run.noise_multiplier > 0.5
    assert seed_run.device.startswith("cpu")
    assert not seed_run.model.training
    summary = seed_run.summary()
    assert summary["final_epsilon"] == pytest.approx(seed_run.final_epsilon)
    assert summary["grad_sample_mode"] == "bookkeeping"  # auto: one-backward clipping for every registry model


def test_tiny_clipping_bound_clips_nearly_everything():
    result = train(SEED_CONFIG.replace(max_grad_norm=1e-4, epochs=1))
    assert result.history["clip_fraction"].min() > 0.95


def test_huge_clipping_bound_clips_nothing():
    result = train(SEED_CONFIG.replace(max_grad_norm=1e4, epochs=1))
    assert result.history["clip_fraction"].max() == 0.0


@pytest.mark.parametrize("mode", ["hooks", "functorch", "bookkeeping"])
def test_per_sample_gradient_modes_agree_with_ghost(mode):
    """Same seed, same clipping maths: every per-sample gradient path trains the same model."""
    ghost = train(SEED_CONFIG.replace(epochs=2, grad_sample_mode="ghost", reproducible=True))
    other = train(SEED_CONFIG.replace(epochs=2, grad_sample_mode=mode, reproducible=True))
    assert other.grad_sample_mode == mode
    np.testing.assert_allclose(ghost.history["clip_fraction"], other.history["clip_fraction"])
    np.testing.assert_allclose(ghost.history["loss"], other.history["loss"], rtol=1e-4)


def test_batch_memory_manager_keeps_steps_and_epsilon():
    full = train(SEED_CONFIG.replace(epochs=2, reproducible=True))  # same batches: compare their sizes
    split = train(SEED_CONFIG.replace(epochs=2, physical_batch_size=16, reproducible=True))
    assert split.steps == full.steps
    assert split.final_epsilon == pytest.approx(full.final_epsilon)
    pd.testing.assert_series_equal(split.history["batch_size"], full.history["batch_size"])
    np.testing.assert_allclose(split.history["epsilon"], full.history["epsilon"])


def test_reproducible_runs_are_reproducible():
    first = train(SEED_CONFIG.replace(epochs=2, reproducible=True))
    second = train(SEED_CONFIG.replace(epochs=2, reproducible=True))
    pd.testing.assert_frame_equal(first.history, second.history)
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("physical_batch_size", [None, 16])
def test_faster_ghost_accumulation_trains_the_identical_model(monkeypatch, physical_batch_size):
    """The clone-based accumulate gives bit-identical runs to Opacus' own, with and without physical batches."""
    from dpcore.engine import training

    cfg = SEED_CONFIG.replace(epochs=2, grad_sample_mode="ghost", physical_batch_size=physical_batch_size,
                              reproducible=True)
    fast = train(cfg)
    monkeypatch.setattr(training, "_speed_up_ghost_accumulation", lambda optimizer: None)
    opacus_own = train(cfg)
    pd.testing.assert_frame_equal(fast.history, opacus_own.history)
    for a, b in zip(fast.model.state_dict().values(), opacus_own.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_epsilon_limit_stops_before_exceeding():
    result = train(SEED_CONFIG.replace(target_epsilon=None, noise_multiplier=1.0, epsilon_limit=4.0))
    assert result.status == "epsilon_limit"
    assert "epsilon limit of 4" in result.stop_reason
    assert result.final_epsilon <= 4.0
    assert 0 < result.steps < 130
    assert len(result.epochs) >= 1  # the partial epoch is still evaluated


def test_epsilon_limit_is_exact_with_the_interpolated_prv_curve():
    """PRV's per-step curve is interpolated; the hard stop must still never pass the limit, and not stop early."""
    from dpcore.privacy import accounting

    cfg = TrainConfig(dataset="synthetic", noise_multiplier=0.8, batch_size=8, epochs=5, accountant="prv",
                      epsilon_limit=0.7, seed=0)  # q = 0.01, 500 planned steps; the limit falls in the first ten
    result = train(cfg)
    exact_max = accounting.max_steps_within(0.7, noise_multiplier=0.8, sample_rate=0.01, delta=cfg.target_delta,
                                            accountant="prv")
    assert result.status == "epsilon_limit" and result.final_epsilon <= 0.7
    assert result.steps == exact_max


def test_should_stop_cancels_cleanly():
    calls = []

    def stop_after_five():
        calls.append(1)
        return len(calls) > 5

    result = train(SEED_CONFIG, should_stop=stop_after_five)
    assert result.status == "cancelled"
    assert result.steps == 5
    assert "Cancelled" in result.stop_reason


def test_diverging_loss_ends_with_status_not_traceback():
    data = load_for_config(SEED_CONFIG)
    data.x_members[::2] *= 1e38  # overflows the first layer: the loss becomes inf/NaN at once
    result = train(SEED_CONFIG, data=data)
    assert result.status == "diverged"
    assert "diverged" in result.stop_reason
    assert result.steps == 0


def test_callbacks_receive_plain_dicts():
    steps, epochs = [], []
    train(SEED_CONFIG.replace(epochs=2), on_step=steps.append, on_epoch=epochs.append)
    assert len(steps) == 26 and steps[-1]["total_steps"] == 26
    assert set(steps[0]) >= {"step", "epoch", "epsilon", "clip_fraction", "loss", "batch_size", "elapsed_s"}
    assert [e["epoch"] for e in epochs] == [1, 2] and epochs[-1]["total_epochs"] == 2


def test_baseline_beats_private_run_on_digits():
    private = train(TrainConfig(dataset="digits", target_epsilon=1.0, epochs=10))
    baseline = train(TrainConfig(dataset="digits", private=False, epochs=10))
    assert math.isinf(baseline.final_epsilon)
    assert baseline.history["clip_fraction"].isna().all()
    assert baseline.test_accuracy > private.test_accuracy
    assert private.test_accuracy > 0.5  # still far above the 10 % of chance


@pytest.mark.slow
def test_digits_recipe_reaches_85_percent_at_epsilon_3():
    result = train(TrainConfig(dataset="digits", target_epsilon=3.0))
    assert result.final_epsilon <= 3.0
    assert result.test_accuracy >= 0.85


def test_batchnorm_model_is_fixed_and_reported():
    model = build_model("cnn-bn", input_shape=(1, 8, 8), num_classes=10)
    fixed, fixes = make_private_compatible(model)
    assert fixes == ["features.1: BatchNorm2d -> GroupNorm", "features.5: BatchNorm2d -> GroupNorm"]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fixed.modules())
    result = train(TrainConfig(dataset="digits", model="cnn-bn", target_epsilon=3.0, epochs=1))
    assert result.fixes == fixes


def test_resume_continues_spending_the_budget(tmp_path):
    first = train(SEED_CONFIG.replace(epochs=2))
    first.save(tmp_path / "run")
    state = ResumeState.load(tmp_path / "run")
    assert state.steps_done == 26 and state.epochs_done == 2
    more = train(SEED_CONFIG.replace(epochs=2), resume=state)
    assert more.history["step"].iloc[0] == 27
    assert more.epochs["epoch"].tolist() == [3, 4]
    assert more.noise_multiplier == pytest.approx(first.noise_multiplier)
    assert more.final_epsilon > first.final_epsilon
    assert more.history["epsilon"].iloc[0] > first.final_epsilon


def test_resume_draws_fresh_noise_and_batches(tmp_path):
    """Replaying the parent's random streams would break the accountant's independence assumption.

    Reproducible runs, whose streams follow the seed, are the case where a replay could happen."""
    first = train(SEED_CONFIG.replace(epochs=1, reproducible=True))
    first.save(tmp_path / "run")
    more = train(SEED_CONFIG.replace(epochs=1, reproducible=True), resume=ResumeState.load(tmp_path / "run"))
    assert more.history["batch_size"].tolist() != first.history["batch_size"].tolist()


def test_resume_respects_the_epsilon_limit(tmp_path):
    first = train(SEED_CONFIG.replace(epochs=2))
    first.save(tmp_path / "run")
    limit = first.final_epsilon + 0.05
    more = train(SEED_CONFIG.replace(epochs=5, epsilon_limit=limit), resume=ResumeState.load(tmp_path / "run"))
    assert more.status == "epsilon_limit"
    assert more.final_epsilon <= limit


def test_saved_weights_load_with_weights_only(tmp_path):
    result = train(SEED_CONFIG.replace(epochs=1))
    result.save(tmp_path / "run")
    state = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    fresh = build_model("mlp", input_shape=(128,), num_classes=2)
    fresh.load_state_dict(state)


def test_bad_config_raises_before_training():
    with pytest.raises(ConfigError, match="target_delta must be below 1/N"):
        train(SEED_CONFIG.replace(target_delta=0.01))


def test_probe_suggests_a_bound_clipping_about_two_thirds():
    norms = probe_grad_norms(SEED_CONFIG, steps=10)
    assert len(norms) > 500 and np.all(norms > 0)
    bound = suggest_max_grad_norm(norms)
    assert 0.5 <= float(np.mean(norms > bound)) <= 0.8


def test_device_selection_prefers_cuda_then_mps_then_cpu(monkeypatch):
    """The GPU path's choice and wording, with torch's CUDA and MPS probes faked (no GPU needed)."""
    from dpcore.engine.training import describe_device, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert describe_device(torch.device("cpu")).startswith("cpu (")
    with pytest.raises(ConfigError, match="no CUDA GPU is available; use device 'auto' or 'cpu'"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="MPS is not available"):
        resolve_device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "NVIDIA Test GPU")
    assert resolve_device("auto") == torch.device("cuda")
    assert describe_device(resolve_device("auto")) == "cuda:0 (NVIDIA Test GPU)"
