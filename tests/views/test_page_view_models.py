"""The pure view modules behind the planner, tradeoffs, attack lab and runs pages (no Streamlit, no training)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dpcore.jobs import sweep as sweeps
from dpcore.privacy import accounting
from dpcore.store.records import StoredRun
from dpcore.store.runs import RunRecord
from dpcore.views import attack_lab, planner, runs_table, tradeoffs


def record(run_id: str = "r1", *, status: str = "done", private: bool = True, summary: dict | None = None,
           finished: str | None = None, error: str | None = None) -> RunRecord:
    return RunRecord(id=run_id, name=f"run {run_id}", kind="train", group=None, status=status,
                     config={"dataset": "synthetic", "private": private, "target_delta": 1e-5},
                     summary=summary or {}, finished=finished, error=error)


# ---------------------------------------------------------------------- planner
COUNTS = {"digits": 1437, "breast-cancer": 455}


def test_fit_dataset_reconciles_a_linked_plan():
    unknown = {**planner.DEFAULTS, "dataset": "nope", "n": 100}
    assert planner.fit_dataset(unknown, member_counts=COUNTS, n_given=True) == ["dataset=nope"]
    assert unknown["dataset"] == planner.CUSTOM and unknown["n"] == 100
    named = {**planner.DEFAULTS, "dataset": "breast-cancer", "n": 7}
    assert planner.fit_dataset(named, member_counts=COUNTS, n_given=False) == [] and named["n"] == 455
    own_n = {**planner.DEFAULTS, "dataset": "digits", "n": 60000}
    assert planner.fit_dataset(own_n, member_counts=COUNTS, n_given=True) == []
    assert own_n["dataset"] == planner.CUSTOM and own_n["n"] == 60000  # an N of its own is not digits


@pytest.mark.parametrize("size_by", ["batch", "sample_rate"])
def test_url_params_round_trip_and_leave_out_the_unused_size(size_by):
    settings = {**planner.DEFAULTS, "size_by": size_by, "handoff_mode": "target_epsilon"}
    params = planner.url_params(settings)
    assert ("batch_size" in params) == (size_by == "batch") and ("sample_rate" in params) == (size_by != "batch")
    assert params["handoff"] == "target_epsilon" and "handoff_mode" not in params
    names = {planner.URL_NAMES.get(name, name): name for name in planner.PARSERS}
    assert {names[key]: planner.PARSERS[names[key]](text) for key, text in params.items()} == \
        {name: settings[name] for name in map(names.get, params)}


def test_handoff_sends_sigma_or_target_and_the_trainers_sampling():
    sampling = accounting.sampling_for(n=1437, batch_size=256)
    settings = {**planner.DEFAULTS, "noise_multiplier": 1.5, "target_epsilon": 2.0}
    sent = planner.handoff({**settings, "handoff_mode": "noise_multiplier"}, sampling, epsilon={"rdp": 3.0})
    assert sent["config"]["noise_multiplier"] == 1.5 and "target_epsilon" not in sent["config"]
    assert sent["config"]["dataset"] == "digits" and sent["steps"] == sampling.steps(settings["epochs"])
    custom = planner.handoff({**settings, "dataset": planner.CUSTOM, "handoff_mode": "target_epsilon"}, sampling,
                             epsilon={"rdp": 3.0})
    assert custom["config"]["target_epsilon"] == 2.0 and "dataset" not in custom["config"]
    assert "differ" in planner.handoff_caption(sent, custom["config"])
    assert "differ" not in planner.handoff_caption(sent, sent["config"])


def test_curves_far_above_the_target_are_left_out_but_never_the_plans_own():
    curves = {s: pd.DataFrame({"epsilon": [end / 2, end]}) for s, end in ((0.5, 400.0), (1.0, 20.0), (2.0, 3.0))}
    left_out, cap = planner.curves_left_out(curves, sigma=0.5, target_epsilon=3.0, epsilon=400.0)
    assert cap == 1000.0 and left_out == []  # the plan's own ε sets the range
    left_out, cap = planner.curves_left_out(curves, sigma=2.0, target_epsilon=3.0, epsilon=3.0)
    assert cap == 12.0 and left_out == [0.5, 1.0]
    assert "Left out: σ = 0.5, 1" in planner.epochs_caption(accounting.sampling_for(n=100, batch_size=10), sigma=2.0,
                                                           left_out=left_out, cap=cap)


def test_sigma_text_rounds_up_so_the_target_still_holds():
    assert planner.sigma_text(1.2341) == "1.235" and planner.sigma_text(1.234) == "1.234"
    assert planner.epsilon_text(12345.6) == "1.2 × 10⁴" and planner.epsilon_text(3265.8) == "3,266"
    assert planner.epsilon_text(2.7) == "2.70"


def test_cached_epsilon_matches_the_accountant():
    sampling = accounting.sampling_for(n=1437, batch_size=256)
    eps = planner.accountant_epsilon(accountant="prv", sigma=1.0, sample_rate=sampling.sample_rate, steps=90,
                                     delta=1e-5)
    assert eps == pytest.approx(accounting.epsilon_for(noise_multiplier=1.0, sample_rate=sampling.sample_rate,
                                                       steps=90, delta=1e-5, accountant="prv"))


# ---------------------------------------------------------------------- tradeoffs
def test_clicked_run_reads_customdata_then_the_lookup():
    known = {"a", "b"}
    assert tradeoffs.clicked_run([{"customdata": "x"}, {"customdata": ["b", 1]}], known=known) == "b"
    frame = pd.DataFrame({"run_id": ["a", "b"]})
    lookup = tradeoffs.trace_row_lookup(frame, trace=2)
    assert tradeoffs.clicked_run([{"curve_number": 2, "point_index": 0}], known=known, lookup=lookup) == "a"
    assert tradeoffs.clicked_run([{"curve_number": 1, "point_index": 0}], known=known, lookup=lookup) is None
    assert tradeoffs.clicked_run([{"curve_number": 2, "point_index": 5}], known=known, lookup=lookup) is None


def test_progress_and_resume_texts_count_every_state():
    progress = sweeps.SweepProgress(total=6, counts={"done": 2, "failed": 1, sweeps.MISSING: 3}, status="failed")
    assert tradeoffs.progress_text(progress) == "2 of 6 runs done · 1 failed · 3 not queued yet"
    assert tradeoffs.resume_text(progress).startswith("4 run(s) of this sweep failed")


def test_unproven_text_names_only_the_caveated_points():
    front = pd.DataFrame({"label": ["ε 1", "ε 4"], "epsilon_note": ["", "GDP approximation"]})
    assert tradeoffs.unproven_text(front).endswith("ε 4: GDP approximation")
    assert tradeoffs.unproven_text(front.iloc[:1]) is None


def test_default_form_follows_the_recipe_and_makes_a_valid_grid():
    form = tradeoffs.default_form()
    models, fallback = tradeoffs.models_for(form["dataset"])
    assert form["model"] in models and fallback in models and "csv" not in tradeoffs.sweep_datasets()
    spec = tradeoffs.sweep_spec(form)
    assert spec.n_runs == len(form["epsilons"]) * len(form["clips"]) + 1  # one seed, plus the baseline


# ---------------------------------------------------------------------- attack lab
def test_job_problem_reports_only_a_newer_failed_or_stopped_job():
    result = {"created": "2026-01-02T00:00:00"}
    failed = record("j1", status="failed", finished="2026-01-03T00:00:00", error="out of memory")
    assert attack_lab.job_problem([failed], result) == ("error", "The last attack failed: out of memory")
    assert attack_lab.job_problem([failed], {"created": "2026-01-04T00:00:00"}) is None  # an older failure
    cancelled = record("j2", status="cancelled", finished="2026-01-03T00:00:00")
    assert attack_lab.job_problem([cancelled], None)[0] == "info"
    assert attack_lab.job_problem([record("j3", status="running")], None) is None


def test_headline_cards_on_reference_models_take_their_own_strongest_attack():
    entry = {"title": "Loss", "auc": 0.6, "operating_points": [{"target_fpr": 0.1, "tpr": 0.2}]}
    result = {"attacks": {"loss": entry}, "strongest_attack": "loss",
              "pool_evaluation": {"loss": entry, "rmia": {**entry, "title": "RMIA", "auc": 0.7}},
              "epsilon": {"accountant": None, "lower_bound": 0.5}}
    target = attack_lab.headline_cards(result, "target")
    pooled = attack_lab.headline_cards(result, "pool")
    assert target[0].label == "AUC · Loss" and pooled[0].label == "AUC · RMIA (reference models)"
    assert pooled[0].value == "0.700" and target[1].value == "20.0%" and target[3].value == "0.50"


def test_run_label_and_cards_of_a_baseline_say_infinity():
    run = StoredRun.from_record(record(private=False, summary={"final_epsilon": 2.0, "test_accuracy": 0.9,
                                                              "seconds": 1.25}))
    assert attack_lab.run_label(run) == "run r1 · ε ∞ · test acc 90.0% · r1"
    cards = {card.label: card.value for card in attack_lab.run_cards(run)}
    assert cards["Accountant ε"] == "∞" and cards["Training time"] == "1.2 s"
    assert "not in this runs directory" in attack_lab.unknown_run_text("gone", None)
    assert "failed" in attack_lab.unknown_run_text("r2", StoredRun.from_record(record("r2", status="failed")))


def test_plan_text_names_cached_pools_and_canaries():
    run = StoredRun.from_record(record(summary={"noise_multiplier": 1.1}))
    text = attack_lab.plan_text(run, n_models=8, needs_pool=True, cached=False, canary_mode="white-box",
                                canaries=500, estimate=12.0)
    assert "trains 8 reference models" in text and "σ = 1.1" in text and "500 canaries" in text
    cached = attack_lab.plan_text(run, n_models=8, needs_pool=True, cached=True, canary_mode=None, canaries=0,
                                  estimate=None)
    assert cached.startswith("This reuses the 8 reference models") and "canar" not in cached.split(".")[0]


# ---------------------------------------------------------------------- runs table
def test_linked_runs_separates_shown_hidden_and_unknown_ids():
    shown, unknown = runs_table.linked_runs("b,a,b,zz,h", shown=["a", "b"], stored=["a", "b", "h"])
    assert shown == ["b", "a"] and unknown == ["zz"]  # link order, no duplicates; 'h' is filtered out, not unknown
    assert runs_table.linked_runs(None, shown=["a"], stored=["a"]) == ([], [])
    assert "zz" in runs_table.unknown_runs_text(["zz"])


def test_table_frame_hides_infinity_and_counts_active_runs():
    shown = pd.DataFrame({"epsilon": [math.inf, 2.0], "accuracy": [0.5, 0.75], "status": ["done", "running"]})
    frame = runs_table.table_frame(shown)
    assert math.isnan(frame["epsilon_shown"].iloc[0]) and frame["epsilon_shown"].iloc[1] == 2.0
    assert frame["accuracy_pct"].tolist() == [50.0, 75.0]
    assert runs_table.count_caption(shown, total=5, selected=1, refresh_s=2.0) == \
        "2 of 5 runs · 1 active, refreshing every 2 s · 1 selected"
    assert runs_table.table_key(["a", "b"]) != runs_table.table_key(["a"])


def test_colour_key_escapes_run_names_and_filters_keep_their_order():
    assert "&lt;b&gt;" in runs_table.colour_key({"<b>": "#fff"}) and "<b>" not in runs_table.colour_key({"<b>": "#f"})
    overview = pd.DataFrame({"dataset": ["b", "a", None], "status": ["failed", "done", "queued"],
                             "mode": ["baseline", "epsilon", None]})
    options = runs_table.filter_options(overview)
    assert options == {"datasets": ["a", "b"], "statuses": ["queued", "done", "failed"],
                       "modes": ["epsilon", "baseline"]}
