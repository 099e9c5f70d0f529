"""dpcore.views.tables: the runs overview, filters, side-by-side numbers, overlays, ROC loading and exports.

Runs are written straight into a store (no training), so these tests are fast and exact.
"""

from __future__ import annotations

import io
import json
import math

import pandas as pd
import pytest

from dpcore.config import TrainConfig
from dpcore.errors import DPExplorerError
from dpcore.store.runs import DONE, RUNNING, RunNotFound, RunStore
from dpcore.views import tables as compare

PRIVATE = TrainConfig(dataset="digits", target_epsilon=3.0, epochs=2).resolve()
BASELINE = PRIVATE.replace(private=False, target_epsilon=None)


def fake_run(store: RunStore, cfg: TrainConfig, *, name: str | None = None, epsilons=(1.0, 2.0, 2.9),
             accuracy: float = 0.8, status: str = DONE, **summary) -> str:
    """A run with three steps over two epochs and a summary, as the trainer would store it."""
    run_id = store.create_run(cfg, name=name)
    store.set_status(run_id, RUNNING)
    store.append_steps(run_id, [{"step": i + 1, "epoch": 1 + i // 2, "epsilon": eps, "clip_fraction": 0.6,
                                 "loss": 1.0 / (i + 1), "batch_size": 250} for i, eps in enumerate(epsilons)])
    store.append_epoch(run_id, [{"epoch": 1, "epsilon": epsilons[1], "train_loss": 0.5, "train_accuracy": 0.7,
                                 "test_accuracy": accuracy - 0.1},
                                {"epoch": 2, "epsilon": epsilons[-1], "train_loss": 0.3, "train_accuracy": 0.9,
                                 "test_accuracy": accuracy}])
    store.set_progress(run_id, 3, 3 if status == DONE else 10)
    if status != RUNNING:
        private = cfg.private
        store.update_summary(run_id, final_epsilon=epsilons[-1] if private else None, test_accuracy=accuracy,
                             train_accuracy=0.9, noise_multiplier=1.1 if private else None, steps=3,
                             epochs_done=2, seconds=1.5, ms_per_step=500.0,
                             final_clip_fraction=0.6 if private else None, **summary)
        store.set_status(run_id, status, stop_status="finished")
    return run_id


def write_roc(store: RunStore, run_id: str, payload) -> None:
    folder = store.artifacts_dir(run_id, create=True)
    (folder / "roc.json").write_text(payload if isinstance(payload, str) else json.dumps(payload))


def test_overview_adds_display_columns(store):
    private = fake_run(store, PRIVATE, mia_auc=0.55)
    baseline = fake_run(store, BASELINE, accuracy=0.95)
    running = fake_run(store, PRIVATE, epsilons=(0.5, 0.7), status=RUNNING)
    frame = compare.runs_overview(store).set_index("id")
    assert frame.loc[private, "epsilon"] == 2.9 and frame.loc[private, "accuracy"] == 0.8
    assert math.isinf(frame.loc[baseline, "epsilon"]) and frame.loc[baseline, "mode_label"] == "no DP"
    assert frame.loc[running, "epsilon"] == 0.7  # live: the latest step
    assert frame.loc[running, "status_label"] == "running 30 %"
    assert frame.loc[private, "mode_label"] == "target ε" and frame.loc[private, "mia_auc"] == 0.55
    assert frame.loc[private, "created_at"].tzinfo is not None
    assert compare.runs_overview(RunStore(store.root / "empty")).empty
    attack = store.create_run({"what": "attack"}, kind="attack", group=private)  # an evaluation job, not a run
    assert attack not in compare.runs_overview(store)["id"].tolist()
    assert attack in compare.runs_overview(store, kind=None)["id"].tolist()


