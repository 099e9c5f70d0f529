"""This machine's measured speed (``dpcore.engine.speed``) and the estimates built on it (sweeps, attack pools)."""

from __future__ import annotations

import math

import pytest
import torch

from dpcore.config import TrainConfig
from dpcore.engine import speed as speed_lib
from dpcore.engine.speed import Speed, expected_steps, run_seconds
from dpcore.jobs import attack as audit
from dpcore.jobs import sweep as sweeps

SPEED = Speed(ms_per_step=20.0, setup_s=0.5, eval_s=0.05)


def test_run_seconds_is_steps_times_step_time_plus_overheads():
    assert run_seconds(SPEED, steps=100, epochs=4, attack=True, overhead_s=0.0) == pytest.approx(
        0.5 + 100 * 0.020 + 5 * 0.05)
    assert run_seconds(SPEED, steps=100, epochs=4, attack=False, overhead_s=0.25) == pytest.approx(
        0.5 + 2.0 + 4 * 0.05 + 0.25)
    # linear in the steps: twice the steps cost exactly 100 x 20 ms more
    assert run_seconds(SPEED, steps=200, epochs=4) - run_seconds(SPEED, steps=100, epochs=4) == pytest.approx(2.0)


def test_expected_steps_match_the_trainers_plan():
    assert expected_steps(n_examples=800, batch_size=64, epochs=10) == 130  # ceil(800 / 64) = 13
    assert expected_steps(n_examples=30, batch_size=64, epochs=2) == 2  # a batch larger than the data
    assert expected_steps(n_examples=1000, batch_size=100, epochs=1) == 10


def test_sweep_estimate_from_a_given_speed_is_exact():
    spec = sweeps.SweepSpec(base=TrainConfig(dataset="synthetic", epochs=2), epsilons=(1.0, 4.0),
                            max_grad_norms=(1.0,), seeds=(0,))
    baseline = Speed(ms_per_step=5.0, setup_s=0.1, eval_s=0.05)
    guess = sweeps.estimate(spec, speeds={True: SPEED, False: baseline}, calibrate=False)
    steps = guess.steps_per_run
    assert guess.n_runs == 3 and steps == 2 * math.ceil(800 / 64)
    want = 2 * run_seconds(SPEED, steps=steps, epochs=2) + run_seconds(baseline, steps=steps, epochs=2)
    assert guess.seconds == pytest.approx(want)
    assert sweeps.estimate(spec, speeds={True: SPEED, False: baseline}, calibrate=False,
                           parallel=2).seconds == pytest.approx(want / 2)


def test_attack_estimate_from_a_given_speed():
    cfg = TrainConfig(dataset="synthetic", epochs=3, batch_size=50)
    summary = {"n_members": 800, "n_non_members": 200, "seconds": 99.0}
    per_model = run_seconds(SPEED, steps=3 * 10, epochs=3, attack=False)  # 500 examples / 50
    got = audit.estimate_seconds(summary, n_models=16, speed=SPEED, config=cfg)
    assert got == pytest.approx(16 * per_model + audit_scoring(16))
    canary = run_seconds(SPEED, steps=3 * 16, epochs=3, attack=False)  # 800 members / 50
    assert audit.estimate_seconds(summary, n_models=16, speed=SPEED, config=cfg, canaries=500) == pytest.approx(
        got + canary)
    assert audit.estimate_seconds(summary, n_models=16, speed=SPEED, config=cfg, cached=True) == pytest.approx(
        audit_scoring(16))


def audit_scoring(n_models: int) -> float:
    from dpcore.jobs.attack_estimate import SCORING_S
    return SCORING_S + (n_models + 1) * SPEED.eval_s


def test_measured_speed_is_positive_cached_and_predicts_a_real_run():
    torch.set_num_threads(1)
    speed_lib.clear_speed_cache()
    cfg = TrainConfig(dataset="synthetic", epochs=2, target_epsilon=3.0, device="cpu", seed=0).resolve()
    measured = speed_lib.calibrate(cfg)
    assert measured is not None
    speed, n = measured
    assert n == 800 and speed.ms_per_step > 0 and speed.setup_s > 0 and speed.eval_s > 0
    assert "measured on this machine" in speed.basis
    again = speed_lib.calibrate(cfg)
    assert again is not None and again[0] is speed  # cached: not measured twice


def test_calibration_is_skipped_for_a_dataset_that_needs_a_download():
    cfg = TrainConfig(dataset="adult").resolve()  # OpenML, not cached in the test's empty data directory
    assert speed_lib.calibrate(cfg) is None


def test_calibration_times_steps_with_the_threads_a_worker_trains_with(monkeypatch):
    """A small model trains on one thread in a worker (``engine.threads``); a calibration in a process with more
    threads measured a digits step 10-60x slower than the worker then trained it (beside two busy processes)."""
    seen: list[int] = []
    timed = speed_lib._time_steps

    def spy(plan, *, steps):
        seen.append(torch.get_num_threads())
        return timed(plan, steps=steps)

    monkeypatch.setattr(speed_lib, "_time_steps", spy)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("DPEXPLORER_THREADS", raising=False)
    monkeypatch.setattr("dpcore.engine.threads._baseline", 2)  # as if torch had chosen 2 threads at import
    monkeypatch.setattr("dpcore.engine.threads.available_cores", lambda: 2)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        speed = speed_lib.measure_speed(TrainConfig(dataset="synthetic", target_epsilon=3.0, epochs=1).resolve(),
                                        steps=2)
        assert torch.get_num_threads() == 2  # restored afterwards
    finally:
        torch.set_num_threads(previous)
    assert seen == [1] and speed.ms_per_step > 0
