"""The sweep estimate's correction from recent comparable runs (``dpcore.jobs.speed_history``)."""

from __future__ import annotations

import pytest

from dpcore.config import TrainConfig
from dpcore.engine.speed import Speed, run_seconds
from dpcore.jobs import sweep as sweeps
from dpcore.jobs.speed_history import observed_factor
from dpcore.store.runs import DONE, RunStore

SPEED = Speed(ms_per_step=20.0, setup_s=0.5, eval_s=0.05, basis="measured on this machine (test)")
START, END = "2025-01-01T00:00:00+00:00", "2025-01-01T00:00:12+00:00"  # the runs train for 12 s
NOW = 1735689612.0 + 60  # a minute after END


def _done_run(store: RunStore, monkeypatch, cfg: TrainConfig, *, steps: int = 100, epochs: int = 2) -> str:
    run_id = store.create_run(cfg.resolve())  # a finished run stores its resolved config
    with monkeypatch.context() as patch:
        patch.setattr("dpcore.store.runs.utc_now", lambda: START)
        store.set_status(run_id, "running")
        patch.setattr("dpcore.store.runs.utc_now", lambda: END)
        store.update_summary(run_id, steps=steps, epochs_done=epochs, seconds=12.0)
        store.set_status(run_id, DONE)
    return run_id


def test_factor_is_wall_time_over_the_calibrated_prediction(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    cfg = TrainConfig(dataset="synthetic", target_epsilon=3.0, batch_size=64)
    kwargs = {"dataset": "synthetic", "model": "mlp", "batch_size": 64, "private": True, "now": NOW}
    assert observed_factor(store, SPEED, **kwargs) is None
    _done_run(store, monkeypatch, cfg)
    _done_run(store, monkeypatch, cfg.replace(batch_size=32))  # another batch size: not comparable
    factor, used = observed_factor(store, SPEED, **kwargs)
    predicted = run_seconds(SPEED, steps=100, epochs=2, attack=False, overhead_s=0.0)  # training only
    assert used == 1 and factor == pytest.approx(12.0 / predicted)
    assert observed_factor(store, SPEED, **{**kwargs, "private": False}) is None
    assert observed_factor(store, SPEED, **{**kwargs, "now": NOW + 10_000}) is None  # too old to say anything


def test_a_workers_first_cold_job_is_left_out(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    cfg = TrainConfig(dataset="synthetic", target_epsilon=3.0, batch_size=64)
    kwargs = {"dataset": "synthetic", "model": "mlp", "batch_size": 64, "private": True, "now": NOW}
    cold = _done_run(store, monkeypatch, cfg)
    store.update_summary(cold, worker_job=1, seconds=120.0)  # warm-ups made it 10x slower than the rest
    assert observed_factor(store, SPEED, **kwargs) is None
    warm = _done_run(store, monkeypatch, cfg)
    store.update_summary(warm, worker_job=2)
    factor, used = observed_factor(store, SPEED, **kwargs)
    assert used == 1 and factor == pytest.approx(12.0 / run_seconds(SPEED, steps=100, epochs=2, attack=False,
                                                                     overhead_s=0.0))


def test_sweep_estimate_applies_the_factor_of_recent_runs(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    spec = sweeps.SweepSpec(base=TrainConfig(dataset="synthetic", epochs=2), epsilons=(1.0,), max_grad_norms=(1.0,),
                            seeds=(0,), include_baseline=False)
    plain = sweeps.estimate(spec, store=store, speeds={True: SPEED}, calibrate=False)
    monkeypatch.setattr("dpcore.jobs.speed_history.time.time", lambda: NOW)
    _done_run(store, monkeypatch, TrainConfig(dataset="synthetic", target_epsilon=3.0))
    corrected = sweeps.estimate(spec, store=store, speeds={True: SPEED}, calibrate=False)
    factor = 12.0 / run_seconds(SPEED, steps=100, epochs=2, attack=False, overhead_s=0.0)
    assert corrected.seconds == pytest.approx(plain.seconds * factor)
    assert "1 recent run(s)" in corrected.basis
