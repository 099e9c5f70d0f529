"""The Train page (AppTest): settings, validation, CSV errors, the probe, training through the queue, cancel."""

from __future__ import annotations

import json
import time

import pytest
from streamlit.testing.v1 import AppTest

from dpcore.jobs import queue as jobs
from dpcore.store.runs import CANCELLED, DONE, RUNNING
from dpcore.views import train_form as tf

PAGE = "../../pages/train.py"
TIMEOUT = 60
GOOD_CSV = "height,weight,label\n" + "\n".join(
    f"{150 + i % 40},{50 + (i * 7) % 30},{'tall' if i % 40 > 20 else 'short'}" for i in range(60))


pytestmark = pytest.mark.usefixtures("one_thread_and_no_leftover_jobs")


@pytest.fixture
def app():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    return at


def texts(elements) -> str:
    return "\n".join(str(element.value) for element in elements)


def widget(at, kind: str, field: str):
    """The Train form's widget for setting ``field`` (its key gains a ``~N`` suffix once the form replaced it)."""
    found = [element for element in getattr(at, kind) if element.key.split("~")[0] == f"train_w_{field}"]
    assert len(found) == 1, [element.key for element in getattr(at, kind)]
    return found[0]


def train_button(at):
    return at.button(key="train-submit")


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_renders_synthetic_defaults_and_resets_recipe_on_dataset_change(app):
    assert widget(app, "selectbox", "dataset").value == "synthetic"
    assert widget(app, "number_input", "target_epsilon").value == 3.0
    assert widget(app, "number_input", "epochs").value == 20  # the synthetic recipe
    assert widget(app, "selectbox", "model").value == "mlp"
    assert not train_button(app).disabled
    assert "800** training examples" in texts(app.markdown)
    assert "σ = **" in texts(app.markdown)  # the planned noise for the target ε
    assert "No run yet" in texts(app.markdown)

    app.number_input(key="train_w_epochs").set_value(3).run()
    app.selectbox(key="train_w_dataset").select("digits").run()
    assert not app.exception
    assert widget(app, "number_input", "epochs").value == 15  # digits recipe, not the 3 typed before
    assert widget(app, "number_input", "batch_size").value == 256
    assert widget(app, "selectbox", "optimizer").value == "sgd"
    assert set(widget(app, "selectbox", "model").options) >= {"CNN (GroupNorm)", "MLP (GroupNorm)"}
    assert any("image" in chart.proto.spec.lower() for chart in app.get("plotly_chart"))  # the image preview


def submitted_config(at):
    """The TrainConfig the Train button would queue now (the form's settings, validated)."""
    return tf.config_from(at.session_state["train_form"]).validate(n=1437)


def test_a_dataset_change_applies_its_recipe_whole_even_with_target_epsilon_typed_at_once(app):
    widget(app, "selectbox", "dataset").select("digits")
    widget(app, "number_input", "target_epsilon").set_value(1.0)
    browser_states = app._tree.get_widget_states()  # what the browser holds: digits, ε 1, synthetic's knobs
    recipe = {field: value for field, value in tf.recipe_settings("digits").items() if value is not None}
    assert recipe != {field: value for field, value in tf.recipe_settings("synthetic").items() if value is not None}
    app.run()  # both changes in the same rerun
    assert not app.exception
    cfg = submitted_config(app)
    assert (cfg.dataset, cfg.target_epsilon) == ("digits", 1.0)
    assert {field: getattr(cfg, field) for field in recipe} == recipe
    assert widget(app, "number_input", "epochs").value == recipe["epochs"]
    # The run that applied the recipe is interrupted by the next input before it draws the new widgets, so
    # the browser sends synthetic's knobs again: they belong to the replaced widgets and must not win.
    app._run(browser_states)
    assert not app.exception
    cfg = submitted_config(app)
    assert (cfg.dataset, cfg.target_epsilon) == ("digits", 1.0)
    assert {field: getattr(cfg, field) for field in recipe} == recipe
    assert widget(app, "number_input", "batch_size").value == recipe["batch_size"]
    other = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()  # a second session stays on its own form
    assert widget(other, "selectbox", "dataset").value == "synthetic"
    assert widget(other, "number_input", "epochs").value == tf.recipe_settings("synthetic")["epochs"]


