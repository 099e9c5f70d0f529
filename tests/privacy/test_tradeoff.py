"""The trade-off bound: exact against closed forms, above every empirical attack ROC, drawn on every ROC."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy.stats import beta, norm

from dpcore.engine.checkpoint import checkpoint_history
from dpcore.privacy import tradeoff
from dpcore.privacy.tradeoff import (
    FPR_GRID,
    TradeoffCurve,
    tradeoff_bound,
    tradeoff_from_epsilon_delta,
    tradeoff_from_history,
)

SMALL_FPR = FPR_GRID[(FPR_GRID > 0) & (FPR_GRID <= 1e-2)]


def _gaussian_tpr(alpha: np.ndarray, mu: float) -> np.ndarray:
    """1 − β(α) of the Gaussian mechanism with sensitivity / sigma = mu: 1 − Φ(Φ⁻¹(1 − α) − mu)."""
    return 1.0 - norm.cdf(norm.ppf(1.0 - alpha) - mu)


# --------------------------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_gaussian_mechanism_matches_the_exact_tradeoff_curve(sigma):
    """One step at q = 1 is the Gaussian mechanism: the bound is G_{1/sigma} to 1e-3, and never below it."""
    curve = tradeoff_bound(noise_multiplier=sigma, sample_rate=1.0, steps=1)
    exact = _gaussian_tpr(curve.fpr, 1.0 / sigma)
    assert curve.source == "prv+rdp"
    assert np.max(np.abs(curve.tpr_max - exact)) < 1e-3
    assert np.all(curve.tpr_max >= exact - 1e-9)  # a bound: PRV's error terms sit on the safe side
    assert curve.tpr_at(0.01) == pytest.approx(float(_gaussian_tpr(np.array(0.01), 1.0 / sigma)), abs=1e-3)


def test_composed_gaussian_steps_match_gdp_with_mu_sqrt_steps():
    """k full-batch steps compose to the Gaussian mechanism with mu = sqrt(k) / sigma (exact, not a CLT)."""
    curve = tradeoff_bound(noise_multiplier=4.0, sample_rate=1.0, steps=9)
    exact = _gaussian_tpr(curve.fpr, 3.0 / 4.0)
    assert np.max(np.abs(curve.tpr_max - exact)) < 2e-3 and np.all(curve.tpr_max >= exact - 1e-9)


def test_rdp_alone_is_a_looser_but_valid_bound():
    prv = tradeoff_bound(noise_multiplier=1.0, sample_rate=1.0, steps=1)
    rdp = tradeoff_bound(noise_multiplier=1.0, sample_rate=1.0, steps=1, accountant="rdp")
    exact = _gaussian_tpr(prv.fpr, 1.0)
    assert rdp.source == "rdp" and np.all(rdp.tpr_max >= prv.tpr_max - 1e-12) and np.all(rdp.tpr_max >= exact - 1e-9)
    assert rdp.headline() > prv.headline() + 0.01  # RDP's conversion is measurably loose


@pytest.mark.parametrize("epsilon", [0.1, 1.0, 3.0])
def test_pure_dp_matches_the_closed_form(epsilon):
    """(ε, 0)-DP: TPR ≤ min(e^ε α, 1 − e^−ε (1 − α)); e^ε α at small FPR."""
    curve = tradeoff_from_epsilon_delta(epsilon, 0.0)
    closed = np.minimum(math.exp(epsilon) * curve.fpr, 1 - math.exp(-epsilon) * (1 - curve.fpr))
    np.testing.assert_allclose(curve.tpr_max, closed, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(curve.tpr_at(SMALL_FPR), math.exp(epsilon) * SMALL_FPR, rtol=1e-9)


def test_approximate_dp_adds_delta():
    curve = tradeoff_from_epsilon_delta(1.0, 1e-5)
    np.testing.assert_allclose(curve.tpr_at(SMALL_FPR), 1e-5 + math.e * SMALL_FPR, rtol=1e-9)


def test_epsilon_to_zero_gives_the_diagonal():
    np.testing.assert_array_equal(tradeoff_from_epsilon_delta(0.0, 0.0).tpr_max, FPR_GRID)
    np.testing.assert_allclose(tradeoff_from_epsilon_delta(1e-9, 0.0).tpr_max, FPR_GRID, atol=1e-9)
    huge_noise = tradeoff_bound(noise_multiplier=1e4, sample_rate=1.0, steps=1)
    np.testing.assert_allclose(huge_noise.tpr_max, FPR_GRID, atol=1e-3)
    gaps = [np.max(tradeoff_bound(noise_multiplier=s, sample_rate=0.1, steps=10).tpr_max - FPR_GRID)
            for s in (2.0, 8.0, 50.0)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 5e-3  # shrinks to the diagonal as ε -> 0


def test_extremes_never_raise():
    no_steps = tradeoff_from_history([])
    assert no_steps.source == "no-steps" and np.array_equal(no_steps.tpr_max, FPR_GRID)
    assert np.array_equal(tradeoff_from_history([(1.0, 0.1, 0)]).tpr_max, FPR_GRID)
    for unlimited in (tradeoff_from_epsilon_delta(math.inf, 1e-5), tradeoff_from_history([(0.0, 0.1, 10)]),
                      tradeoff_from_epsilon_delta(1.0, 1.0)):
        assert unlimited.unlimited and np.all(unlimited.tpr_max == 1.0) and unlimited.headline() == 1.0
    huge = tradeoff_bound(noise_multiplier=0.1, sample_rate=1.0, steps=1000)  # ε in the thousands
    assert np.all(np.isfinite(huge.tpr_max)) and huge.headline() == pytest.approx(1.0)
    assert tradeoff_from_epsilon_delta(800.0, 0.0).headline() == 1.0  # e^800 overflows quietly
    with pytest.raises(Exception, match="epsilon and delta"):
        tradeoff_from_epsilon_delta(-1.0, 0.0)


def test_curve_shape_and_tpr_at():
    curve = tradeoff_bound(noise_multiplier=1.0, sample_rate=0.05, steps=200)
    assert isinstance(curve, TradeoffCurve)
    assert np.all(np.diff(curve.tpr_max) >= -1e-12) and np.all(curve.tpr_max >= curve.fpr)
    assert np.all(curve.tpr_max <= 1.0) and curve.fpr[0] == 0 and curve.fpr[-1] == 1 and curve.fpr.min() == 0
    assert (curve.fpr[(curve.fpr > 0)] <= 1e-5 + 1e-18).any()
    np.testing.assert_allclose(curve.tpr_at(curve.fpr), curve.tpr_max, rtol=0, atol=1e-15)
    # concave: the exact value between grid points lies on or above the chord
    mid = 0.5 * (curve.fpr[100] + curve.fpr[101])
    assert curve.tpr_at(mid) >= 0.5 * (curve.tpr_max[100] + curve.tpr_max[101]) - 1e-12
    # the PRV bound is at least as tight as the single pair (ε, δ) Opacus' PRV reports
    from dpcore.privacy.accounting import epsilon_for

    eps = epsilon_for(noise_multiplier=1.0, sample_rate=0.05, steps=200, delta=1e-5, accountant="prv")
    assert curve.headline() <= tradeoff_from_epsilon_delta(eps, 1e-5).headline() + 1e-3


def test_a_multi_segment_history_costs_more_than_its_first_segment():
    first = tradeoff_from_history([(1.0, 0.05, 100)])
    both = tradeoff_from_history([(1.0, 0.05, 100), (2.0, 0.1, 50)])
    assert both.headline() > first.headline()


def test_fast_enough_for_every_run_view():
    """A typical schedule in about a second the first time, then from the per-schedule cache."""
    tradeoff._history_curve.cache_clear()
    started = time.perf_counter()
    curve = tradeoff_bound(noise_multiplier=1.1, sample_rate=1 / 6, steps=240)
    first = time.perf_counter() - started
    started = time.perf_counter()
    again = tradeoff_bound(noise_multiplier=1.1, sample_rate=1 / 6, steps=240)
    cached = time.perf_counter() - started
    assert again is curve and first < 10 and cached < 0.01


# ------------------------------------------------------------------------------- against real attacks
def _clopper_pearson(successes: np.ndarray, trials: int, gamma: float, *, upper: bool) -> np.ndarray:
    """One-sided Clopper–Pearson limit at level 1 − gamma for each count of ``successes`` in ``trials``."""
    k = np.asarray(successes, dtype=float)
    if upper:
        return np.where(k >= trials, 1.0, beta.ppf(1 - gamma, k + 1, trials - k))
    return np.where(k <= 0, 0.0, beta.ppf(gamma, k, trials - k + 1))


def _violations(curve: TradeoffCurve, attack, *, gamma: float = 1e-4) -> int:
    """ROC points the bound cannot explain even allowing for the ROC's own sampling error.

    The theorem bounds the true TPR of a threshold at its true FPR. An empirical point
    (k false positives of n0, j members found of n1) is only an estimate of both, so it
    violates the bound when even its Clopper–Pearson lower TPR exceeds the bound at its
    upper FPR. No other tolerance.
    """
    n0, n1 = attack.n_non_members, attack.n_members
    fpr_upper = _clopper_pearson(np.round(attack.fpr * n0), n0, gamma, upper=True)
    tpr_lower = _clopper_pearson(np.round(attack.tpr * n1), n1, gamma, upper=False)
    return int(np.sum(tpr_lower > curve.tpr_at(fpr_upper) + 1e-12))


@pytest.fixture(scope="module")
def trained_runs():
    import torch

    from dpcore.config import TrainConfig
    from dpcore.engine import training

    torch.set_num_threads(1)
    private = [training.train(TrainConfig(dataset="synthetic", target_epsilon=eps, epochs=3, batch_size=64,
                                          device="cpu", seed=0, reproducible=True)) for eps in (1.0, 4.0)]
    baseline = training.train(TrainConfig(dataset="synthetic", private=False, epochs=30, device="cpu", seed=0,
                                          reproducible=True))
    return private, baseline


def test_bound_lies_above_every_attack_on_dp_runs(trained_runs):
    """loss and logit attacks on DP runs at ε = 1 and 4: no ROC point above the bound; the leaky baseline is."""
    from dpcore import attacks

    private, baseline = trained_runs
    for run in private:
        curve = tradeoff_from_history(run.accountant_history)
        assert curve.source == "prv+rdp" and not curve.unlimited
        for name in ("loss", "logit"):
            attack = attacks.attack_model(name, run.model, run.data)
            assert _violations(curve, attack) == 0, (run.final_epsilon, name)
    # the same check has teeth: the non-private model's attack breaks the ε = 1 bound
    leaky = attacks.loss_threshold_attack(baseline.model, baseline.data)
    assert _violations(tradeoff_from_history(private[0].accountant_history), leaky) > 0


def test_tradeoff_for_run_reads_the_stored_run(trained_runs, tmp_path):
    private, baseline = trained_runs
    run = private[0]
    run.save(tmp_path / "run")
    history = checkpoint_history(tmp_path / "run")
    assert history == [tuple(segment) for segment in run.accountant_history]
    assert checkpoint_history(tmp_path / "missing") is None and checkpoint_history(None) is None
    from_store = tradeoff.tradeoff_for_run(summary=run.summary(), history=history)
    assert from_store is tradeoff_from_history(run.accountant_history)
    from_summary = tradeoff.tradeoff_for_run(summary=run.summary())
    assert from_summary.headline() == pytest.approx(from_store.headline(), abs=1e-9)
    assert tradeoff.tradeoff_for_run(summary=baseline.summary()).unlimited
    # a bound that is not proven for this run says why (and the curve itself is unchanged)
    config = run.config.to_dict()
    assert config["reproducible"] is True
    marked = tradeoff.tradeoff_for_run(summary=run.summary(), config=config)
    assert "knows the seed" in marked.caveat and np.array_equal(marked.tpr_max, from_store.tpr_max)
    legacy = {key: value for key, value in config.items() if key != "reproducible"}  # stored before the switch
    assert "knows the seed" in tradeoff.tradeoff_for_run(summary=run.summary(), config=legacy).caveat
    sampled = {**config, "reproducible": False, "poisson_sampling": False}
    assert "Poisson" in tradeoff.tradeoff_for_run(summary=run.summary(), config=sampled).caveat
    assert tradeoff.tradeoff_for_run(summary=run.summary(), config={**config, "reproducible": False}).caveat is None


# --------------------------------------------------------------------------------------------- figures
def test_every_roc_figure_draws_the_bound():
    from dpcore.views import plots

    curve = tradeoff_bound(noise_multiplier=1.0, sample_rate=0.1, steps=100)
    roc = [("attack", np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.6, 1.0]), 0.55)]
    for log_scale in (False, True):
        figure = plots.roc_chart(roc, log_scale=log_scale, n_non_members=200, bound=curve, bound_epsilon=2.0)
        names = [trace.name or "" for trace in figure.data]
        assert any(plots.BOUND_LABEL in name for name in names)
        line = next(trace for trace in figure.data if plots.BOUND_LABEL in (trace.name or ""))
        x, y = np.asarray(line.x, dtype=float), np.asarray(line.y, dtype=float)
        np.testing.assert_allclose(y, curve.tpr_at(x), atol=1e-12)
        assert (x.min() == 0) != log_scale and (x.min() == pytest.approx(1 / 200)) == log_scale
        shaded = [trace for trace in figure.data if trace.fill == "toself"]
        assert len(shaded) == 1 and np.max(np.asarray(shaded[0].y, dtype=float)) == 1.0
        assert "ε = 2" in line.name
    unlimited = plots.roc_chart(roc, bound=tradeoff.no_limit())
    assert [trace.fill for trace in unlimited.data if plots.BOUND_LABEL in (trace.name or "")] in ([None], [""])
    assert not any(plots.BOUND_LABEL in (trace.name or "") for trace in plots.roc_chart(roc).data)
    # overlays of several runs: one unshaded line per private run, in the run's colour; none for no-DP runs
    two = [roc[0], ("baseline", *roc[0][1:])]
    overlay = plots.roc_chart(two, colors={"attack": "#123456", "baseline": "#654321"},
                              run_bounds={"attack": curve, "baseline": tradeoff.no_limit()})
    lines = [trace for trace in overlay.data if plots.BOUND_LABEL in (trace.name or "")]
    assert [trace.name for trace in lines] == [f"attack: {plots.BOUND_LABEL}"] and lines[0].line.color == "#123456"
    assert not any(trace.fill == "toself" for trace in overlay.data)
