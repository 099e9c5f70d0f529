"""The Runs page through AppTest: table, filters, comparison, delete with confirmation, continue training.

A module fixture trains three tiny real runs once (synthetic data, one epoch, fixed sigma so
no noise calibration) plus a failed one into a template runs directory; every test gets a
copy in its own ``DPEXPLORER_RUNS_DIR`` and drives the page through ``app.py``, as under
``streamlit run`` (the empty state links to the Train page, which needs the navigation).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from dpcore.config import TrainConfig
from dpcore.jobs import queue as jobs
from dpcore.store.runs import RunStore

torch = pytest.importorskip("torch")
AppTest = pytest.importorskip("streamlit.testing.v1").AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGE = "pages/runs.py"
TIMEOUT = 60
PRIVATE = TrainConfig(dataset="synthetic", noise_multiplier=1.0, epochs=1, batch_size=200, device="cpu")
NOISY = PRIVATE.replace(noise_multiplier=2.0, max_grad_norm=0.5)
BASELINE = PRIVATE.replace(private=False, noise_multiplier=None)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> dict[str, object]:
    """A runs directory with three finished runs (two private, one baseline; all attacked) and a failed one."""
    from dpcore.engine.training import train
    from dpcore.jobs.training import record_result

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs-template")
    store = RunStore(root)
    ids = {}
    for key, cfg in (("private", PRIVATE), ("baseline", BASELINE), ("noisy", NOISY)):
        run_id = store.create_run(cfg)
        store.set_status(run_id, "running")
        record_result(store, run_id, train(cfg))
        ids[key] = run_id
    ids["failed"] = store.create_run(PRIVATE.replace(dataset="nope"), name="broken dataset")
    store.fail(ids["failed"], "dataset 'nope' is unknown")
    names = {run_id: store.get(run_id).name for run_id in ids.values()}
    store.close()
    return {"root": root, "ids": ids, "names": names}


@pytest.fixture
def runs(template, isolated_dirs):
    """This test's runs directory, a copy of the template: ``.store``, ``.ids`` (by role), ``.names`` (by id)."""
    root = Path(os.environ["DPEXPLORER_RUNS_DIR"])
    shutil.copytree(template["root"], root)
    store = RunStore(root)
    yield SimpleNamespace(store=store, ids=template["ids"], names=template["names"])
    jobs.shutdown()
    store.close()


def open_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page(PAGE)
    at.run()
    assert not at.exception, at.exception
    return at


def runs_table(at: AppTest):
    return next(frame for frame in at.dataframe if frame.key and frame.key.startswith("runs-table-"))


def select(at: AppTest, *run_ids: str) -> AppTest:
    table = runs_table(at)
    ids = table.value["id"].tolist()
    at.session_state[table.key] = {"selection": {"rows": [ids.index(run_id) for run_id in run_ids], "columns": []}}
    at.run()
    assert not at.exception, at.exception
    return at


def button(at: AppTest, key: str):
    return next(b for b in at.button if b.key == key)


def open_popover(at: AppTest, name: str, run_id: str) -> AppTest:
    """Open the run's 'continue', 'download' or 'delete' popover (its contents are drawn only while open)."""
    at.session_state[f"runs-pop-{name}-{run_id}"] = True
    at.run()
    assert not at.exception, at.exception
    return at


def test_empty_store_points_to_the_train_page(isolated_dirs):
    at = open_page()
    assert any("No runs yet" in m.value for m in at.markdown)
    assert not at.dataframe
    jobs.shutdown()


def test_empty_store_drops_the_parameters_another_page_left(isolated_dirs):
    at = open_page()
    at.query_params.update({"noise_multiplier": "2.7", "handoff": "noise_multiplier"})  # back from the planner
    at.run()
    assert not at.exception and "noise_multiplier" not in at.query_params and "handoff" not in at.query_params
    jobs.shutdown()


def test_the_table_shows_the_columns_that_matter_and_the_rest_on_request(runs):
    at = open_page()
    assert list(runs_table(at).proto.column_order) == ["name", "status_label", "epsilon_shown", "accuracy_pct",
                                                       "mia_auc", "created_at"]
    at.multiselect(key="runs-columns-extra").set_value(["dataset", "lira_auc"]).run()
    assert list(runs_table(at).proto.column_order) == ["name", "status_label", "dataset", "epsilon_shown",
                                                       "accuracy_pct", "mia_auc", "lira_auc", "created_at"]
    at.switch_page("pages/guide.py").run()
    at.switch_page(PAGE).run()
    assert at.multiselect(key="runs-columns-extra").value == ["dataset", "lira_auc"]  # kept across pages
    assert "dataset" in runs_table(at).proto.column_order