def test_privacy_mode_shows_the_matching_inputs(app):
    keys = lambda: {n.key for n in app.number_input}  # noqa: E731
    assert "train_w_target_epsilon" in keys() and "train_w_noise_multiplier" not in keys()
    app.radio(key="train_w_mode").set_value("sigma").run()
    assert "train_w_noise_multiplier" in keys() and "train_w_target_epsilon" not in keys()
    assert "train_w_target_delta" in keys() and "train_w_max_grad_norm" in keys()
    app.radio(key="train_w_mode").set_value("baseline").run()
    assert not {"train_w_noise_multiplier", "train_w_target_epsilon", "train_w_target_delta"} & keys()
    assert "No differential privacy" in texts(app.info)  # guidance for the baseline
    assert not train_button(app).disabled


def test_invalid_settings_show_the_config_error_and_disable_train(app):
    app.number_input(key="train_w_target_epsilon").set_value(0.0).run()
    assert "target_epsilon must be in (0" in texts(app.error)
    assert train_button(app).disabled
    app.number_input(key="train_w_target_epsilon").set_value(3.0).run()
    assert not app.error and not train_button(app).disabled
    app.number_input(key="train_w_target_delta").set_value(0.01).run()  # >= 1/N for N = 800
    assert "target_delta must be below 1/N" in texts(app.error)
    assert train_button(app).disabled


def test_csv_upload_errors_inline_then_loads_a_good_file(app):
    app.selectbox(key="train_w_dataset").select("csv").run()
    assert "Upload a CSV" in texts(app.info) and train_button(app).disabled
    app.file_uploader(key="train_w_csv_file").set_value(("bad.csv", b"a,b\n1,2\n", "text/csv")).run()
    assert not app.exception
    assert "20" in texts(app.error)  # DatasetError: too few rows (the minimum is named)
    assert train_button(app).disabled
    app.file_uploader(key="train_w_csv_file").set_value(("people.csv", GOOD_CSV.encode(), "text/csv")).run()
    assert not app.exception and not app.error
    assert widget(app, "selectbox", "label_column").value == "label"  # picked by name
    assert "48** training examples" in texts(app.markdown)
    assert widget(app, "number_input", "batch_size").value == 16  # lowered to fit 48 examples
    assert not train_button(app).disabled


def test_csv_feature_columns_leave_out_a_column_that_is_not_numbers(app):
    rows = "\n".join(f"{150 + i % 40},{'abc' if i in (3, 17) else 50 + i % 30},{'tall' if i % 40 > 20 else 'short'}"
                     for i in range(60))
    widget(app, "selectbox", "dataset").select("csv").run()
    app.file_uploader(key="train_w_csv_file").set_value(("people.csv", f"height,weight,label\n{rows}".encode(),
                                                          "text/csv")).run()
    assert not app.exception
    message = texts(app.error)
    assert "'weight'" in message and "data rows 4, 18" in message and "leave the column out" in message
    picker = widget(app, "multiselect", "feature_choice")
    assert picker.value == ["height", "weight"] and "label" not in picker.options  # all but the label
    picker.set_value(["height"]).run()
    assert not app.exception and not app.error
    assert "1 feature columns" in texts(app.caption)
    assert submitted_config(app).feature_columns == ["height"]
    assert app.query_params["feature_columns"] == '["height"]'  # a copied link keeps the choice
    assert not train_button(app).disabled


def test_probe_suggests_a_clipping_bound_and_applies_it(app):
    app.button(key="train-probe").click().run()
    assert not app.exception
    suggestion = [m.value for m in app.markdown if m.value.startswith("##### Suggested C = ")]
    assert suggestion, texts(app.markdown)
    value = float(suggestion[0].removeprefix("##### Suggested C = "))
    assert "without privacy" in texts(app.caption)
    assert any("gradient norm" in chart.proto.spec for chart in app.get("plotly_chart"))
    app.button(key="train-probe-apply").click().run()
    assert widget(app, "number_input", "max_grad_norm").value == pytest.approx(value)


