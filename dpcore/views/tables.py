"""Looking across stored runs: the runs overview, filters, side-by-side comparison, overlays and exports.

Everything here reads a ``RunStore`` and returns plain data (DataFrames, bytes), so the
Runs page, reports and scripts share one definition of "the key numbers of a run".
Epsilon values are at each run's own delta (``inf`` for the non-private baseline);
accuracies, clip fractions and attack rates are fractions in [0, 1].
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dpcore.engine.checkpoint import checkpoint_history
from dpcore.errors import DPExplorerError
from dpcore.jobs.resume import CONTINUATION_SUFFIX
from dpcore.jsonable import jsonable
from dpcore.privacy import tradeoff
from dpcore.privacy.caveats import epsilon_status
from dpcore.privacy.checks import run_checks
from dpcore.store.artifacts import roc_curve
from dpcore.store.records import StoredRun, parent_of
from dpcore.store.runs import ACTIVE_STATUSES, RUNNING, RunStore
from dpcore.views import plots
from dpcore.views.progress import format_duration

MODE_LABELS: dict[str, str] = {"epsilon": "target ε", "sigma": "fixed σ", "baseline": "no DP"}
STOP_LABELS: dict[str, str] = {"epsilon_limit": "stopped at ε limit", "diverged": "diverged"}
METRIC_TABLES = ("steps", "epochs")
SUMMARY_FORMAT = "dp-explorer run summary, version 1"

#: Summary fields the attack lab (dpcore.jobs.attack) stores with a run, shown beside the training numbers.
ATTACK_LAB_FIELDS = ("lira_auc", "lira_tpr_at_1pct_fpr", "empirical_epsilon_lower", "canary_epsilon_lower",
                     "canary_accountant_epsilon", "canary_epsilon_power")

#: Rows of the side-by-side table: (column of ``compare_runs``, label with unit, how to format).
COMPARE_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("status_label", "Status", "text"),
    ("privacy", "Privacy setting", "text"),
    ("final_epsilon", "ε spent (at δ)", "epsilon"),
    ("epsilon_note", "ε caveat (proven bound)", "text"),
    ("target_delta", "δ", "g"),
    ("epsilon_limit", "ε hard limit", "g"),
    ("test_accuracy", "Test accuracy", "percent"),
    ("train_accuracy", "Train accuracy", "percent"),
    ("accuracy_gap", "Train − test gap (points)", "points"),
    ("mia_auc", "Attack AUC (0.5 = chance)", "auc"),
    ("mia_tpr_at_1pct_fpr", "Attack TPR at 1 % FPR", "percent"),
    ("lira_auc", "Attack lab: LiRA AUC", "auc"),
    ("lira_tpr_at_1pct_fpr", "Attack lab: LiRA TPR at 1 % FPR", "percent"),
    ("empirical_epsilon_lower", "Attack lab: empirical ε lower bound", "bound"),
    ("canary_epsilon_lower", "Attack lab: canary-audit ε lower bound", "bound"),
    ("canary_accountant_epsilon", "Attack lab: the canary run's own ε (compare the canary bound with this)",
     "bound"),
    ("canary_epsilon_power", "Attack lab: canary-audit power (the most it could certify)", "bound"),
    ("noise_multiplier", "Noise multiplier σ", "sigma"),
    ("max_grad_norm", "Clipping bound C", "g"),
    ("final_clip_fraction", "Clipped (last epoch)", "percent0"),
    ("dataset", "Dataset", "text"),
    ("model", "Model", "text"),
    ("batch_size", "Batch size (expected)", "int"),
    ("epochs_done", "Epochs trained", "int"),
    ("steps", "Optimizer steps", "int"),
    ("accountant", "Accountant", "text"),
    ("seconds", "Training time", "duration"),
    ("device", "Device", "text"),
    ("resumed_from", "Continues run", "text"),
)


# ---------------------------------------------------------------------- labels
def mode_label(mode: Any) -> str:
    """'target ε', 'fixed σ', 'no DP', or '–' for jobs that are not training runs."""
    return MODE_LABELS.get(mode, "–") if isinstance(mode, str) else "–"


def status_label(status: str, stop_status: str | None = None, progress: float | None = None) -> str:
    """Status for people: 'done', 'done (stopped at ε limit)', 'running 45 %', 'failed', ..."""
    if status == RUNNING and progress is not None and math.isfinite(progress):
        return f"running {progress:.0%}".replace("%", " %")
    if status == "done" and stop_status in STOP_LABELS:
        return f"done ({STOP_LABELS[stop_status]})"
    return status


def unique_labels(names: Mapping[str, str]) -> dict[str, str]:
    """Chart labels per run id: the run name, with the id's last 6 characters added where names repeat."""
    counts: dict[str, int] = {}
    for name in names.values():
        counts[name] = counts.get(name, 0) + 1
    return {run_id: name if counts[name] == 1 else f"{name} [{run_id[-6:]}]" for run_id, name in names.items()}


