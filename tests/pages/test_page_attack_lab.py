"""AppTest for the Attack lab page: empty store, stored results, and submitting an attack job."""

from __future__ import annotations

import pytest
import torch
from streamlit.testing.v1 import AppTest

from dpcore.config import TrainConfig
from dpcore.jobs import attack as audit
from dpcore.jobs import queue as jobs
from dpcore.jobs.queue import train_runner
from dpcore.store.runs import DONE, RunStore, default_root

PAGE = "../../pages/attack_lab.py"


@pytest.fixture(autouse=True)
def _teardown_queues():
    torch.set_num_threads(1)
    yield
    jobs.shutdown()


def _finished_run(store: RunStore) -> str:
    run_id = store.create_run(TrainConfig(dataset="synthetic", private=False, device="cpu", seed=0))
    store.set_status(run_id, "running")
    train_runner(run_id, store, lambda: False)
    return run_id


def _page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _chart_specs(at: AppTest) -> list[str]:
    return [chart.proto.spec for chart in at.get("plotly_chart")]


def test_no_runs_shows_a_friendly_message_and_a_way_to_start():
    at = _page()
    assert any("No finished runs to attack yet" in info.value for info in at.info)
    assert any(button.label == "Train" for button in at.button)  # the quick-start form
    assert not at.error


def test_stored_result_shows_roc_table_and_epsilon_chart():
    store = RunStore(default_root())
    run_id = _finished_run(store)
    audit.run_attack_suite(store, run_id, attacks=["loss", "lira-online", "rmia"], n_models=4)
    at = _page()
    assert at.selectbox[0].value == run_id and at.query_params["run"] in (run_id, [run_id])
    specs = _chart_specs(at)
    assert sum("ROC (linear axes)" in spec for spec in specs) == 1
    assert sum("ROC (log-log" in spec and '"type":"log"' in spec for spec in specs) == 1
    assert sum("Guarantee vs what attacks show" in spec for spec in specs) == 1
    assert sum("Member vs non-member scores" in spec for spec in specs) == 1
    # a non-private run: the bound line says there is no limit, on both ROCs
    assert sum("ROC (" in spec and "most any attacker can achieve: no limit" in spec for spec in specs) == 2
    assert any("Any attack: no proven limit at 1 % false alarms" in m.value for m in at.markdown)
    table = at.dataframe[0].value
    assert list(table["attack"]) == ["Loss threshold", "LiRA (online)", "RMIA"]
    assert "TPR @ 10 % FPR" in table.columns and "ε lower bound" in table.columns
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Accountant ε (upper bound)"] == "∞" and float(metrics["Empirical ε (lower bound)"]) > 0
    exposed = at.dataframe[1].value  # most exposed members, tabular data: a table with feature values
    assert len(exposed) == audit.TOP_K and {"member index", "score", "x0"} <= set(exposed.columns)
    assert not at.error

    # leave-one-out on the reference models: the cards follow the table, not the target's numbers
    next(control for control in at.segmented_control if control.label == "Evaluate on").set_value("pool").run()
    assert not at.exception
    pooled = at.dataframe[0].value.set_index("attack")
    auc_card = next(m for m in at.metric if m.label.startswith("AUC · ") and m.label.endswith("(reference models)"))
    title = auc_card.label.removeprefix("AUC · ").removesuffix(" (reference models)")
    assert pooled.loc[title, "AUC"].startswith(auc_card.value)
    assert auc_card.value == max(entry.split()[0] for entry in pooled["AUC"] if not entry.startswith("not run"))


def test_submitting_an_attack_creates_a_job_and_shows_its_result():
    store = RunStore(default_root())
    run_id = _finished_run(store)
    at = _page()
    assert any("has not been attacked yet" in info.value for info in at.info)
    at.multiselect[0].set_value(["loss", "rmia"])
    at.segmented_control[0].set_value("quick")
    at.run()
    next(button for button in at.button if button.label == "Run attacks").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    attack_jobs = store.records(kind=audit.ATTACK_KIND, group=run_id)
    assert len(attack_jobs) == 1
    options = attack_jobs[0].config["extra"]["attack"]
    assert options["attacks"] == ["loss", "rmia"] and options["n_models"] == 8
    assert jobs.get_queue().wait(attack_jobs[0].id, timeout=60).status == DONE
    at.run()
    assert not at.exception and list(at.dataframe[0].value["attack"]) == ["Loss threshold", "RMIA"]
    assert store.get(run_id).summary["rmia_auc"] is not None
    assert any(expander.label == "All attacks on this run (1)" for expander in at.expander)
    history = next(frame.value for frame in at.dataframe if "job id" in frame.value.columns)
    assert history["job id"].tolist() == [attack_jobs[0].id] and history["reference models"].tolist() == [8]


