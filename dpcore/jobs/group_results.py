"""Results by class and by slice for a stored run: which group leaks or loses most (and, with a baseline, how
much accuracy each group lost under DP).

``example_outputs(store, run_id)`` scores every member and non-member of a stopped run with its stored model (the
loss-threshold attack's score, minus the cross-entropy in nats, and whether the prediction is right) and keeps them in
the run's artifacts (``example_outputs.npz``), so a run is scored once, also one stored before this existed (the
training job keeps them right after training: ``record_outputs``).
``group_report(store, run_id, column=...)`` turns them into ``dpcore.attacks.groups.group_results`` per class
(``column=BY_CLASS``) or per value of a CSV column, with the linked baseline's accuracy beside each group; pass
``scores=`` (an Attack lab attack's stored per-example scores) to rank groups by that attack instead.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from dpcore.atomic import atomic_write
from dpcore.attacks.groups import compare_groups, group_results, slice_keys
from dpcore.attacks.signals import class_logits, label_array, per_example_loss
from dpcore.config import TrainConfig
from dpcore.engine.data import SplitData, load_for_config
from dpcore.engine.membership import MembershipLogits, membership_logits
from dpcore.engine.training import fresh_model
from dpcore.errors import DPExplorerError
from dpcore.store.artifacts import MODEL_FILE
from dpcore.store.records import StoredRun
from dpcore.store.runs import DONE, RunNotFound, RunStore

__all__ = ["BY_CLASS", "OUTPUTS_FILE", "ExampleOutputs", "GroupReport", "example_outputs", "group_keys",
           "group_report", "record_outputs", "run_data", "slice_columns"]

log = logging.getLogger(__name__)

OUTPUTS_FILE = "example_outputs.npz"
OUTPUTS_VERSION = 1
BY_CLASS = "class"  # the column name that means "by class" (every dataset has classes)


@dataclass(frozen=True)
class ExampleOutputs:
    """Per-example outputs of one run's model, in the order of its data's members and non-members.

    ``*_scores`` are the loss-threshold attack's scores (minus the cross-entropy in nats; higher = more likely a
    member), ``*_correct`` whether the prediction is right, ``y_*`` the labels they were computed with.
    """

    member_scores: np.ndarray
    non_member_scores: np.ndarray
    member_correct: np.ndarray
    non_member_correct: np.ndarray
    y_members: np.ndarray
    y_non_members: np.ndarray

    def matches(self, data: SplitData) -> bool:
        """Whether these outputs were computed on ``data``'s members and non-members (same labels, same order)."""
        return (np.array_equal(self.y_members, label_array(data.y_members))
                and np.array_equal(self.y_non_members, label_array(data.y_non_members)))


@dataclass(frozen=True)
class GroupReport:
    """A run's results by group: ``table`` (``group_results`` columns, plus the baseline's when ``baseline_id``
    is set: ``baseline_test_accuracy``, ``baseline_auc``, ``accuracy_lost``), the ``column`` it is sliced by
    (``BY_CLASS`` or a CSV column), the ``attack`` whose scores it ranks, and ``notes`` (sentences for the reader)."""

    table: pd.DataFrame
    column: str
    attack: str
    baseline_id: str | None = None
    notes: list[str] = field(default_factory=list)


def _stopped_train_run(store: RunStore, run_id: str) -> StoredRun:
    """The run, when it is a stopped training run with kept outputs or weights (else ``DPExplorerError``, at once:
    before any data is loaded)."""
    run = StoredRun.load(store, run_id)
    if run.kind != "train":
        raise DPExplorerError(f"run {run_id} is a {run.kind!r} job, not a training run; it has no model to score")
    if run.active:
        raise DPExplorerError(f"run {run_id} is still {run.status}; results by group appear when it stops")
    folder = store.artifacts_path(run_id)
    if not (folder / OUTPUTS_FILE).is_file() and not (folder / MODEL_FILE).is_file():
        store.load_weights(run_id)  # raises, saying which runs keep weights
    return run


def _config(run: StoredRun) -> TrainConfig:
    config = run.train_config
    if config is None:
        raise DPExplorerError(f"run {run.id}'s stored settings are not a training config this version can read; "
                              "train it again to see results by group")
    return config.resolve()


def run_data(store: RunStore, run_id: str) -> SplitData:
    """The members and non-members run ``run_id`` trained and was attacked on (``load_for_config`` of its config)."""
    return load_for_config(_config(_stopped_train_run(store, run_id)))