def short_labels(names: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Labels that keep only what tells runs apart, and the name parts they all share.

    Names are split at ', '; parts found in every name are dropped (when something is left of
    each), e.g. 'digits mlp, eps 3, C 1, seed 42' and 'digits mlp, no DP, seed 42' become
    'eps 3, C 1' and 'no DP' with shared parts ['digits mlp', 'seed 42']. Falls back to
    ``unique_labels`` when that would make two labels equal. Returns ({run id: label}, shared parts).

    >>> short_labels({"a": "digits mlp, eps 3, C 1, seed 42", "b": "digits mlp, no DP, seed 42"})
    ({'a': 'eps 3, C 1', 'b': 'no DP'}, ['digits mlp', 'seed 42'])
    """
    if len(names) < 2:
        return unique_labels(names), []
    suffixes, parts = {}, {}
    for run_id, name in names.items():  # a continuation's ' (+N epochs)' stays with its label
        match = CONTINUATION_SUFFIX.search(name)
        suffixes[run_id] = match.group(0) if match else ""
        parts[run_id] = (name[:match.start()] if match else name).split(", ")
    first = next(iter(parts.values()))
    shared = [part for part in first if all(part in other for other in parts.values())]
    short = {run_id: ", ".join(part for part in split if part not in shared) + suffixes[run_id]
             for run_id, split in parts.items()}
    if not shared or not all(label.strip() for label in short.values()) or len(set(short.values())) < len(short):
        return unique_labels(names), []
    return short, shared


def _number(value: Any) -> float:
    """A float (NaN for missing or non-numeric values)."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


# ---------------------------------------------------------------------- the overview table
def _live_numbers(store: RunStore, run_id: str) -> tuple[float, float, float]:
    """(last epsilon, last test accuracy, last train accuracy) written so far by an active run; NaN where
    nothing is written."""
    steps, epochs = store.steps(run_id), store.epochs(run_id)
    epsilon = float(steps["epsilon"].iloc[-1]) if len(steps) else math.nan
    if not len(epochs):
        return epsilon, math.nan, math.nan
    return epsilon, float(epochs["test_accuracy"].iloc[-1]), float(epochs["train_accuracy"].iloc[-1])


def runs_overview(store: RunStore, *, live: bool = True, kind: str | None = "train") -> pd.DataFrame:
    """``store.list_runs(kind=kind)`` (newest first) plus display columns for the runs table.

    Training runs only by default: the jobs that evaluate a run (kind 'attack') show their
    numbers in that run's row and live on the Attack lab page. ``kind=None`` lists every job.

    Added columns: ``epsilon`` (spent; inf for no-DP runs; for active runs the latest value
    when ``live``), ``accuracy`` (test accuracy, live for active runs), ``mode_label``,
    ``privacy`` ('target ε 3', 'fixed σ 1', 'no DP (ε = ∞)'), ``status_label``, ``progress``
    (fraction of steps done, None when unknown), ``created_at`` (UTC datetime), ``epsilon_note``
    (``dpcore.privacy.caveats``: why the ε is not a guarantee, with its proven bound; '' when it is one) and
    ``resumed_from`` (parent id of a continuation).
    """
    frame = store.list_runs(kind=kind)
    if frame.empty:
        for column in ("epsilon", "accuracy", "mode_label", "privacy", "status_label", "progress", "created_at",
                       "resumed_from", "epsilon_note"):
            frame[column] = pd.Series(dtype="object")
        return frame
    frame = frame.copy()
    epsilon = pd.to_numeric(frame["final_epsilon"], errors="coerce").astype("float64")
    epsilon[frame["mode"] == "baseline"] = math.inf
    accuracy = pd.to_numeric(frame["test_accuracy"], errors="coerce").astype("float64")
    steps_done = pd.to_numeric(frame["steps_done"], errors="coerce")
    total = pd.to_numeric(frame["total_steps"], errors="coerce")
    progress = (steps_done / total.where(total > 0)).clip(upper=1.0)
    progress[frame["status"] == "done"] = 1.0
    if live:
        for index in frame.index[frame["status"].isin(ACTIVE_STATUSES)]:
            live_epsilon, live_accuracy, _ = _live_numbers(store, frame.at[index, "id"])
            if frame.at[index, "mode"] != "baseline":
                epsilon[index] = live_epsilon
            accuracy[index] = live_accuracy
    frame["epsilon"] = epsilon
    frame["accuracy"] = accuracy
    frame["mia_auc"] = pd.to_numeric(frame["mia_auc"], errors="coerce").astype("float64")
    for name in ATTACK_LAB_FIELDS:  # written by the attack lab (dpcore.jobs.attack); absent until one ran
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64") \
            if name in frame.columns else math.nan
    frame["progress"] = progress.astype("float64")
    frame["mode_label"] = [mode_label(mode) for mode in frame["mode"]]
    frame["status_label"] = [
        status_label(status, stop, None if pd.isna(fraction) else float(fraction))
        for status, stop, fraction in zip(frame["status"], frame["stop_status"], frame["progress"], strict=True)
    ]
    frame["created_at"] = pd.to_datetime(frame["created"], utc=True, errors="coerce", format="ISO8601")
    records = {record.id: record for record in store.records()}
    frame["privacy"] = [StoredRun.from_record(records[run_id]).privacy_text
                        if run_id in records and records[run_id].kind == "train" else "–" for run_id in frame["id"]]
    frame["resumed_from"] = [parent_of(records[run_id]) if run_id in records else None for run_id in frame["id"]]
    frame["epsilon_note"] = [epsilon_status(config=records[run_id].config, summary=records[run_id].summary,
                                            epsilon=None if math.isnan(eps) else eps).note(".2f")
                             if run_id in records and records[run_id].kind == "train" else ""
                             for run_id, eps in zip(frame["id"], frame["epsilon"], strict=True)]
    return frame


def filter_runs(frame: pd.DataFrame, *, datasets: Iterable[str] | None = None,
                statuses: Iterable[str] | None = None, modes: Iterable[str] | None = None,
                text: str = "") -> pd.DataFrame:
    """Rows of ``frame`` (a ``runs_overview``/``list_runs`` frame) matching every given filter.

    Empty or None filters match everything. ``statuses`` and ``modes`` use the stored values
    ('done', 'running', ...; 'epsilon', 'sigma', 'baseline'). ``text`` matches the name or the
    id, case-insensitively, every whitespace-separated word anywhere. The index is reset.
    """
    keep = pd.Series(True, index=frame.index)
    for column, wanted in (("dataset", datasets), ("status", statuses), ("mode", modes)):
        wanted = list(wanted or [])
        if wanted:
            keep &= frame[column].isin(wanted)
    for word in (text or "").lower().split():
        haystack = frame["name"].fillna("").str.lower() + " " + frame["id"].fillna("").str.lower()
        keep &= haystack.str.contains(word, regex=False)
    return frame[keep].reset_index(drop=True)


# ---------------------------------------------------------------------- one run's numbers
def load_roc(store: RunStore, run_id: str) -> dict[str, Any] | None:
    """The run's stored attack ROC (``roc.json``: 'fpr' and 'tpr' as float arrays, 'auc', ...) or None.

    None when the run has no ROC or it cannot be read (a run that took no step, an attack
    that failed or still runs, a run from an older version).
    """
    return roc_curve(store.artifacts_path(run_id))


def _live_or_stored(store: RunStore, run: StoredRun) -> tuple[float, float, float]:
    """(ε, test accuracy, train accuracy) of ``run``: the stored ones, or for an active run the latest logged."""
    epsilon, test_accuracy, train_accuracy = run.final_epsilon, run.test_accuracy, run.train_accuracy
    if run.active:
        live_epsilon, live_test, live_train = _live_numbers(store, run.id)
        if run.private and not math.isnan(live_epsilon):
            epsilon = live_epsilon
        if not math.isnan(live_test):
            test_accuracy, train_accuracy = live_test, live_train
    return epsilon, test_accuracy, train_accuracy


def _optional(value: float | None) -> float:
    """``value``, NaN for None."""
    return math.nan if value is None else float(value)


def _run_numbers(store: RunStore, run: StoredRun) -> dict[str, Any]:
    """One row of ``compare_runs``: the key numbers of ``run`` (see there for the columns)."""
    private = run.private
    epsilon, test_accuracy, train_accuracy = _live_or_stored(store, run)
    status = epsilon_status(config=run.config, summary=run.summary, epsilon=epsilon if private else None)
    mia_auc = run.mia_auc
    if not math.isfinite(mia_auc):
        roc = load_roc(store, run.id)
        mia_auc = roc["auc"] if roc is not None else math.nan
    return {
        "id": run.id,
        "name": run.name,
        "kind": run.kind,
        "status": run.status,
        "stop_status": run.stop_status,
        "status_label": status_label(run.status, run.stop_status, run.progress),
        "stop_reason": run.error_message or run.stop_reason,
        "dataset": run.dataset,
        "model": run.model,
        "mode": run.mode,
        "privacy": run.privacy_text,
        "final_epsilon": epsilon,
        "epsilon_note": (status.note(".2f") or "none: a proven bound") if private else None,
        "epsilon_bound": _number(status.bound) if status.bound is not None else math.nan,
        "caveat_marks": status.marked_label("")[2:-1] if status.caveats else "",
        "target_epsilon": _optional(run.target_epsilon),
        "target_delta": _optional(run.target_delta),
        "epsilon_limit": _optional(run.epsilon_limit),
        "test_accuracy": test_accuracy,
        "train_accuracy": train_accuracy,
        "accuracy_gap": train_accuracy - test_accuracy,
        "mia_auc": mia_auc,
        "mia_tpr_at_1pct_fpr": run.mia_tpr,
        **{name: run.number(name) for name in ATTACK_LAB_FIELDS},
        "noise_multiplier": _optional(run.noise_multiplier),
        "max_grad_norm": _optional(run.max_grad_norm),
        "final_clip_fraction": run.clip_fraction,
        "batch_size": _optional(run.batch_size),
        "epochs_done": run.epochs_done,
        "steps": float(run.steps),
        "accountant": run.knob("accountant") if private else None,
        "seconds": run.seconds,
        "ms_per_step": run.ms_per_step,
        "device": run.device,
        "resumed_from": run.parent,
        "created": run.created,
    }


def compare_runs(store: RunStore, ids: Sequence[str]) -> pd.DataFrame:
    """The key numbers of runs ``ids`` side by side: one row per run, in the given order, indexed by id.

    Columns: name, label (``short_labels``: unique, without the name parts all runs share), status,
    dataset, model, mode, privacy,
    final_epsilon (inf for no DP; latest value for active runs), target_epsilon,
    target_delta, epsilon_limit, test_accuracy, train_accuracy, accuracy_gap (train - test),
    mia_auc (summary, else roc.json), mia_tpr_at_1pct_fpr, noise_multiplier, max_grad_norm,
    final_clip_fraction, batch_size, epochs_done, steps, accountant, seconds, ms_per_step,
    device, resumed_from, created. Fractions in [0, 1]; NaN where a number does not apply.
    RunNotFound for an unknown id; a repeated id appears once.
    """
    ordered = list(dict.fromkeys(ids))
    rows = [_run_numbers(store, StoredRun.load(store, run_id)) for run_id in ordered]
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=["id", "name", "label", *[name for name, _, _ in COMPARE_FIELDS]])
        return frame.set_index("id")
    labels, _ = short_labels(dict(zip(frame["id"], frame["name"], strict=True)))
    labels = {run_id: _marked(labels[run_id], marks) for run_id, marks in zip(frame["id"], frame["caveat_marks"],
                                                                             strict=True)}
    frame.insert(2, "label", [labels[run_id] for run_id in frame["id"]])
    return frame.set_index("id")