def test_training_a_new_run_here_follows_it_and_opens_it_when_done():
    store = RunStore(default_root())
    old = _finished_run(store)
    at = _page()
    assert at.selectbox[0].value == old
    quick = next(button for button in at.button if button.label == "Train")
    at.checkbox[-1].uncheck()  # no attack job behind it: keeps the test short
    quick.click().run()
    assert not at.exception, [e.value for e in at.exception]
    new = at.query_params["run"]
    new = new[0] if isinstance(new, list) else new
    assert new != old and store.get(new).kind == "train"
    waiting = any("the Attack lab opens it here when it finishes" in info.value for info in at.info)
    assert waiting or store.get(new).status == DONE  # a very fast machine may finish before the rerun
    assert jobs.get_queue().wait(new, timeout=60).status == DONE
    at.run()
    assert at.selectbox[0].value == new  # the new run, not the one chosen before


def test_an_unknown_run_in_the_link_is_named_not_replaced_by_another():
    store = RunStore(default_root())
    run_id = _finished_run(store)
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["run"] = "no-such-run"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("no-such-run is not in this runs directory" in warning.value for warning in at.warning)
    assert at.selectbox[0].value is None and not at.metric  # nothing of another run is shown
    at.selectbox[0].set_value(run_id).run()
    assert not at.warning and at.query_params["run"] in (run_id, [run_id])
    assert {metric.label for metric in at.metric} >= {"Accountant ε", "Test accuracy"}


def test_a_running_attack_job_shows_its_eta_with_the_progress_bar(monkeypatch):
    store = RunStore(default_root())
    run_id = _finished_run(store)
    job_id = store.create_run({**store.get(run_id).config, "extra": {"attack": {"target_run_id": run_id}}},
                              kind=audit.ATTACK_KIND, group=run_id, name="fake attack")
    with monkeypatch.context() as patch:
        patch.setattr("dpcore.store.runs.utc_now", lambda: "2020-01-01T00:00:00+00:00")
        store.set_status(job_id, "running")  # started long ago: 4 of 17 models done gives a long ETA
    store.set_progress(job_id, 4, 17)
    store.update_summary(job_id, phase="trained reference model 4 of 16", estimate_s=30.0)
    at = _page()
    bars = [bar.proto.text for bar in at.get("progress")]
    assert any(text.startswith("Attack running: trained reference model 4 of 16 (24%) · about ") and
               text.endswith(" left") for text in bars), bars
    assert any("estimated time ≈" in caption.value for caption in at.caption)  # the estimate before starting
    assert not any("has not been attacked yet" in info.value for info in at.info)  # the progress says it all


def test_the_attack_eta_updates_from_the_jobs_own_speed_as_models_finish(monkeypatch):
    store = RunStore(default_root())
    run_id = _finished_run(store)
    job_id = store.create_run({**store.get(run_id).config, "extra": {"attack": {"target_run_id": run_id}}},
                              kind=audit.ATTACK_KIND, group=run_id, name="fake attack")
    store.set_status(job_id, "running")
    clock = [1_000_000.0]
    monkeypatch.setattr("dpcore.views.attack_lab.time.time", lambda: clock[0])
    # estimated 16 s for 16 models, but the first 4 took 40 s (10 s each): the ETA follows the measured speed
    store.update_summary(job_id, phase="trained reference model 4 of 16", estimate_s=16.0,
                         work_started=clock[0] - 40.0)
    store.set_progress(job_id, 4, 16)

    def eta_bar(at: AppTest) -> str:
        return next(bar.proto.text for bar in at.get("progress") if bar.proto.text.startswith("Attack running"))

    at = _page()
    first = eta_bar(at)
    assert first.endswith("(25%) · about 1 min 48 s left"), first  # 12 models x 9.0 s, not 12 x 1 s
    clock[0] += 40.0  # the next poll: 8 of 16 done after 80 s
    store.set_progress(job_id, 8, 16)
    store.update_summary(job_id, phase="trained reference model 8 of 16")
    at.run()
    second = eta_bar(at)
    assert second.endswith("(50%) · about 1 min 16 s left"), second  # 8 models x 9.5 s: it redraws as it goes
