"""dpcore.jobs.training (train + attack for jobs and the CLI, baselines) and dpcore.views.progress (ETA)."""

from __future__ import annotations

import json
import math
import types

import pytest
import torch

from dpcore.config import TrainConfig
from dpcore.jobs import training as evaluation
from dpcore.store import artifacts
from dpcore.store.runs import DONE, RUNNING, RunRecord
from dpcore.views.progress import estimate_progress, format_duration, parse_time

CFG = TrainConfig(dataset="synthetic", target_epsilon=3.0, epochs=1)


@pytest.fixture(scope="module")
def trained():
    """One tiny real run (synthetic, 1 epoch) and its attack, shared by the tests below."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield evaluation.train_and_evaluate(CFG)
    finally:
        torch.set_num_threads(threads)


def test_train_and_evaluate_attacks_the_trained_model(trained):
    result, attack = trained
    assert result.steps > 0 and attack is not None
    assert 0.0 <= attack.auc <= 1.0 and attack.n_members == 800 and attack.n_non_members == 200
    numbers = evaluation.membership_summary(attack)
    assert numbers["mia_auc"] == pytest.approx(attack.auc)
    assert numbers["mia_tpr_at_1pct_fpr"] == pytest.approx(attack.tpr_at_fpr(0.01))
    assert 0.0 <= numbers["mia_advantage"] <= 1.0


def test_record_result_finishes_the_run_then_stores_roc_and_summary(store, trained):
    result, attack = trained
    run_id = store.create_run(CFG)
    store.set_status(run_id, RUNNING)
    stored = evaluation.record_result(store, run_id, result)
    record = store.get(run_id)
    assert record.status == DONE and record.summary["final_epsilon"] == pytest.approx(result.final_epsilon)
    assert record.summary["mia_status"] == "done"
    assert record.summary["mia_auc"] == pytest.approx(stored.auc) == pytest.approx(attack.auc)  # deterministic
    assert 0.0 <= record.summary["mia_tpr_at_1pct_fpr"] <= 1.0 and 0.0 <= record.summary["mia_advantage"] <= 1.0
    roc = json.loads((store.artifacts_dir(run_id) / "roc.json").read_text())
    assert roc == artifacts.load_roc(store.artifacts_dir(run_id))
    assert roc["auc"] == pytest.approx(stored.auc) and roc["n_members"] == 800
    assert len(roc["fpr"]) == len(roc["tpr"]) >= 2 and roc["fpr"][0] == 0.0 and roc["fpr"][-1] == 1.0
    assert all(b >= a for a, b in zip(roc["tpr"], roc["tpr"][1:], strict=False))  # an ROC never goes down
    assert (store.artifacts_dir(run_id) / "model.pt").is_file()  # finish saved the result first


def test_a_failing_attack_keeps_the_trained_run(store, trained):
    result, _ = trained
    broken = types.SimpleNamespace(**{name: getattr(result, name) for name in (
        "config", "status", "stop_reason", "final_epsilon", "steps", "history", "epochs", "device")},
        summary=result.summary, save=result.save, model=None, data=result.data)
    run_id = store.create_run(CFG)
    store.set_status(run_id, RUNNING)
    assert evaluation.record_result(store, run_id, broken) is None
    record = store.get(run_id)
    assert record.status == DONE and record.summary["mia_status"] == "failed" and record.summary["mia_error"]
    assert "mia_auc" not in record.summary and artifacts.load_roc(store.artifacts_dir(run_id)) is None


def test_find_baseline_prefers_the_link_then_the_closest_finished_baseline(store):
    def finished(cfg: TrainConfig) -> str:
        run_id = store.create_run(cfg.resolve())
        store.set_status(run_id, DONE)
        return run_id

    private = store.create_run(CFG.resolve())
    assert evaluation.find_baseline(store, private) is None
    other_seed = finished(evaluation.baseline_config(CFG).replace(seed=7))
    other_epochs = finished(evaluation.baseline_config(CFG).replace(epochs=5))
    assert evaluation.find_baseline(store, private).id == other_epochs  # same data, model and seed
    assert evaluation.find_baseline_for_config(store, CFG, exact=True) is None
    same = finished(evaluation.baseline_config(CFG))
    assert evaluation.find_baseline(store, private).id == same
    evaluation.link_baseline(store, private, other_seed)
    assert evaluation.find_baseline(store, private).id == other_seed  # an explicit link wins
    assert store.get(other_seed).summary["baseline_for"] == private
    assert evaluation.find_baseline(store, same) is None  # a baseline has no baseline


def test_progress_eta_from_steps_and_timestamps():
    start = "2025-01-01T00:00:00+00:00"
    t0 = parse_time(start)
    record = RunRecord(id="r", name="r", kind="train", group=None, status=RUNNING, config={}, started=start,
                       steps_done=40, total_steps=100)
    # set-up took 10 s, then 2 steps per second: the samples measure the rate without the set-up
    progress = estimate_progress(record, now=t0 + 30, samples=[(t0 + 20, 20), (t0 + 30, 40)])
    assert (progress.fraction, progress.elapsed_s, progress.steps_per_s, progress.eta_s) == (0.4, 30.0, 2.0, 30.0)
    assert estimate_progress(record, now=t0 + 30, samples=[(t0 + 30, 40)]).eta_s is None  # one sample: no rate yet
    assert estimate_progress(record, now=t0 + 30).eta_s == pytest.approx(45.0)  # no samples: 40 steps in 30 s
    queued = RunRecord(id="q", name="q", kind="train", group=None, status="queued", config={})
    assert estimate_progress(queued).elapsed_s is None and estimate_progress(queued).eta_s is None
    assert [format_duration(s) for s in (None, 8.4, 125, 3840)] == ["–", "8 s", "2 min 05 s", "1 h 04 min"]
    assert format_duration(math.inf) == "–"