def _marked(label: str, marks: str) -> str:
    """A run's short label with its ε caveat marks ('… (GDP approx.)'), as overlays' legends show it."""
    return f"{label} ({marks})" if marks else label


def _format_cell(value: Any, how: str, row: Mapping[str, Any]) -> str:
    if how == "text":
        return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    number = _number(value)
    if how == "epsilon":
        if math.isinf(number):
            return "∞ (no DP)"
        return "–" if math.isnan(number) else f"{number:.2f}"
    if math.isnan(number):
        return "–"
    if how == "percent":
        return f"{number * 100:.1f} %"
    if how == "percent0":
        return f"{number * 100:.0f} %"
    if how == "points":
        return f"{number * 100:+.1f}"
    if how == "auc":
        return f"{number:.3f}"
    if how == "bound":  # an ε lower bound, as precise as the ε it is compared with
        return f"{number:.2f}"
    if how == "sigma":
        return f"{number:.3f}"
    if how == "int":
        return f"{round(number):,}" if math.isfinite(number) else "∞"  # round(inf) raises
    if how == "duration":
        per_step = _number(row.get("ms_per_step"))
        extra = f" ({per_step:.0f} ms/step)" if math.isfinite(per_step) else ""
        total, own = _number(row.get("steps")), number * 1000 / per_step if math.isfinite(per_step) else math.nan
        if math.isfinite(own) and math.isfinite(total) and round(own) < total:  # a continuation: its own steps
            extra = f" for its last {round(own):,} steps ({per_step:.0f} ms/step)"
        return (f"{number:.1f} s" if number < 1 else format_duration(number)) + extra
    return f"{number:g}"