def test_filters_combine():
    frame = pd.DataFrame({
        "id": ["a1", "b2", "c3"], "name": ["digits mlp, eps 3", "digits mlp, no DP", "adult mlp, eps 1"],
        "dataset": ["digits", "digits", "adult"], "status": ["done", "failed", "done"],
        "mode": ["epsilon", "baseline", "epsilon"],
    })
    assert compare.filter_runs(frame)["id"].tolist() == ["a1", "b2", "c3"]
    assert compare.filter_runs(frame, datasets=["digits"], statuses=["done"])["id"].tolist() == ["a1"]
    assert compare.filter_runs(frame, modes=["epsilon"], text="EPS MLP")["id"].tolist() == ["a1", "c3"]
    assert compare.filter_runs(frame, text="b2")["id"].tolist() == ["b2"]  # ids match too
    assert compare.filter_runs(frame, text="no dp adult").empty


def test_compare_runs_side_by_side(store):
    private = fake_run(store, PRIVATE, name="same name", mia_auc=0.6, mia_tpr_at_1pct_fpr=0.02)
    baseline = fake_run(store, BASELINE, name="same name", accuracy=0.95)
    write_roc(store, baseline, {"fpr": [0, 0.5, 1], "tpr": [0, 0.9, 1], "auc": 0.7})
    frame = compare.compare_runs(store, [private, baseline, private])
    assert frame.index.tolist() == [private, baseline]
    assert frame.loc[private, "label"] != frame.loc[baseline, "label"]  # repeated names get the id
    assert frame.loc[private, "final_epsilon"] == 2.9 and math.isinf(frame.loc[baseline, "final_epsilon"])
    assert frame.loc[private, "accuracy_gap"] == pytest.approx(0.1)
    assert frame.loc[baseline, "mia_auc"] == 0.7  # from roc.json when the summary has none
    assert math.isnan(frame.loc[baseline, "noise_multiplier"])

    table = compare.comparison_table(frame)
    private_label, baseline_label = frame["label"]
    assert list(table.columns) == [private_label, baseline_label]
    assert table.loc["ε spent (at δ)"].tolist() == ["2.90", "∞ (no DP)"]
    assert table.loc["Test accuracy"].tolist() == ["80.0 %", "95.0 %"]
    assert table.loc["Attack AUC (0.5 = chance)"].tolist() == ["0.600", "0.700"]
    assert table.loc["Training time", private_label] == "2 s (500 ms/step)"
    continued = fake_run(store, PRIVATE)
    store.update_summary(continued, steps=9)  # 6 steps were its parent's; it trained the last 3 in 1.5 s
    cells = compare.comparison_table(compare.compare_runs(store, [continued, baseline]))
    assert cells.loc["Training time"].iloc[0] == "2 s for its last 3 steps (500 ms/step)"
    assert "ε hard limit" not in table.index  # empty for every run: left out
    with pytest.raises(RunNotFound):
        compare.compare_runs(store, ["nope"])


def test_short_labels_keep_what_differs():
    names = {"a": "digits mlp, eps 3, C 1, seed 42 (+2 epochs)", "b": "digits mlp, no DP, C 1, seed 42",
             "c": "digits mlp, eps 3, C 1, seed 42"}
    labels, shared = compare.short_labels(names)
    assert labels == {"a": "eps 3 (+2 epochs)", "b": "no DP", "c": "eps 3"}
    assert shared == ["digits mlp", "C 1", "seed 42"]
    labels, shared = compare.short_labels({"a": "x, y", "b": "x, y"})  # identical names: ids tell them apart
    assert labels == {"a": "x, y [a]", "b": "x, y [b]"} and shared == []
    assert compare.short_labels({"a": "only one"}) == ({"a": "only one"}, [])


def test_load_roc_handles_missing_and_broken_files(store):
    run_id = fake_run(store, PRIVATE)
    assert compare.load_roc(store, run_id) is None
    write_roc(store, run_id, "{not json")
    assert compare.load_roc(store, run_id) is None
    write_roc(store, run_id, {"fpr": [0, 1], "tpr": [0, 1, 1]})
    assert compare.load_roc(store, run_id) is None
    write_roc(store, run_id, {"fpr": [0, 0.5, 1], "tpr": [0, 1, 1]})
    assert compare.load_roc(store, run_id)["auc"] == pytest.approx(0.75)  # computed when not stored


