"""The Train page's "processes / GPUs" choice (AppTest): hidden without several CUDA GPUs, offered with them."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from dpcore.config import TrainConfig
from dpcore.views import train_form as tf
from pages import processes

PAGE = "../../pages/train.py"
NPROC_KEY = "train_w_nproc"

pytestmark = pytest.mark.usefixtures("one_thread_and_no_leftover_jobs")


def nproc_boxes(at: AppTest) -> list:
    return [box for box in at.selectbox if box.key.split("~")[0] == NPROC_KEY]


def test_hidden_on_a_machine_without_several_gpus(monkeypatch):
    monkeypatch.setattr(processes, "visible_gpus", lambda: 1)
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception
    assert nproc_boxes(at) == []
    assert at.query_params.get("nproc") is None


def test_offered_with_two_gpus_and_carried_into_the_config_and_link(monkeypatch):
    monkeypatch.setattr(processes, "visible_gpus", lambda: 2)
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception
    [box] = nproc_boxes(at)
    assert list(box.options) == ["1 (one process)", "2 GPUs (DPDDP)"] and box.value == 1
    box.set_value(2).run()
    assert not at.exception
    assert at.session_state["train_form"]["nproc"] == 2
    assert tf.config_from(at.session_state["train_form"]).validate().nproc == 2
    assert at.query_params.get("nproc") in ("2", ["2"])
    assert not at.error  # a valid config: the Train button stays usable


def test_options_and_the_baseline_stay_in_one_process():
    assert tf.nproc_options(0) == [] and tf.nproc_options(1) == []
    assert tf.nproc_options(4) == [1, 2, 3, 4]
    settings = {**tf.settings_from(TrainConfig(dataset="digits", target_epsilon=3.0, nproc=2))}
    assert settings["nproc"] == 2 and tf.config_from(settings).nproc == 2
    assert tf.config_from({**settings, "mode": "baseline"}).validate().nproc == 1
