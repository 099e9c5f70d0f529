"""Mislabelled (black-box) canaries for the one-run audit: pick, flip, include about half, score.

Train on a ``CanarySet``'s ``x_train``/``y_train``, score the canaries with ``score_canaries`` and bound
epsilon with ``dpcore.attacks.bounds.one_run_audit_best``. White-box gradient canaries are in
``dpcore.attacks.gradient_canaries``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dpcore.attacks.signals import MembershipData, label_array, membership_tensors, model_logits, stable_logit
from dpcore.errors import ConfigError

__all__ = ["CanarySet", "make_canaries", "score_canaries"]


@dataclass
class CanarySet:
    """Mislabelled canaries for a one-run audit, and the training set that includes about half of them.

    ``x_train``/``y_train`` are the members without the canaries, plus the included canaries with
    their flipped labels (pass these to the trainer). ``canary_x``/``canary_y`` are all m canaries
    with flipped labels, ``included`` (bool [m]) which of them are in ``x_train``, ``canary_index``
    their row indices in the original members.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    canary_x: torch.Tensor
    canary_y: torch.Tensor
    included: np.ndarray
    canary_index: np.ndarray


def make_canaries(data: MembershipData, m: int, seed: int = 0) -> CanarySet:
    """Pick ``m`` members as canaries, give each a different (wrong) label, include each with probability 1/2.

    The number of classes comes from ``data.info.num_classes`` when present, else from the labels.
    Returns a ``CanarySet``; train on ``x_train``/``y_train``, then ``score_canaries`` and
    ``one_run_audit``.
    """
    x_in, y_in, _, y_out = membership_tensors(data)
    n = len(x_in)
    if not 1 <= m <= n:
        raise ConfigError(f"m canaries must be between 1 and the {n} members, got {m}")
    info = getattr(data, "info", None)
    n_classes = int(getattr(info, "num_classes", 0) or (max(int(y_in.max()), int(y_out.max())) + 1))
    if n_classes < 2:
        raise ConfigError(f"canaries need at least 2 classes to flip labels, got {n_classes}")
    rng = np.random.default_rng(seed)
    canary_index = np.sort(rng.choice(n, size=m, replace=False))
    shift = torch.from_numpy(rng.integers(1, n_classes, size=m)).to(y_in.dtype)
    index = torch.from_numpy(canary_index)
    canary_y = (y_in[index] + shift.to(y_in.device)) % n_classes
    canary_x = x_in[index]
    included = rng.random(m) < 0.5
    keep = np.ones(n, dtype=bool)
    keep[canary_index] = False
    keep_index = torch.from_numpy(np.flatnonzero(keep))
    included_index = torch.from_numpy(np.flatnonzero(included))
    x_train = torch.cat([x_in[keep_index], canary_x[included_index]])
    y_train = torch.cat([y_in[keep_index], canary_y[included_index]])
    return CanarySet(x_train=x_train, y_train=y_train, canary_x=canary_x, canary_y=canary_y, included=included,
                     canary_index=canary_index)


def score_canaries(model: torch.nn.Module, canaries: CanarySet, *, batch_size: int = 1024) -> np.ndarray:
    """Stable-logit score of each canary (with its flipped label) under ``model``; higher = "included"."""
    return stable_logit(model_logits(model, canaries.canary_x, batch_size=batch_size), label_array(canaries.canary_y))
