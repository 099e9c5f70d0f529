"""Accounting maths against Opacus and basic monotonicity."""

from __future__ import annotations

import numpy as np
import pytest
from opacus.accountants import RDPAccountant

from dpcore import ConfigError
from dpcore.privacy import accounting


def test_epsilon_matches_opacus_rdp():
    acc = RDPAccountant()
    acc.history = [(1.1, 0.05, 400)]
    ours = accounting.epsilon_for(noise_multiplier=1.1, sample_rate=0.05, steps=400, delta=1e-5)
    assert ours == pytest.approx(acc.get_epsilon(delta=1e-5), rel=1e-9)


@pytest.mark.parametrize("name", ["rdp", "gdp", "prv"])
def test_noise_for_epsilon_meets_target_from_below(name):
    sigma = accounting.noise_for_epsilon(target_epsilon=2.0, delta=1e-5, sample_rate=0.02, epochs=5,
                                         accountant=name)
    eps = accounting.epsilon_for(noise_multiplier=sigma, sample_rate=0.02, steps=250, delta=1e-5, accountant=name)
    assert 1.98 <= eps <= 2.0


def test_curve_is_exact_at_end_and_monotone():
    steps = np.arange(1, 301)
    for name in ("rdp", "prv", "gdp"):
        curve = accounting.epsilon_curve(noise_multiplier=1.0, sample_rate=0.05, steps=steps, delta=1e-5,
                                         accountant=name)
        assert np.all(np.diff(curve) >= -1e-9)
        end = accounting.epsilon_for(noise_multiplier=1.0, sample_rate=0.05, steps=300, delta=1e-5, accountant=name)
        assert curve[-1] == pytest.approx(end, rel=1e-6)


def test_interpolated_prv_curve_stays_close_to_exact_in_the_first_steps():
    """Epsilon rises fastest early on; the geometric PRV grid keeps the interpolation within 0.01 there."""
    steps = np.arange(1, 501)
    curve = accounting.epsilon_curve(noise_multiplier=0.8, sample_rate=0.01, steps=steps, delta=1e-5,
                                     accountant="prv")
    for n in (2, 5, 8, 13, 40, 150, 439):
        exact = accounting.epsilon_for(noise_multiplier=0.8, sample_rate=0.01, steps=n, delta=1e-5, accountant="prv")
        assert curve[n - 1] == pytest.approx(exact, abs=0.01)


def test_prior_history_is_spent_first():
    fresh = accounting.epsilon_curve(noise_multiplier=1.0, sample_rate=0.05, steps=[100], delta=1e-5)[0]
    resumed = accounting.epsilon_curve(noise_multiplier=1.0, sample_rate=0.05, steps=[100], delta=1e-5,
                                       prior=[(1.0, 0.05, 100)])[0]
    both = accounting.epsilon_for(noise_multiplier=1.0, sample_rate=0.05, steps=200, delta=1e-5)
    assert resumed == pytest.approx(both, rel=1e-6) and resumed > fresh


def test_max_steps_within_limit_is_tight():
    n = accounting.max_steps_within(2.0, noise_multiplier=1.0, sample_rate=0.05, delta=1e-5)
    at = accounting.epsilon_for(noise_multiplier=1.0, sample_rate=0.05, steps=n, delta=1e-5)
    after = accounting.epsilon_for(noise_multiplier=1.0, sample_rate=0.05, steps=n + 1, delta=1e-5)
    assert at <= 2.0 < after


def test_compare_accountants_table_and_prv_tighter_than_rdp():
    table = accounting.compare_accountants(noise_multiplier=1.0, sample_rate=0.01, steps=1000, delta=1e-5)
    assert list(table["accountant"]) == ["rdp", "prv", "gdp"]
    eps = dict(zip(table["accountant"], table["epsilon"], strict=True))
    assert eps["prv"] < eps["rdp"]


def test_tables_for_planner_shapes():
    by_epoch = accounting.epsilon_by_epoch(noise_multipliers=[0.8, 1.5], sample_rate=0.01, epochs=5, delta=1e-5)
    assert len(by_epoch) == 10
    low_noise = by_epoch[by_epoch.noise_multiplier == 0.8].epsilon.to_numpy()
    high_noise = by_epoch[by_epoch.noise_multiplier == 1.5].epsilon.to_numpy()
    assert np.all(low_noise > high_noise)
    sigmas = accounting.sigma_by_target(targets=[1.0, 4.0], sample_rate=0.01, epochs=5, delta=1e-5)
    assert sigmas.noise_multiplier.iloc[0] > sigmas.noise_multiplier.iloc[1]


def test_unknown_accountant_is_a_config_error():
    with pytest.raises(ConfigError, match="accountant must be one of"):
        accounting.epsilon_for(noise_multiplier=1.0, sample_rate=0.01, steps=10, delta=1e-5, accountant="moments")


# ---------------------------------------------------------------------- planner helpers

@pytest.mark.parametrize(("n", "batch"), [(1437, 256), (800, 64), (455, 455), (1000, 1), (60000, 512), (7, 3)])
def test_sampling_matches_the_trainers_data_loader(n, batch):
    import torch
    from torch.utils.data import DataLoader

    sampling = accounting.sampling_for(n=n, batch_size=batch)
    batches = len(DataLoader(torch.arange(n), batch_size=batch))  # what dpcore.engine.training counts as one epoch
    assert sampling.steps_per_epoch == batches
    assert sampling.sample_rate == 1 / batches
    assert sampling.steps(3) == 3 * batches
    # epsilon_by_epoch's round(1 / q) steps per epoch agrees with it
    assert max(1, round(1 / sampling.sample_rate)) == batches


