"""Attack and accuracy results by group: per class, or per value of a data column, so a review sees which
group leaks or loses most.

``group_results`` splits per-example attack scores (higher = member), correctness and a group key per example
into one row per group, each evaluated with ``dpcore.attacks.metrics.evaluate_scores`` (the same AUC and the
same "10 / FPR non-members" rule for TPR at a fixed FPR as the whole-run numbers). ``slice_keys`` turns column
values into group keys (few distinct values as they are, many numbers as quantile bins); ``compare_groups``
puts a baseline's accuracy beside a DP run's, group by group.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from dpcore.attacks.metrics import MIN_NON_MEMBERS_PER_FPR, evaluate_scores
from dpcore.errors import ConfigError

__all__ = ["ALL_GROUP", "GROUP_COLUMNS", "MIN_GROUP_EXAMPLES", "compare_groups", "group_results",
           "needed_non_members", "slice_keys"]

ALL_GROUP = "all examples"  # the first row of every table: the whole run, for reference
MIN_GROUP_EXAMPLES = 20  # a group with fewer members or non-members than this gets a "few examples" flag
MAX_VALUES = 12  # a column with at most this many distinct values is sliced by value, a numeric one with more binned
N_BINS = 4  # quantile bins of a numeric column with many values

#: Columns of a ``group_results`` table (fractions in [0, 1]; NaN where not computable).
GROUP_COLUMNS = ["group", "n_members", "n_non_members", "train_accuracy", "test_accuracy", "auc", "auc_low",
                 "auc_high", "tpr", "tpr_low", "tpr_high", "tpr_raw", "tpr_resolvable", "note"]


def needed_non_members(fpr: float) -> int:
    """Non-members a TPR at ``fpr`` needs to be reported (10 / FPR, the rule of ``dpcore.attacks.metrics``).

    >>> needed_non_members(0.01)
    1000
    """
    return math.ceil(MIN_NON_MEMBERS_PER_FPR / fpr - 1e-9)


def _array(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values).ravel()
    if name.endswith("scores"):
        array = array.astype(np.float64)
    return array


def _group_row(group: str, scores: tuple[np.ndarray, np.ndarray], correct: tuple[np.ndarray, np.ndarray], *,
               fpr: float, n_bootstrap: int, seed: int) -> dict[str, Any]:
    """One row of ``group_results`` for the examples of one group."""
    (member_scores, non_member_scores), (member_correct, non_member_correct) = scores, correct
    n_in, n_out = len(member_correct), len(non_member_correct)
    row: dict[str, Any] = {
        "group": group, "n_members": n_in, "n_non_members": n_out,
        "train_accuracy": float(np.mean(member_correct)) if n_in else math.nan,
        "test_accuracy": float(np.mean(non_member_correct)) if n_out else math.nan,
        "auc": math.nan, "auc_low": math.nan, "auc_high": math.nan, "tpr": math.nan, "tpr_low": math.nan,
        "tpr_high": math.nan, "tpr_raw": math.nan, "tpr_resolvable": False,
    }
    if len(member_scores) == 0 or len(non_member_scores) == 0:
        missing = "non-members" if len(non_member_scores) == 0 else "members"
        row["note"] = f"no {missing} in this group: no attack AUC"
        return row
    result = evaluate_scores(member_scores, non_member_scores, name=group, fprs=(fpr,), n_bootstrap=n_bootstrap,
                             seed=seed)
    point = result.operating_points[0]
    row.update(auc=result.auc, tpr_raw=result.tpr_at_fpr(fpr), tpr_resolvable=point.resolvable)
    if result.auc_ci is not None:
        row.update(auc_low=result.auc_ci[0], auc_high=result.auc_ci[1])
    if point.resolvable:
        row.update(tpr=point.tpr, tpr_low=point.tpr_low, tpr_high=point.tpr_high)
    row["note"] = (f"few examples ({n_in} members, {n_out} non-members): the AUC is rough, see its interval"
                   if min(n_in, n_out) < MIN_GROUP_EXAMPLES else "")
    return row


def group_results(
    *,
    member_scores: Any,
    non_member_scores: Any,
    member_groups: Any,
    non_member_groups: Any,
    member_correct: Any,
    non_member_correct: Any,
    order: Sequence[str] | None = None,
    fpr: float = 0.01,
    n_bootstrap: int = 200,
    seed: int = 0,
    include_all: bool = True,
) -> pd.DataFrame:
    """One row per group: sizes, train and test accuracy, attack AUC with a bootstrap interval, TPR at ``fpr``.

    ``member_scores``/``non_member_scores`` are per-example attack scores (higher = more likely a member),
    ``*_groups`` a group key per example (compared as text), ``*_correct`` whether the model classified the example
    right (bool). ``order`` fixes the row order (default: sorted keys; groups not in it follow). The first row is
    ``ALL_GROUP`` (every example) when ``include_all``. Columns: ``GROUP_COLUMNS``; accuracies, AUCs and TPRs are
    fractions in [0, 1]. ``tpr`` (with ``tpr_low``/``tpr_high``, a Clopper-Pearson interval) is reported only where
    the group has at least 10 / ``fpr`` non-members (the whole-run rule, ``metrics.MIN_NON_MEMBERS_PER_FPR``), else
    NaN with ``tpr_resolvable`` False (``needed_non_members`` says how many it takes); ``tpr_raw`` is the raw ROC
    value either way. ``note`` flags groups with fewer than ``MIN_GROUP_EXAMPLES`` members or non-members and groups
    with no AUC (one side empty); it is '' otherwise.

    >>> table = group_results(member_scores=[3, 2, 1, 0], non_member_scores=[0, 1, 0, 1],
    ...                       member_groups=["a", "a", "b", "b"], non_member_groups=["a", "a", "b", "b"],
    ...                       member_correct=[1, 1, 1, 0], non_member_correct=[1, 0, 1, 1], n_bootstrap=0)
    >>> list(table["group"]), list(table["auc"]), list(table["test_accuracy"])
    (['all examples', 'a', 'b'], [0.75, 1.0, 0.5], [0.75, 0.5, 1.0])
    """
    scores_in, scores_out = _array(member_scores, "member_scores"), _array(non_member_scores, "non_member_scores")
    groups_in, groups_out = _array(member_groups, "groups").astype(str), _array(non_member_groups, "groups").astype(str)
    correct_in, correct_out = _array(member_correct, "correct").astype(bool), _array(non_member_correct,
                                                                                      "correct").astype(bool)
    if not len(scores_in) == len(groups_in) == len(correct_in) or not len(scores_out) == len(groups_out) == len(
            correct_out):
        raise ConfigError(f"scores, groups and correctness must have one entry per example: members "
                          f"{len(scores_in)}/{len(groups_in)}/{len(correct_in)}, non-members "
                          f"{len(scores_out)}/{len(groups_out)}/{len(correct_out)}")
    if not 0.0 < fpr < 1.0:
        raise ConfigError(f"fpr must be in (0, 1), got {fpr}")
    present = set(groups_in) | set(groups_out)
    keys = [str(key) for key in (order or []) if str(key) in present]
    keys += sorted(present - set(keys))
    rows = []
    if include_all:
        rows.append(_group_row(ALL_GROUP, (scores_in, scores_out), (correct_in, correct_out), fpr=fpr,
                               n_bootstrap=n_bootstrap, seed=seed))
    for key in keys:
        take_in, take_out = groups_in == key, groups_out == key
        rows.append(_group_row(key, (scores_in[take_in], scores_out[take_out]),
                               (correct_in[take_in], correct_out[take_out]), fpr=fpr, n_bootstrap=n_bootstrap,
                               seed=seed))
    return pd.DataFrame(rows, columns=GROUP_COLUMNS)


def _bin_label(low: float, high: float, *, last: bool) -> str:
    return f"{low:.4g} to {high:.4g}" if last else f"{low:.4g} to <{high:.4g}"


def slice_keys(member_values: Any, non_member_values: Any, *, max_values: int = MAX_VALUES,
               bins: int = N_BINS) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Group keys for the original values of one column: ``(member_keys, non_member_keys, order)``.

    A column with at most ``max_values`` distinct values (or any non-numeric column) is sliced by value (keys are
    the values as text, ``order`` sorted by value); a numeric column with more is cut into at most ``bins``
    quantile bins of the members' and non-members' values together, keys like '18 to <31' (the last bin,
    '52 to 90', includes its top), ``order`` from low to high. Text columns with more than ``max_values``
    values keep their ``max_values - 1`` most frequent values and put the rest in 'other values'.
    """
    members = pd.Series(np.asarray(member_values).ravel())
    non_members = pd.Series(np.asarray(non_member_values).ravel())
    values = pd.concat([members, non_members], ignore_index=True)
    distinct = values.dropna().unique()
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and len(distinct) > max_values:
        edges = np.unique(np.quantile(values.to_numpy(dtype=float), np.linspace(0.0, 1.0, bins + 1)))
        names = [_bin_label(edges[i], edges[i + 1], last=i == len(edges) - 2) for i in range(len(edges) - 1)]

        def keys(series: pd.Series) -> np.ndarray:
            index = np.clip(np.searchsorted(edges, series.to_numpy(dtype=float), side="right") - 1, 0, len(names) - 1)
            return np.asarray(names, dtype=object)[index].astype(str)
        return keys(members), keys(non_members), names
    try:
        ordered = sorted(distinct)
    except TypeError:  # mixed types: order by text
        ordered = sorted(distinct, key=str)
    names = [str(value) for value in ordered]
    if len(names) > max_values:
        counts = values.astype(str).value_counts()
        kept = [name for name in names if name in set(counts.index[:max_values - 1])]
        names = [*kept, "other values"]
        return (members.astype(str).where(members.astype(str).isin(kept), "other values").to_numpy(dtype=str),
                non_members.astype(str).where(non_members.astype(str).isin(kept), "other values").to_numpy(dtype=str),
                names)
    return members.astype(str).to_numpy(dtype=str), non_members.astype(str).to_numpy(dtype=str), names


def compare_groups(private: pd.DataFrame, baseline: pd.DataFrame) -> pd.DataFrame:
    """``private`` (a ``group_results`` table of a DP run) with its baseline's numbers group by group.

    Adds ``baseline_test_accuracy``, ``baseline_train_accuracy``, ``baseline_auc`` and ``accuracy_lost``
    (baseline test accuracy minus the DP run's, a fraction: positive = lost under DP); NaN for a group the
    baseline table lacks. Rows and their order are ``private``'s.
    """
    columns = {"test_accuracy": "baseline_test_accuracy", "train_accuracy": "baseline_train_accuracy",
               "auc": "baseline_auc"}
    other = baseline.set_index("group")[list(columns)].rename(columns=columns)
    merged = private.join(other, on="group")
    merged["accuracy_lost"] = merged["baseline_test_accuracy"] - merged["test_accuracy"]
    return merged
