"""Accounting maths against Opacus and basic monotonicity."""

from __future__ import annotations

import numpy as np
import pytest
from opacus.accountants import RDPAccountant

from dpcore import ConfigError, accounting


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
