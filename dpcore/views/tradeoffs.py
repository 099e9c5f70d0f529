"""The Tradeoffs page's texts, tables and decisions (no Streamlit): what ``pages/tradeoffs.py`` draws.

The data behind the charts (frontier, heatmaps, bounds) are ``dpcore.views.frontier``; this module
holds the choices of the new-sweep form, the captions, the progress sentences, the members table and
how a click on a chart maps to a run. Accuracies and rates are fractions; ε are in nats at δ = 1e-5.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from dpcore.config import TrainConfig, recipe_for
from dpcore.engine.data import DATASETS
from dpcore.engine.models import MODELS
from dpcore.jobs import speed_history
from dpcore.jobs import sweep as sweeps
from dpcore.store.runs import RunRecord
from dpcore.views import frontier as frontiers
from dpcore.views import plots
from dpcore.views.explain import SELECTION_COST, explain
from dpcore.views.progress import corrected_eta, eta_text, format_duration, parse_time

EPSILON_CHOICES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
#: Clip bounds offered by the sweep form; every built-in recipe's C must be one (the form's default).
CLIP_CHOICES = (0.01, 0.03, 0.1, 0.25, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0)
MAX_SEEDS = 5
SOURCE_SWEEP, SOURCE_RUNS = "A sweep", "All runs of a dataset"
VIEW_PARAMS = ("sweep", "dataset", "model", "run")  # the page's URL parameters
POINT_COLUMNS = ("epsilon", "validation_accuracy", "test_accuracy", "mia_auc", "mia_tpr_at_1pct_fpr",
                 "final_clip_fraction")
RUNS_TABLE_COLUMNS = ["label", *POINT_COLUMNS, "run_id"]
#: the runs table's number columns -> (title, format, help)
TABLE_NUMBERS: dict[str, tuple[str, str, str | None]] = {
    "epsilon": ("ε spent", "%.3f", "ε at the run's δ (∞ without DP)."),
    "test_accuracy": ("test accuracy", "percent", None),
    "validation_accuracy": ("validation accuracy", "percent",
                            "On the slice of the members held out of training: what the frontier chooses on (empty: "
                            "the run has no validation set)."),
    "mia_auc": ("attack AUC", "%.3f", "0.5 = chance"),
    "mia_tpr_at_1pct_fpr": ("TPR at 1 % FPR", "percent", None),
    "final_clip_fraction": ("clipped at end", "percent", None),
}
INTRO = ("How much accuracy does privacy cost, and how much does it buy? Sweep target ε (and the clipping bound, and "
         "seeds for error bars) and see the frontier.")
EMPTY = ("No sweeps or finished runs yet. Start a sweep above: a small one (3 ε values, one seed, a few epochs) shows "
         "the tradeoff in a minute or two on CPU.")
HELP = {
    "dataset": "Every run of the sweep trains on this dataset's fixed member / non-member split.",
    "model": "The same architecture for every run, private or not.",
    "epochs": "Passes over the training set. The noise is calibrated so each run spends exactly its target ε after "
              "this many epochs.",
    "epsilons": f"Privacy budgets to train at (δ = {1e-5:g}). Smaller ε = stronger privacy. " + explain("bands"),
    "clips": "max_grad_norm values: each is tried at every ε, so the heatmap can show the best one. "
             + explain("max_grad_norm"),
    "seeds": "Repeats of every cell with seeds 0, 1, ...; two or more give error bars (± one standard deviation "
             "over seeds).",
    "baseline": "One run per seed without DP: the accuracy every private run is compared with.",
    "source": "A sweep you started here, or every finished run of one dataset and model (whatever config they were "
              "trained with).",
    "cancel": "Drop the sweep's queued runs and stop the running one. Finished runs are kept; Resume picks up where "
              "it stopped.",
    "retry": "Failed runs usually fail again for the same reason; see their error first.",
    "report": "A self-contained HTML file (plotly included, opens offline) with the grid, these charts, every run's "
              "numbers and checks, and the environment: for reviews.",
}
READING_TOPICS = ("bands", "baseline", "auc", "max_grad_norm", "lower_bound")
CAPTIONS = {
    "utility": "Accuracy on held-out data against the ε each run spent (log scale). Points are seed means with ± 1 "
               "std error bars (best clipping bound per ε); grey dots are single runs; the dotted line is the "
               "non-private baseline. Click a point to open its run. " + SELECTION_COST,
    "auc": "Loss-threshold attack on each model: AUC 0.5 means it cannot tell members from non-members. Lower is "
           "more private.",
    "tpr": "Share of members the attack catches while wrongly accusing only 1 % of non-members: the regime where an "
           "attack is dangerous. Chance is 1 %.",
    "bounds": "What the attack demonstrates (a statistical lower bound, 95 % confidence) against what the accountant "
              "guarantees. Points must stay below y = x. The loss attack on one model is a weak auditor; the Attack "
              "lab gives stronger bounds.",
    "heat_accuracy": "Mean test accuracy for each (target ε, clipping bound C); the red outline marks the C chosen "
                     "for each ε, the one with the best validation accuracy (a slice of the training side), not the "
                     "best cell here. Click a cell to open one of its runs.",
    "heat_clip": "Share of per-sample gradients longer than C in the last epoch. Around 50-80 % usually trains best; "
                 "near 100 % means C is far below the gradient norms.",
}


# ---------------------------------------------------------------------- the new-sweep form
def sweep_datasets() -> list[str]:
    """Datasets a sweep can train on (every registered one but the CSV upload)."""
    return [name for name in DATASETS if name != "csv"]


def recipe_settings(dataset: str) -> dict[str, Any]:
    """The form settings ``dataset``'s recipe suggests: ``model``, ``epochs`` and ``clips`` (its clipping bound)."""
    recipe = recipe_for(dataset)
    return {"model": recipe["model"], "epochs": int(recipe["epochs"]), "clips": [float(recipe["max_grad_norm"])]}