def _outputs(model: torch.nn.Module, data: SplitData, run_id: str) -> ExampleOutputs:
    """Score every member and non-member of ``data`` with ``model`` (one eval pass, no gradients)."""
    return _outputs_of_logits(membership_logits(model, data), run_id)


def _outputs_of_logits(logits: MembershipLogits, run_id: str) -> ExampleOutputs:
    """``ExampleOutputs`` from one eval pass's logits (``DPExplorerError`` when one is not finite)."""
    outputs = {}
    for side, side_logits, labels in (("member", logits.members, logits.y_members),
                                      ("non_member", logits.non_members, logits.y_non_members)):
        side_logits = class_logits(side_logits)
        if not np.isfinite(side_logits).all():
            raise DPExplorerError(f"run {run_id}'s model gives non-finite outputs (training diverged); no "
                                  "results by group")
        outputs[f"{side}_scores"] = -per_example_loss(side_logits, labels)
        outputs[f"{side}_correct"] = side_logits.argmax(axis=1) == labels
    return ExampleOutputs(**outputs, y_members=logits.y_members, y_non_members=logits.y_non_members)


def _compute(store: RunStore, run: StoredRun, data: SplitData) -> ExampleOutputs:
    config = _config(run)
    model, _ = fresh_model(config, data)
    try:
        model.load_state_dict(store.load_weights(run.id))
    except RuntimeError as exc:  # shapes do not match: the dataset changed since the run
        raise DPExplorerError(f"the weights of run {run.id} do not fit a {config.model!r} model for "
                              f"{config.dataset!r} as it loads now ({str(exc).splitlines()[0]})") from None
    return _outputs(model, data, run.id)


def record_outputs(store: RunStore, run_id: str, *, model: torch.nn.Module, data: SplitData,
                   logits: MembershipLogits | None = None) -> bool:
    """Score a just-trained ``model`` on its ``data`` and keep the outputs with run ``run_id``, so its view never
    has to (the training job calls this after the attack). ``logits`` (the run end's eval pass of ``model``,
    ``RunResult.final_logits``) are used instead of a forward pass when they fit ``data``. Returns whether the
    outputs were kept; never raises: the view scores the run itself when they are missing."""
    try:
        _save(store, run_id, _outputs_of_logits(logits, run_id) if logits is not None and logits.fits(data)
              else _outputs(model, data, run_id))
    except Exception:  # an extra: a failure here must never fail the trained run
        log.warning("run %s: per-example outputs not kept; the run view will compute them", run_id, exc_info=True)
        return False
    return True


def _load_cached(store: RunStore, run_id: str) -> ExampleOutputs | None:
    path = store.artifacts_path(run_id) / OUTPUTS_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            if int(stored["version"]) != OUTPUTS_VERSION:
                return None
            return ExampleOutputs(**{name: stored[name] for name in ExampleOutputs.__dataclass_fields__})
    except (OSError, KeyError, ValueError):  # damaged or from another version: score again
        return None


def _save(store: RunStore, run_id: str, outputs: ExampleOutputs) -> None:
    arrays = {name: getattr(outputs, name) for name in ExampleOutputs.__dataclass_fields__}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, version=np.array(OUTPUTS_VERSION), **arrays)
    with contextlib.suppress(OSError):  # a read-only runs folder: the numbers are still shown, just not kept
        atomic_write(store.artifacts_dir(run_id, create=True) / OUTPUTS_FILE,
                     lambda handle: handle.write(buffer.getvalue()))


def example_outputs(store: RunStore, run_id: str, *, data: SplitData | None = None) -> ExampleOutputs:
    """Per-example scores and correctness of stopped training run ``run_id``'s model on its members and non-members.

    Read from the run's ``example_outputs.npz`` when it is there and matches ``data`` (default: the run's data,
    loaded); otherwise computed with the stored weights (CPU, eval mode) and written there. Raises
    ``DPExplorerError`` (or ``RunNotFound``) for a run that is active, has no weights or whose model no longer
    fits its dataset.
    """
    run = _stopped_train_run(store, run_id)
    data = data if data is not None else load_for_config(_config(run))
    cached = _load_cached(store, run_id)
    if cached is not None and cached.matches(data):
        return cached
    outputs = _compute(store, run, data)
    _save(store, run_id, outputs)
    return outputs


