"""Results by group as people see them: ``plots.group_chart`` (AUC from chance, accuracy DP vs baseline) and
``tables.group_table`` (intervals, honest TPR cells, accuracy lost in points)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dpcore.attacks.groups import compare_groups, group_results
from dpcore.views import plots, tables


def _table(*, with_baseline: bool) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    groups = np.repeat(["big", "mid", "tiny"], [1200, 150, 8])
    n = len(groups)
    shift = np.where(groups == "mid", 1.0, 0.0)
    table = group_results(member_scores=rng.normal(size=n) + shift, non_member_scores=rng.normal(size=n),
                          member_groups=groups, non_member_groups=groups, member_correct=np.ones(n, bool),
                          non_member_correct=rng.random(n) < 0.7, n_bootstrap=50)
    if not with_baseline:
        return table
    baseline = table.assign(test_accuracy=0.9)
    return compare_groups(table, baseline)


def test_group_table_says_what_each_tpr_rests_on_and_the_accuracy_lost():
    shown = tables.group_table(_table(with_baseline=True)).set_index("group")
    assert list(shown.index) == ["all examples", "big", "mid", "tiny"]
    assert shown.loc["big", "TPR @ 1 % FPR"].endswith("]") and "[" in shown.loc["big", "TPR @ 1 % FPR"]
    assert shown.loc["mid", "TPR @ 1 % FPR"].startswith("≈ ") and "few non-members" in shown.loc["mid", "TPR @ 1 % FPR"]
    assert shown.loc["tiny", "TPR @ 1 % FPR"] == "not resolvable (8 non-members)"  # never a bare "0 %"
    assert "few examples" in shown.loc["tiny", "note"] and shown.loc["big", "note"] == ""
    assert shown.loc["big", "members / non-members"] == "1200 / 1200"
    assert shown.loc["mid", "attack AUC"].startswith("0.") and " [" in shown.loc["mid", "attack AUC"]
    lost = shown.loc["big", "accuracy lost to DP (points)"]
    assert lost.startswith("+") and 15 < float(lost) < 25  # 90 % without DP against about 70 % with it
    assert "accuracy lost to DP (points)" not in tables.group_table(_table(with_baseline=False)).columns


def test_group_chart_draws_auc_from_chance_and_accuracy_with_the_baseline():
    table = _table(with_baseline=True)
    figure = plots.group_chart(table, title="By class")
    auc, with_dp, without_dp = figure.data
    assert list(auc.y) == list(table["group"]) and auc.base == 0.5
    np.testing.assert_allclose(np.asarray(auc.x) + 0.5, table["auc"])
    assert auc.x[2] > 0.15 and abs(auc.x[1]) < 0.1  # the leaky 'mid' group sticks out to the right
    assert (with_dp.name, without_dp.name) == ("with DP", "without DP (baseline)")
    np.testing.assert_allclose(without_dp.x, 90.0)
    assert any(shape.x0 == 0.5 for shape in figure.layout.shapes)  # the chance line
    single = plots.group_chart(_table(with_baseline=False))
    assert len(single.data) == 2 and single.data[1].name == "test accuracy"
    empty = plots.group_chart(None)
    assert not empty.data and empty.layout.annotations[0].text == plots.NO_DATA_TEXT
