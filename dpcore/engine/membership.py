"""Per-example losses and the loss-threshold membership attack's headline numbers, cheap enough for every epoch.

``example_losses`` runs a model once over a tensor and returns each example's cross-entropy and whether it was
classified right, so one forward pass gives both the accuracy and the attack's signal. ``loss_attack_metrics``
turns member and non-member losses into the attack's AUC and TPR at 1 % FPR (lower loss = member).

The pieces both this module and ``dpcore.attacks`` (above the engine) need live here, once: ``eval_logits``
(a model's float64 logits, eval mode, in batches), ``label_array``, ``per_example_loss`` and ``mann_whitney_auc``;
``dpcore.attacks.signals`` and ``dpcore.attacks.metrics`` call them. The TPR follows ``metrics.evaluate_scores`` /
``AttackResult.tpr_at_fpr`` without building the ROC curve. On the same model and data both give the same floats,
so the last epoch row of a run equals the run's ``mia_auc`` and ``mia_tpr_at_1pct_fpr``
(tests/engine/test_vulnerability.py checks it). At a run's end one ``membership_logits`` pass (``MembershipLogits``,
kept on ``RunResult.final_logits``) gives the last row, the run's attack and its per-example outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from scipy import special, stats
from torch import nn

#: The false-positive rate at which the attack's TPR is reported (1 %), as in ``dpcore.jobs.training.MIA_FPR``.
MIA_FPR = 0.01
#: The epoch-table columns this module fills: the loss attack's AUC (0.5 = chance) and TPR at ``MIA_FPR``.
MIA_COLUMNS = ("mia_auc", "mia_tpr_at_1pct_fpr")
#: Batch size of the evaluation pass (also ``dpcore.attacks.signals.model_logits``' default).
EVAL_BATCH = 1024


class MembershipSplit(Protocol):
    """Member and non-member tensors (``dpcore.engine.data.SplitData`` fits)."""

    x_members: torch.Tensor
    y_members: torch.Tensor
    x_non_members: torch.Tensor
    y_non_members: torch.Tensor


@dataclass(frozen=True)
class ExampleLosses:
    """Each example's cross-entropy (float64 nats, ``logsumexp(z) - z_y``) and whether its argmax is its label."""

    losses: np.ndarray
    correct: np.ndarray

    @property
    def accuracy(self) -> float:
        """Fraction of examples classified right (NaN for no examples)."""
        return float(self.correct.mean()) if len(self.correct) else math.nan

    @property
    def mean_loss(self) -> float:
        """Mean cross-entropy in nats (NaN for no examples)."""
        return float(self.losses.mean()) if len(self.losses) else math.nan


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter, else of its first buffer, else the CPU."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def eval_logits(model: nn.Module, x: torch.Tensor, *, device: torch.device | None = None,
                batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Logits of ``model`` on ``x`` as a float64 numpy array ``[N, num_classes]`` (shape (0, 0) for no rows).

    One eval-mode forward pass in batches of ``batch_size`` on ``device`` (default: ``model_device``); the
    model's train/eval mode is restored afterwards.
    """
    device = model_device(model) if device is None else device
    was_training = model.training
    model.eval()
    outputs = []
    try:
        for start in range(0, len(x), batch_size):
            outputs.append(model(x[start:start + batch_size].to(device)).detach().to("cpu", torch.float64))
    finally:
        model.train(was_training)
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, 0))


def label_array(y: torch.Tensor | np.ndarray) -> np.ndarray:
    """Class labels ``y`` (tensor or array) as a flat int64 numpy array."""
    return (y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)).astype(np.int64).ravel()


def per_example_loss(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cross-entropy loss of each example in nats, ``logsumexp(z) - z_y``, computed in float64."""
    y = np.asarray(y, dtype=np.int64)
    return special.logsumexp(logits, axis=1) - logits[np.arange(len(y)), y]


def mann_whitney_auc(member_scores: np.ndarray, non_member_scores: np.ndarray) -> float:
    """Mann-Whitney AUC (ties count 1/2): probability a random member outscores a random non-member."""
    ranks = stats.rankdata(np.concatenate([member_scores, non_member_scores]))
    n1, n0 = len(member_scores), len(non_member_scores)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def logits_losses(logits: np.ndarray, labels: np.ndarray) -> ExampleLosses:
    """``ExampleLosses`` of float64 ``logits`` ``[N, classes]`` with int64 ``labels`` ``[N]`` (empty for N = 0)."""
    if not len(labels):
        return ExampleLosses(losses=np.zeros(0), correct=np.zeros(0, dtype=bool))
    return ExampleLosses(losses=per_example_loss(logits, labels), correct=logits.argmax(axis=1) == labels)


def example_losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, device: torch.device | None = None,
                   batch_size: int = EVAL_BATCH) -> ExampleLosses:
    """One eval-mode forward pass of ``model`` over (x, y) in batches on ``device`` (default: the model's).

    Returns ``ExampleLosses``: per-example cross-entropy in nats, computed in float64 from the logits as the
    loss attack computes it, and a boolean array of correct predictions. The model's train/eval mode is kept.
    """
    return logits_losses(eval_logits(model, x, device=device, batch_size=batch_size), label_array(y))


