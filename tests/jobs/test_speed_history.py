"""The sweep estimate from what recent runs here really took, whole (``dpcore.jobs.speed_history``): fake histories,
fake clocks."""

from __future__ import annotations

import pytest

from dpcore.config import TrainConfig
from dpcore.engine.speed import Speed, run_seconds
from dpcore.jobs import sweep as sweeps
from dpcore.jobs.speed_history import RunCost, member_seconds, recent_costs
from dpcore.store.runs import DONE, RunStore

SPEED = Speed(ms_per_step=20.0, setup_s=0.5, eval_s=0.05, basis="measured on this machine (test)")
START, END = "2025-01-01T00:00:00+00:00", "2025-01-01T00:00:12+00:00"  # the runs train for 12 s
JOB_END = "2025-01-01T00:00:15+00:00"  # ... and their job (attack, bound, writes) ends 3 s later
NOW = 1735689612.0 + 60  # a minute after END
KWARGS = {"dataset": "synthetic", "model": "mlp", "batch_size": 64, "private": True, "now": NOW}


def _done_run(store: RunStore, monkeypatch, cfg: TrainConfig, *, steps: int = 100, worker_job: int | None = 2,
              job_ended: str | None = JOB_END, seconds: float = 12.0, warm_ms: float | None = None,
              job_began: str | None = None) -> str:
    run_id = store.create_run(cfg.resolve())  # a finished run stores its resolved config
    with monkeypatch.context() as patch:
        patch.setattr("dpcore.store.runs.utc_now", lambda: START)
        store.set_status(run_id, "running")
        patch.setattr("dpcore.store.runs.utc_now", lambda: END)
        store.update_summary(run_id, steps=steps, epochs_done=2, seconds=seconds,
                             ms_per_step=1000.0 * seconds / steps, worker_job=worker_job, job_ended=job_ended)
        if warm_ms is not None:
            store.update_summary(run_id, warm_ms_per_step=warm_ms)
        if job_began is not None:
            store.update_summary(run_id, job_began=job_began)
        store.set_status(run_id, DONE)
    return run_id


