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

from dpcore.errors import ConfigError

__all__ = ["MembershipData", "label_array", "log_prob_true", "membership_tensors", "model_logits",
           "per_example_loss", "prob_wrong", "stable_logit"]


class MembershipData(Protocol):
    """Anything with member / non-member tensors (``dpcore.engine.data.SplitData`` fits)."""

    x_members: torch.Tensor
    y_members: torch.Tensor
    x_non_members: torch.Tensor
    y_non_members: torch.Tensor


def _model_device(model: torch.nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def model_logits(model: torch.nn.Module, x: torch.Tensor, *, batch_size: int = 1024) -> np.ndarray:
    """Logits of ``model`` on ``x`` as float64 numpy ``[N, num_classes]``.

    Runs in eval mode under ``torch.no_grad`` on the model's device, in batches of ``batch_size``; the
    model's train/eval mode is restored afterwards.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    device = _model_device(model)
    was_training = model.training
    model.eval()
    outputs = []
    try:
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                batch = x[start:start + batch_size].to(device)
                outputs.append(model(batch).detach().to("cpu", torch.float64))
    finally:
        model.train(was_training)
    if not outputs:
        return np.zeros((0, 0))
    logits = torch.cat(outputs).numpy()
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ConfigError(f"attacks need class logits of shape [N, num_classes >= 2], got {tuple(logits.shape)}")
    return logits


def label_array(y: torch.Tensor | np.ndarray) -> np.ndarray:
    """Class labels ``y`` (tensor or array) as a flat int64 numpy array."""
    return (y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)).astype(np.int64).ravel()


def per_example_loss(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cross-entropy loss of each example in nats, ``logsumexp(z) - z_y``, computed in float64."""
    y = np.asarray(y, dtype=np.int64)
    return special.logsumexp(logits, axis=1) - logits[np.arange(len(y)), y]


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
