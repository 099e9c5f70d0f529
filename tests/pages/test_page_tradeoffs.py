"""The Tradeoffs page (AppTest) and the config <-> URL query helpers it and the Train page share."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dpcore.config import TrainConfig
from dpcore.errors import ConfigError
from dpcore.jobs import queue as jobs
from dpcore.jobs import sweep as sweeps
from dpcore.query import from_query, to_query
from dpcore.store.runs import RUNS_DIR_ENV, RunStore

PAGE = "../../pages/tradeoffs.py"
TIMEOUT = 60
SPEC = sweeps.SweepSpec(base=TrainConfig(dataset="synthetic", epochs=1), epsilons=(1.0, 4.0), max_grad_norms=(1.0,),
                        seeds=(0,))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A sweep of 2 private runs and a baseline (synthetic, 1 epoch), trained once, directly (no queue)."""
    root = tmp_path_factory.mktemp("tradeoffs-runs")
    store = RunStore(root)
    sweep = sweeps.save_sweep(store, SPEC, name="tiny sweep")
    for member in sweeps.expand(sweep.spec):
        sweeps.train_member(store, store.create_run(member.config, group=sweep.id))
    store.close()
    return root, sweep.id


@pytest.fixture
def filled(trained):
    """The trained store copied into this test's runs directory (set by conftest)."""
    root, sweep_id = trained
    shutil.copytree(root, os.environ[RUNS_DIR_ENV], dirs_exist_ok=True)
    return RunStore(os.environ[RUNS_DIR_ENV]), sweep_id


@pytest.fixture(autouse=True)
def no_leaked_workers():
    yield
    jobs.shutdown()


def page() -> AppTest:
    return AppTest.from_file(PAGE, default_timeout=TIMEOUT)


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "subheader", "title")
             for e in at.get(kind) if isinstance(getattr(e, "value", None), str)]
    parts += [e.proto.text for e in at.get("progress")]
    return "\n".join(parts)


def test_page_shows_a_sweep_from_the_url(filled):
    _, sweep_id = filled
    at = page()
    at.query_params["sweep"] = sweep_id
    at.run()
    assert not at.exception
    assert at.title[0].value == "Tradeoffs"
    assert "tiny sweep" in texts(at) and "3 of 3 runs done" in texts(at)
    assert len(at.get("plotly_chart")) == 6  # accuracy, AUC, TPR, bounds, two heatmaps
    assert len(at.get("download_button")) == 1  # the sweep report
    assert at.query_params["sweep"] == [sweep_id] or at.query_params["sweep"] == sweep_id
    assert not at.error


def test_run_in_the_url_opens_it_and_close_clears_it(filled):
    store, sweep_id = filled
    run_id = store.records(group=sweep_id)[0].id
    at = page()
    at.query_params["sweep"] = sweep_id
    at.query_params["run"] = run_id
    at.run()
    assert not at.exception
    assert f"Run {run_id}" in [s.value for s in at.subheader]
    assert len(at.get("download_button")) == 2  # sweep report and this run's report
    at.button(key="tradeoffs_close_run").click().run()
    assert "run" not in at.query_params
    assert not any(s.value.startswith("Run ") for s in at.subheader)


def test_empty_store_offers_the_form(tmp_path):
    at = page()
    at.run()
    assert not at.exception
    assert "No sweeps or finished runs yet" in texts(at)
    assert at.button(key="tradeoffs_start").label == "Start sweep"


def test_unknown_sweep_id_falls_back_to_the_newest(filled):
    at = page()
    at.query_params["sweep"] = "sw-20000101-000000-000000"
    at.run()
    assert not at.exception
    assert "is not in this runs directory" in texts(at)
    assert "3 of 3 runs done" in texts(at)


def test_all_runs_of_a_dataset_view_from_the_url(filled):
    at = page()
    at.query_params["dataset"] = "synthetic"
    at.run()
    assert not at.exception
    assert "3 finished run(s) of synthetic mlp" in texts(at)
    assert len(at.get("plotly_chart")) == 6


def form_widget(at, kind: str, field: str):
    """The new-sweep form's widget of ``field`` (its key gains a ``~N`` suffix once the form replaced it)."""
    return next(element for element in getattr(at, kind) if element.key.split("~")[0] == f"tradeoffs_new_{field}")