def comparison_table(frame: pd.DataFrame) -> pd.DataFrame:
    """``compare_runs`` output as text for people: one row per COMPARE_FIELDS entry, one column per run label.

    Rows that are empty for every run (e.g. no epsilon limit anywhere) are left out.
    """
    columns = list(frame["label"]) if "label" in frame.columns else []
    table: dict[str, list[str]] = {}
    for column, label, how in COMPARE_FIELDS:
        if column not in frame.columns:
            continue
        cells = [_format_cell(row[column], how, row) for _, row in frame.iterrows()]
        if all(cell == "–" for cell in cells):
            continue
        table[label] = cells
    return pd.DataFrame.from_dict(table, orient="index", columns=columns)


# ---------------------------------------------------------------------- overlays
@dataclass
class Overlays:
    """Per-run inputs for the overlay charts, in the order the runs were given (same labels everywhere).

    ``steps``/``epochs`` are ``(label, DataFrame)`` pairs for ``dpcore.views.plots``; ``roc`` are
    ``(label, fpr, tpr, auc)`` for ``plots.roc_chart``; ``without_roc`` names runs with no stored ROC.
    Labels are ``short_labels`` of the run names; ``shared`` lists the name parts every run has.
    """

    steps: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    epochs: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    roc: list[tuple[str, np.ndarray, np.ndarray, float | None]] = field(default_factory=list)
    without_roc: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    shared: list[str] = field(default_factory=list)
    bounds: dict[str, Any] = field(default_factory=dict)  # label -> tradeoff.TradeoffCurve (runs with a ROC)