def test_table_lists_runs_and_filters_them(runs):
    ids, names = runs.ids, runs.names
    at = open_page()
    table = runs_table(at).value
    assert set(table["id"]) == set(ids.values())
    assert set(table["name"]) == set(names.values())
    row = table.set_index("id")
    assert row.loc[ids["baseline"], "epsilon"] == float("inf")
    assert row.loc[ids["private"], "epsilon"] > row.loc[ids["noisy"], "epsilon"] > 0  # more noise, less epsilon
    assert 0 <= row.loc[ids["private"], "accuracy_pct"] <= 100
    assert 0 <= row.loc[ids["private"], "mia_auc"] <= 1
    assert row.loc[ids["failed"], "status_label"] == "failed"

    at.text_input(key="runs-filter-text").set_value("no dp").run()
    assert runs_table(at).value["id"].tolist() == [ids["baseline"]]
    at.text_input(key="runs-filter-text").set_value("").run()
    at.multiselect(key="runs-filter-statuses").set_value(["failed"]).run()
    assert runs_table(at).value["id"].tolist() == [ids["failed"]]
    at.multiselect(key="runs-filter-statuses").set_value([]).run()
    at.multiselect(key="runs-filter-modes").set_value(["sigma"]).run()
    assert set(runs_table(at).value["id"]) == {ids["private"], ids["noisy"], ids["failed"]}


def test_selecting_two_runs_compares_them(runs):
    ids = runs.ids
    at = select(open_page(), ids["private"], ids["baseline"])
    assert [s.value for s in at.subheader] == ["Compare 2 runs"]
    comparison = next(frame for frame in at.dataframe if not (frame.key or "").startswith("runs-table-")).value
    assert list(comparison.columns) == ["sigma 1, C 0.3", "no DP"]  # only what tells them apart (the recipe's C)
    assert any("All 2 runs: synthetic mlp, seed 42" in caption.value for caption in at.caption)
    assert comparison.loc["ε spent (at δ)", "no DP"] == "∞ (no DP)"
    assert comparison.loc["Privacy setting", "sigma 1, C 0.3"] == "fixed σ 1"
    chart_ids = {chart.proto.id for chart in at.get("plotly_chart")}
    assert all(any(key in chart_id for chart_id in chart_ids)
               for key in ("runs-cmp-eps", "runs-cmp-clip", "runs-cmp-acc", "runs-cmp-roc"))
    assert at.selectbox(key="runs-open").value == ids["private"]  # the full view of the first selected run
    assert at.query_params["run"] == f"{ids['private']},{ids['baseline']}"
    # drawn; the file is built on click by report.report_for (tests/test_report.py and the browser test)
    assert "Comparison report (HTML)" in [b.proto.label for b in at.get("download_button")]


def test_a_shared_link_reopens_the_comparison(runs):
    ids = runs.ids
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page(PAGE)
    at.query_params["run"] = f"{ids['noisy']},{ids['baseline']},not-a-run"
    at.run()
    assert not at.exception, at.exception
    assert [s.value for s in at.subheader] == ["Compare 2 runs"]
    assert at.session_state["runs_selected_ids"] == [ids["noisy"], ids["baseline"]]
    assert any("not-a-run" in warning.value for warning in at.warning)  # named, not silently dropped


def test_delete_needs_confirmation(runs):
    store, ids = runs.store, runs.ids
    run_id = ids["noisy"]
    at = select(open_page(), run_id)
    assert not [b for b in at.button if b.key == f"runs-delete-{run_id}"]  # closed popover: nothing drawn
    at = open_popover(at, "download", run_id)
    labels = [element.proto.label for element in at.get("download_button")]
    assert labels[:3] == ["Steps (CSV)", "Epochs (CSV)", "Summary (JSON)"]
    assert "Report (HTML)" in labels  # in the run's view
    at = open_popover(at, "delete", run_id)
    delete = button(at, f"runs-delete-{run_id}")
    assert delete.disabled
    at.checkbox(key=f"runs-delete-confirm-{run_id}").check().run()
    button(at, f"runs-delete-{run_id}").click().run()
    assert not at.exception, at.exception
    assert not store.exists(run_id)
    assert run_id not in runs_table(at).value["id"].tolist()
    assert not (store.root / "artifacts" / run_id).exists()


def test_continue_training_from_the_page(runs):
    store, ids, names = runs.store, runs.ids, runs.names
    parent = ids["private"]
    at = open_popover(select(open_page(), parent), "continue", parent)
    assert any("→ about" in m.value for m in at.markdown)  # the projected epsilon
    at.number_input(key=f"runs-more-epochs-{parent}").set_value(1).run()
    button(at, f"runs-continue-{parent}").click().run()
    assert not at.exception, at.exception
    (child,) = [record for record in store.records(group=parent)]
    record = jobs.get_queue(store.root).wait(child.id, TIMEOUT)
    assert record.status == "done", record.error
    assert record.name == f"{names[parent]} (+1 epoch)"
    assert record.summary["final_epsilon"] > store.get(parent).summary["final_epsilon"]
    at.run()
    assert child.id in runs_table(at).value["id"].tolist()


def test_failed_run_says_it_cannot_be_continued(runs):
    ids = runs.ids
    at = open_popover(select(open_page(), ids["failed"]), "continue", ids["failed"])
    assert any("no checkpoint" in info.value.lower() for info in at.info)
    assert not [b for b in at.button if b.key == f"runs-continue-{ids['failed']}"]
