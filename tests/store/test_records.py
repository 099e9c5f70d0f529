"""Tests for dpcore.store.records.StoredRun (the typed view of a stored run) and dpcore.store.artifacts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dpcore.config import TrainConfig
from dpcore.errors import DPExplorerError
from dpcore.privacy.checks import CLIP_IN_BAND, SECRET_NOISE, WITHIN_BUDGET, run_checks
from dpcore.store import artifacts
from dpcore.store.records import StoredRun
from dpcore.store.runs import DONE, RunNotFound, RunRecord


def _record(config: dict, summary: dict | None = None, *, kind: str = "train") -> RunRecord:
    return RunRecord(id="r1", name="a run", kind=kind, group=None, status=DONE, config=config,
                     summary=summary or {}, steps_done=7)


def test_a_legacy_dict_reads_without_raising_and_counts_as_reproducible():
    # Stored before "reproducible" (and with a key TrainConfig no longer knows): no key means seeded noise.
    run = StoredRun.from_record(_record({"dataset": "digits", "target_epsilon": 3.0, "old_knob": 1},
                                        {"final_epsilon": 2.9, "test_accuracy": 0.8}))
    assert run.private and run.mode == "epsilon" and run.reproducible
    assert run.epsilon_status.reproducible and "reproducible" in run.epsilon_status.kinds
    assert run.target_epsilon == 3.0 and run.final_epsilon == pytest.approx(2.9)
    assert run.accountant == "rdp" and run.dataset == "digits"
    assert math.isnan(run.mia_auc) and math.isnan(run.train_accuracy) and math.isnan(run.seconds)
    assert run.steps == 7  # no summary steps: the progress counter
    assert run.train_config is not None and run.train_config.dataset == "digits"
    assert run.parent is None and run.roc() is None and run.artifacts is None
    names = [check.name for check in run.checks()]
    assert SECRET_NOISE in names and not next(c for c in run.checks() if c.name == SECRET_NOISE).passed
    with pytest.raises(TypeError):
        run.config["dataset"] = "x"  # a read-only view, never a copy that silently drifts


def test_a_new_secret_noise_run_is_not_reproducible():
    run = StoredRun.from_record(_record({"dataset": "digits", "target_epsilon": 3.0, "reproducible": False},
                                        {"final_epsilon": 2.9, "test_accuracy": 0.8, "mia_auc": 0.51}))
    assert not run.reproducible and run.epsilon_status.caveats == ()
    assert SECRET_NOISE not in [check.name for check in run.checks()]
    assert all(check.passed for check in run.checks() if not check.advisory)
    # the advisory clip-band check cannot be judged: this summary stores no median clip fraction
    assert [(check.name, check.passed) for check in run.checks() if check.advisory] == [(CLIP_IN_BAND, None)]
    assert run.privacy_text == "target ε 3"


def test_a_baseline_has_no_dp_numbers():
    run = StoredRun.from_record(_record(
        {"dataset": "digits", "private": False, "max_grad_norm": 1.0, "target_epsilon": 3.0, "reproducible": False},
        {"final_epsilon": None, "noise_multiplier": 0.0, "final_clip_fraction": 0.4, "test_accuracy": 0.95}))
    assert not run.private and run.mode == "baseline" and run.final_epsilon == math.inf
    assert run.target_epsilon is None and run.noise_multiplier is None and run.max_grad_norm is None
    assert run.accountant is None and math.isnan(run.clip_fraction) and run.test_accuracy == 0.95
    assert run.privacy_text == "no DP (ε = ∞)" and not run.epsilon_status.private
    budget = [check for check in run.checks() if check.name != WITHIN_BUDGET]
    assert budget and not budget[0].passed  # no guarantee: the ε checks fail on purpose


def test_a_gdp_run_gets_its_rdp_bound_and_a_fixed_sigma_run_its_mode():
    summary = {"final_epsilon": 3.0, "noise_multiplier": 1.3946, "sample_rate": 1 / 13, "steps": 130,
               "accountant": "gdp"}
    config = {"dataset": "digits", "accountant": "gdp", "target_delta": 1e-5, "reproducible": False,
              "noise_multiplier": 1.3946}
    run = StoredRun.from_record(_record(config, summary))
    assert run.mode == "sigma" and run.accountant == "gdp" and run.steps == 130
    assert run.privacy_text == "fixed σ 1.3946"
    status = run.epsilon_status
    assert status.bound_accountant == "rdp" and status.bound == pytest.approx(3.77, abs=0.01)
    assert run.marked_label == "a run (GDP approx.)"
    # the gate checks the proven bound, exactly as run_checks does for the same dicts
    assert [c.to_dict() for c in run.checks()] == [c.to_dict() for c in run_checks(config, summary)]


def test_a_foreign_job_config_has_no_mode_or_train_config():
    run = StoredRun.from_record(_record({"attack": "lira", "n_models": 4}, kind="attack"))
    assert run.mode is None and run.train_config is None and run.dataset is None


def test_load_reads_the_store_roc_metrics_and_parent(store):
    parent = store.create_run(TrainConfig(dataset="synthetic", target_epsilon=2.0, reproducible=False))
    child = store.create_run(TrainConfig(dataset="synthetic", target_epsilon=2.0, extra={"resume_from": parent}))
    store.append_epoch(child, {"epoch": 1, "test_accuracy": 0.7})
    run = StoredRun.load(store, child)
    assert run.parent == parent and run.id == child and run.status == "queued" and run.active
    assert run.roc() is None and run.epochs_frame()["test_accuracy"].tolist() == [0.7]
    artifacts.write_roc(store.artifacts_dir(child, create=True), {"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 1.0, 1.0]})
    roc = StoredRun.load(store, child).roc()
    assert isinstance(roc["fpr"], np.ndarray) and roc["auc"] == pytest.approx(0.75)  # computed when not stored
    assert {r.id for r in StoredRun.all(store)} == {parent, child}
    with pytest.raises(RunNotFound):
        StoredRun.load(store, "no-such-run")


def test_roc_loader_is_strict_and_roc_curve_tolerant(tmp_path):
    assert artifacts.load_roc(tmp_path) is None and artifacts.roc_curve(tmp_path) is None
    (tmp_path / artifacts.ROC_FILE).write_text("{broken")
    with pytest.raises(DPExplorerError, match="re-run the attack"):
        artifacts.load_roc(tmp_path)
    assert artifacts.roc_curve(tmp_path) is None
    artifacts.write_roc(tmp_path, {"fpr": [0.0, 1.0], "tpr": [0.0, 1.0], "auc": 0.5})
    assert json.loads((tmp_path / artifacts.ROC_FILE).read_text())["auc"] == 0.5
    assert not list(tmp_path.glob(".*partial"))  # the atomic write left no scratch file


def test_uploads_are_content_addressed_and_atomic(tmp_path):
    first = artifacts.save_upload(tmp_path, b"a,b\n1,2\n", "../My data.csv")
    assert first.name == "My_data.csv" and first.read_bytes() == b"a,b\n1,2\n"
    assert artifacts.save_upload(tmp_path, b"a,b\n1,2\n", "My data.csv") == first
    assert artifacts.save_upload(tmp_path, b"a,b\n3,4\n", "My data.csv") != first
    with pytest.raises(ValueError):
        artifacts.artifacts_path(tmp_path, "../escape")
