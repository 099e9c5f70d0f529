"""Which ε is not a guarantee (privacy.caveats): GDP, no Poisson sampling, seeded noise; the gate and δ guidance."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from dpcore.config import TrainConfig
from dpcore.errors import ConfigError
from dpcore.privacy import accounting, caveats
from dpcore.privacy.checks import MEANINGFUL_EPSILON, SECRET_NOISE, WITHIN_BUDGET, all_passed, run_checks
from dpcore.privacy.guidance import guidance
from dpcore.views.frontier import frontier, run_points
from dpcore.views.report import ReportRun, run_report_html

# The seed config: synthetic, 800 members, batch 64 -> q = 1/13, 10 epochs = 130 steps, δ = 1e-5.
SAMPLE_RATE, STEPS, DELTA = 1 / 13, 130, 1e-5


@pytest.fixture(scope="module")
def gdp_sigma() -> float:
    """The σ the GDP accountant calibrates to reach ε = 3 on the seed schedule."""
    return accounting.noise_for_epsilon(target_epsilon=3.0, delta=DELTA, sample_rate=SAMPLE_RATE, steps=STEPS,
                                        accountant="gdp")


def _stored(*, accountant: str, sigma: float, epsilon: float, **config) -> tuple[dict, dict]:
    cfg = {"private": True, "accountant": accountant, "target_epsilon": 3.0, "target_delta": DELTA,
           "poisson_sampling": True, "reproducible": False, **config}
    summary = {"final_epsilon": epsilon, "accountant": accountant, "noise_multiplier": sigma,
               "sample_rate": SAMPLE_RATE, "steps": STEPS, "test_accuracy": 0.9, "mia_auc": 0.51}
    return cfg, summary


def test_gdp_epsilon_at_the_seed_config_gets_a_larger_rdp_bound_beside_it(gdp_sigma):
    gdp = accounting.epsilon_for(noise_multiplier=gdp_sigma, sample_rate=SAMPLE_RATE, steps=STEPS, delta=DELTA,
                                 accountant="gdp")
    config, summary = _stored(accountant="gdp", sigma=gdp_sigma, epsilon=gdp)
    status = caveats.epsilon_status(config=config, summary=summary)
    assert gdp == pytest.approx(3.0, abs=1e-3)
    assert status.kinds == ("gdp",) and not status.is_guarantee
    assert status.bound_accountant == "rdp" and status.bound == pytest.approx(3.774, abs=0.01)  # issue: 3.774
    assert status.text() == f"ε 3.00 (GDP approximation; RDP bound {status.bound:.2f})"
    prv = caveats.guaranteed_epsilon(config=config, summary=summary, accountant="prv")
    assert gdp < prv < status.bound and prv == pytest.approx(3.406, abs=0.02)  # issue: 3.406 under PRV
    assert status.to_dict()["epsilon_bound"] == pytest.approx(status.bound)


def test_rdp_and_prv_epsilons_are_their_own_bound(gdp_sigma):
    config, summary = _stored(accountant="rdp", sigma=gdp_sigma, epsilon=3.774)
    status = caveats.epsilon_status(config=config, summary=summary)
    assert status.is_guarantee and status.caveats == () and status.bound == 3.774
    assert status.text() == "ε 3.77" and status.note() == ""
    assert caveats.run_caveats(config={"private": False}, summary={}) == []


def test_without_poisson_sampling_there_is_no_bound_and_the_gate_fails(gdp_sigma):
    config, summary = _stored(accountant="rdp", sigma=gdp_sigma, epsilon=2.0, poisson_sampling=False)
    status = caveats.epsilon_status(config=config, summary=summary)
    assert status.kinds == ("no_poisson",) and status.bound is None and not status.is_guarantee
    assert status.note() == caveats.NO_BOUND_TEXT
    checks = {check.name: check for check in run_checks(config, summary, max_auc=0.99, min_accuracy=0.01)}
    for name in (WITHIN_BUDGET, MEANINGFUL_EPSILON):  # 2.0 is inside both budgets, but unproven
        assert checks[name].passed is False and caveats.NO_BOUND_TEXT in checks[name].description


def test_the_gate_checks_a_gdp_run_with_rdp(gdp_sigma):
    config, summary = _stored(accountant="gdp", sigma=gdp_sigma, epsilon=3.0)
    checks = {check.name: check for check in run_checks(config, summary, max_auc=0.99, min_accuracy=0.01)}
    budget = checks[WITHIN_BUDGET]
    assert budget.passed is False and budget.value == pytest.approx(3.774, abs=0.01)
    assert budget.threshold == pytest.approx(3.3)
    assert "by the RDP accountant" in budget.description
    assert checks[MEANINGFUL_EPSILON].passed is True
    # Same numbers from an RDP-calibrated run within budget: the gate passes.
    rdp_sigma = accounting.noise_for_epsilon(target_epsilon=3.0, delta=DELTA, sample_rate=SAMPLE_RATE, steps=STEPS)
    config, summary = _stored(accountant="rdp", sigma=rdp_sigma, epsilon=2.999)
    assert all_passed(run_checks(config, summary, max_auc=0.99, min_accuracy=0.01))


def test_reproducible_and_legacy_runs_are_marked_and_fail_the_gate_unless_allowed(gdp_sigma):
    config, summary = _stored(accountant="rdp", sigma=gdp_sigma, epsilon=2.9, reproducible=True)
    status = caveats.epsilon_status(config=config, summary=summary)
    assert status.reproducible and status.is_guarantee  # the accounting holds, against people without the seed
    assert "reproducible — not private against anyone who knows the seed" in status.text()
    checks = run_checks(config, summary, max_auc=0.99, min_accuracy=0.01)
    (secret,) = [check for check in checks if check.name == SECRET_NOISE]
    assert secret.passed is False and not all_passed(checks)
    assert "not private against anyone who knows the seed" in secret.description
    assert all_passed(run_checks(config, summary, max_auc=0.99, min_accuracy=0.01, allow_reproducible=True))

    legacy = {key: value for key, value in config.items() if key != "reproducible"}  # stored before secret noise
    (mark,) = caveats.run_caveats(config=legacy, summary=summary)
    assert mark.kind == "reproducible" and "before" in mark.explanation
    assert caveats.is_reproducible(legacy) and not caveats.is_reproducible(TrainConfig(target_epsilon=3.0))
    assert not any(c.name == SECRET_NOISE for c in run_checks({**config, "reproducible": False}, summary))


def test_list_rows_mark_legacy_runs_and_the_frontier_carries_the_note(gdp_sigma):
    base = {"status": "done", "kind": "train", "private": True, "target_epsilon": 3.0, "target_delta": DELTA,
            "max_grad_norm": 1.0, "noise_multiplier": gdp_sigma, "sample_rate": SAMPLE_RATE, "steps": STEPS,
            "test_accuracy": 0.9, "mia_auc": 0.5, "seed": 0}
    runs = pd.DataFrame([
        {**base, "id": "gdp", "name": "gdp", "final_epsilon": 3.0, "accountant": "gdp", "reproducible": False},
        {**base, "id": "old", "name": "old", "final_epsilon": 3.7, "accountant": "rdp", "target_epsilon": 4.0,
         "reproducible": math.nan},  # list_runs of a run stored before the field existed
        {**base, "id": "new", "name": "new", "final_epsilon": 4.9, "accountant": "rdp", "target_epsilon": 5.0,
         "reproducible": False},
    ])
    points = run_points(runs).set_index("run_id")
    assert points.loc["gdp", "epsilon_note"].startswith("GDP approximation; RDP bound 3.7")
    assert points.loc["gdp", "epsilon_bound"] == pytest.approx(3.774, abs=0.01)
    assert points.loc["old", "epsilon_note"] == caveats.REPRODUCIBLE_GATE_TEXT
    assert points.loc["new", "epsilon_note"] == ""
    front = frontier(points.reset_index()).set_index("label")
    assert front.loc["ε 3", "epsilon_note"].startswith("GDP approximation") and front.loc["ε 5", "epsilon_note"] == ""


def test_run_report_shows_the_caveats_and_the_bound(gdp_sigma):
    config, summary = _stored(accountant="gdp", sigma=gdp_sigma, epsilon=3.0, reproducible=True)
    html = run_report_html(ReportRun(id="r1", name="gdp run", status="done", config=config, summary=summary),
                           env={"generated": "now"})
    assert "GDP approximation; RDP bound 3.77" in html
    assert "reproducible — not private against anyone who knows the seed" in html
    assert "noise kept secret" in html  # the failing check is listed


def test_delta_guidance_warns_above_a_tenth_of_one_over_n():
    notes = [n for n in guidance(TrainConfig(target_epsilon=3.0, target_delta=1e-3), n=800)
             if n.field == "target_delta"]
    assert len(notes) == 1 and notes[0].level == "warning"
    assert "not well below 1/N" in notes[0].message and "1/(10 N)" in notes[0].message and "0.0001" in notes[0].message
    assert not [n for n in guidance(TrainConfig(target_epsilon=3.0, target_delta=1e-4), n=800)
                if n.field == "target_delta"]  # 1e-4 <= 1/(10 * 800) = 1.25e-4
    with pytest.raises(ConfigError, match="below 1/N"):
        TrainConfig(target_epsilon=3.0, target_delta=1.25e-3).validate(n=800)


def test_guidance_flags_gdp_and_reproducible_before_training():
    fields = {n.field for n in guidance(TrainConfig(target_epsilon=3.0, accountant="gdp", reproducible=True), n=800)}
    assert {"accountant", "reproducible"} <= fields
    assert not {"accountant", "reproducible"} & {n.field for n in guidance(TrainConfig(target_epsilon=3.0), n=800)}


def test_run_view_and_runs_table_mark_a_gdp_reproducible_run(isolated_dirs):
    """Through the app: the run's header warns, its ε card carries the bound, the checks fail, the table marks it."""
    import os
    from pathlib import Path

    import torch
    from streamlit.testing.v1 import AppTest

    from dpcore.engine.training import train
    from dpcore.jobs import queue as jobs
    from dpcore.jobs.training import record_result
    from dpcore.store.runs import RunStore
    from dpcore.views import tables as compare

    torch.set_num_threads(1)
    store = RunStore(os.environ["DPEXPLORER_RUNS_DIR"])
    cfg = TrainConfig(dataset="synthetic", target_epsilon=3.0, accountant="gdp", epochs=1, batch_size=200,
                      device="cpu", reproducible=True)
    run_id = store.create_run(cfg)
    store.set_status(run_id, "running")
    record_result(store, run_id, train(cfg))
    overview = compare.runs_overview(store).set_index("id")
    assert overview.loc[run_id, "epsilon_note"].startswith("GDP approximation; RDP bound")
    assert "reproducible" in compare.overlays(store, [run_id]).labels[run_id]
    exported = json.loads(compare.export_summary_json(store, run_id))
    assert exported["epsilon"]["reproducible"] is True and exported["epsilon"]["epsilon_is_guarantee"] is False
    assert any(c["name"] == "noise kept secret" and c["passed"] is False for c in exported["checks"])
    store.close()

    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=60)
    at.switch_page("pages/runs.py")
    at.query_params["run"] = run_id
    at.run()
    try:
        assert not at.exception, at.exception
        warnings = " ".join(w.value for w in at.warning)
        assert "GDP approximation" in warnings and "reproducible — not private against anyone who knows the seed" \
            in warnings and "RDP bound" in warnings
        markdown = " ".join(m.value for m in at.markdown)
        assert "noise kept secret" in markdown
    finally:
        jobs.shutdown()
