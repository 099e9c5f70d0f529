"""The tradeoff data of many runs: the points, frontier, heatmap and bound rows the tradeoff charts draw.

``run_points`` turns a ``RunStore.list_runs`` frame into one row per finished training run;
``frontier``, ``heatmap_data`` and ``bounds_data`` aggregate those points (seeds averaged) into
the DataFrames ``dpcore.views.plots`` draws; ``frontier_note`` warns when a frontier chose its
clipping bounds on test accuracy. Pure functions of DataFrames (``runs_of`` reads a store).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from dpcore.privacy.caveats import row_status
from dpcore.store.runs import DONE, RunStore

POINT_COLUMNS = (
    "run_id", "label", "status", "is_baseline", "dataset", "model", "target_epsilon", "noise_multiplier",
    "epsilon", "target_delta", "max_grad_norm", "seed", "test_accuracy", "train_accuracy", "mia_auc",
    "mia_tpr_at_1pct_fpr", "final_clip_fraction", "empirical_epsilon_lower", "mia_epsilon_lower",
    "validation_accuracy", "epsilon_note", "epsilon_bound",
)


def run_points(runs: pd.DataFrame, *, only_done: bool = True) -> pd.DataFrame:
    """One row per finished run: the numbers the tradeoff charts need (POINT_COLUMNS).

    ``runs`` is a ``RunStore.list_runs`` frame. ``epsilon`` is the epsilon actually spent
    (inf for non-private runs), accuracies and attack rates are fractions in [0, 1]
    (``validation_accuracy`` NaN for runs without a validation set, e.g. stored before it existed),
    ``mia_auc`` 0.5 = chance. ``only_done`` drops runs that are not 'done'. Jobs that are not
    training runs (other ``kind``) are left out.
    """
    if runs is None or runs.empty:
        return pd.DataFrame(columns=list(POINT_COLUMNS))
    frame = runs.copy()
    if only_done:
        frame = frame[frame["status"] == DONE]
    frame = frame[frame["kind"].fillna("train") == "train"] if "kind" in frame.columns else frame
    if frame.empty:
        return pd.DataFrame(columns=list(POINT_COLUMNS))
    private = frame["private"].map(_is_private)
    out = pd.DataFrame({
        "run_id": frame["id"].astype(str),
        "label": frame["name"].astype(str),
        "status": frame["status"],
        "is_baseline": ~private.astype(bool),
    }, index=frame.index)
    for column in POINT_COLUMNS:
        if column in out.columns:
            continue
        source = "final_epsilon" if column == "epsilon" else column
        if source in frame.columns:
            out[column] = frame[source]
        else:
            out[column] = np.nan
    numeric = [c for c in POINT_COLUMNS
               if c not in ("run_id", "label", "status", "is_baseline", "dataset", "model", "epsilon_note")]
    for column in numeric:
        out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    out.loc[out["is_baseline"], "epsilon"] = math.inf
    # Which epsilons are not a guarantee (GDP, no Poisson sampling, seeded noise) and their proven bound.
    statuses = [row_status(row) for row in frame.to_dict("records")]
    out["epsilon_note"] = [status.note(".2f") for status in statuses]
    out["epsilon_bound"] = [math.nan if status.bound is None else status.bound for status in statuses]
    return out.reset_index(drop=True)[list(POINT_COLUMNS)]


def _is_private(value: Any) -> bool:
    """A list_runs 'private' cell: missing means private (the TrainConfig default)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return bool(value)


def _privacy_group(row: Any) -> tuple[str, float]:
    """(label, sort value) of a run's privacy setting: 'ε 1' for a target, 'σ 1.1' for a fixed sigma."""
    if row["is_baseline"]:
        return "no DP", math.inf
    if math.isfinite(row["target_epsilon"]):
        return f"ε {row['target_epsilon']:g}", row["target_epsilon"]
    if math.isfinite(row["noise_multiplier"]):
        return f"σ {row['noise_multiplier']:g}", row["epsilon"]
    return "ε ?", row["epsilon"]


