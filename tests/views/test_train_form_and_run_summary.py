"""The Train form's and the run view's logic without Streamlit (dpcore/views/train_form.py, run_summary.py)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dpcore.config import TrainConfig
from dpcore.store.records import StoredRun
from dpcore.store.runs import RunRecord
from dpcore.views import run_summary as rs
from dpcore.views import train_form as tf


def test_settings_and_config_convert_both_ways():
    cfg = TrainConfig(dataset="digits", noise_multiplier=1.5, epochs=4, batch_size=64, epsilon_limit=6.0, seed=3)
    settings = tf.settings_from(cfg)
    assert settings["mode"] == "sigma" and settings["noise_multiplier"] == 1.5
    assert tf.config_from(settings) == cfg.resolve()
    baseline = tf.config_from({**settings, "mode": "baseline"})
    assert not baseline.private and baseline.noise_multiplier is None and baseline.epsilon_limit is None


def test_planner_hand_off_switches_dataset_recipe_and_privacy_mode():
    current = tf.default_settings("synthetic") | {"epochs": 3}
    cfg = tf.handoff_config(current, {"dataset": "digits", "noise_multiplier": 2.5, "n": 1000})  # 'n' is no field
    assert cfg.dataset == "digits" and cfg.noise_multiplier == 2.5 and cfg.target_epsilon is None
    assert cfg.resolve().epochs == TrainConfig(dataset="digits").resolve().epochs  # the digits recipe, not 3
    same = tf.handoff_config(current, {"target_epsilon": 1.0})
    assert (same.dataset, same.epochs, same.target_epsilon, same.noise_multiplier) == ("synthetic", 3, 1.0, None)


def test_small_helpers_of_the_form():
    assert tf.fitted_batch(48, 256) == 16 and tf.fitted_batch(800, 256) is None
    assert tf.label_column_for(["a", "Target", "b"], None) == "Target"
    assert tf.label_column_for(["a", "b"], "a") == "a" and tf.label_column_for(["a", "b"], "z") == "b"
    assert tf.probe_steps(64) == tf.PROBE_STEPS and tf.probe_steps(4096) == 3
    text = tf.probe_text([0.5, 1.5, 2.5, 3.5], suggested=2.0, current=3.0, steps=5)
    assert "**50%**" in text and "clips 25%" in text


def test_the_privacy_plan_spends_the_target_epsilon():
    plan = tf.privacy_plan(mode="epsilon", target_epsilon=3.0, noise_multiplier=None, delta=1e-5, n=800,
                           batch_size=64, epochs=2, accountant="rdp")
    assert plan.steps == 26 and plan.epsilon == pytest.approx(3.0, rel=1e-2) and plan.sigma > 0.5
    cfg = TrainConfig(dataset="synthetic", target_epsilon=3.0, epsilon_limit=1.0)
    assert "stops training at ε = 1" in tf.plan_text(cfg, plan)


def _run(status: str = "done", config: dict | None = None, **summary) -> StoredRun:
    return StoredRun.from_record(RunRecord(id="r1", name="demo", kind="train", group=None, status=status,
                                           config={"dataset": "digits", "model": "mlp", "target_epsilon": 3.0,
                                                   "target_delta": 1e-5, "seed": 0, **(config or {})},
                                           summary=summary, finished="2020-01-01T00:00:00+00:00"))


def test_attack_state_and_why_a_run_stopped():
    assert rs.attack_state(_run(mia_auc=0.6), job_alive=False) == "done"
    assert rs.attack_state(_run(mia_status="pending"), job_alive=True) == "running"
    assert rs.attack_state(_run(mia_status="pending"), job_alive=False) == "stalled"  # finished long ago
    assert rs.attack_state(_run(mia_status="failed"), job_alive=False) == "failed"
    assert rs.stop_message(_run("failed"))[0] == "error"
    assert rs.stop_message(_run())[:2] == ("success", "Trained for all epochs.")
    assert rs.badge(_run())[0] == "Finished" and rs.badge(_run("queued"))[0] == "Queued"


def test_texts_of_the_run_view():
    line = rs.config_line(_run(config={"max_grad_norm": 1.0, "epochs": 2, "extra": {"resume_from": "p1"}}))
    assert "target ε 3, δ 1e-05" in line and "C 1" in line and "+2 epochs" in line and "continues run p1" in line
    assert "no DP (baseline)" in rs.config_line(_run(config={"private": False}))
    assert rs.queue_text(1, worker_busy=False).endswith("as soon as the worker is free.")
    assert "2 jobs ahead" in rs.queue_text(2, worker_busy=True)
    assert rs.offers_continue(_run()) and not rs.offers_continue(_run(config={"private": False}))
    assert rs.explanations(_run(config={"private": False}))[-1][1][-1] == "baseline"
    assert math.isinf(rs.final_epsilon(_run(config={"private": False}), steps=pd.DataFrame()))