def test_train_shows_live_run_then_summary_roc_and_checks(app):
    app.number_input(key="train_w_epochs").set_value(1).run()
    train_button(app).click().run()
    assert not app.exception
    run_id = app.session_state["train_run_id"]
    assert app.query_params["run"] == run_id
    queue = jobs.get_queue()
    record = queue.wait(run_id, timeout=TIMEOUT)
    assert record.status == DONE, record.error
    baseline_id = record.summary["baseline_run"]
    assert queue.wait(baseline_id, timeout=TIMEOUT).status == DONE
    record = queue.store.get(run_id)

    app.run()
    assert not app.exception
    metrics = {metric.label: metric for metric in app.metric}
    assert metrics["ε spent (δ = 1e-05)"].value == f"{record.summary['final_epsilon']:.2f}"
    assert metrics["ε spent (δ = 1e-05)"].proto.delta == "RDP, target 3"
    assert metrics["Noise σ"].proto.delta == "C = 0.3"  # the synthetic recipe's clip bound
    assert metrics["Attack AUC"].value == f"{record.summary['mia_auc']:.3f}"
    assert metrics["Test accuracy"].value == f"{record.summary['test_accuracy']:.1%}"
    assert "pp vs no DP" in metrics["Test accuracy"].proto.delta  # gap to the linked baseline
    assert "moderate guarantee" in texts(app.markdown)  # epsilon_sentence
    checks = texts(app.markdown)
    for name in ("epsilon within budget", "meaningful epsilon", "membership attack near chance", "model is useful"):
        assert name in checks
    # the fifth check is advice: a pass (green) or amber, never a red fail
    (advice,) = [text for text in app.markdown if "clipping in the healthy band" in text.value]
    assert ":material/warning: advice" in advice.value or ":green-badge" in advice.value
    assert ":red-badge" not in advice.value
    specs = [chart.proto.spec for chart in app.get("plotly_chart")]
    assert any("Membership-inference ROC" in spec and "chance" in spec for spec in specs)
    assert any("Membership-inference ROC" in spec and "most any attacker can achieve at" in spec for spec in specs)
    assert "Any attack: at most" in texts(app.markdown)  # the proven limit beside the attack's TPR at 1 % FPR
    assert any("Privacy spent" in spec for spec in specs) and any("Clipped gradients" in spec for spec in specs)
    assert "Trained for all" in texts(app.success)
    assert "Report (HTML)" in [button.proto.label for button in app.get("download_button")]

    # continue the finished run for one more epoch: a new run, linked to this one, spending on top
    app.number_input(key=f"train-more-epochs-{run_id}").set_value(1).run()
    assert "ε spent so far" in texts(app.markdown) and "→ about" in texts(app.markdown)  # the projected total
    app.button(key=f"train-continue-{run_id}").click().run()
    assert not app.exception
    continuation = app.session_state["train_run_id"]
    assert continuation != run_id and app.query_params["run"] == continuation
    record = queue.wait(continuation, timeout=TIMEOUT)
    assert record.status == DONE and record.config["extra"]["resume_from"] == run_id
    assert record.summary["final_epsilon"] > queue.store.get(run_id).summary["final_epsilon"]


def test_cancel_a_queued_and_a_running_run(app, hold_worker):
    queue = jobs.get_queue()
    blocker_id, release = hold_worker(queue)
    app.number_input(key="train_w_epochs").set_value(1000).run()  # far longer than the test
    app.checkbox(key="train_w_with_baseline").uncheck().run()
    train_button(app).click().run()
    run_id = app.session_state["train_run_id"]
    assert "Waiting in the queue: position 1" in texts(app.info)
    app.button(key=f"train-cancel-{run_id}").click().run()
    assert queue.store.get(run_id).status == CANCELLED
    assert "cancelled before it started" in texts(app.info)
    release.set()
    queue.wait(blocker_id, timeout=5)

    train_button(app).click().run()
    run_id = app.session_state["train_run_id"]
    wait_for(lambda: queue.store.get(run_id).status == RUNNING and queue.store.get(run_id).steps_done > 0)
    app.run()
    assert any("Step " in bar.proto.text and "ETA" in bar.proto.text for bar in app.get("progress"))
    app.button(key=f"train-cancel-{run_id}").click().run()
    record = queue.wait(run_id, timeout=TIMEOUT)
    assert record.status == CANCELLED and record.steps_done > 0
    app.run()
    assert "Cancelled by the user" in texts(app.info)
    assert json.loads((queue.store.artifacts_dir(run_id) / "roc.json").read_text())["fpr"]


