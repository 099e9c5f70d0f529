"""Tests for dpcore.jobs.attack: attack evaluation of stored runs (pool, attacks, lower bounds, storage, jobs, CLI)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from dpcore.attacks.reference import ReferencePool
from dpcore.cli import main as cli_main
from dpcore.config import TrainConfig
from dpcore.errors import ConfigError, DPExplorerError
from dpcore.jobs import attack as audit
from dpcore.jobs import attack_results
from dpcore.jobs import queue as jobs
from dpcore.privacy.caveats import epsilon_status
from dpcore.store.runs import CANCELLED, DONE
from dpcore.views import plots

pytestmark = pytest.mark.usefixtures("one_thread_and_no_leftover_jobs")


@pytest.fixture
def leaky_run(store, train_stored) -> str:
    """Non-private synthetic MLP trained to 100 % train accuracy: the attacks' easy target (~0.3 s).

    Adam lr 1e-3 for 10 epochs of 64 (the old synthetic recipe) overfits more than today's DP-tuned recipe.
    """
    return train_stored(store, TrainConfig(dataset="synthetic", private=False, device="cpu", seed=0,
                                            optimizer="adam", lr=1e-3, epochs=10, batch_size=64))


def test_nonprivate_end_to_end_results_are_stored_with_the_run(store, leaky_run):
    progress = []
    result = audit.run_attack_suite(store, leaky_run, attacks=["loss", "lira-online", "rmia"], n_models=4,
                                    canaries=100, on_progress=lambda *args: progress.append(args))
    # the evaluation: attacks find the overfit model's members, and the bound shows real leakage
    ran = result["attacks"]
    assert set(ran) == {"loss", "lira-online", "rmia"}
    assert ran["loss"]["auc"] > 0.65 and ran["rmia"]["auc"] > 0.7 and ran["lira-online"]["auc"] > 0.65
    assert result["epsilon"]["accountant"] is None and result["epsilon"]["lower_bound"] > 1.0
    assert result["epsilon"]["canary"]["epsilon_lower"] > 0.0
    assert result["pool"]["n_models"] == 4 and not result["pool"]["cached"]
    assert progress[-1][0] == progress[-1][1] == 5  # 4 reference models + the canary model
    # stored in the run's artifacts and readable back
    folder = store.artifacts_dir(leaky_run)
    assert (folder / audit.ATTACK_FILE).is_file()
    assert audit.pool_cache_path(store, store.get(leaky_run), n_models=4).is_file()
    assert not audit.pool_cache_path(store, store.get(leaky_run), n_models=4, seed=1).exists()
    assert attack_results.load_attack_result(store, leaky_run) == json.loads(json.dumps(result))
    scores = attack_results.load_attack_scores(store, leaky_run)
    assert scores["rmia"][0].shape == (800,) and scores["rmia"][1].shape == (200,)
    # the headline numbers are in the run's summary, so the Runs table shows them
    row = store.list_runs(kind="train").set_index("id").loc[leaky_run]
    assert row["lira_auc"] == pytest.approx(ran["lira-online"]["auc"])
    assert row["rmia_auc"] == pytest.approx(ran["rmia"]["auc"]) and pd.isna(row["lira_offline_auc"])
    assert row["empirical_epsilon_lower"] == pytest.approx(result["epsilon"]["lower_bound"])
    assert 0.0 <= row["lira_tpr_at_1pct_fpr"] <= 1.0 and row["attack_models"] == 4
    # tables for the page
    table = attack_results.tpr_table(result)
    assert list(table["attack"]) == ["Loss threshold", "LiRA (online)", "RMIA"]
    assert table["TPR @ 1 % FPR"].str.contains("few non-members").all()  # 200 non-members < 10 / 1 %
    assert "[" in table.loc[0, "TPR @ 10 % FPR"]
    pool_table = attack_results.tpr_table(result, evaluation="pool")
    assert pool_table.loc[pool_table["attack"] == "LiRA (online)", "AUC"].str.startswith("not run").all()
    bounds = attack_results.epsilon_table(result)
    assert list(bounds["kind"]) == ["upper", "lower", "lower", "lower", "lower"] and math.isnan(bounds["epsilon"][0])
    members, images = attack_results.vulnerable_members(result, _data(), attack="rmia", k=5)
    assert images is None and len(members) == 5 and "x0" in members.columns
    assert list(members["score"]) == sorted(members["score"], reverse=True)
    # a second evaluation reuses the cached pool
    again = audit.run_attack_suite(store, leaky_run, attacks=["lira-offline"], n_models=4)
    assert again["pool"]["cached"] and set(again["attacks"]) == {"lira-offline"}
    assert pd.isna(store.get(leaky_run).summary["rmia_auc"])


def _data():
    from dpcore.engine.data import load_dataset

    return load_dataset("synthetic")


def test_strongly_private_run_looks_like_chance_and_bounds_stay_below_epsilon(store, train_stored):
    run_id = train_stored(store, TrainConfig(dataset="synthetic", target_epsilon=0.5, epochs=5, device="cpu",
                                              seed=0))
    accountant = store.get(run_id).summary["final_epsilon"]
    result = audit.run_attack_suite(store, run_id, attacks=["loss", "lira-online", "rmia"], n_models=4, seed=0,
                                    canaries=100)
    for entry in result["attacks"].values():
        assert 0.4 < entry["auc"] < 0.6, entry["name"]
        assert entry["epsilon_bound"]["epsilon_lower"] <= accountant
    assert result["epsilon"]["lower_bound"] <= accountant == pytest.approx(result["epsilon"]["accountant"])
    canary = result["epsilon"]["canary"]
    assert canary["epsilon_lower"] <= canary["accountant_epsilon"]
    assert result["pool"]["noise_multiplier"] == pytest.approx(store.get(run_id).summary["noise_multiplier"])
    assert result["pool"]["config"]["target_epsilon"] is None  # sigma fixed, not re-calibrated


def test_cancel_mid_pool_stops_stores_no_result_and_keeps_the_trained_models(store, leaky_run):
    trained = []

    def on_progress(done, total, phase):
        trained.append(done)

    result = audit.run_attack_suite(store, leaky_run, attacks=["rmia"], n_models=8, on_progress=on_progress,
                                    should_stop=lambda: max(trained, default=0) >= 2)
    assert result is None and max(trained) == 2
    assert attack_results.load_attack_result(store, leaky_run) is None
    # No finished pool is stored, but the 2 trained reference models are kept for the next run of the attack.
    kept = list(store.artifacts_dir(leaky_run).glob("pool-*"))
    assert [path.name.endswith(".partial.npz") for path in kept] == [True]
    assert ReferencePool.load(kept[0]).n_models == 2
    assert "rmia_auc" not in store.get(leaky_run).summary


def test_attack_job_through_the_queue_and_its_cancellation(tmp_path):
    queue = jobs.get_queue(tmp_path / "runs")
    # reproducible: with secret batch shuffling the loss attack sometimes beats a 2-model RMIA, and the table
    # below names the strongest one
    target = queue.submit(TrainConfig(dataset="synthetic", private=False, device="cpu", seed=0, reproducible=True))
    attack = audit.submit_attack(queue, target, attacks=["loss", "rmia"], n_models=2)  # queued behind training
    record = queue.wait(attack, timeout=60)
    assert record.status == DONE and record.kind == audit.ATTACK_KIND and record.group == target
    assert record.summary["target_run_id"] == target and record.summary["rmia_auc"] > 0.6
    assert queue.store.get(target).summary["attack_run_id"] == attack
    # a long pool, cancelled once its first model is done
    slow = audit.submit_attack(queue, target, attacks=["rmia"], n_models=64, seed=1)
    while (job := queue.store.get(slow)).steps_done < 1 and job.active:
        pass
    queue.cancel(slow)
    record = queue.wait(slow, timeout=30)
    assert record.status == CANCELLED and record.steps_done < 64
    assert attack_results.load_attack_result(queue.store, target)["options"]["n_models"] == 2  # earlier result kept
    history = attack_results.attack_history(queue.store, target)
    assert history["job id"].tolist() == [slow, attack]  # newest first
    assert history["status"].tolist() == [CANCELLED, DONE]
    assert history["reference models"].tolist() == [64, 2]
    done = history.iloc[1]
    assert done["attacks"] == "Loss threshold, RMIA"
    assert done["best AUC"] == pytest.approx(queue.store.get(attack).summary["rmia_auc"])
    assert done["strongest attack"] == "RMIA" and pd.isna(history.iloc[0]["best AUC"])


def test_bad_options_and_targets_are_clear_errors(store, leaky_run):
    with pytest.raises(ConfigError, match="unknown attack"):
        audit.run_attack_suite(store, leaky_run, attacks=["lira"])
    with pytest.raises(ConfigError, match="even number"):
        audit.run_attack_suite(store, leaky_run, attacks=["lira-online"], n_models=3)
    with pytest.raises(ConfigError, match="at least 20 canaries"):
        audit.AttackOptions(leaky_run, canaries=5).validate()
    queued = store.create_run(TrainConfig(dataset="synthetic", private=False))
    with pytest.raises(DPExplorerError, match="only finished"):
        audit.run_attack_suite(store, queued, attacks=["loss"])
    queue = jobs.get_queue(store.root)
    with pytest.raises(DPExplorerError, match="'attack' job"):
        audit.submit_attack(queue, audit.submit_attack(queue, leaky_run, attacks=["loss"]))


def test_loss_only_needs_no_pool_and_estimates(store, leaky_run):
    result = audit.run_attack_suite(store, leaky_run, attacks=["loss"])
    assert result["pool"] is None and result["pool_evaluation"] == {}
    summary = store.get(leaky_run).summary
    assert summary["attack_models"] == 0 and summary["loss_auc"] == pytest.approx(result["attacks"]["loss"]["auc"])
    seconds = audit.estimate_seconds(summary, n_models=16)
    assert seconds == pytest.approx(16 * summary["seconds"] * 500 / 800 + 1.0)
    assert audit.estimate_seconds({}, n_models=16) is None
    assert audit.estimate_seconds(summary, n_models=16, seconds_per_model=0.5) == pytest.approx(9.0)
    assert audit.estimate_seconds(summary, n_models=16, cached=True) == pytest.approx(1.0)


def test_cli_attack_prints_and_stores(store, leaky_run, capsys):
    assert cli_main(["attack", leaky_run, "--attacks", "loss,logit", "--runs-dir", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "Loss threshold" in out and "no upper bound" in out and "attack.json" in out
    assert cli_main(["attack", leaky_run, "--attacks", "nope", "--runs-dir", str(store.root)]) == 2
    assert "unknown attack" in capsys.readouterr().err


def test_epsilon_audit_chart():
    frame = pd.DataFrame({"label": ["accountant (guarantee)", "LiRA attack", "canary audit"],
                          "kind": ["upper", "lower", "lower"], "epsilon": [3.0, 0.4, 1.2],
                          "detail": ["a", "b", "c"]})
    fig = plots.epsilon_audit_chart(frame)
    bars = {trace.name: trace for trace in fig.data}
    assert list(bars["guarantee"].x) == [3.0] and list(bars["lower bound (95% confidence)"].x) == [0.4, 1.2]
    gap = next(shape for shape in fig.layout.shapes if shape.name == "unknown gap")
    assert (gap.x0, gap.x1) == (1.2, 3.0) and fig.layout.xaxis.range[1] > 3.0
    no_dp = plots.epsilon_audit_chart(frame.assign(epsilon=[np.nan, 0.4, 1.2]))
    assert "no guarantee" in no_dp.data[0].text[0] and "without DP" in no_dp.layout.title.subtitle.text
    assert "shaded" in fig.layout.title.subtitle.text
    assert plots.epsilon_audit_chart(None).layout.annotations[0].text == plots.NO_DATA_TEXT


def test_gdp_run_is_compared_with_its_proven_bound_not_its_gdp_epsilon(store, train_stored):
    """GDP's ε is an approximation: the attack lab's upper bound is the RDP ε of the same schedule."""
    run_id = train_stored(store, TrainConfig(dataset="synthetic", target_epsilon=2.0, epochs=1, accountant="gdp",
                                              device="cpu", seed=0))
    record = store.get(run_id)
    proven = epsilon_status(config=record.config, summary=record.summary).bound
    gdp = record.summary["final_epsilon"]
    assert proven is not None and proven > gdp  # RDP is looser than GDP's approximation for this schedule
    result = audit.run_attack_suite(store, run_id, attacks=["loss"], seed=0)
    assert result["epsilon"]["accountant"] == pytest.approx(proven) and result["epsilon"]["bound_accountant"] == "rdp"
    assert result["epsilon"]["reported"] == pytest.approx(gdp)
    assert result["target"]["final_epsilon"] == pytest.approx(gdp)
    assert attack_results.upper_bound(result) == pytest.approx(proven)
    upper = attack_results.epsilon_table(result).set_index("kind").loc["upper"]
    assert upper["epsilon"] == pytest.approx(proven)
    assert "(rdp)" in upper["detail"] and "approximation" in upper["detail"]
    # a GDP result stored before bounds were: its ε is no bound, so none is shown
    stored_before = ("bound_accountant", "reported")
    old = {**result, "epsilon": {k: v for k, v in result["epsilon"].items() if k not in stored_before}}
    old["epsilon"]["accountant"] = gdp
    assert attack_results.upper_bound(old) is None
    assert math.isnan(attack_results.epsilon_table(old).set_index("kind").loc["upper", "epsilon"])