def default_form() -> dict[str, Any]:
    """The new-sweep form's settings for a new session: digits' recipe, the default ε grid, one seed, a baseline."""
    dataset = "digits" if "digits" in DATASETS else sweep_datasets()[0]
    return {"dataset": dataset, **recipe_settings(dataset), "epsilons": list(sweeps.DEFAULT_EPSILONS), "seeds": 1,
            "baseline": True}


def models_for(dataset: str) -> tuple[list[str], str]:
    """The models that fit ``dataset``'s kind, and the one to pick when the current one does not (its recipe's)."""
    recipe_model = recipe_for(dataset)["model"]
    models = [name for name, spec in MODELS.items() if DATASETS[dataset].kind in spec.kinds]
    return models, recipe_model if recipe_model in models else models[0]


def sweep_spec(settings: Mapping[str, Any]) -> sweeps.SweepSpec:
    """The validated grid of the form's ``settings`` (ConfigError naming what to change when it is not valid)."""
    return sweeps.SweepSpec(base=TrainConfig(dataset=settings["dataset"], model=settings["model"],
                                             epochs=int(settings["epochs"])),
                            epsilons=tuple(settings["epsilons"]), max_grad_norms=tuple(settings["clips"]),
                            seeds=tuple(range(int(settings["seeds"]))),
                            include_baseline=bool(settings["baseline"])).validate()


# ---------------------------------------------------------------------- texts
def plural(count: int, word: str) -> str:
    """'1 run', '3 runs'."""
    return f"{count} {word}{'s' if count != 1 else ''}"


def estimate_text(spec: sweeps.SweepSpec, *, seconds: float | None, basis: str, parallel: int = 1) -> str:
    """Markdown: how many runs the sweep queues and about how long they take, one after another or ``parallel`` at a
    time (``sweeps.SweepEstimate.parallel``)."""
    how = "one after another" if parallel <= 1 else f"{parallel} at a time"
    return f"**{plural(spec.n_runs, 'run')}** · about **{format_duration(seconds)}** {how} ({basis})."


def spec_notes(spec: sweeps.SweepSpec, *, dataset_status: str) -> tuple[list[str], str | None]:
    """Captions under the estimate, and a warning for a large sweep (None for a small one)."""
    notes = [f"Every run (the baseline too) holds out the same {spec.validation_fraction:.0%} of the training examples "
             "as a validation set: the best C per ε is chosen on it, never on the held-out non-members that test "
             "accuracy and the membership attack use."]
    if dataset_status == "download":
        notes.append(f"{spec.base.dataset} is not cached yet: the first run downloads it.")
    warning = None
    if spec.n_runs > sweeps.LARGE_SWEEP_RUNS:
        warning = (f"This is a large sweep ({spec.n_runs} runs). It queues {sweeps.SWEEP_WINDOW} runs at a time, so "
                   "other jobs still get their turn, but it will keep the machine busy for a while. Fewer ε values, "
                   "bounds or seeds make it quicker.")
    return notes, warning


