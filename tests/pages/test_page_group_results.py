"""AppTest for "Results by class and slice": the run view (Train page) shows the per-class table of a finished run
beside its baseline, a CSV run's column picker slices by that column, and the Attack lab shows the same panel
for its strongest attack."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from dpcore.config import TrainConfig
from dpcore.jobs import attack as audit
from dpcore.jobs.training import link_baseline
from dpcore.store.runs import RunStore, default_root
from pages.group_results import TITLE

TRAIN = "../../pages/train.py"
LAB = "../../pages/attack_lab.py"
FAST = dict(device="cpu", seed=0, epochs=2, reproducible=True)
CSV = "\n".join(["age,city,label"] + [f"{18 + (i * 7) % 60},{['north', 'south', 'east'][i % 3]},"
                                      f"{int((i * 7) % 60 > 25)}" for i in range(200)]).encode()


pytestmark = pytest.mark.usefixtures("one_thread_and_no_leftover_jobs")


def _open(page: str, run_id: str) -> AppTest:
    at = AppTest.from_file(page, default_timeout=60)
    at.query_params["run"] = run_id
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _group_frame(at: AppTest):
    return next(frame.value for frame in at.dataframe if "members / non-members" in frame.value.columns)


def test_run_view_shows_the_per_class_table_beside_the_baseline(train_stored):
    store = RunStore(default_root())
    private = train_stored(store, TrainConfig(dataset="digits", target_epsilon=3.0, **FAST))
    baseline = train_stored(store, TrainConfig(dataset="digits", private=False, **FAST))
    link_baseline(store, private, baseline)
    at = _open(TRAIN, private)
    assert any(expander.label == TITLE for expander in at.expander)
    table = _group_frame(at)
    assert table["group"].tolist() == ["all examples", *(str(d) for d in range(10))]
    assert {"accuracy lost to DP (points)", "attack AUC", "TPR @ 1 % FPR"} <= set(table.columns)
    assert all(cell.startswith("not resolvable") for cell in table["TPR @ 1 % FPR"].iloc[1:])  # 36 non-members
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    chart = next(spec for spec in specs if "By class" in json.dumps(spec["layout"].get("title", {})))
    assert {trace["name"] for trace in chart["data"]} >= {"with DP", "without DP (baseline)"}
    assert not at.selectbox or all(box.label != "Slice by" for box in at.selectbox)  # no columns to pick
    at.run()  # a rerun reads the cached numbers
    assert not at.exception and _group_frame(at)["group"].tolist() == table["group"].tolist()


def test_a_csv_run_picks_the_slice_column(train_stored):
    store = RunStore(default_root())
    path = store.save_upload(CSV, "people.csv")
    run_id = train_stored(store, TrainConfig(dataset="csv", data_path=str(path), label_column="label", private=False,
                                         **FAST))
    at = _open(TRAIN, run_id)
    picker = next(box for box in at.selectbox if box.label == "Slice by")
    assert picker.options == ["class (the label)", "age", "city"]
    assert _group_frame(at)["group"].tolist() == ["all examples", "0", "1"]
    picker.set_value("city").run()
    assert not at.exception
    table = _group_frame(at)
    assert table["group"].tolist() == ["all examples", "east", "north", "south"]
    assert "accuracy lost to DP (points)" not in table.columns  # a baseline itself: nothing to compare with


def test_attack_lab_shows_the_panel_for_its_strongest_attack(train_stored):
    store = RunStore(default_root())
    run_id = train_stored(store, TrainConfig(dataset="synthetic", private=False, **FAST))
    result = audit.run_attack_suite(store, run_id, attacks=["loss", "rmia"], n_models=2)
    at = _open(LAB, run_id)
    assert any(expander.label == TITLE for expander in at.expander)
    table = _group_frame(at)
    assert table["group"].tolist()[0] == "all examples" and len(table) == 3  # two classes
    strongest = result["attacks"][result["strongest_attack"]]
    assert table["attack AUC"].iloc[0].startswith(f"{strongest['auc']:.3f}")  # the lab's numbers, not the loss's
    specs = [chart.proto.spec for chart in at.get("plotly_chart")]
    assert any(f"attack AUC ({strongest['title']};" in spec for spec in specs)