def overlays(store: RunStore, ids: Sequence[str]) -> Overlays:
    """Step and epoch metrics and stored ROC curves of runs ``ids`` (RunNotFound for an unknown id)."""
    ordered = list(dict.fromkeys(ids))
    records = {run_id: store.get(run_id) for run_id in ordered}
    labels, shared = short_labels({run_id: record.name for run_id, record in records.items()})
    labels = {run_id: epsilon_status(config=records[run_id].config, summary=records[run_id].summary)
              .marked_label(label) for run_id, label in labels.items()}
    result = Overlays(labels=labels, shared=shared)
    for run_id in ordered:
        label = labels[run_id]
        result.steps.append((label, store.steps(run_id)))
        result.epochs.append((label, store.epochs(run_id)))
        roc = load_roc(store, run_id)
        if roc is None:
            result.without_roc.append(label)
        else:
            result.roc.append((label, roc["fpr"], roc["tpr"], roc["auc"]))
            result.bounds[label] = tradeoff.tradeoff_for_run(summary=records[run_id].summary,
                                                             config=records[run_id].config,
                                                             history=checkpoint_history(store.artifacts_path(run_id)))
    return result


def overlay_charts(frame: pd.DataFrame, data: Overlays) -> tuple[dict[str, str], dict[str, Any]]:
    """(colour per run label, {'eps', 'clip', 'acc', 'vuln', 'roc': figure}) for runs compared side by side.

    ``frame`` is ``compare_runs`` output and ``data`` ``overlays`` output for the same runs. The
    ε chart names δ only when every private run shares one. The Runs page and the comparison
    report draw these same five charts.
    """
    colors = plots.run_colors(list(data.labels.values()))
    deltas = {value for value in frame["target_delta"] if isinstance(value, float) and math.isfinite(value)}
    delta = deltas.pop() if len(deltas) == 1 else None
    return colors, {
        "eps": plots.epsilon_chart(data.steps, delta=delta, colors=colors),
        "clip": plots.clip_fraction_chart(data.steps, colors=colors),
        "acc": plots.accuracy_chart(data.epochs, colors=colors),
        "vuln": plots.vulnerability_chart(data.epochs, colors=colors),
        "roc": plots.roc_chart(data.roc, colors=colors, run_bounds=data.bounds),
    }