def slice_columns(data: SplitData) -> list[str]:
    """The columns a run can be sliced by: ``BY_CLASS`` first, then (CSV) every original column but the label."""
    columns = [BY_CLASS]
    if data.raw is not None and data.raw_non_members is not None:
        columns += [str(name) for name in data.raw.columns if name != data.info.label_column]
    return columns


def group_keys(data: SplitData, column: str = BY_CLASS) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(member_keys, non_member_keys, order)`` for slicing ``data`` by ``column`` (``dpcore.attacks.groups``).

    ``BY_CLASS`` gives the class names; a CSV column its original values (``slice_keys``: many numbers in
    quantile bins). ``DPExplorerError`` for a column the data does not have (only CSV runs keep their columns).
    """
    names = np.asarray(data.info.class_names, dtype=object)
    if column == BY_CLASS:
        return (names[label_array(data.y_members)].astype(str), names[label_array(data.y_non_members)].astype(str),
                [str(name) for name in data.info.class_names])
    if column not in slice_columns(data):
        raise DPExplorerError(f"cannot slice this run by {column!r}: only the class and a CSV's own columns can be "
                              f"used; available: {', '.join(slice_columns(data))}")
    return slice_keys(data.raw[column], data.raw_non_members[column])


def _baseline(store: RunStore, run: StoredRun, data: SplitData) -> tuple[ExampleOutputs | None, str | None, str]:
    """The linked baseline's outputs on the same examples, its id, and a note when it cannot be compared."""
    baseline_id = run.baseline_run if run.private else None
    if not baseline_id:
        return None, None, ""
    try:
        baseline = StoredRun.load(store, baseline_id)
    except RunNotFound:
        return None, None, f"the linked baseline {baseline_id} was deleted: no per-group comparison"
    if baseline.status != DONE:
        return None, None, f"the baseline {baseline_id} is {baseline.status}: its per-group accuracy shows once done"
    try:
        outputs = example_outputs(store, baseline_id, data=run_data(store, baseline_id))
    except DPExplorerError as err:
        return None, None, f"the baseline {baseline_id} cannot be scored ({err})"
    if not outputs.matches(data):
        return None, None, f"the baseline {baseline_id} trained on other examples: no per-group comparison"
    return outputs, baseline_id, ""


def group_report(store: RunStore, run_id: str, *, column: str = BY_CLASS, data: SplitData | None = None,
                 scores: tuple[np.ndarray, np.ndarray] | None = None, attack: str = "loss threshold",
                 n_bootstrap: int = 200) -> GroupReport:
    """Run ``run_id``'s results by ``column`` (``BY_CLASS`` or a CSV column): a ``GroupReport``.

    The attack numbers come from the loss-threshold attack on the run's own model (the whole-run ROC's attack),
    or from ``scores`` (members, non-members: an Attack lab attack's per-example scores, named ``attack``). A
    private run with a finished linked baseline gets the baseline's accuracy and AUC per group and the accuracy
    lost to DP (``compare_groups``). ``data`` (default: loaded) must be the run's own split.
    """
    run = _stopped_train_run(store, run_id)
    data = data if data is not None else load_for_config(_config(run))
    outputs = example_outputs(store, run_id, data=data)
    keys_in, keys_out, order = group_keys(data, column)
    notes = []
    if scores is not None and (len(scores[0]) != data.n_members or len(scores[1]) != data.n_non_members):
        notes.append(f"the stored {attack} scores do not match this run's examples; showing the loss-threshold "
                     "attack instead (run the attack again)")
        scores, attack = None, "loss threshold"
    member_scores, non_member_scores = scores if scores is not None else (outputs.member_scores,
                                                                          outputs.non_member_scores)
    table = group_results(member_scores=member_scores, non_member_scores=non_member_scores, member_groups=keys_in,
                          non_member_groups=keys_out, member_correct=outputs.member_correct,
                          non_member_correct=outputs.non_member_correct, order=order, n_bootstrap=n_bootstrap)
    baseline, baseline_id, note = _baseline(store, run, data)
    if note:
        notes.append(note)
    if baseline is not None:
        table = compare_groups(table, group_results(
            member_scores=baseline.member_scores, non_member_scores=baseline.non_member_scores,
            member_groups=keys_in, non_member_groups=keys_out, member_correct=baseline.member_correct,
            non_member_correct=baseline.non_member_correct, order=order, n_bootstrap=0))
    if not math.isfinite(float(table["auc"].iloc[0])):
        notes.append("no attack numbers: the run has no members or no non-members")
    return GroupReport(table=table, column=column, attack=attack, baseline_id=baseline_id, notes=notes)
