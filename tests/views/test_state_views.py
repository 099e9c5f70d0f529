"""Issue 12's small view decisions: refused planner values, the Attack lab's results notice, the runs table's
names and columns, and batch advice sized to the data."""

from __future__ import annotations

import pandas as pd

from dpcore.config import TrainConfig
from dpcore.privacy.guidance import guidance, larger_batch_text
from dpcore.views import attack_lab, runs_table
from dpcore.views import planner as plan


def test_a_refused_planner_value_says_the_range_and_what_is_kept():
    assert plan.refused_text("noise_multiplier", 1.0, kept=2.7) is None
    text = plan.refused_text("noise_multiplier", 0.01, kept=2.7)
    assert "Noise multiplier σ" in text and "between 0.05 and 1000" in text and "0.01" in text and "2.7" in text
    assert "at least 1" in plan.refused_text("batch_size", 0, kept=256)  # no upper bound
    assert "nothing" in plan.refused_text("epochs", None, kept=15)
    assert plan.refused_text("target_epsilon", float("inf"), kept=3.0) is not None


def test_the_attack_lab_never_says_not_attacked_while_an_attack_is_on_its_way():
    assert "not been attacked yet" in attack_lab.result_notice(busy=False, has_result=False)
    assert attack_lab.result_notice(busy=True, has_result=False) is None  # the progress bar says it all
    assert "previous attack" in attack_lab.result_notice(busy=True, has_result=True)
    assert attack_lab.result_notice(busy=False, has_result=True) is None


def test_re_runs_with_the_same_name_get_their_time_then_a_short_id():
    frame = pd.DataFrame({
        "id": ["run-aaaaaa111111", "run-bbbbbb222222", "run-cccccc333333", "run-dddddd444444"],
        "name": ["digits ε 3", "digits ε 3", "digits ε 3", "adult no DP"],
        "created_at": pd.to_datetime(["2026-12-01T10:00:05Z", "2026-12-01T11:30:00Z", "2026-12-01T11:30:40Z",
                                      "2026-12-01T09:00:00Z"], utc=True)})
    names = runs_table.display_names(frame)
    assert names[0] == "digits ε 3 · 2026-12-01 10:00"
    assert names[1] == "digits ε 3 · 2026-12-01 11:30 · 222222" and names[2].endswith("· 333333")
    assert names[3] == "adult no DP" and len(set(names)) == 4
    assert list(frame["name"]) == ["digits ε 3", "digits ε 3", "digits ε 3", "adult no DP"]  # stored names unchanged


def test_the_runs_table_shows_the_columns_that_matter_first():
    assert runs_table.table_columns([]) == ["name", "status_label", "epsilon_shown", "accuracy_pct", "mia_auc",
                                            "created_at"]
    chosen = runs_table.table_columns(["model", "nonsense"])
    assert chosen.index("model") < chosen.index("epsilon_shown") and "nonsense" not in chosen
    assert set(runs_table.EXTRA_COLUMNS) | set(runs_table.DEFAULT_COLUMNS) == set(runs_table.COLUMNS)


def test_batch_advice_is_sized_to_the_data():
    assert "256+" in larger_batch_text(batch=32, n=1437)
    small = larger_batch_text(batch=16, n=192)  # a 240-row CSV: 192 members
    assert "256" not in small and "32" in small and "N/4 = 48" in small
    assert "cannot help much" in larger_batch_text(batch=64, n=192)
    notes = guidance(TrainConfig(dataset="csv", data_path="x.csv", label_column="y", noise_multiplier=2.0,
                                 batch_size=32, epochs=5, model="mlp", lr=0.1, optimizer="sgd", max_grad_norm=1.0),
                     192)
    batch_notes = [note.message for note in notes if note.field == "batch_size"]
    assert batch_notes and all("256" not in message for message in batch_notes)