# ---------------------------------------------------------------------- exports
def export_filename(run_id: str, what: str) -> str:
    """Download name, e.g. 'dp-explorer-<run id>-steps.csv' (``what``: 'steps', 'epochs' or 'summary')."""
    extension = "json" if what == "summary" else "csv"
    return f"dp-explorer-{run_id}-{what}.{extension}"


def export_metrics_csv(store: RunStore, run_id: str, *, table: str = "steps") -> bytes:
    """The run's per-step (``table='steps'``) or per-epoch (``'epochs'``) metrics as UTF-8 CSV bytes.

    First column ``run_id``, then ``dpcore.store.runs.STEP_COLUMNS`` or ``EPOCH_COLUMNS``: epsilon
    at the run's delta ('inf' for no DP), clip_fraction/accuracies as fractions 0..1, loss in
    nats; missing values are empty. A continuation's tables include its parent's rows first.
    """
    if table not in METRIC_TABLES:
        raise DPExplorerError(f"table must be one of {', '.join(METRIC_TABLES)}; got {table!r}")
    frame = store.steps(run_id) if table == "steps" else store.epochs(run_id)
    for column in ("step", "epoch", "batch_size"):  # whole numbers, even when some are missing
        if column in frame.columns:
            frame[column] = frame[column].round().astype("Int64")
    frame.insert(0, "run_id", run_id)
    return frame.to_csv(index=False, lineterminator="\n").encode("utf-8")