def _aggregate(points: pd.DataFrame, by: list[str], metrics: Sequence[str]) -> pd.DataFrame:
    grouped = points.groupby(by, sort=True, dropna=False)
    out = grouped.agg(n_runs=("run_id", "size"), run_ids=("run_id", list), epsilon=("epsilon", "mean"))
    for metric in metrics:
        out[metric] = grouped[metric].mean()
        out[f"{metric}_std"] = grouped[metric].std(ddof=1)  # NaN with one seed: no error bar
    return out.reset_index()


FRONTIER_METRICS = ("test_accuracy", "mia_auc", "mia_tpr_at_1pct_fpr", "final_clip_fraction", "validation_accuracy")
#: How a frontier row's clipping bound was chosen (its ``chosen_on`` column).
CHOSEN_ON_VALIDATION = "validation"  # best mean validation accuracy: no choice saw the non-members
CHOSEN_ON_TEST = "test"  # old runs without a validation set: chosen on the non-members, flattering
CHOSEN_ON_NOTHING = "single"  # one bound (or a fixed one, or the baseline): nothing was chosen


def _choice_column(cells: pd.DataFrame, *, validation: str, test: str) -> tuple[pd.Series, str]:
    """(the score to pick the best of ``cells`` on, what it is): validation when every cell has it, else test."""
    if len(cells) < 2:
        return cells[validation].where(cells[validation].notna(), cells[test]), CHOSEN_ON_NOTHING
    if cells[validation].notna().all():
        return cells[validation], CHOSEN_ON_VALIDATION
    return cells[test], CHOSEN_ON_TEST


def frontier(points: pd.DataFrame, *, max_grad_norm: float | None = None) -> pd.DataFrame:
    """Privacy/utility frontier: one row per privacy setting (seeds averaged) plus one non-private row.

    Columns: label, target_epsilon, epsilon (mean spent; inf for the baseline), max_grad_norm,
    n_runs, run_ids, is_baseline, for each of FRONTIER_METRICS its mean and ``<metric>_std``
    (sample std over seeds; NaN with one seed), ``n_candidates`` (clipping bounds compared) and
    ``chosen_on``. With several clipping bounds per epsilon the bound with the best mean
    VALIDATION accuracy is kept (``chosen_on`` 'validation'); the row reports that bound's test
    accuracy, on non-members no choice has seen. Runs stored without a validation set fall back to
    test accuracy (``chosen_on`` 'test'; see ``frontier_note``). One bound, a bound fixed by
    ``max_grad_norm`` or the baseline: 'single'. Picking the best of k runs costs privacy that one
    run's epsilon does not include (``dpcore.views.explain.SELECTION_COST``). ``epsilon_note`` marks an
    epsilon that is not a guarantee (``dpcore.privacy.caveats``: GDP, no Poisson sampling, seeded noise; '' when
    it is one) and ``epsilon_bound`` is the mean proven bound (RDP for GDP runs). The frame feeds
    ``plots.privacy_utility_chart`` and ``plots.attack_vs_epsilon_chart``.
    """
    columns = ["label", "target_epsilon", "epsilon", "max_grad_norm", "n_runs", "run_ids", "is_baseline",
               *[c for m in FRONTIER_METRICS for c in (m, f"{m}_std")], "n_candidates", "chosen_on",
               "epsilon_note", "epsilon_bound"]
    if points is None or points.empty:
        return pd.DataFrame(columns=columns)
    frame = points.copy()
    if "validation_accuracy" not in frame.columns:  # points built before validation sets existed
        frame["validation_accuracy"] = math.nan
    groups = frame.apply(_privacy_group, axis=1, result_type="expand")
    frame["label"], frame["_order"] = groups[0], groups[1]
    private = frame[~frame["is_baseline"]]
    if max_grad_norm is not None:
        private = private[(private["max_grad_norm"] - max_grad_norm).abs() < 1e-12]
    rows = []
    if not private.empty:
        cells = _aggregate(private.fillna({"max_grad_norm": -1.0}), ["label", "_order", "max_grad_norm"],
                           FRONTIER_METRICS)
        cells["max_grad_norm"] = cells["max_grad_norm"].where(cells["max_grad_norm"] >= 0)
        picked = []
        for _, group in cells.groupby("label", sort=False):
            score, chosen_on = _choice_column(group, validation="validation_accuracy", test="test_accuracy")
            ranked = group.assign(_score=score).sort_values(["_score", "max_grad_norm"], ascending=[False, True],
                                                            na_position="last")
            picked.append(ranked.head(1).assign(n_candidates=len(group), chosen_on=chosen_on))
        best = pd.concat(picked).drop(columns="_score").sort_values("_order")
        best["target_epsilon"] = best["label"].map(
            private.drop_duplicates("label").set_index("label")["target_epsilon"])
        best["is_baseline"] = False
        if "epsilon_note" in private.columns:  # ε that is not a guarantee: its note and the proven bound
            notes = private.groupby("label")["epsilon_note"].agg(
                lambda values: "; ".join(dict.fromkeys(v for v in values if isinstance(v, str) and v)))
            best["epsilon_note"] = best["label"].map(notes).fillna("")
            best["epsilon_bound"] = best["label"].map(private.groupby("label")["epsilon_bound"].mean())
        rows.append(best)
    baseline = frame[frame["is_baseline"]]
    if not baseline.empty:
        agg = _aggregate(baseline.assign(_all="no DP"), ["_all"], FRONTIER_METRICS).rename(columns={"_all": "label"})
        agg["label"] = "non-private baseline"
        agg["epsilon"] = math.inf
        agg["target_epsilon"] = math.nan
        agg["max_grad_norm"] = math.nan
        agg["is_baseline"] = True
        agg["n_candidates"] = 1
        agg["chosen_on"] = CHOSEN_ON_NOTHING
        agg["epsilon_note"] = ""
        rows.append(agg)
    if not rows:
        return pd.DataFrame(columns=columns)
    return pd.concat(rows, ignore_index=True).reindex(columns=columns)