def test_overlays_pair_labels_with_metrics(store):
    first, second = fake_run(store, PRIVATE, name="a"), fake_run(store, BASELINE, name="b")
    write_roc(store, first, {"fpr": [0, 1], "tpr": [0, 1], "auc": 0.5})
    data = compare.overlays(store, [first, second])
    assert [label for label, _ in data.steps] == ["a", "b"] and len(data.steps[0][1]) == 3
    assert [label for label, _ in data.epochs] == ["a", "b"]
    assert [curve[0] for curve in data.roc] == ["a"] and data.without_roc == ["b"]


def test_metrics_csv_round_trips(store):
    run_id = fake_run(store, PRIVATE)
    steps = pd.read_csv(io.BytesIO(compare.export_metrics_csv(store, run_id)))
    assert steps.columns.tolist() == ["run_id", "step", "epoch", "epsilon", "clip_fraction", "loss", "batch_size"]
    assert (steps["run_id"] == run_id).all() and steps["epsilon"].tolist() == [1.0, 2.0, 2.9]
    assert steps["batch_size"].tolist() == [250, 250, 250]
    epochs = pd.read_csv(io.BytesIO(compare.export_metrics_csv(store, run_id, table="epochs")))
    assert epochs["test_accuracy"].tolist() == pytest.approx([0.7, 0.8])
    with pytest.raises(DPExplorerError, match="steps, epochs"):
        compare.export_metrics_csv(store, run_id, table="history")
    assert compare.export_filename(run_id, "steps") == f"dp-explorer-{run_id}-steps.csv"


def test_summary_json_is_strict_json(store):
    private = fake_run(store, PRIVATE, mia_auc=0.52)
    write_roc(store, private, {"fpr": [0, 1], "tpr": [0, 1], "auc": 0.52, "advantage": float("nan")})
    payload = json.loads(compare.export_summary_json(store, private))
    assert payload["id"] == private and payload["status"] == DONE and payload["resumed_from"] is None
    assert payload["config"] == store.get(private).config
    assert payload["summary"]["final_epsilon"] == 2.9
    assert payload["membership_attack"] == {"auc": 0.52, "advantage": None}  # no curve arrays, no NaN
    assert [check["passed"] for check in payload["checks"]] == [True, True, True, True, None]
    # the fifth is the advisory clip-band check (flagged so, the amber one): not measured in this fake run
    assert [check["advisory"] for check in payload["checks"]] == [False, False, False, False, True]

    baseline = fake_run(store, BASELINE)
    text = compare.export_summary_json(store, baseline).decode()
    assert "Infinity" not in text and "NaN" not in text
    payload = json.loads(text)
    assert payload["membership_attack"] is None
    assert [check["name"] for check in payload["checks"]] == [
        "meaningful epsilon", "membership attack near chance", "model is useful"]
    assert payload["checks"][0]["passed"] is False  # no DP: no guarantee


def test_attack_lab_results_appear_in_overview_and_comparison(store):
    attacked = fake_run(store, PRIVATE, mia_auc=0.52, lira_auc=0.61, lira_tpr_at_1pct_fpr=0.04,
                        empirical_epsilon_lower=0.35)
    plain = fake_run(store, PRIVATE, mia_auc=0.51)
    frame = compare.runs_overview(store).set_index("id")
    assert frame.at[attacked, "lira_auc"] == pytest.approx(0.61)
    assert frame.at[attacked, "empirical_epsilon_lower"] == pytest.approx(0.35)
    assert math.isnan(frame.at[plain, "lira_auc"])
    table = compare.comparison_table(compare.compare_runs(store, [attacked, plain]))
    assert "Attack lab: LiRA AUC" in table.index
    assert "Attack lab: empirical ε lower bound" in table.index
    assert table.loc["Attack lab: empirical ε lower bound"].tolist() == ["0.35", "–"]


def test_overview_without_any_attack_lab_run_still_has_the_columns(store):
    fake_run(store, PRIVATE)
    frame = compare.runs_overview(store)
    assert set(compare.ATTACK_LAB_FIELDS) <= set(frame.columns)