def test_costs_split_the_whole_wall_time_into_per_step_and_fixed(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    cfg = TrainConfig(dataset="synthetic", target_epsilon=3.0, batch_size=64)
    assert recent_costs(store, **KWARGS) == []
    _done_run(store, monkeypatch, cfg)
    _done_run(store, monkeypatch, cfg.replace(batch_size=32))  # another batch size: not comparable
    assert recent_costs(store, **KWARGS) == [RunCost(ms_per_step=120.0, fixed_s=pytest.approx(3.0))]
    assert recent_costs(store, **{**KWARGS, "private": False}) == []
    assert recent_costs(store, **{**KWARGS, "now": NOW + 10_000}) == []  # too old to say anything
    _done_run(store, monkeypatch, cfg, job_ended=None)  # not a sweep member: its job ended when it finished
    assert recent_costs(store, **KWARGS)[0] == RunCost(ms_per_step=120.0, fixed_s=pytest.approx(0.0))


def test_a_workers_first_cold_job_is_left_out(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    cfg = TrainConfig(dataset="synthetic", target_epsilon=3.0, batch_size=64)
    _done_run(store, monkeypatch, cfg, worker_job=1, seconds=120.0, warm_ms=100.0)  # warm-ups made it 10x slower
    assert [c.cold for c in recent_costs(store, **KWARGS)] == [True]
    assert member_seconds(recent_costs(store, **KWARGS), steps=100) == pytest.approx(10.0)  # nothing else known
    _done_run(store, monkeypatch, cfg, worker_job=2)
    assert [c.cold for c in recent_costs(store, **KWARGS)] == [False, True]
    assert member_seconds(recent_costs(store, **KWARGS), steps=100) == pytest.approx(3.0 + 12.0)  # the warm one
    assert member_seconds(recent_costs(store, **KWARGS), steps=100, setup_s=5.0) == pytest.approx(3.0 + 12.0)


def test_a_cold_run_costs_its_steps_after_the_first_and_its_job_since_it_began_in_the_worker(tmp_path, monkeypatch):
    """A worker's first job: its set-up (one-off warm-ups) and its ``started`` (the worker's own start) are left out;
    its time per step after the first and its job from ``job_began`` (less training) are its cost."""
    store = RunStore(tmp_path / "runs")
    cfg = TrainConfig(dataset="synthetic", target_epsilon=3.0, batch_size=64)
    _done_run(store, monkeypatch, cfg, worker_job=1, seconds=40.0)  # recorded before the warm figure: unusable
    assert recent_costs(store, **KWARGS) == []
    began = "2025-01-01T00:00:01+00:00"  # the worker took 1 s to start; the job then trained 12 s and ended at 15 s
    _done_run(store, monkeypatch, cfg, worker_job=1, warm_ms=80.0, job_began=began)
    assert recent_costs(store, **KWARGS) == [RunCost(ms_per_step=80.0, fixed_s=pytest.approx(2.0), cold=True)]
    assert member_seconds(recent_costs(store, **KWARGS), steps=50, setup_s=0.5) == pytest.approx(0.5 + 2.0 + 4.0)
    _done_run(store, monkeypatch, cfg, worker_job=1, warm_ms=80.0)  # no job_began: its fixed cost is not known
    assert recent_costs(store, **KWARGS)[0] == RunCost(ms_per_step=80.0, fixed_s=0.0, cold=True)


def test_member_seconds_scale_the_medians_to_the_members_steps():
    costs = [RunCost(ms_per_step=10.0, fixed_s=0.5), RunCost(ms_per_step=90.0, fixed_s=9.0),
             RunCost(ms_per_step=20.0, fixed_s=0.2)]  # one run slowed by a burst of load
    assert member_seconds(costs, steps=200) == pytest.approx(0.5 + 200 * 0.020)
    assert member_seconds(costs, steps=400) - member_seconds(costs, steps=200) == pytest.approx(200 * 0.020)
    assert member_seconds([], steps=200) is None


def test_sweep_estimate_uses_recent_runs_whole_wall_time_over_the_calibration(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    spec = sweeps.SweepSpec(base=TrainConfig(dataset="synthetic", epochs=2), epsilons=(1.0, 2.0),
                            max_grad_norms=(1.0,), seeds=(0,), include_baseline=False)
    plain = sweeps.estimate(spec, store=store, speeds={True: SPEED}, calibrate=False, now=NOW)
    assert plain.seconds == pytest.approx(2 * run_seconds(SPEED, steps=plain.steps_per_run, epochs=2))
    _done_run(store, monkeypatch, TrainConfig(dataset="synthetic", target_epsilon=3.0), steps=100)
    measured = sweeps.estimate(spec, store=store, speeds={True: SPEED}, calibrate=False, now=NOW)
    assert measured.steps_per_run == 26  # 800 members / batch 64, 2 epochs
    assert measured.seconds == pytest.approx(2 * (3.0 + 26 * 0.120))  # fixed 3 s + 26 steps x 120 ms, per member
    assert "whole wall time of 1 recent run(s)" in measured.basis
    assert sweeps.estimate(spec, store=store, speeds={True: SPEED}, calibrate=False, now=NOW,
                           parallel=2).seconds == pytest.approx(measured.seconds / 2)


def test_baseline_without_history_falls_back_to_the_calibration(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    spec = sweeps.SweepSpec(base=TrainConfig(dataset="synthetic", epochs=2), epsilons=(1.0,),
                            max_grad_norms=(1.0,), seeds=(0,))
    baseline = Speed(ms_per_step=5.0, setup_s=0.1, eval_s=0.05)
    _done_run(store, monkeypatch, TrainConfig(dataset="synthetic", target_epsilon=3.0), steps=100)
    guess = sweeps.estimate(spec, store=store, speeds={True: SPEED, False: baseline}, calibrate=False, now=NOW)
    assert guess.seconds == pytest.approx(3.0 + 26 * 0.120 + run_seconds(baseline, steps=26, epochs=2))


def test_a_cold_run_alone_sets_the_steps_and_the_calibration_the_set_up(tmp_path, monkeypatch):
    """With only a worker's first job: a member costs its time per step after the first (not its whole per-step
    figure, slowed by one-off warm-ups) and its job outside training, plus the calibration's set-up; a warm run
    replaces both."""
    store = RunStore(tmp_path / "runs")
    spec = sweeps.SweepSpec(base=TrainConfig(dataset="synthetic", epochs=2), epsilons=(1.0,),
                            max_grad_norms=(1.0,), seeds=(0,), include_baseline=False)
    cfg = TrainConfig(dataset="synthetic", target_epsilon=3.0)
    _done_run(store, monkeypatch, cfg, worker_job=1, warm_ms=50.0,
              job_began="2025-01-01T00:00:01+00:00")  # 120 ms a step whole, 50 ms after the first; 2 s outside
    guess = sweeps.estimate(spec, store=store, speeds={True: SPEED}, calibrate=False, now=NOW)
    assert guess.seconds == pytest.approx(SPEED.setup_s + 2.0 + 26 * 0.050)
    assert "worker's first run" in guess.basis and "set-up measured on this machine" in guess.basis
    fallback = Speed(ms_per_step=SPEED.ms_per_step, setup_s=9.0, basis="guess")  # an uncalibrated set-up: not added
    assert sweeps.estimate(spec, store=store, speeds={True: fallback}, calibrate=False,
                           now=NOW).seconds == pytest.approx(2.0 + 26 * 0.050)
    _done_run(store, monkeypatch, cfg, worker_job=2)  # 120 ms a step, 3 s fixed
    assert sweeps.estimate(spec, store=store, speeds={True: SPEED}, calibrate=False,
                           now=NOW).seconds == pytest.approx(3.0 + 26 * 0.120)
