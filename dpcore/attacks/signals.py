"""Model outputs turned into per-example membership signals.

``model_logits`` runs a model over a tensor in eval mode; ``per_example_loss`` and ``stable_logit`` turn
logits into the per-example numbers every attack scores. ``MembershipData`` is anything holding member
and non-member tensors (``dpcore.engine.data.SplitData`` fits).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from scipy import special

from dpcore.engine.membership import EVAL_BATCH, eval_logits, label_array, per_example_loss
from dpcore.errors import ConfigError

__all__ = ["MembershipData", "class_logits", "label_array", "log_prob_true", "membership_tensors", "model_logits",
           "per_example_loss", "prob_wrong", "stable_logit"]


class MembershipData(Protocol):
    """Anything with member / non-member tensors (``dpcore.engine.data.SplitData`` fits)."""

    x_members: torch.Tensor
    y_members: torch.Tensor
    x_non_members: torch.Tensor
    y_non_members: torch.Tensor


def model_logits(model: torch.nn.Module, x: torch.Tensor, *, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Logits of ``model`` on ``x`` as float64 numpy ``[N, num_classes]``.

    Runs in eval mode under ``torch.no_grad`` on the model's device, in batches of ``batch_size``; the
    model's train/eval mode is restored afterwards (``dpcore.engine.membership.eval_logits``, which the
    per-epoch attack uses too). ConfigError for a batch size below 1 or outputs that are not class logits.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    return class_logits(eval_logits(model, x, batch_size=batch_size))


def class_logits(logits: np.ndarray) -> np.ndarray:
    """``logits`` unchanged when they are class logits ``[N, num_classes >= 2]`` (or empty); ConfigError otherwise."""
    if len(logits) and (logits.ndim != 2 or logits.shape[1] < 2):
        raise ConfigError(f"attacks need class logits of shape [N, num_classes >= 2], got {tuple(logits.shape)}")
    return logits


def stable_logit(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Carlini et al.'s stable logit phi = log p_y - log(sum of the other class probabilities).

    Computed as ``z_y - logsumexp_{j != y} z_j`` straight from the logits, so it stays exact where a
    float32 softmax would round p_y to 1 (phi is then large, not infinite). Returns float64 ``[N]``.
    """
    y = np.asarray(y, dtype=np.int64)
    rows = np.arange(len(y))
    others = np.array(logits, dtype=np.float64, copy=True)
    others[rows, y] = -np.inf
    return logits[rows, y] - special.logsumexp(others, axis=1)


def log_prob_true(phi: np.ndarray) -> np.ndarray:
    """log p_y from phi (p_y = sigmoid(phi)), accurate for large |phi|."""
    return -np.logaddexp(0.0, -phi)


def prob_wrong(phi: np.ndarray) -> np.ndarray:
    """1 - p_y = sigmoid(-phi), accurate where p_y is within rounding of 1."""
    return special.expit(-phi)


def membership_tensors(data: MembershipData) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_members, y_members, x_non_members, y_non_members)`` of ``data``; ``ConfigError`` if it lacks one."""
    try:
        return data.x_members, data.y_members, data.x_non_members, data.y_non_members
    except AttributeError as exc:
        raise ConfigError(
            f"attack data must have x_members, y_members, x_non_members, y_non_members; got {type(data).__name__} "
            f"({exc}). Pass a dpcore.engine.data.SplitData or RunResult.data"
        ) from None
