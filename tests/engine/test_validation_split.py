"""Hyperparameter choice never touches the attack's non-members (issue 8 part 4).

The validation slice comes off the members' side, is fixed across seeds and is neither trained
on nor a non-member; the sweep frontier chooses on it and reports test accuracy; stores and
sweeps from before validation sets still render, with a visible note.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3

import numpy as np
import pandas as pd
import pytest
import torch

from dpcore.config import TrainConfig
from dpcore.engine.data import hold_out_validation, load_dataset, load_for_config, validation_indices
from dpcore.engine.result import EPOCH_COLUMNS
from dpcore.engine.training import train
from dpcore.errors import ConfigError, DatasetError
from dpcore.jobs import queue as jobs
from dpcore.jobs import sweep as sweeps
from dpcore.store.runs import DB_NAME, RUNS_DIR_ENV, RunStore
from dpcore.views import explain, report
from dpcore.views import frontier as frontiers


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}


# ---------------------------------------------------------------------- the split
def test_validation_slice_is_disjoint_from_trained_members_and_non_members_and_fixed_across_seeds():
    full = load_dataset("synthetic")
    splits = [load_for_config(TrainConfig(dataset="synthetic", validation_fraction=0.1, seed=seed)) for seed in (0, 7)]
    first, second = splits
    assert first.n_validation == 80 and first.n_members == 720 and first.info.n_members == 720
    assert torch.equal(first.x_validation, second.x_validation)  # the seed does not move it
    assert torch.equal(first.x_members, second.x_members)
    validation, members, non_members = _rows(first.x_validation), _rows(first.x_members), _rows(first.x_non_members)
    assert len(validation) == 80
    assert not validation & members and not validation & non_members
    assert validation | members == _rows(full.x_members)  # carved from the members' side only
    assert torch.equal(first.x_non_members, full.x_non_members)  # the attack's negatives are untouched
    # stratified: each class gives up about 10 % of its members
    for label in (0, 1):
        share = (first.y_validation == label).sum().item() / (full.y_members == label).sum().item()
        assert share == pytest.approx(0.1, abs=0.01)


def test_validation_indices_are_nested_and_zero_means_no_validation_set():
    labels = load_dataset("synthetic").y_members
    small, large = (set(validation_indices(labels, fraction=f).tolist()) for f in (0.1, 0.3))
    assert small < large
    plain = load_for_config(TrainConfig(dataset="synthetic"))
    assert plain.x_validation is None and plain.n_validation == 0 and plain.n_members == 800
    with pytest.raises(DatasetError, match="only once"):
        hold_out_validation(hold_out_validation(plain, fraction=0.1), fraction=0.1)


@pytest.mark.parametrize("fraction", [-0.1, 0.5, 0.9, math.nan, "0.1", True])
def test_validation_fraction_is_validated(fraction):
    with pytest.raises(ConfigError, match="validation_fraction"):
        TrainConfig(dataset="synthetic", target_epsilon=1.0, validation_fraction=fraction).validate()


def test_training_records_validation_accuracy_and_counts_only_trained_examples():
    cfg = TrainConfig(dataset="synthetic", target_epsilon=3.0, epochs=1, validation_fraction=0.1, reproducible=True)
    result = train(cfg)
    assert list(result.epochs.columns) == EPOCH_COLUMNS and "validation_accuracy" in EPOCH_COLUMNS
    assert 0.0 <= result.validation_accuracy <= 1.0
    assert result.data.n_members == 720 and result.data.n_validation == 80
    assert result.sample_rate == pytest.approx(1 / math.ceil(720 / 64))  # N = examples trained on
    summary = result.summary()
    assert summary["n_members"] == 720 and summary["n_validation"] == 80
    assert summary["validation_accuracy"] == pytest.approx(result.validation_accuracy)
    plain = train(cfg.replace(validation_fraction=0.0))
    assert math.isnan(plain.validation_accuracy) and plain.summary()["validation_accuracy"] is None
    assert plain.data.n_members == 800


def test_delta_check_uses_the_examples_trained_on():
    # delta 1.3e-3 is >= 1/800 but < 1/720: it passes only where N counts the 720 trained examples
    cfg = TrainConfig(dataset="synthetic", target_epsilon=3.0, epochs=1, validation_fraction=0.1,
                      target_delta=1.3e-3, reproducible=True)
    with pytest.raises(ConfigError, match="N = 800"):
        cfg.replace(validation_fraction=0.0).validate(n=800)
    assert cfg.validate(n=load_for_config(cfg).n_members).target_delta == 1.3e-3
    with pytest.raises(ConfigError, match="N = 720"):
        train(cfg.replace(target_delta=1.4e-3))


# ---------------------------------------------------------------------- choosing
def _points(validation: dict[tuple[float, float], float] | None) -> pd.DataFrame:
    """Run points for eps 1 and 4 x C 0.5 and 2 (one seed) where test and validation disagree."""
    test = {(1.0, 0.5): 0.70, (1.0, 2.0): 0.78, (4.0, 0.5): 0.90, (4.0, 2.0): 0.80}
    rows = []
    for (eps, clip), accuracy in test.items():
        rows.append(dict(id=f"r-{eps:g}-{clip:g}", name=f"eps {eps} C {clip}", kind="train", status="done",
                         private=True, target_epsilon=eps, max_grad_norm=clip, seed=0, final_epsilon=eps,
                         test_accuracy=accuracy, mia_auc=0.5,
                         **({} if validation is None else {"validation_accuracy": validation[(eps, clip)]})))
    rows.append(dict(id="base", name="baseline", kind="train", status="done", private=False, seed=0,
                     test_accuracy=0.95, **({} if validation is None else {"validation_accuracy": 0.96})))
    return frontiers.run_points(pd.DataFrame(rows))


DISAGREEING = {(1.0, 0.5): 0.80, (1.0, 2.0): 0.75, (4.0, 0.5): 0.85, (4.0, 2.0): 0.88}


def test_frontier_chooses_on_validation_and_reports_test_accuracy():
    front = frontiers.frontier(_points(DISAGREEING)).set_index("label")
    # test accuracy alone would pick C 2 at eps 1 and C 0.5 at eps 4: validation picks the others
    assert front.loc["ε 1", "max_grad_norm"] == 0.5 and front.loc["ε 1", "test_accuracy"] == pytest.approx(0.70)
    assert front.loc["ε 4", "max_grad_norm"] == 2.0 and front.loc["ε 4", "test_accuracy"] == pytest.approx(0.80)
    assert front.loc["ε 1", "validation_accuracy"] == pytest.approx(0.80)
    assert set(front.loc[["ε 1", "ε 4"], "chosen_on"]) == {frontiers.CHOSEN_ON_VALIDATION}
    assert list(front.loc[["ε 1", "ε 4"], "n_candidates"]) == [2, 2]
    assert front.loc["non-private baseline", "chosen_on"] == frontiers.CHOSEN_ON_NOTHING
    assert frontiers.frontier_note(frontiers.frontier(_points(DISAGREEING))) is None
    cells = frontiers.heatmap_data(_points(DISAGREEING))
    best = cells[cells["is_best"]]
    assert sorted(zip(best["target_epsilon"], best["max_grad_norm"], strict=True)) == [(1.0, 0.5), (4.0, 2.0)]


def test_old_runs_without_validation_fall_back_to_test_with_a_note():
    old = _points(None)
    assert old["validation_accuracy"].isna().all()
    front = frontiers.frontier(old).set_index("label")
    assert front.loc["ε 1", "max_grad_norm"] == 2.0 and front.loc["ε 4", "max_grad_norm"] == 0.5
    assert set(front.loc[["ε 1", "ε 4"], "chosen_on"]) == {frontiers.CHOSEN_ON_TEST}
    note = frontiers.frontier_note(frontiers.frontier(old))
    assert note and "ε 1" in note and "test accuracy" in note
    # a points frame from before the column existed at all
    legacy = frontiers.frontier(old.drop(columns="validation_accuracy")).set_index("label")
    assert legacy.loc["ε 1", "max_grad_norm"] == 2.0
    cells = frontiers.heatmap_data(old.drop(columns="validation_accuracy"))
    assert cells["is_best"].sum() == 2
    # one cell of eps 1 without validation: that epsilon falls back, the other still chooses on validation
    mixed = _points(DISAGREEING)
    mixed.loc[mixed["run_id"] == "r-1-2", "validation_accuracy"] = math.nan
    front = frontiers.frontier(mixed).set_index("label")
    assert front.loc["ε 1", "chosen_on"] == frontiers.CHOSEN_ON_TEST
    assert front.loc["ε 4", "chosen_on"] == frontiers.CHOSEN_ON_VALIDATION


def test_sweeps_hold_out_validation_for_every_member_and_old_records_read_as_none():
    spec = sweeps.SweepSpec(base=TrainConfig(dataset="synthetic", epochs=1), epsilons=(1.0,), max_grad_norms=(1.0,))
    members = sweeps.expand(spec)
    assert {m.config.validation_fraction for m in members} == {sweeps.DEFAULT_VALIDATION_FRACTION}
    assert any(not m.config.private for m in members)  # the baseline too
    assert sweeps.SweepSpec.from_dict(spec.normalized().to_dict()) == spec.normalized()
    old = spec.normalized().to_dict()
    del old["validation_fraction"]
    old["base"].pop("validation_fraction")
    restored = sweeps.SweepSpec.from_dict(old)
    assert restored.validation_fraction == 0.0
    assert {m.config.validation_fraction for m in sweeps.expand(restored)} == {0.0}


# ---------------------------------------------------------------------- explanations
def test_explanations_say_where_choices_are_made_and_cite_papernot_steinke():
    assert "validation" in explain.SELECTION_COST and "training side" in explain.SELECTION_COST
    assert "Papernot & Steinke" in explain.SELECTION_COST
    guide = explain.explain("hyperparameter_choice")
    assert "Hyperparameter Tuning with Renyi Differential Privacy" in guide and "ICLR 2022" in guide
    assert "best of several DP runs" in guide


# ---------------------------------------------------------------------- old stores and sweeps
def _old_sweep(root) -> tuple[RunStore, str]:
    """A runs folder as an older DP Explorer left it: no validation anywhere, epochs table without the column."""
    store = RunStore(root)
    spec = sweeps.SweepSpec(base=TrainConfig(dataset="synthetic", epochs=1), epsilons=(1.0,),
                            max_grad_norms=(0.5, 2.0), validation_fraction=0.0)
    sweep = sweeps.save_sweep(store, spec)
    accuracy = {0.5: 0.70, 2.0: 0.78}
    for member in sweeps.expand(sweep.spec):
        run_id = store.create_run(member.config, group=sweep.id)
        store.append_epoch(run_id, {"epoch": 1, "epsilon": 1.0, "test_accuracy": 0.7})
        store.set_status(run_id, "done")
        store.update_summary(run_id, final_epsilon=1.0 if member.config.private else None, mia_auc=0.51,
                             test_accuracy=accuracy.get(member.config.max_grad_norm, 0.9) if member.config.private
                             else 0.9, train_accuracy=0.8)
    store.close()
    connection = sqlite3.connect(root / DB_NAME)
    for run_id, config in connection.execute("SELECT id, config FROM runs").fetchall():
        values = json.loads(config)
        values.pop("validation_fraction")
        values.pop("reproducible", None)
        connection.execute("UPDATE runs SET config = ? WHERE id = ?", (json.dumps(values), run_id))
    connection.execute("ALTER TABLE epochs DROP COLUMN validation_accuracy")
    connection.commit()
    connection.close()
    record = root / sweeps.SWEEPS_DIR / f"{sweep.id}.json"
    values = json.loads(record.read_text())
    del values["spec"]["validation_fraction"]
    values["spec"]["base"].pop("validation_fraction")
    values["spec"]["base"].pop("reproducible", None)
    record.write_text(json.dumps(values))
    return RunStore(root), sweep.id


def test_an_old_runs_folder_opens_and_its_sweep_still_renders(tmp_path):
    store, sweep_id = _old_sweep(tmp_path / "old-runs")
    run_id = store.records(group=sweep_id)[0].id
    epochs = store.epochs(run_id)  # the column was added in place
    assert "validation_accuracy" in epochs.columns and epochs["validation_accuracy"].isna().all()
    assert store.append_epoch(run_id, {"epoch": 2, "epsilon": 1.0, "validation_accuracy": 0.6}) == 1
    points = frontiers.run_points(sweeps.sweep_runs(store, sweep_id))
    front = frontiers.frontier(points).set_index("label")
    assert front.loc["ε 1", "chosen_on"] == frontiers.CHOSEN_ON_TEST and front.loc["ε 1", "max_grad_norm"] == 2.0
    html = report.sweep_report(store, sweep_id)
    assert "no validation set" in html and "validation split" in html
    assert "a sweep recorded before validation splits" in html
    assert np.isfinite(points["test_accuracy"]).all()


def test_tradeoffs_page_renders_an_old_sweep_with_the_note(tmp_path):
    from streamlit.testing.v1 import AppTest

    store, sweep_id = _old_sweep(tmp_path / "runs-old")
    store.close()
    shutil.copytree(tmp_path / "runs-old", os.environ[RUNS_DIR_ENV], dirs_exist_ok=True)
    try:
        at = AppTest.from_file("../../pages/tradeoffs.py", default_timeout=60)
        at.query_params["sweep"] = sweep_id
        at.run()
        assert not at.exception
        warnings = " ".join(w.value for w in at.warning)
        assert "no validation set" in warnings and "ε 1" in warnings
        captions = " ".join(c.value for c in at.caption)
        assert "validation accuracy" in captions and "Papernot & Steinke" in captions
    finally:
        jobs.shutdown()


def test_a_stored_runs_attack_sees_only_the_trained_members(tmp_path):
    from dpcore.jobs.attack import load_target

    store = RunStore(tmp_path / "runs-attack")
    cfg = TrainConfig(dataset="synthetic", target_epsilon=3.0, epochs=1, validation_fraction=0.1, reproducible=True)
    run_id = store.create_run(cfg)
    sweeps.train_member(store, run_id)
    target = load_target(store, run_id)
    assert target.data.n_members == 720 and target.data.n_validation == 80
    assert not _rows(target.data.x_validation) & (_rows(target.data.x_members) | _rows(target.data.x_non_members))
    record = store.get(run_id)
    assert record.summary["n_members"] == 720 and 0 <= record.summary["validation_accuracy"] <= 1
    assert store.epochs(run_id)["validation_accuracy"].notna().all()
    store.close()
