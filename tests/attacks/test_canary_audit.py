"""Tests for the one-run canary audits: power, soundness at strong DP, strength without DP, white-box gradient
canaries, and the canary run's own epsilon stored and shown next to its bound (result, chart, CLI)."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pandas as pd
import pytest

from dpcore.attacks import one_run_audit_best, one_run_audit_power, one_run_guess_choices, one_run_power
from dpcore.attacks.gradient_canaries import canary_scores, gradient_canary_audit
from dpcore.cli import main as cli_main
from dpcore.config import TrainConfig
from dpcore.engine.data import load_for_config
from dpcore.errors import ConfigError
from dpcore.jobs import attack as audit
from dpcore.jobs import attack_results
from dpcore.jobs.queue import train_runner
from dpcore.privacy import accounting
from dpcore.store.runs import DONE, RunStore
from dpcore.views import plots

pytestmark = pytest.mark.usefixtures("one_thread_and_no_leftover_jobs")


@pytest.fixture(scope="module")
def synthetic():
    # the seed's synthetic settings (Adam lr 1e-3, C 1, batch 64), pinned: the audits' expected bounds assume them
    cfg = TrainConfig(dataset="synthetic", target_epsilon=1.0, device="cpu", seed=0, reproducible=True,
                      optimizer="adam", lr=1e-3, max_grad_norm=1.0, batch_size=64, epochs=10).resolve()
    return cfg, load_for_config(cfg)


def _schedule(cfg: TrainConfig, n: int, *, epsilon: float | None, epochs: int) -> tuple[float | None, float, int]:
    """(sigma calibrated to ``epsilon`` or None, Poisson sample rate, steps) of ``epochs`` epochs as train() runs."""
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    q, steps = 1.0 / steps_per_epoch, steps_per_epoch * epochs
    if epsilon is None:
        return None, q, steps
    sigma = accounting.noise_for_epsilon(target_epsilon=epsilon, delta=cfg.target_delta, sample_rate=q, steps=steps,
                                         accountant=cfg.accountant)
    return sigma, q, steps


# ---------------------------------------------------------------------- power
def test_power_grows_with_guesses_and_no_bound_exceeds_it():
    powers = [one_run_power(canaries=2000, guesses=r, delta=1e-5) for r in (10, 50, 200, 1000)]
    assert all(a < b for a, b in itertools.pairwise(powers))
    assert powers[0] < 2.0 < 5.0 < powers[-1]  # 10 guesses cannot certify 2; 1000 right guesses certify > 5
    rng = np.random.default_rng(0)
    included = rng.random(1000) < 0.5
    perfect = one_run_audit_best(included.astype(float) + 0.01 * rng.random(1000), included, delta=1e-5)
    assert one_run_audit_power(perfect) == pytest.approx(perfect.epsilon_lower)  # every guess right: bound = power
    noisy = one_run_audit_best(included + rng.normal(0, 1.0, 1000), included, delta=1e-5)
    assert 0.0 < noisy.epsilon_lower < one_run_audit_power(noisy)
    chance = one_run_audit_best(rng.normal(size=1000), included, delta=1e-5)
    assert chance.epsilon_lower < 0.5
    assert noisy.counts["choices"] == len(one_run_guess_choices(1000)) == 10


def test_likelihood_ratio_score_ranks_sampled_canaries_first():
    rng = np.random.default_rng(1)
    included = np.arange(400) < 200
    x = (rng.random((100, 400)) < 0.1) * included + rng.normal(0, 0.8, size=(100, 400))
    scores = canary_scores(x, sample_rate=0.1, noise_multiplier=0.8)
    assert scores[included].mean() > scores[~included].mean() + 1.0
    # no noise: the real gradients' steady push on a coordinate is centred away
    clean = (rng.random((100, 400)) < 0.1) * included + rng.normal(5.0, 0.01, size=(1, 400))
    order = np.argsort(canary_scores(clean, sample_rate=0.1, noise_multiplier=None))
    assert included[order[-150:]].all() and not included[order[:150]].any()


# ---------------------------------------------------------------------- white box
@pytest.mark.parametrize("epsilon", [1.0, 4.0])
def test_white_box_bound_stays_below_the_schedules_epsilon(synthetic, epsilon):
    cfg, data = synthetic
    sigma, q, steps = _schedule(cfg, data.n_members, epsilon=epsilon, epochs=3)
    found = gradient_canary_audit(cfg, data, n_canaries=2000, noise_multiplier=sigma, sample_rate=q, steps=steps,
                                  seed=0)
    assert found.accountant_epsilon == pytest.approx(epsilon, rel=0.02)
    assert 0.0 <= found.bound.epsilon_lower <= found.accountant_epsilon
    assert found.bound.epsilon_lower <= found.power
    assert found.canaries == 2000 and found.included.shape == found.scores.shape == (2000,)


def test_white_box_without_dp_certifies_a_large_epsilon(synthetic):
    cfg, data = synthetic
    cfg = dataclasses.replace(cfg, private=False, target_epsilon=None)
    _, q, steps = _schedule(cfg, data.n_members, epsilon=None, epochs=3)
    found = gradient_canary_audit(cfg, data, n_canaries=2000, noise_multiplier=None, sample_rate=q, steps=steps,
                                  seed=0)
    assert math.isinf(found.accountant_epsilon) and found.noise_multiplier is None
    assert found.bound.epsilon_lower > 4.0
    assert found.bound.epsilon_lower <= found.power


def test_white_box_noise_is_secret_unless_reproducible(synthetic):
    cfg, data = synthetic
    sigma, q, _ = _schedule(cfg, data.n_members, epsilon=4.0, epochs=1)
    runs = [gradient_canary_audit(config, data, n_canaries=200, noise_multiplier=sigma, sample_rate=q, steps=5,
                                  seed=0)
            for config in (cfg, cfg, dataclasses.replace(cfg, reproducible=False),
                           dataclasses.replace(cfg, reproducible=False))]
    assert np.array_equal(runs[0].scores, runs[1].scores)  # reproducible: follows the seed
    assert not np.array_equal(runs[2].scores, runs[3].scores)  # default: fresh OS entropy each time
    assert np.array_equal(runs[2].included, runs[3].included)  # which canaries are in follows the seed


def test_white_box_rejects_more_canaries_than_the_model_can_hold(synthetic):
    cfg, data = synthetic
    with pytest.raises(ConfigError, match="half the model's"):
        gradient_canary_audit(cfg, data, n_canaries=10**6, noise_multiplier=1.0, sample_rate=0.1, steps=2)


# ---------------------------------------------------------------------- black box
@pytest.mark.parametrize("epsilon", [1.0, 4.0])
def test_black_box_bound_stays_below_its_own_runs_epsilon(synthetic, epsilon):
    cfg, data = synthetic
    ref = dataclasses.replace(cfg, target_epsilon=epsilon, epochs=3)
    info = audit.black_box_canary_audit(data, ref, n_canaries=400, seed=0)
    assert info["mode"] == "black-box" and info["n_members"] < data.n_members  # its own, smaller training set
    assert info["epsilon_lower"] <= info["accountant_epsilon"]
    assert info["epsilon_lower"] <= info["power"]
    assert info["sample_rate"] > 0 and info["steps"] > 0 and info["delta"] == ref.target_delta


# ---------------------------------------------------------------------- stored, charted, printed
def test_canary_runs_epsilon_is_stored_charted_and_printed(store, capsys):
    cfg = TrainConfig(dataset="synthetic", target_epsilon=2.0, epochs=3, device="cpu", seed=0, reproducible=True)
    run_id = store.create_run(cfg)
    store.set_status(run_id, "running")
    train_runner(run_id, store, lambda: False)
    assert store.get(run_id).status == DONE
    assert cli_main(["attack", run_id, "--attacks", "loss", "--canaries", "1000", "--canary-mode", "white-box",
                     "--runs-dir", str(store.root)]) == 0
    out = capsys.readouterr().out
    result = attack_results.load_attack_result(store, run_id)
    canary = result["epsilon"]["canary"]
    assert canary["mode"] == "white-box" and canary["canaries"] == 1000
    assert canary["accountant_epsilon"] == pytest.approx(store.get(run_id).summary["final_epsilon"], rel=1e-3)
    assert canary["epsilon_lower"] <= canary["power"] and canary["epsilon_lower"] <= canary["accountant_epsilon"]
    assert f"canary run's own ε = {canary['accountant_epsilon']:.2f}" in out and "power" in out
    summary = store.get(run_id).summary
    assert summary["canary_accountant_epsilon"] == canary["accountant_epsilon"]
    assert summary["canary_epsilon_power"] == canary["power"] and summary["canary_mode"] == "white-box"
    table = attack_results.epsilon_table(result)
    row = table[table["label"] == "canary audit (white-box)"].iloc[0]
    assert row["compare_epsilon"] == pytest.approx(canary["accountant_epsilon"])
    fig = plots.epsilon_audit_chart(table)
    marker = next(trace for trace in fig.data if trace.name.startswith("its own run's ε"))
    assert list(marker.x) == [pytest.approx(canary["accountant_epsilon"])]
    assert marker.text[0] == f"its run's ε {canary['accountant_epsilon']:.2f}"
    history = attack_results.attack_history(store, run_id)
    assert history["canary run's ε"].tolist() == [pytest.approx(canary["accountant_epsilon"])]


def test_attack_options_check_the_canary_mode():
    with pytest.raises(ConfigError, match="canary_mode"):
        audit.AttackOptions("run", canaries=100, canary_mode="grey-box").validate()
    with pytest.raises(ConfigError, match="at most"):
        audit.AttackOptions("run", canaries=audit.MAX_CANARIES + 1).validate()
    options = audit.AttackOptions("run", canaries=100, canary_mode="black-box").validate()
    assert audit.AttackOptions.from_dict(options.to_dict()) == options
    assert audit.AttackOptions.from_dict({"target_run_id": "old", "canaries": 50}).canary_mode == "black-box"


def test_epsilon_table_of_an_old_result_without_power_still_draws():
    frame = pd.DataFrame({"label": ["accountant (guarantee)", "canary audit"], "kind": ["upper", "lower"],
                          "epsilon": [3.0, 1.2], "detail": ["a", "b"], "compare_epsilon": [math.nan, 3.3],
                          "power": [math.nan, math.nan]})
    fig = plots.epsilon_audit_chart(frame)
    assert [trace.name for trace in fig.data if trace.type == "scatter"] == \
        ["its own run's ε (compare the bound with this)"]


def test_attack_lab_shows_the_canary_bound_its_power_and_its_runs_epsilon():
    from streamlit.testing.v1 import AppTest

    from dpcore.store.runs import default_root

    store = RunStore(default_root())
    run_id = store.create_run(TrainConfig(dataset="synthetic", target_epsilon=4.0, epochs=2, device="cpu", seed=0))
    store.set_status(run_id, "running")
    train_runner(run_id, store, lambda: False)
    result = audit.run_attack_suite(store, run_id, attacks=["loss"], canaries=500, canary_mode="white-box")
    canary = result["epsilon"]["canary"]
    at = AppTest.from_file("../../pages/attack_lab.py", default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Canary run's own ε (compare with this)"] == f"{canary['accountant_epsilon']:.2f}"
    assert metrics["Audit power"] == f"{canary['power']:.2f}"
    assert metrics["Canary audit: ε lower bound"] == f"{canary['epsilon_lower']:.2f}"
    assert any("not the target's ε" in caption.value for caption in at.caption)
    mode = next(control for control in at.segmented_control if control.label == "Canaries")
    assert list(mode.options) == list(audit.CANARY_MODES) and mode.value == audit.DEFAULT_CANARY_MODE
    count = next(box for box in at.number_input if box.label == "Number of canaries")
    assert count.value == audit.DEFAULT_CANARIES_BY_MODE["white-box"]


def test_a_bound_from_another_run_does_not_shade_this_runs_gap():
    frame = pd.DataFrame({"label": ["this run's accountant (guarantee)", "loss attack", "canary audit (black-box)"],
                          "kind": ["upper", "lower", "lower"], "epsilon": [3.0, 0.4, 1.2], "detail": ["a", "b", "c"],
                          "compare_epsilon": [math.nan, math.nan, 3.3], "power": [math.nan, math.nan, 2.5]})
    fig = plots.epsilon_audit_chart(frame)
    gap = next(shape for shape in fig.layout.shapes if shape.name == "unknown gap")
    assert (gap.x0, gap.x1) == (0.4, 3.0)  # from the loss attack's bound, not the canary run's
    power = next(trace for trace in fig.data if trace.name.startswith("audit power"))
    assert list(power.x) == [2.5] and fig.layout.xaxis.range[1] >= 3.3