def test_a_run_in_the_url_is_shown_failed_runs_without_traceback():
    from dpcore.config import TrainConfig
    from dpcore.store.runs import RunStore, default_root

    store = RunStore(default_root())
    failed = store.create_run(TrainConfig(dataset="synthetic", target_epsilon=3.0).resolve())
    store.set_status(failed, RUNNING)
    try:
        raise RuntimeError("worker ran out of memory")
    except RuntimeError as exc:
        store.fail(failed, exc)  # a bug-style error: the store keeps its traceback
    assert "Traceback" in store.get(failed).error
    baseline = store.create_run(TrainConfig(dataset="synthetic", private=False).resolve())
    store.set_status(baseline, DONE, stop_status="finished")
    store.update_summary(baseline, test_accuracy=0.8, mia_auc=0.61, mia_status="done")

    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.query_params["run"] = failed
    at.run()
    assert not at.exception and at.session_state["train_run_id"] == failed
    errors = texts(at.error)
    assert "worker ran out of memory" in errors and "Traceback" not in errors
    at.query_params["run"] = baseline
    at.run()
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["ε spent"] == "∞" and metrics["Test accuracy"] == "80.0%" and metrics["Attack AUC"] == "0.610"
    assert "No privacy guarantee" in texts(at.markdown)


def test_settings_round_trip_through_the_url():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.query_params["dataset"] = "digits"
    at.query_params["target_epsilon"] = "2.0"
    at.query_params["epochs"] = "7"
    at.run()
    assert not at.exception
    assert widget(at, "selectbox", "dataset").value == "digits"
    assert widget(at, "number_input", "target_epsilon").value == 2.0
    assert widget(at, "number_input", "epochs").value == 7
    assert widget(at, "selectbox", "model").value == "mlp"  # the rest from the digits recipe
    at.number_input(key="train_w_epochs").set_value(9).run()
    assert at.query_params["epochs"] == "9"
    assert at.query_params["dataset"] == "digits"


def test_a_run_link_opens_that_runs_settings(app):
    from dpcore.config import TrainConfig
    from dpcore.store.runs import RunStore

    run_id = RunStore().create_run(TrainConfig(dataset="breast-cancer", noise_multiplier=1.5, epochs=3))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.query_params["run"] = run_id
    at.run()
    assert widget(at, "selectbox", "dataset").value == "breast-cancer"
    assert widget(at, "radio", "mode").value == "sigma"
    assert widget(at, "number_input", "noise_multiplier").value == 1.5


def test_planner_hand_off_fills_the_form(app):
    app.session_state["planner_handoff"] = {"config": {"dataset": "digits", "batch_size": 128, "epochs": 12,
                                                       "target_delta": 1e-6, "noise_multiplier": 2.5},
                                            "source": "planner"}
    app.run()
    assert not app.exception
    assert widget(app, "selectbox", "dataset").value == "digits"
    assert widget(app, "radio", "mode").value == "sigma"
    assert widget(app, "number_input", "noise_multiplier").value == 2.5
    assert widget(app, "number_input", "batch_size").value == 128
    assert widget(app, "number_input", "epochs").value == 12
    assert "planner_handoff" not in app.session_state


def test_the_reproducible_switch_is_off_by_default_and_round_trips_through_the_url():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.query_params["dataset"] = "synthetic"
    at.run()
    assert not at.exception
    box = at.checkbox(key="train_w_reproducible")
    assert box.value is False and "not private" in box.label
    assert "reproducible" not in at.query_params
    box.check().run()
    assert at.query_params["reproducible"] == "true"

    again = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    again.query_params["dataset"] = "synthetic"
    again.query_params["reproducible"] = "true"
    again.run()
    assert not again.exception
    assert again.checkbox(key="train_w_reproducible").value is True
