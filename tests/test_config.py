"""TrainConfig validation, recipes and guidance."""

from __future__ import annotations

import math

import pytest

from dpcore import ConfigError, TrainConfig
from dpcore.privacy.guidance import guidance


def test_recipe_fills_unset_knobs_and_keeps_given_ones():
    cfg = TrainConfig(dataset="digits", target_epsilon=3.0, lr=0.05).resolve()
    assert (cfg.model, cfg.batch_size, cfg.epochs, cfg.optimizer, cfg.lr) == ("mlp", 256, 15, "sgd", 0.05)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"target_epsilon": -1.0}, "target_epsilon must be in (0, 1000], got -1.0"),
        ({"target_epsilon": math.nan}, "target_epsilon must be a finite number"),
        ({"target_epsilon": 0.0}, "target_epsilon must be in (0"),
        ({"target_epsilon": 1e9}, "target_epsilon must be in"),
        ({"target_epsilon": None}, "needs target_epsilon or noise_multiplier"),
        ({"noise_multiplier": 1.0}, "not both"),
        ({"max_grad_norm": 0.0}, "max_grad_norm must be in (0"),
        ({"max_grad_norm": math.inf}, "max_grad_norm must be a finite number"),
        ({"epochs": 0}, "epochs must be between 1 and"),
        ({"epochs": 2.5}, "epochs must be a whole number"),
        ({"batch_size": -3}, "batch_size must be between 1"),
        ({"lr": -0.1}, "lr must be in (0"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of sgd, adam"),
        ({"accountant": "moments"}, "accountant must be one of rdp, prv, gdp"),
        ({"grad_sample_mode": "fast"}, "grad_sample_mode must be one of"),
        ({"device": "tpu"}, "device must be one of"),
        ({"target_delta": 1.0}, "target_delta must be in (0, 1)"),
        ({"seed": -1}, "seed must be an integer"),
        ({"epsilon_limit": -2.0}, "epsilon_limit must be in (0"),
        ({"private": "yes"}, "private must be true or false"),
    ],
)
def test_validate_names_field_value_and_allowed(changes, fragment):
    cfg = TrainConfig(dataset="synthetic", target_epsilon=3.0).replace(**changes)
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    assert fragment in str(err.value)


def test_delta_must_stay_below_one_over_n():
    with pytest.raises(ConfigError, match=r"below 1/N = 0\.00125 for N = 800"):
        TrainConfig(target_epsilon=3.0, target_delta=0.01).validate(n=800)
    TrainConfig(target_epsilon=3.0, target_delta=1e-5).validate(n=800)


def test_batch_larger_than_dataset_is_rejected():
    with pytest.raises(ConfigError, match="batch_size must be at most the 800"):
        TrainConfig(target_epsilon=3.0, batch_size=1000).validate(n=800)


def test_baseline_needs_no_privacy_knobs_and_round_trips():
    cfg = TrainConfig(dataset="digits", private=False)
    assert cfg.validate().mode == "baseline"
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown config field"):
        TrainConfig.from_dict({"datasett": "digits"})


def _fields(notes):
    return {note.field for note in notes}


def test_guidance_flags_weak_epsilon_large_delta_small_batch_and_high_lr():
    weak = guidance(TrainConfig(target_epsilon=20.0), n=800)
    assert any("weak" in n.message for n in weak)
    meaningless = guidance(TrainConfig(target_epsilon=80.0), n=800)
    assert any("no meaningful guarantee" in n.message for n in meaningless)
    assert "target_delta" in _fields(guidance(TrainConfig(target_epsilon=3.0, target_delta=0.01), n=800))
    assert "batch_size" in _fields(guidance(TrainConfig(target_epsilon=1.0, batch_size=4), n=800))
    assert "lr" in _fields(guidance(TrainConfig(target_epsilon=3.0, optimizer="sgd", lr=5.0), n=800))
    assert "target_epsilon" in _fields(guidance(TrainConfig(target_epsilon=0.5), n=800))
    shuffled = guidance(TrainConfig(target_epsilon=3.0, poisson_sampling=False), n=800)
    assert any(n.field == "poisson_sampling" and "not a proven guarantee" in n.message for n in shuffled)
    assert "poisson_sampling" not in _fields(guidance(TrainConfig(target_epsilon=3.0), n=800))


def test_guidance_quotes_the_sigma_the_trainer_will_use():
    from dpcore.privacy import accounting

    cfg = TrainConfig(dataset="csv", target_epsilon=3.0, batch_size=64, epochs=20)
    # 240 examples in batches of 64: the trainer samples at q = 1/ceil(240/64) = 1/4, not 64/240
    sigma = accounting.noise_for_epsilon(target_epsilon=3.0, delta=1e-5, sample_rate=0.25, steps=80)
    (note,) = [n for n in guidance(cfg, n=240) if n.field == "batch_size"]
    assert f"sigma {sigma:.3f}" in note.message
    (given,) = [n for n in guidance(cfg, n=240, noise_multiplier=3.555) if n.field == "batch_size"]
    assert "sigma 3.555" in given.message


def test_guidance_on_clipping_bound_uses_probed_norms():
    norms = [10.0] * 100
    notes = guidance(TrainConfig(target_epsilon=3.0, max_grad_norm=100.0), n=800, grad_norms=norms)
    assert any(n.field == "max_grad_norm" and "clips 0%" in n.message for n in notes)
    fine = guidance(TrainConfig(target_epsilon=3.0, max_grad_norm=1.0, batch_size=256), n=800,
                    grad_norms=[0.5] * 30 + [2.0] * 70)
    assert "max_grad_norm" not in _fields(fine)


def test_sensible_config_gets_no_warnings():
    notes = guidance(TrainConfig(dataset="digits", target_epsilon=3.0), n=1437)
    assert [n for n in notes if n.level == "warning"] == []


def test_labels_name_what_tells_runs_apart():
    assert TrainConfig(dataset="digits", target_epsilon=3.0).label() == "digits mlp, eps 3, C 1, seed 42"
    assert TrainConfig(dataset="digits", private=False).label() == "digits mlp, no DP, seed 42"  # no clipping
    assert TrainConfig(dataset="digits", private=False, epochs=300).label() == "digits mlp, no DP, seed 42, 300 epochs"
    assert TrainConfig(dataset="synthetic", noise_multiplier=1.0, epochs=1).label().endswith(", 1 epoch")