@dataclass(frozen=True)
class MembershipLogits:
    """One eval pass of one model over a split (``membership_logits``): float64 logits ``[N, classes]`` of its
    members and non-members in the split's order, and the int64 labels they go with.

    A run's end computes from these alone the last epoch row's attack numbers, the run's loss attack (its ROC,
    ``dpcore.attacks.loss_threshold_attack_on_logits``) and the per-example outputs of "Results by class"
    (``dpcore.jobs.group_results.record_outputs``): one forward pass instead of three, with the same floats.
    """

    members: np.ndarray
    non_members: np.ndarray
    y_members: np.ndarray
    y_non_members: np.ndarray

    def fits(self, data: MembershipSplit) -> bool:
        """Whether these are logits of ``data``: as many rows as its members and non-members, the same labels in
        the same order (the model cannot be checked: logits belong to the model that gave them)."""
        return (len(self.members) == len(data.x_members) and len(self.non_members) == len(data.x_non_members)
                and np.array_equal(self.y_members, label_array(data.y_members))
                and np.array_equal(self.y_non_members, label_array(data.y_non_members)))


def membership_logits(model: nn.Module, data: MembershipSplit, *, device: torch.device | None = None,
                      batch_size: int = EVAL_BATCH) -> MembershipLogits:
    """``MembershipLogits`` of ``model`` on ``data``: ``eval_logits`` of the members, then of the non-members
    (eval mode, batches of ``batch_size``, on ``device``, default the model's)."""
    return MembershipLogits(members=eval_logits(model, data.x_members, device=device, batch_size=batch_size),
                            non_members=eval_logits(model, data.x_non_members, device=device, batch_size=batch_size),
                            y_members=label_array(data.y_members), y_non_members=label_array(data.y_non_members))


def loss_attack_metrics(member_losses: np.ndarray, non_member_losses: np.ndarray, *,
                        fpr: float = MIA_FPR) -> dict[str, float]:
    """``{'mia_auc': ..., 'mia_tpr_at_1pct_fpr': ...}`` of the loss-threshold attack (score = minus the loss).

    AUC: probability that a random member has a lower loss than a random non-member (ties count 1/2; 0.5 =
    chance). TPR: the largest share of members called members at a threshold that calls at most ``fpr`` of
    the non-members members (no interpolation; 0 when none does). Both fractions in [0, 1]; NaN when a group
    is empty or a loss is not finite (a diverged model).
    """
    member_scores = -np.asarray(member_losses, dtype=np.float64).ravel()
    non_member_scores = -np.asarray(non_member_losses, dtype=np.float64).ravel()
    n1, n0 = len(member_scores), len(non_member_scores)
    scores = np.concatenate([member_scores, non_member_scores])
    if n1 == 0 or n0 == 0 or not np.isfinite(scores).all():
        return dict.fromkeys(MIA_COLUMNS, math.nan)
    auc = mann_whitney_auc(member_scores, non_member_scores)
    # The ROC's best TPR with FPR <= fpr (sklearn's roc_curve and AttackResult.tpr_at_fpr, without building the
    # curve, which cost more than the rest together): with at most ``allowed`` false alarms (FPR as roc_curve
    # divides it), the lowest threshold lies just above the (allowed + 1)-th highest non-member score.
    allowed = int(np.count_nonzero(np.arange(n0 + 1) / n0 <= fpr + 1e-12)) - 1
    if allowed >= n0:
        return {"mia_auc": auc, "mia_tpr_at_1pct_fpr": 1.0}
    cutoff = np.partition(non_member_scores, n0 - 1 - allowed)[n0 - 1 - allowed]
    return {"mia_auc": auc, "mia_tpr_at_1pct_fpr": int(np.count_nonzero(member_scores > cutoff)) / n1}


def logits_attack_metrics(logits: MembershipLogits) -> dict[str, float]:
    """``loss_attack_metrics`` (``mia_auc``, ``mia_tpr_at_1pct_fpr``: fractions in [0, 1]) of one eval pass."""
    return loss_attack_metrics(logits_losses(logits.members, logits.y_members).losses,
                               logits_losses(logits.non_members, logits.y_non_members).losses)


def model_attack_metrics(model: nn.Module, data: MembershipSplit) -> dict[str, float]:
    """``loss_attack_metrics`` of ``model`` on ``data``'s members and non-members, on the model's device."""
    return logits_attack_metrics(membership_logits(model, data))


__all__ = ["EVAL_BATCH", "MIA_COLUMNS", "MIA_FPR", "ExampleLosses", "MembershipLogits", "MembershipSplit",
           "eval_logits", "example_losses", "label_array", "logits_attack_metrics", "logits_losses",
           "loss_attack_metrics", "mann_whitney_auc", "membership_logits", "model_attack_metrics", "model_device",
           "per_example_loss"]