def progress_text(progress: sweeps.SweepProgress, *, eta_s: float | None = None) -> str:
    """'2 of 6 runs done · 1 running · 3 queued · about 40 s left': the text on the sweep's progress bar."""
    parts = [f"{progress.done} of {progress.total} runs done"]
    for state in ("running", "queued", "interrupted", "cancelled", "failed", sweeps.MISSING):
        if progress.counts.get(state):
            parts.append(f"{progress.counts[state]} {'not queued yet' if state == sweeps.MISSING else state}")
    if eta_text(eta_s):
        parts.append(eta_text(eta_s))
    return " · ".join(parts)


#: A running member counts as at most this share done by its time (it may still be writing its results).
RUNNING_SHARE_CAP = 0.95


def member_seconds_taken(run: RunRecord | None) -> float | None:
    """Whole wall time (s) a finished member took: its start to its job's end (``summary['job_ended']``: training,
    membership attack and bound, writing; else ``finished``); None when unknown."""
    seconds = None if run is None else speed_history.job_seconds(run)
    return seconds if seconds is not None and seconds > 0 else None


def sweep_eta(states: Sequence[sweeps.MemberState], *, now: float | None = None,
              spec: sweeps.SweepSpec | None = None, estimate_s: float | None = None) -> float | None:
    """Seconds until the sweep's remaining runs finish (``corrected_eta``): the estimate made before it started
    (``estimate_s``, the one the form showed; else ``sweeps.estimate(spec)``, this machine's measured speed)
    blended with the sweep's own speed, time since its first run started / runs done, which outweighs the estimate
    as runs finish. A running member counts by its time so far over a member's whole wall time
    (``member_seconds_taken``: the median of the finished ones, else the estimate's share; capped at
    ``RUNNING_SHARE_CAP``), since its set-up before the first step and its attack after the last take time that its
    steps do not show; by its share of steps when neither is known. None when nothing has started and no estimate
    is known. Failed and cancelled cells are not counted as left to do."""
    now = time.time() if now is None else now
    left_out = {"failed", "cancelled"}
    total = sum(1 for m in states if m.state not in left_out)
    if estimate_s is None and spec is not None:
        estimate_s = sweeps.estimate(spec).seconds
    taken = [t for m in states if m.state == "done" and (t := member_seconds_taken(m.run)) is not None]
    unit = statistics.median(taken) if taken else (estimate_s / total if estimate_s and total else None)
    done, starts = 0.0, []
    for member in states:
        if member.run is None or member.state in left_out:
            continue
        started = parse_time(member.run.started)
        if member.state == "done":
            done += 1.0
        elif member.state == "running":
            by_time = None if not unit or started is None else min(RUNNING_SHARE_CAP, max(0.0, now - started) / unit)
            done += float(member.run.progress or 0.0) if by_time is None else by_time
        if member.state in ("done", "running") and started is not None:
            starts.append(started)
    elapsed = now - min(starts) if starts else None
    return corrected_eta(estimate_s=estimate_s, elapsed_s=elapsed, done=done, total=total)


def resume_text(progress: sweeps.SweepProgress) -> str:
    """Why a stopped sweep is not complete and what Resume does (for status incomplete, cancelled or failed)."""
    why = {"incomplete": "were interrupted (the app restarted), cancelled or not queued yet",
           "cancelled": "were cancelled", "failed": "failed"}[progress.status]
    return (f"{progress.total - progress.done} run(s) of this sweep {why}. Resume queues exactly those again; the "
            f"{progress.done} finished run(s) are kept and never re-run.")


def unproven_text(front: pd.DataFrame) -> str | None:
    """A warning naming the frontier points whose ε is not a proven guarantee; None when all are."""
    if "epsilon_note" not in front:
        return None
    unproven = front[front["epsilon_note"].fillna("").astype(str) != ""]
    if unproven.empty:
        return None
    return ("Not every ε here is a proven guarantee (ringed on the chart): "
            + "; ".join(f"{row.label}: {row.epsilon_note}" for row in unproven.itertuples()))


def clicked_run(points: Iterable[Mapping[str, Any]], *, known: set[str],
                lookup: Callable[[Mapping[str, Any]], str | None] | None = None) -> str | None:
    """The first run id among clicked plotly ``points`` that is in ``known`` (None when there is none).

    A point names its run in ``customdata`` (a string, or a list starting with one); ``lookup`` maps
    other points (say, on a chart whose traces carry no ids) to a run id.
    """
    for point in points:
        custom = point.get("customdata")
        if isinstance(custom, list):
            custom = custom[0] if custom else None
        if isinstance(custom, str) and custom in known:
            return custom
        if lookup is not None:
            run_id = lookup(point)
            if run_id in known:
                return run_id
    return None


