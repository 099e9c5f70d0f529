"""Results by group (dpcore.attacks.groups): a leaky group stands out, small groups are flagged, the whole-run
row matches the whole-run numbers, and column values become sensible slices."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dpcore.attacks import evaluate_scores
from dpcore.attacks.groups import ALL_GROUP, compare_groups, group_results, needed_non_members, slice_keys
from dpcore.errors import ConfigError


def _synthetic(seed: int = 0) -> dict[str, np.ndarray]:
    """Three groups of 400 members / 400 non-members; group 'leaky' separates members by 1.5 sd, the others not."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(["calm", "leaky", "other"], 400)
    shift = np.where(groups == "leaky", 1.5, 0.0)
    return {
        "member_scores": rng.normal(size=1200) + shift, "non_member_scores": rng.normal(size=1200),
        "member_groups": groups, "non_member_groups": groups.copy(),
        "member_correct": rng.random(1200) < 0.9, "non_member_correct": rng.random(1200) < np.where(
            groups == "leaky", 0.5, 0.8),
    }


def test_a_leaky_group_has_a_clearly_higher_auc_and_rows_match_evaluate_scores():
    inputs = _synthetic()
    table = group_results(**inputs, n_bootstrap=100).set_index("group")
    assert list(table.index) == [ALL_GROUP, "calm", "leaky", "other"]
    assert table.loc["leaky", "auc"] > 0.8
    assert table.loc["calm", "auc"] < 0.6 and table.loc["other", "auc"] < 0.6
    assert table.loc["leaky", "auc_low"] > table.loc["calm", "auc_high"]  # the intervals separate
    leaky = inputs["member_groups"] == "leaky"
    expected = evaluate_scores(inputs["member_scores"][leaky], inputs["non_member_scores"][leaky], n_bootstrap=0)
    assert table.loc["leaky", "auc"] == pytest.approx(expected.auc)
    whole = evaluate_scores(inputs["member_scores"], inputs["non_member_scores"], n_bootstrap=0)
    assert table.loc[ALL_GROUP, "auc"] == pytest.approx(whole.auc)
    assert table.loc[ALL_GROUP, "tpr_raw"] == pytest.approx(whole.tpr_at_fpr(0.01))
    assert table.loc["leaky", "test_accuracy"] == pytest.approx(inputs["non_member_correct"][leaky].mean())
    assert list(table["n_members"]) == [1200, 400, 400, 400]


def test_tpr_at_one_percent_is_reported_only_with_enough_non_members():
    assert needed_non_members(0.01) == 1000
    rng = np.random.default_rng(1)
    groups = np.repeat(["big", "small"], [1200, 50])
    table = group_results(member_scores=rng.normal(size=1250) + 1.0, non_member_scores=rng.normal(size=1250),
                          member_groups=groups, non_member_groups=groups, member_correct=np.ones(1250, bool),
                          non_member_correct=np.ones(1250, bool), n_bootstrap=0).set_index("group")
    assert table.loc["big", "tpr_resolvable"] and 0 < table.loc["big", "tpr"] < 1
    assert table.loc["big", "tpr_low"] <= table.loc["big", "tpr"] <= table.loc["big", "tpr_high"]
    assert not table.loc["small", "tpr_resolvable"] and math.isnan(table.loc["small", "tpr"])
    assert not math.isnan(table.loc["small", "tpr_raw"])  # the raw ROC value is kept, marked unresolvable


def test_tiny_and_one_sided_groups_are_flagged_not_given_numbers():
    table = group_results(member_scores=[0.1] * 30 + [0.9] * 5 + [0.5] * 3, non_member_scores=[0.2] * 30 + [0.3] * 4,
                          member_groups=["a"] * 30 + ["tiny"] * 5 + ["only members"] * 3,
                          non_member_groups=["a"] * 30 + ["tiny"] * 4, member_correct=[True] * 38,
                          non_member_correct=[False] * 34, n_bootstrap=50).set_index("group")
    assert table.loc["a", "note"] == ""
    assert "few examples (5 members, 4 non-members)" in table.loc["tiny", "note"]
    assert table.loc["tiny", "auc"] == 1.0 and table.loc["tiny", "auc_low"] <= 1.0
    one_sided = table.loc["only members"]
    assert "no non-members" in one_sided["note"] and math.isnan(one_sided["auc"])
    assert math.isnan(one_sided["test_accuracy"]) and one_sided["train_accuracy"] == 1.0


def test_order_is_kept_and_bad_input_is_refused():
    table = group_results(member_scores=[1, 2, 3], non_member_scores=[1, 2], member_groups=["b", "a", "c"],
                          non_member_groups=["a", "b"], member_correct=[1, 1, 1], non_member_correct=[1, 1],
                          order=["c", "b", "a"], n_bootstrap=0, include_all=False)
    assert list(table["group"]) == ["c", "b", "a"]
    with pytest.raises(ConfigError, match="one entry per example"):
        group_results(member_scores=[1, 2], non_member_scores=[1], member_groups=["a"], non_member_groups=["a"],
                      member_correct=[1, 1], non_member_correct=[1])


def test_compare_groups_gives_accuracy_lost_per_group():
    private = pd.DataFrame({"group": [ALL_GROUP, "a", "b"], "test_accuracy": [0.7, 0.9, 0.5],
                            "train_accuracy": [0.7, 0.9, 0.5], "auc": [0.5, 0.5, 0.5]})
    baseline = pd.DataFrame({"group": [ALL_GROUP, "a"], "test_accuracy": [0.8, 0.95],
                             "train_accuracy": [0.9, 1.0], "auc": [0.6, 0.55]})
    merged = compare_groups(private, baseline).set_index("group")
    assert merged.loc["a", "accuracy_lost"] == pytest.approx(0.05)
    assert merged.loc[ALL_GROUP, "accuracy_lost"] == pytest.approx(0.1)
    assert math.isnan(merged.loc["b", "accuracy_lost"])  # the baseline has no such group


def test_slice_keys_values_bins_and_other():
    members, non_members, order = slice_keys(pd.Series(["x", "y", "x"]), pd.Series(["y", "z"]))
    assert order == ["x", "y", "z"] and list(members) == ["x", "y", "x"] and list(non_members) == ["y", "z"]
    ages = np.arange(18, 98)  # 80 distinct numbers: four quantile bins, low to high, covering every value
    members, non_members, order = slice_keys(ages[:60], ages[60:])
    assert len(order) == 4 and order[0].startswith("18 to <") and order[-1].endswith("to 97")
    assert set(members) | set(non_members) == set(order)
    assert list(non_members).count(order[-1]) == 20 and members[0] == order[0]
    few = slice_keys(np.array([3, 1, 2, 1]), np.array([2]))
    assert few[2] == ["1", "2", "3"]
    many = slice_keys(np.array([f"v{i}" for i in range(20)] + ["v0"] * 5), np.array(["v0", "v19"]), max_values=5)
    assert many[2][-1] == "other values" and len(many[2]) == 5 and "v0" in many[2]
    assert set(many[0]) <= set(many[2])