def heatmap_data(points: pd.DataFrame, *, value: str = "test_accuracy") -> pd.DataFrame:
    """One row per (target_epsilon, max_grad_norm) cell of the private runs, seeds averaged.

    Columns: target_epsilon, max_grad_norm, value (mean of ``value`` over seeds), value_std,
    n_runs, run_id (the run closest to the mean, to open on click), is_best (the bound with the
    best mean validation accuracy for that epsilon, as ``frontier`` chooses; test accuracy for
    runs stored without a validation set). Runs without a target epsilon are left out.
    """
    columns = ["target_epsilon", "max_grad_norm", "value", "value_std", "n_runs", "run_id", "is_best"]
    if points is None or points.empty:
        return pd.DataFrame(columns=columns)
    private = points[~points["is_baseline"] & points["target_epsilon"].notna() & points["max_grad_norm"].notna()]
    if private.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for (eps, clip), cell in private.groupby(["target_epsilon", "max_grad_norm"], sort=True):
        values = cell[value]
        mean = float(values.mean()) if values.notna().any() else math.nan
        closest = (values - mean).abs().idxmin() if values.notna().any() else cell.index[0]
        rows.append({"target_epsilon": eps, "max_grad_norm": clip, "value": mean,
                     "value_std": float(values.std(ddof=1)) if values.notna().sum() > 1 else math.nan,
                     "n_runs": len(cell), "run_id": cell.loc[closest, "run_id"],
                     "_test": float(cell["test_accuracy"].mean()),
                     "_validation": float(cell["validation_accuracy"].mean()) if "validation_accuracy" in cell
                     else math.nan})
    frame = pd.DataFrame(rows)
    frame["_accuracy"] = math.nan
    for _, group in frame.groupby("target_epsilon", sort=False):
        frame.loc[group.index, "_accuracy"] = _choice_column(group, validation="_validation", test="_test")[0]
    best = frame.sort_values(["_accuracy", "max_grad_norm"], ascending=[False, True], na_position="last")
    best = best.drop_duplicates("target_epsilon")
    frame["is_best"] = frame.index.isin(best.index) & frame["_accuracy"].notna()
    return frame[columns]