def trace_row_lookup(frame: pd.DataFrame, *, trace: int | None) -> Callable[[Mapping[str, Any]], str | None]:
    """A ``clicked_run`` lookup: a point of trace number ``trace`` is row ``point_index`` of ``frame`` (its run_id)."""

    def lookup(point: Mapping[str, Any]) -> str | None:
        index = point.get("point_index")
        if trace is None or point.get("curve_number") != trace or index is None or index >= len(frame):
            return None
        return frame.iloc[int(index)]["run_id"]

    return lookup


def member_rows(states: Sequence[sweeps.MemberState], points: pd.DataFrame) -> pd.DataFrame:
    """One row per sweep cell: ``cell``, ``status``, ``run_id`` ('' when none) and its run's ``POINT_COLUMNS``."""
    by_id = points.set_index("run_id") if not points.empty else None
    rows = []
    for member in states:
        row: dict[str, Any] = {"cell": member.key, "status": member.state, "run_id": member.run_id or ""}
        if by_id is not None and member.run_id in by_id.index:
            point = by_id.loc[member.run_id]
            row.update({column: point[column] for column in POINT_COLUMNS})
        rows.append(row)
    return pd.DataFrame(rows)


def runs_caption(count: int, *, dataset: str, model: str) -> str:
    """The caption above the charts of all finished runs of one dataset and model."""
    return (f"{count} finished run(s) of {dataset} {model}, with whatever epochs, batch size and learning rate each "
            "was trained with: compare like with like, or start a sweep for a controlled grid.")


@dataclass(frozen=True)
class TradeoffCharts:
    """The Tradeoffs charts: ``figures`` by ``CAPTIONS`` key, the ``clicked_run`` lookups some need, and
    the ``warnings`` to show above them."""

    figures: dict[str, go.Figure]
    lookups: dict[str, Callable[[Mapping[str, Any]], str | None]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def tradeoff_charts(points: pd.DataFrame) -> TradeoffCharts:
    """The charts of finished runs' ``points`` (``frontier.run_points``, not empty).

    The accuracy, AUC and TPR frontiers and the ε bounds chart; when the points make a grid, the
    accuracy and clipping heatmaps too. Warnings name unproven ε on the frontier and
    ``frontier.frontier_note``'s caveat.
    """
    front = frontiers.frontier(points)
    utility = plots.privacy_utility_chart(front, title="Test accuracy vs ε")
    plots.fit_fraction_axis(plots.add_run_points(utility, points, x="epsilon", y="test_accuracy"))
    auc = plots.attack_vs_epsilon_chart(front, metric="mia_auc", title="Membership attack AUC vs ε")
    plots.add_run_points(auc, points, x="epsilon", y="mia_auc", y_format=".3f")
    plots.fit_fraction_axis(auc, pad=0.01, include=(0.5,))
    tpr = plots.attack_vs_epsilon_chart(front, metric="mia_tpr_at_1pct_fpr", title="Attack TPR at 1 % FPR vs ε")
    plots.add_run_points(tpr, points, x="epsilon", y="mia_tpr_at_1pct_fpr")
    plots.fit_fraction_axis(tpr, pad=0.005, include=(0.0, 0.01))
    bounds = frontiers.bounds_data(points)
    bounds_fig = plots.epsilon_bounds_chart(bounds, title="Empirical lower bound vs theoretical ε")
    runs_trace = next((i for i, trace in enumerate(bounds_fig.data) if trace.name == "runs"), None)
    figures = {"utility": utility, "auc": auc, "tpr": tpr, "bounds": bounds_fig}
    accuracy_cells = frontiers.heatmap_data(points)
    if not accuracy_cells.empty:
        figures["heat_accuracy"] = plots.sweep_heatmap(accuracy_cells, title="Test accuracy by ε and C")
        figures["heat_clip"] = plots.sweep_heatmap(
            frontiers.heatmap_data(points, value="final_clip_fraction"), value_title="clipped", colorscale="Blues",
            mark_best=False, value_range=(0.0, 1.0), title="Share clipped at the end of training")
    warnings = [text for text in (unproven_text(front), frontiers.frontier_note(front)) if text]
    return TradeoffCharts(figures, {"bounds": trace_row_lookup(bounds, trace=runs_trace)}, warnings)