def test_start_a_sweep_from_the_form(tmp_path):
    at = page()
    at.run()
    at.selectbox(key="tradeoffs_new_dataset").set_value("synthetic").run()
    form_widget(at, "number_input", "epochs").set_value(1)
    form_widget(at, "multiselect", "epsilons").set_value([2.0])
    form_widget(at, "multiselect", "clips").set_value([1.0])
    form_widget(at, "checkbox", "baseline").uncheck().run()
    assert "**1 run**" in texts(at)
    at.button(key="tradeoffs_start").click().run()
    assert not at.exception
    store = RunStore(os.environ[RUNS_DIR_ENV])
    (sweep,) = sweeps.list_sweeps(store)
    assert at.query_params["sweep"] in (sweep.id, [sweep.id])
    assert jobs.get_queue(store.root).join(timeout=TIMEOUT)
    at.run()
    assert "1 of 1 runs done" in texts(at) and not at.exception


# ---------------------------------------------------------------------- config <-> query params
@pytest.mark.parametrize("cfg", [
    TrainConfig(),
    TrainConfig(dataset="digits", target_epsilon=3.0),
    TrainConfig(dataset="mnist", model="cnn-bn", target_epsilon=0.5, max_grad_norm=0.1, epochs=3, batch_size=512,
                physical_batch_size=128, lr=0.5, optimizer="sgd", momentum=0.0, accountant="prv",
                grad_sample_mode="ghost", poisson_sampling=False, seed=7, device="cpu", epsilon_limit=0.75),
    TrainConfig(dataset="breast-cancer", noise_multiplier=1.1, target_delta=1e-6),
    TrainConfig(dataset="synthetic", private=False, epochs=2),
    TrainConfig(dataset="csv", data_path="/tmp/my data.csv", label_column="y", target_epsilon=8.0,
                extra={"note": "a & b", "n": 1}),
    TrainConfig(target_epsilon=1e-3, target_delta=1.2345678901234567e-7, lr=0.1 + 0.2),
])
def test_config_query_round_trip(cfg):
    params = to_query(cfg)
    assert all(isinstance(key, str) and isinstance(value, str) for key, value in params.items())
    assert from_query(params) == cfg
    assert from_query({key: [value] for key, value in params.items()}) == cfg  # list-valued, as some APIs give


def test_query_omits_defaults_ignores_page_keys_and_keeps_a_base():
    assert to_query(TrainConfig()) == {}
    assert to_query(TrainConfig(dataset="digits")) == {"dataset": "digits"}
    cfg = from_query({"dataset": "digits", "sweep": "sw-1", "run": "abc", "private": "no"})
    assert cfg == TrainConfig(dataset="digits", private=False)
    base = TrainConfig(dataset="digits", target_epsilon=3.0, epochs=5)
    assert from_query({"epochs": "7"}, base=base) == base.replace(epochs=7)
    assert from_query({"epsilon_limit": "none"}, base=base.replace(epsilon_limit=2.0)) == base


@pytest.mark.parametrize(("params", "fragment"), [
    ({"epochs": "ten"}, "epochs='ten' is not a whole number"),
    ({"target_epsilon": "lots"}, "target_epsilon='lots' is not a number"),
    ({"private": "maybe"}, "private='maybe' is not true or false"),
    ({"extra": "[1, 2]"}, "is not a JSON object"),
    ({"target_delta": "none"}, "target_delta='none' is not a number"),
])
def test_bad_query_values_raise_config_error(params, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        from_query(params)


def test_page_file_is_found():
    assert (Path(__file__).parent / PAGE).resolve().is_file()


def test_a_running_sweep_shows_its_eta_on_the_progress_bar(tmp_path, monkeypatch):
    store = RunStore(os.environ[RUNS_DIR_ENV])
    sweep = sweeps.save_sweep(store, SPEC, name="running sweep")
    first, second, _ = sweeps.expand(sweep.spec)
    done_id = store.create_run(first.config, group=sweep.id)
    running_id = store.create_run(second.config, group=sweep.id)
    with monkeypatch.context() as patch:  # both started long ago
        patch.setattr("dpcore.store.runs.utc_now", lambda: "2020-01-01T00:00:00+00:00")
        store.set_status(done_id, "running")
        store.set_status(done_id, "done")
        store.set_status(running_id, "running")
    store.set_progress(running_id, 5, 10)
    at = page()
    at.query_params["sweep"] = sweep.id
    at.run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    bars = [bar.proto.text for bar in at.get("progress")]
    assert any(text.startswith("1 of 3 runs done · 1 running") and text.endswith(" left") for text in bars), bars