def test_sampling_from_a_sample_rate_rounds_to_a_batch_then_recomputes_q():
    sampling = accounting.sampling_for(n=455, sample_rate=0.1)
    assert sampling.batch_size == 46 and sampling.steps_per_epoch == 10 and sampling.sample_rate == 0.1
    tiny = accounting.sampling_for(n=100, sample_rate=1e-6)
    assert tiny.batch_size == 1 and tiny.steps_per_epoch == 100


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(n=100, batch_size=101), "at most 100"),
    (dict(n=0, batch_size=1), "at least 1"),
    (dict(n=100, batch_size=0), "at least 1"),
    (dict(n=100, sample_rate=1.5), r"\(0, 1\]"),
    (dict(n=100, sample_rate=float("nan")), r"\(0, 1\]"),
    (dict(n=100), "exactly one"),
    (dict(n=100, batch_size=10, sample_rate=0.1), "exactly one"),
])
def test_sampling_rejects_impossible_plans_with_a_message(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        accounting.sampling_for(**kwargs)


@pytest.mark.parametrize("sample_rate", [1 / 6, 1 / 235, 1e-4])
def test_rdp_epsilon_equals_epsilon_for(sample_rate):
    for sigma, steps, delta in [(0.5, 10, 1e-5), (1.0, 240, 1e-5), (1.3, 5000, 1e-8), (4.0, 1, 1e-3)]:
        fast = accounting.rdp_epsilon(noise_multiplier=sigma, sample_rate=sample_rate, steps=steps, delta=delta)
        exact = accounting.epsilon_for(noise_multiplier=sigma, sample_rate=sample_rate, steps=steps, delta=delta)
        assert fast == pytest.approx(exact, rel=1e-12)
    assert accounting.rdp_epsilon(noise_multiplier=1.0, sample_rate=sample_rate, steps=0, delta=1e-5) == 0.0


def test_rdp_epsilon_by_epoch_equals_epsilon_by_epoch():
    sampling = accounting.sampling_for(n=800, batch_size=64)
    fast = accounting.rdp_epsilon_by_epoch(noise_multipliers=[0.8, 2.0], sampling=sampling, epochs=6, delta=1e-5)
    exact = accounting.epsilon_by_epoch(noise_multipliers=[0.8, 2.0], sample_rate=sampling.sample_rate, epochs=6,
                                        delta=1e-5)
    assert list(fast.columns) == ["noise_multiplier", "epoch", "epsilon"]
    np.testing.assert_allclose(fast.epsilon.to_numpy(), exact.epsilon.to_numpy(), rtol=1e-12)
    np.testing.assert_array_equal(fast.epoch.to_numpy(), exact.epoch.to_numpy())


@pytest.mark.parametrize(("target", "sample_rate", "steps"),
                         [(3.0, 1 / 6, 240), (0.5, 1 / 118, 590)])
def test_rdp_noise_for_epsilon_meets_target_and_agrees_with_noise_for_epsilon(target, sample_rate, steps):
    sigma = accounting.rdp_noise_for_epsilon(target_epsilon=target, delta=1e-5, sample_rate=sample_rate, steps=steps)
    eps = accounting.epsilon_for(noise_multiplier=sigma, sample_rate=sample_rate, steps=steps, delta=1e-5)
    assert target * 0.999 <= eps <= target
    calibrated = accounting.noise_for_epsilon(target_epsilon=target, delta=1e-5, sample_rate=sample_rate, steps=steps)
    assert sigma == pytest.approx(calibrated, rel=1e-3)


def test_rdp_noise_for_epsilon_rejects_bad_targets():
    with pytest.raises(ConfigError, match="positive"):
        accounting.rdp_noise_for_epsilon(target_epsilon=0.0, delta=1e-5, sample_rate=0.01, steps=100)


def test_sigma_curve_rows_are_exact_pairs_covering_the_range():
    table = accounting.sigma_curve(sample_rate=1 / 6, steps=240, delta=1e-5, epsilon_range=(0.5, 16.0), points=8)
    assert list(table.columns) == ["target_epsilon", "noise_multiplier"] and len(table) == 8
    assert table.target_epsilon.min() == pytest.approx(0.5, rel=0.03)
    assert table.target_epsilon.max() == pytest.approx(16.0, rel=0.03)
    assert np.all(np.diff(table.noise_multiplier) > 0) and np.all(np.diff(table.target_epsilon) < 0)
    row = table.iloc[3]
    assert row.target_epsilon == pytest.approx(accounting.epsilon_for(
        noise_multiplier=row.noise_multiplier, sample_rate=1 / 6, steps=240, delta=1e-5), rel=1e-12)
    with pytest.raises(ConfigError, match="increasing"):
        accounting.sigma_curve(sample_rate=0.1, steps=10, delta=1e-5, epsilon_range=(4.0, 1.0))


def test_a_large_delta_gives_epsilon_zero_not_a_negative_number():
    for name in ("rdp", "prv"):
        assert accounting.epsilon_for(noise_multiplier=2.7, sample_rate=1 / 6, steps=90, delta=0.5,
                                      accountant=name) >= 0.0
    curve = accounting.epsilon_curve(noise_multiplier=2.7, sample_rate=1 / 6, steps=[1, 45, 90], delta=0.5)
    assert (curve >= 0).all()


def test_an_unreachable_target_says_why_for_a_fresh_and_a_continued_run():
    with pytest.raises(ConfigError, match=r"in 90 steps; raise the target, or train for fewer steps"):
        accounting.noise_for_epsilon(target_epsilon=1e-4, delta=1e-5, sample_rate=1 / 6, steps=90)
    with pytest.raises(ConfigError, match="the budget already spent may exceed it"):
        accounting.noise_for_epsilon(target_epsilon=1.0, delta=1e-5, sample_rate=1 / 6, steps=90,
                                     prior=[(0.5, 1 / 6, 90)])
