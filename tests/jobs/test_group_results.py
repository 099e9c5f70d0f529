"""Results by group of a stored run (dpcore.jobs.group_results): the whole-run row reproduces the run's own
numbers, per-example outputs are scored once and kept, the baseline's accuracy sits beside each group, CSV runs
slice by their own columns, and what cannot be shown says why."""

from __future__ import annotations

import numpy as np
import pytest

from dpcore.attacks.groups import ALL_GROUP
from dpcore.config import TrainConfig
from dpcore.errors import DPExplorerError
from dpcore.jobs import group_results as groups
from dpcore.jobs.training import link_baseline

FAST = dict(device="cpu", seed=0, epochs=2, reproducible=True)
CSV = "\n".join(["age,city,score,label"] + [
    f"{18 + (i * 7) % 60},{['north', 'south', 'east'][i % 3]},{(i * 13) % 17},{int((i * 7) % 60 > 25)}"
    for i in range(200)]).encode()


pytestmark = pytest.mark.usefixtures("one_thread_and_no_leftover_jobs")


def test_by_class_reproduces_the_run_and_compares_with_its_baseline(store, monkeypatch, train_stored):
    private = train_stored(store, TrainConfig(dataset="digits", target_epsilon=3.0, **FAST))
    baseline = train_stored(store, TrainConfig(dataset="digits", private=False, **FAST))
    link_baseline(store, private, baseline)
    kept = store.artifacts_path(private) / groups.OUTPUTS_FILE
    assert kept.is_file()  # the training job scored its model right away
    recorded = groups.example_outputs(store, private)
    kept.unlink()  # as for a run stored before this feature: scored from the stored weights on demand
    report = groups.group_report(store, private)
    again_scored = groups.example_outputs(store, private)
    np.testing.assert_allclose(again_scored.member_scores, recorded.member_scores, rtol=1e-6, atol=1e-9)
    assert np.array_equal(again_scored.non_member_correct, recorded.non_member_correct)
    table = report.table.set_index("group")
    summary, base_summary = store.get(private).summary, store.get(baseline).summary
    assert list(table.index) == [ALL_GROUP, *(str(d) for d in range(10))] and report.column == groups.BY_CLASS
    assert table.loc[ALL_GROUP, "auc"] == pytest.approx(summary["mia_auc"])
    assert table.loc[ALL_GROUP, "tpr_raw"] == pytest.approx(summary["mia_tpr_at_1pct_fpr"])
    assert table.loc[ALL_GROUP, "test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert table.loc[ALL_GROUP, "baseline_test_accuracy"] == pytest.approx(base_summary["test_accuracy"])
    assert table.loc[ALL_GROUP, "accuracy_lost"] == pytest.approx(
        base_summary["test_accuracy"] - summary["test_accuracy"])
    assert report.baseline_id == baseline and table["n_non_members"].iloc[1:].sum() == 360
    # each class's accuracy, weighted by its size, adds up to the whole run's
    weighted = (table["test_accuracy"].iloc[1:] * table["n_non_members"].iloc[1:]).sum() / 360
    assert weighted == pytest.approx(summary["test_accuracy"])
    assert not table["tpr_resolvable"].any()  # 360 non-members: never the 1,000 that 1 % FPR needs

    # scored once: the next report reads the kept outputs instead of running the model
    assert (store.artifacts_path(private) / groups.OUTPUTS_FILE).is_file()
    monkeypatch.setattr(groups, "_compute", lambda *a, **k: pytest.fail("scored again"))
    again = groups.group_report(store, private, n_bootstrap=0)
    assert again.table["auc"].tolist() == pytest.approx(report.table["auc"].tolist())

    store.delete(baseline, force=True)
    assert "was deleted" in groups.group_report(store, private, n_bootstrap=0).notes[0]


def test_a_csv_run_slices_by_its_own_columns_and_other_scores(store, train_stored):
    path = store.save_upload(CSV, "people.csv")
    run_id = train_stored(store, TrainConfig(dataset="csv", data_path=str(path), label_column="label", private=False,
                                         **FAST))
    data = groups.run_data(store, run_id)
    assert groups.slice_columns(data) == [groups.BY_CLASS, "age", "city", "score"]
    by_city = groups.group_report(store, run_id, column="city", data=data, n_bootstrap=0).table
    assert list(by_city["group"]) == [ALL_GROUP, "east", "north", "south"]
    assert by_city["n_members"].iloc[1:].sum() == data.n_members == 160
    by_age = groups.group_report(store, run_id, column="age", data=data, n_bootstrap=0).table
    assert len(by_age) == 5 and by_age["group"].iloc[1].startswith("18 to <")  # four quantile bins
    with pytest.raises(DPExplorerError, match="cannot slice this run by 'height'"):
        groups.group_report(store, run_id, column="height", data=data)

    # another attack's per-example scores: members all above non-members gives AUC 1 in every group
    scores = (np.ones(data.n_members), np.zeros(data.n_non_members))
    lab = groups.group_report(store, run_id, column="city", scores=scores, attack="LiRA", n_bootstrap=0)
    assert lab.attack == "LiRA" and (lab.table["auc"] == 1.0).all()
    wrong = groups.group_report(store, run_id, scores=(np.ones(3), np.zeros(2)), attack="LiRA", n_bootstrap=0)
    assert wrong.attack == "loss threshold" and "do not match" in wrong.notes[0]


def test_runs_that_cannot_be_scored_say_why(store, train_stored):
    queued = store.create_run(TrainConfig(dataset="synthetic", **FAST))
    with pytest.raises(DPExplorerError, match="still queued"):
        groups.group_report(store, queued)
    store.set_status(queued, "running")
    with pytest.raises(DPExplorerError, match="still running"):
        groups.example_outputs(store, queued)
    stopped = train_stored(store, TrainConfig(dataset="synthetic", private=False, **FAST))
    for name in (groups.OUTPUTS_FILE, "model.pt"):  # e.g. a run cancelled before its first step kept no weights
        (store.artifacts_path(stopped) / name).unlink()
    with pytest.raises(DPExplorerError, match=r"has no model\.pt"):
        groups.group_report(store, stopped)