def frontier_note(front: pd.DataFrame) -> str | None:
    """A warning to show beside a frontier whose bounds were chosen on test accuracy, else None.

    That happens for runs stored before validation sets existed: the non-members (test set and the
    attack's negatives) then took part in the choice, so the chosen run's test accuracy is optimistic.
    """
    if front is None or front.empty or "chosen_on" not in front.columns:
        return None
    on_test = front[front["chosen_on"] == CHOSEN_ON_TEST]
    if on_test.empty:
        return None
    labels = ", ".join(str(label) for label in on_test["label"])
    return (f"These runs have no validation set (stored before it existed), so the best clipping bound for "
            f"{labels} was chosen on test accuracy, over the non-members: that accuracy is optimistic and the "
            "non-members took part in a choice. Run the sweep again to choose on a validation split.")


def bounds_data(points: pd.DataFrame) -> pd.DataFrame:
    """One row per private run with an empirical lower bound, for ``plots.epsilon_bounds_chart``.

    Columns: run_id, label, theoretical_epsilon (the accountant's epsilon spent; for a GDP run the
    proven RDP bound of its schedule, since GDP's is an approximation),
    empirical_lower_bound (the attack lab's ``empirical_epsilon_lower`` when stored, else the
    loss attack's ``mia_epsilon_lower``), source.
    """
    columns = ["run_id", "label", "theoretical_epsilon", "empirical_lower_bound", "source"]
    if points is None or points.empty:
        return pd.DataFrame(columns=columns)
    private = points[~points["is_baseline"] & points["epsilon"].map(lambda v: math.isfinite(v))].copy()
    lab = private["empirical_epsilon_lower"]
    private["empirical_lower_bound"] = lab.where(lab.notna(), private["mia_epsilon_lower"])
    private["source"] = ["attack lab" if v == v else "loss attack" for v in lab]
    private = private[private["empirical_lower_bound"].notna()]
    private["label"] = [_short_label(row) for _, row in private.iterrows()]
    if "epsilon_bound" in private.columns:  # a GDP ε is no upper bound: compare with the proven (RDP) one
        private["epsilon"] = private["epsilon_bound"].where(private["epsilon_bound"].notna(), private["epsilon"])
    private = private.rename(columns={"epsilon": "theoretical_epsilon"})
    return private[columns].reset_index(drop=True)


def _short_label(row: Any) -> str:
    parts = []
    if row.get("target_epsilon") == row.get("target_epsilon"):
        parts.append(f"ε {row['target_epsilon']:g}")
    if row.get("max_grad_norm") == row.get("max_grad_norm"):
        parts.append(f"C {row['max_grad_norm']:g}")
    if row.get("seed") == row.get("seed"):
        parts.append(f"s{int(row['seed'])}")
    return " ".join(parts) or str(row.get("label", ""))


def runs_of(store: RunStore, *, dataset: str, model: str | None = None) -> pd.DataFrame:
    """``list_runs`` of every training run on ``dataset`` (and ``model``): the page's 'all runs' view."""
    frame = store.list_runs(kind="train")
    if frame.empty:
        return frame
    keep = frame["dataset"] == dataset
    if model:
        keep &= frame["model"] == model
    return frame[keep]


__all__ = [
    "CHOSEN_ON_NOTHING",
    "CHOSEN_ON_TEST",
    "CHOSEN_ON_VALIDATION",
    "FRONTIER_METRICS",
    "POINT_COLUMNS",
    "bounds_data",
    "frontier",
    "frontier_note",
    "heatmap_data",
    "run_points",
    "runs_of",
]