def export_summary_json(store: RunStore, run_id: str) -> bytes:
    """The run's record as indented UTF-8 JSON bytes: identity, status, config, summary, attack and checks.

    Keys: format, id, name, kind, group, resumed_from, status, stop_status, stop_reason,
    error, created/started/finished (UTC ISO 8601), device, steps_done, total_steps, config
    (the resolved TrainConfig), summary (final_epsilon, accuracies, ...), membership_attack
    (roc.json without the curve arrays, or null), epsilon (``dpcore.privacy.caveats``: whether the ε is a proven
    bound, the bound of the same schedule, its caveats, ``reproducible``) and checks (the gate's checks). Numbers
    that are NaN or infinite are null (the baseline's epsilon is infinite: see summary.private).
    """
    record = store.get(run_id)
    roc = load_roc(store, run_id)
    attack = None if roc is None else {key: value for key, value in roc.items() if key not in ("fpr", "tpr")}
    numbers = _run_numbers(store, StoredRun.from_record(record, store=store))
    checks = []
    if record.kind == "train" and not record.active:
        checks = [check.to_dict() for check in run_checks(record.config, record.summary,
                                                          test_accuracy=numbers["test_accuracy"],
                                                          mia_auc=numbers["mia_auc"])]
    payload = {
        "format": SUMMARY_FORMAT,
        "id": record.id,
        "name": record.name,
        "kind": record.kind,
        "group": record.group,
        "resumed_from": parent_of(record),
        "status": record.status,
        "stop_status": record.stop_status,
        "stop_reason": record.stop_reason,
        "error": record.error,
        "created": record.created,
        "started": record.started,
        "finished": record.finished,
        "device": record.device,
        "steps_done": record.steps_done,
        "total_steps": record.total_steps,
        "config": record.config,
        "summary": record.summary,
        "epsilon": epsilon_status(config=record.config, summary=record.summary).to_dict(),
        "membership_attack": attack,
        "checks": checks,
    }
    return json.dumps(jsonable(payload), indent=2, allow_nan=False, ensure_ascii=False).encode("utf-8")


# ---------------------------------------------------------------------- results by group
def _group_tpr(row: Mapping[str, Any], fpr: float) -> str:
    """TPR at ``fpr`` of one group: with its interval where resolvable, '≈' where the ROC only roughly reaches
    ``fpr`` (fewer than 10 / fpr non-members), and no number where not even one false alarm fits."""
    if row["tpr_resolvable"]:
        return f"{100 * row['tpr']:.1f} % [{100 * row['tpr_low']:.1f}, {100 * row['tpr_high']:.1f}]"
    n_out = int(row["n_non_members"])
    if n_out == 0 or _number(row["tpr_raw"]) != _number(row["tpr_raw"]):
        return "–"
    if n_out * fpr < 1:
        return f"not resolvable ({n_out} non-members)"
    return f"≈ {100 * row['tpr_raw']:.1f} % (few non-members)"


def group_table(frame: pd.DataFrame, *, fpr: float = 0.01) -> pd.DataFrame:
    """A ``dpcore.attacks.groups.group_results`` table (optionally with ``compare_groups``' baseline columns) as
    text for people: group, members / non-members, train and test accuracy, the baseline's test accuracy and the
    accuracy lost to DP (percentage points), attack AUC with its interval, TPR at ``fpr`` and the note."""
    def percent(value: Any) -> str:
        return _format_cell(value, "percent", {})

    rows = []
    for _, row in frame.iterrows():
        low, high = _number(row["auc_low"]), _number(row["auc_high"])
        auc = _format_cell(row["auc"], "auc", {}) + (f" [{low:.2f}, {high:.2f}]" if math.isfinite(low) else "")
        cells = {"group": row["group"], "members / non-members": f"{row['n_members']} / {row['n_non_members']}",
                 "train accuracy": percent(row["train_accuracy"]), "test accuracy": percent(row["test_accuracy"])}
        if "baseline_test_accuracy" in frame.columns:
            cells["test accuracy without DP"] = percent(row["baseline_test_accuracy"])
            cells["accuracy lost to DP (points)"] = _format_cell(row["accuracy_lost"], "points", {})
        cells.update({"attack AUC": auc, f"TPR @ {100 * fpr:g} % FPR": _group_tpr(row, fpr), "note": row["note"]})
        rows.append(cells)
    return pd.DataFrame(rows)


__all__ = [
    "COMPARE_FIELDS",
    "MODE_LABELS",
    "Overlays",
    "compare_runs",
    "comparison_table",
    "export_filename",
    "export_metrics_csv",
    "export_summary_json",
    "filter_runs",
    "group_table",
    "load_roc",
    "mode_label",
    "overlay_charts",
    "overlays",
    "runs_overview",
    "short_labels",
    "status_label",
    "unique_labels",
]
