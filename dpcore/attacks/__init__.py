"""Membership-inference attacks and empirical privacy lower bounds.

Attacks score every example (higher = "more likely a member"); ``evaluate_scores`` turns member and
non-member scores into an ``AttackResult`` (ROC, AUC with a bootstrap interval, TPR at low FPR with
Clopper-Pearson intervals). ``empirical_epsilon`` and ``one_run_audit`` turn attack outcomes into
statistical *lower bounds* on epsilon: they can show a model leaks at least that much, never what the
real epsilon is.

Attacks that need reference models (LiRA, RMIA) work on a ``ReferencePool``: the "stable logit" scores
phi of every pool example under every reference model, plus which examples each model trained on.
The pool is built by ``reference_pool(train_fn, x, y)``, where ``train_fn`` is any callable that trains
a model the way the target was trained, so attacks run on score matrices, not on models.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from scipy import special, stats
from sklearn.metrics import roc_curve

from dpcore.errors import ConfigError

__all__ = [
    "ATTACKS",
    "DEFAULT_FPRS",
    "ONE_RUN_GUESS_SHARES",
    "POOL_SIZES",
    "AttackResult",
    "AttackSpec",
    "CanarySet",
    "EpsilonBound",
    "OperatingPoint",
    "ReferencePool",
    "attack_model",
    "bootstrap_auc",
    "clopper_pearson",
    "empirical_epsilon",
    "epsilon_lower_bound_from_counts",
    "evaluate_scores",
    "leave_one_out",
    "lira_offline_scores",
    "lira_online_scores",
    "logit_attack",
    "loss_threshold_attack",
    "make_canaries",
    "model_logits",
    "one_run_audit",
    "one_run_audit_best",
    "one_run_audit_power",
    "one_run_guess_choices",
    "one_run_p_value",
    "one_run_power",
    "per_example_loss",
    "reference_pool",
    "rmia_scores",
    "score_canaries",
    "stable_logit",
    "trainer_train_fn",
]

# FPRs at which every AttackResult reports TPR (10 %, 1 %, 0.1 %).
DEFAULT_FPRS: tuple[float, ...] = (0.1, 0.01, 0.001)
# A TPR at FPR x is only reported when there are at least this many / x non-members, so that the
# operating point rests on >= 10 false positives' worth of non-members.
MIN_NON_MEMBERS_PER_FPR = 10
# Reference-pool sizes offered by the dashboard: 'thorough' is where per-example LiRA variances pay off.
POOL_SIZES: dict[str, int] = {"quick": 8, "standard": 16, "thorough": 64}
# Below this many reference models LiRA uses one variance shared by all examples (Carlini et al. 2022).
LIRA_PER_EXAMPLE_VARIANCE_MIN_MODELS = 64


class MembershipData(Protocol):
    """Anything with member / non-member tensors (``dpcore.engine.data.SplitData`` fits)."""

    x_members: torch.Tensor
    y_members: torch.Tensor
    x_non_members: torch.Tensor
    y_non_members: torch.Tensor


# ----------------------------------------------------------------------------------------------------------------------
# Statistics helpers
# ----------------------------------------------------------------------------------------------------------------------


def clopper_pearson(
    successes: int, trials: int, *, confidence: float = 0.95, alternative: str = "two-sided"
) -> tuple[float, float]:
    """Exact (Clopper-Pearson) confidence interval for a binomial proportion.

    Returns ``(low, high)`` as fractions in [0, 1]. ``alternative='two-sided'`` puts (1-confidence)/2 in
    each tail; ``'lower'`` gives a one-sided lower limit at level 1-confidence (``high`` = 1);
    ``'upper'`` a one-sided upper limit (``low`` = 0).

    >>> lo, hi = clopper_pearson(0, 10, confidence=0.95)
    >>> (lo, round(hi, 4))
    (0.0, 0.3085)
    """
    successes, trials = int(successes), int(trials)
    if trials <= 0 or not 0 <= successes <= trials:
        raise ConfigError(f"clopper_pearson needs 0 <= successes <= trials and trials > 0, got {successes}/{trials}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    if alternative not in ("two-sided", "lower", "upper"):
        raise ConfigError(f"alternative must be 'two-sided', 'lower' or 'upper', got {alternative!r}")
    tail = (1.0 - confidence) / 2.0 if alternative == "two-sided" else 1.0 - confidence
    low = 0.0 if successes == 0 else float(stats.beta.ppf(tail, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(stats.beta.ppf(1.0 - tail, successes + 1, trials - successes))
    if alternative == "lower":
        high = 1.0
    elif alternative == "upper":
        low = 0.0
    return low, high


def _cp_lower(successes: np.ndarray, trials: int, tail: float) -> np.ndarray:
    """Vectorised one-sided Clopper-Pearson lower limit (failure probability ``tail``)."""
    successes = np.asarray(successes, dtype=float)
    with np.errstate(invalid="ignore"):
        low = stats.beta.ppf(tail, successes, trials - successes + 1)
    return np.where(successes <= 0, 0.0, low)


def _cp_upper(successes: np.ndarray, trials: int, tail: float) -> np.ndarray:
    """Vectorised one-sided Clopper-Pearson upper limit (failure probability ``tail``)."""
    successes = np.asarray(successes, dtype=float)
    with np.errstate(invalid="ignore"):
        high = stats.beta.ppf(1.0 - tail, successes + 1, trials - successes)
    return np.where(successes >= trials, 1.0, high)


def _auc_from_groups(member_scores: np.ndarray, non_member_scores: np.ndarray) -> float:
    """Mann-Whitney AUC (ties count 1/2): probability a random member outscores a random non-member."""
    ranks = stats.rankdata(np.concatenate([member_scores, non_member_scores]))
    n1, n0 = len(member_scores), len(non_member_scores)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def bootstrap_auc(
    member_scores: np.ndarray,
    non_member_scores: np.ndarray,
    *,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval for the AUC, resampling members and non-members separately.

    Returns ``(low, high)`` AUC values in [0, 1]. Seeded, so the same scores give the same interval.
    Each resample costs O(n) after one sort (weights on the unique score values), so 200 resamples of
    tens of thousands of scores take well under a second.
    """
    member_scores = np.asarray(member_scores, dtype=float)
    non_member_scores = np.asarray(non_member_scores, dtype=float)
    n1, n0 = len(member_scores), len(non_member_scores)
    values, inverse = np.unique(np.concatenate([member_scores, non_member_scores]), return_inverse=True)
    member_group, non_member_group = inverse[:n1], inverse[n1:]
    rng = np.random.default_rng(seed)
    aucs = np.empty(n_bootstrap)
    for b in range(n_bootstrap):
        member_weight = np.bincount(rng.integers(0, n1, n1), minlength=n1)
        non_member_counts = np.bincount(non_member_group[rng.integers(0, n0, n0)], minlength=len(values))
        below = np.cumsum(non_member_counts) - non_member_counts  # non-members strictly below each value
        wins = below[member_group] + 0.5 * non_member_counts[member_group]
        aucs[b] = float(member_weight @ wins) / (n1 * n0)
    tail = 100.0 * (1.0 - confidence) / 2.0
    return float(np.percentile(aucs, tail)), float(np.percentile(aucs, 100.0 - tail))


# ----------------------------------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class OperatingPoint:
    """TPR of an attack at a fixed false-positive rate, with a Clopper-Pearson interval on the TP count.

    ``tpr``, ``tpr_low``, ``tpr_high`` are fractions in [0, 1], or ``None`` with a ``reason`` when the FPR
    cannot be resolved (fewer than 10/FPR non-members). ``achieved_fpr`` is the FPR actually reached
    (<= ``target_fpr``); ``threshold`` is the score at or above which examples are called members.
    """

    target_fpr: float
    tpr: float | None
    tpr_low: float | None
    tpr_high: float | None
    achieved_fpr: float | None
    threshold: float | None
    true_positives: int | None
    false_positives: int | None
    n_members: int
    n_non_members: int
    reason: str | None = None

    @property
    def resolvable(self) -> bool:
        """True when a TPR is reported at this FPR."""
        return self.tpr is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of this operating point."""
        return {
            "target_fpr": self.target_fpr,
            "tpr": self.tpr,
            "tpr_low": self.tpr_low,
            "tpr_high": self.tpr_high,
            "achieved_fpr": self.achieved_fpr,
            "threshold": _json_float(self.threshold),
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
            "n_members": self.n_members,
            "n_non_members": self.n_non_members,
            "resolvable": self.resolvable,
            "reason": self.reason,
        }


@dataclass
class AttackResult:
    """Outcome of one membership-inference attack: plain data, no model.

    ``fpr``/``tpr``/``thresholds`` are the full ROC from ``sklearn.metrics.roc_curve`` (fractions; an
    example is called a member when its score >= threshold). ``auc`` is the area under it (0.5 =
    chance), ``auc_ci`` a bootstrap interval. ``accuracy`` is the balanced accuracy when the median of
    all scores is the threshold; ``advantage`` is max(TPR - FPR) over thresholds (0 = chance, 1 =
    perfect). ``operating_points`` give TPR at ``DEFAULT_FPRS`` with intervals. ``member_scores`` /
    ``non_member_scores`` are per-example attack scores (higher = more likely member).
    """

    name: str
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float
    accuracy: float
    advantage: float
    member_scores: np.ndarray
    non_member_scores: np.ndarray
    auc_ci: tuple[float, float] | None = None
    operating_points: list[OperatingPoint] = field(default_factory=list)
    confidence: float = 0.95
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def n_members(self) -> int:
        """Number of member scores the ROC rests on."""
        return len(self.member_scores)

    @property
    def n_non_members(self) -> int:
        """Number of non-member scores the ROC rests on."""
        return len(self.non_member_scores)

    def tpr_at_fpr(self, fpr: float) -> float:
        """Largest TPR on the ROC among thresholds whose FPR is <= ``fpr`` (no interpolation).

        Returns a fraction in [0, 1]. This is the raw empirical value; see ``operating_points`` for
        intervals and for whether the FPR is resolvable with this many non-members.
        """
        reachable = self.fpr <= fpr + 1e-12
        return float(np.max(self.tpr[reachable])) if reachable.any() else 0.0

    def operating_point(self, fpr: float) -> OperatingPoint:
        """The ``OperatingPoint`` at ``fpr`` (computed on demand when it is not among the stored ones)."""
        for point in self.operating_points:
            if math.isclose(point.target_fpr, fpr):
                return point
        return _operating_point(self.fpr, self.tpr, self.thresholds, fpr, self.n_members, self.n_non_members,
                                self.confidence)

    def roc_points(self, max_points: int = 500) -> dict[str, list[float]]:
        """A down-sampled ROC for storage and plotting: ``{'fpr': [...], 'tpr': [...]}``.

        Keeps at most ``max_points`` points, always the two ends, and picks the rest on both a linear
        and a logarithmic FPR grid so low-FPR plots keep their detail. At each grid FPR the point kept
        is the one with the largest TPR at or below it, so ``tpr_at_fpr`` on the grid is preserved.
        """
        return _downsample_roc(self.fpr, self.tpr, max_points=max_points, n_non_members=self.n_non_members)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary numbers (no per-example arrays; use ``roc_points`` for the curve)."""
        return {
            "name": self.name,
            "auc": self.auc,
            "auc_ci": list(self.auc_ci) if self.auc_ci is not None else None,
            "accuracy": self.accuracy,
            "advantage": self.advantage,
            "n_members": self.n_members,
            "n_non_members": self.n_non_members,
            "confidence": self.confidence,
            "tpr_at_fpr": {f"{p.target_fpr:g}": p.tpr for p in self.operating_points},
            "operating_points": [p.to_dict() for p in self.operating_points],
            "member_score_mean": float(np.mean(self.member_scores)),
            "non_member_score_mean": float(np.mean(self.non_member_scores)),
            "details": _jsonable(self.details),
        }


def _json_float(value: float | None) -> float | None:
    """float for JSON: non-finite values become None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _jsonable(value: Any) -> Any:
    """Convert numpy scalars / tuples in ``details`` to JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _json_float(float(value))
    return value


def _downsample_roc(
    fpr: np.ndarray, tpr: np.ndarray, *, max_points: int, n_non_members: int
) -> dict[str, list[float]]:
    if max_points < 2:
        raise ConfigError(f"max_points must be >= 2, got {max_points}")
    n = len(fpr)
    if n <= max_points:
        keep = np.arange(n)
    else:
        half = max(1, (max_points - 2) // 2)
        low = 1.0 / max(n_non_members, 1)
        grid = np.unique(np.concatenate([np.linspace(0.0, 1.0, half), np.geomspace(low, 1.0, half)]))
        # last index with fpr <= g: the highest-TPR point at that FPR (fpr is non-decreasing)
        upper = np.searchsorted(fpr, grid + 1e-12, side="right") - 1
        keep = np.unique(np.concatenate([[0, n - 1], np.clip(upper, 0, n - 1)]))
        if len(keep) > max_points:
            interior = keep[1:-1]
            pick = np.linspace(0, len(interior) - 1, max_points - 2).round().astype(int)
            keep = np.concatenate([[keep[0]], interior[np.unique(pick)], [keep[-1]]])
    return {"fpr": [float(v) for v in fpr[keep]], "tpr": [float(v) for v in tpr[keep]]}


def _operating_point(
    fpr: np.ndarray,
    tpr: np.ndarray,
    thresholds: np.ndarray,
    target_fpr: float,
    n_members: int,
    n_non_members: int,
    confidence: float,
) -> OperatingPoint:
    needed = math.ceil(MIN_NON_MEMBERS_PER_FPR / target_fpr - 1e-9)
    if n_non_members < needed:
        return OperatingPoint(
            target_fpr=target_fpr, tpr=None, tpr_low=None, tpr_high=None, achieved_fpr=None, threshold=None,
            true_positives=None, false_positives=None, n_members=n_members, n_non_members=n_non_members,
            reason=(f"not resolvable: FPR {target_fpr:g} needs at least {needed} non-members "
                    f"({MIN_NON_MEMBERS_PER_FPR}/FPR), only {n_non_members} available"),
        )
    reachable = np.flatnonzero(fpr <= target_fpr + 1e-12)
    best = reachable[np.argmax(tpr[reachable])]
    true_positives = round(tpr[best] * n_members)
    low, high = clopper_pearson(true_positives, n_members, confidence=confidence)
    return OperatingPoint(
        target_fpr=target_fpr, tpr=float(tpr[best]), tpr_low=low, tpr_high=high, achieved_fpr=float(fpr[best]),
        threshold=float(thresholds[best]), true_positives=true_positives,
        false_positives=round(fpr[best] * n_non_members), n_members=n_members, n_non_members=n_non_members,
    )


def evaluate_scores(
    member_scores: np.ndarray | Sequence[float],
    non_member_scores: np.ndarray | Sequence[float],
    *,
    name: str = "scores",
    fprs: Sequence[float] = DEFAULT_FPRS,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    details: dict[str, Any] | None = None,
) -> AttackResult:
    """Turn per-example attack scores (higher = member) into an ``AttackResult``.

    ``n_bootstrap=0`` skips the AUC interval. Raises ``ConfigError`` for empty groups or NaN scores.
    """
    member_scores = np.asarray(member_scores, dtype=np.float64).ravel()
    non_member_scores = np.asarray(non_member_scores, dtype=np.float64).ravel()
    if len(member_scores) == 0 or len(non_member_scores) == 0:
        raise ConfigError(
            f"an attack needs members and non-members, got {len(member_scores)} member and "
            f"{len(non_member_scores)} non-member scores; use a dataset split with both"
        )
    if np.isnan(member_scores).any() or np.isnan(non_member_scores).any():
        raise ConfigError("attack scores contain NaN (did training diverge?); scores must be numbers")
    labels = np.concatenate([np.ones(len(member_scores)), np.zeros(len(non_member_scores))])
    scores = np.concatenate([member_scores, non_member_scores])
    # drop_intermediate=False keeps every threshold, so tpr_at_fpr is exact rather than read off a chord.
    fpr, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    auc = _auc_from_groups(member_scores, non_member_scores)
    median = float(np.median(scores))
    accuracy = 0.5 * (float(np.mean(member_scores >= median)) + float(np.mean(non_member_scores < median)))
    auc_ci = (
        bootstrap_auc(member_scores, non_member_scores, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
        if n_bootstrap > 0
        else None
    )
    points = [
        _operating_point(fpr, tpr, thresholds, float(f), len(member_scores), len(non_member_scores), confidence)
        for f in fprs
    ]
    return AttackResult(
        name=name, fpr=fpr, tpr=tpr, thresholds=thresholds, auc=auc, accuracy=accuracy,
        advantage=float(np.max(tpr - fpr)), member_scores=member_scores, non_member_scores=non_member_scores,
        auc_ci=auc_ci, operating_points=points, confidence=confidence, details=dict(details or {}),
    )


# ----------------------------------------------------------------------------------------------------------------------
# Model outputs -> per-example signals
# ----------------------------------------------------------------------------------------------------------------------


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


def _labels(y: torch.Tensor | np.ndarray) -> np.ndarray:
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


def _log_prob_true(phi: np.ndarray) -> np.ndarray:
    """log p_y from phi (p_y = sigmoid(phi)), accurate for large |phi|."""
    return -np.logaddexp(0.0, -phi)


def _prob_wrong(phi: np.ndarray) -> np.ndarray:
    """1 - p_y = sigmoid(-phi), accurate where p_y is within rounding of 1."""
    return special.expit(-phi)


def _membership_tensors(data: MembershipData) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    try:
        return data.x_members, data.y_members, data.x_non_members, data.y_non_members
    except AttributeError as exc:
        raise ConfigError(
            f"attack data must have x_members, y_members, x_non_members, y_non_members; got {type(data).__name__} "
            f"({exc}). Pass a dpcore.engine.data.SplitData or RunResult.data"
        ) from None


def loss_threshold_attack(
    model: torch.nn.Module,
    data: MembershipData,
    *,
    batch_size: int = 1024,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> AttackResult:
    """Loss-threshold attack (Yeom et al. 2018): score = minus the per-example cross-entropy (nats).

    Members are ``data.x_members``/``y_members``, non-members ``data.x_non_members``/``y_non_members``.
    Evaluated in eval mode under ``torch.no_grad`` on the model's device. Needs no reference models.
    """
    x_in, y_in, x_out, y_out = _membership_tensors(data)
    member_scores = -per_example_loss(model_logits(model, x_in, batch_size=batch_size), _labels(y_in))
    non_member_scores = -per_example_loss(model_logits(model, x_out, batch_size=batch_size), _labels(y_out))
    return evaluate_scores(member_scores, non_member_scores, name="loss", n_bootstrap=n_bootstrap,
                           confidence=confidence, seed=seed)


def logit_attack(
    model: torch.nn.Module,
    data: MembershipData,
    *,
    batch_size: int = 1024,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> AttackResult:
    """Threshold on the stable logit phi (see ``stable_logit``); no reference models.

    Same ordering as the loss attack in exact arithmetic, but without float32 saturation: confidently
    fitted examples keep distinct scores, which matters at low FPR.
    """
    x_in, y_in, x_out, y_out = _membership_tensors(data)
    member_scores = stable_logit(model_logits(model, x_in, batch_size=batch_size), _labels(y_in))
    non_member_scores = stable_logit(model_logits(model, x_out, batch_size=batch_size), _labels(y_out))
    return evaluate_scores(member_scores, non_member_scores, name="logit", n_bootstrap=n_bootstrap,
                           confidence=confidence, seed=seed)


# ----------------------------------------------------------------------------------------------------------------------
# Reference-model pool
# ----------------------------------------------------------------------------------------------------------------------

TrainFn = Callable[[torch.Tensor, torch.Tensor, int], torch.nn.Module]


@dataclass
class ReferencePool:
    """Stable-logit scores of every pool example under every reference model.

    ``scores`` is float64 ``[M, N]``: phi (see ``stable_logit``) of example j under model i.
    ``in_masks`` is bool ``[M, N]``: whether model i trained on example j. Models come in pairs
    (2k, 2k+1) trained on complementary halves, so every example is "in" for exactly M/2 models.
    ``seeds`` are the training seeds passed to ``train_fn`` (with ``dpcore.engine.training.train`` they fix each
    model's initial weights; its noise and batches are secret unless the config is reproducible, and
    the halves each model trains on follow ``seed`` alone); ``fingerprint`` identifies the pool data
    (and the caller's ``cache_key``) so a cache built for other data is never reused.
    """

    scores: np.ndarray
    in_masks: np.ndarray
    seeds: np.ndarray
    fingerprint: str = ""
    seed: int = 0

    @property
    def n_models(self) -> int:
        """Number of reference models M."""
        return int(self.scores.shape[0])

    @property
    def n_examples(self) -> int:
        """Number of pool examples N."""
        return int(self.scores.shape[1])

    def save(self, path: str | Path) -> Path:
        """Write the pool to an ``.npz`` file; returns the path written."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            np.savez_compressed(handle, scores=self.scores, in_masks=self.in_masks, seeds=self.seeds,
                                fingerprint=np.array(self.fingerprint), seed=np.array(self.seed))
        return path

    @classmethod
    def load(cls, path: str | Path) -> ReferencePool:
        """Read a pool written by ``save``."""
        with np.load(Path(path), allow_pickle=False) as stored:
            return cls(scores=stored["scores"].astype(np.float64), in_masks=stored["in_masks"].astype(bool),
                       seeds=stored["seeds"], fingerprint=str(stored["fingerprint"]), seed=int(stored["seed"]))

    def leave_one_out(self, attack: str | Callable[..., np.ndarray], **kwargs: Any) -> AttackResult:
        """``leave_one_out(self.scores, self.in_masks, attack, **kwargs)``."""
        return leave_one_out(self.scores, self.in_masks, attack, **kwargs)


def _fingerprint(x: torch.Tensor, y: torch.Tensor, n_models: int, seed: int, cache_key: str) -> str:
    digest = hashlib.sha256()
    for tensor in (x, y):
        array = np.ascontiguousarray(tensor.detach().cpu().numpy())
        digest.update(str((array.shape, array.dtype.str)).encode())
        digest.update(array.tobytes())
    digest.update(json.dumps([n_models, seed, cache_key]).encode())
    return digest.hexdigest()[:32]


def pool_in_masks(n_examples: int, *, n_models: int, seed: int = 0) -> np.ndarray:
    """Bool ``[n_models, n_examples]``: pairs of complementary random halves (model 2k+1 = not model 2k)."""
    if n_models < 2 or n_models % 2:
        raise ConfigError(f"n_models must be an even number >= 2 (pairs of complementary halves), got {n_models}")
    rng = np.random.default_rng(seed)
    masks = np.zeros((n_models, n_examples), dtype=bool)
    for pair in range(n_models // 2):
        chosen = rng.permutation(n_examples)[: n_examples // 2]
        masks[2 * pair, chosen] = True
        masks[2 * pair + 1] = ~masks[2 * pair]
    return masks


def trainer_train_fn(cfg: Any, data: MembershipData) -> TrainFn:
    """A ``train_fn`` for ``reference_pool`` that trains exactly like ``dpcore.engine.training.train(cfg)``.

    Each call trains ``cfg`` (with ``seed`` replaced: it fixes the initial weights; the noise and batches
    are fresh secret entropy unless ``cfg.reproducible``, which carries over) on the given subset as members; ``data``'s
    non-members are kept only for the trainer's test-accuracy report. Returns the trained model. Pass
    the target's resolved config (``RunResult.config``); for a ``target_epsilon`` config the noise is
    re-calibrated to the subset's size, so pass ``noise_multiplier`` instead to keep sigma identical.
    Note pool halves hold (members + non-members) / 2 examples, the target's size only for a 50/50 split.
    """
    import dataclasses

    from dpcore.engine.training import train  # imported here: training pulls in Opacus

    def train_fn(x_train: torch.Tensor, y_train: torch.Tensor, seed: int) -> torch.nn.Module:
        subset = dataclasses.replace(data, x_members=x_train, y_members=y_train)
        if hasattr(subset, "raw"):
            subset.raw = None  # original CSV rows no longer line up with the subset
        info = getattr(subset, "info", None)
        if info is not None and dataclasses.is_dataclass(info) and hasattr(info, "n_members"):
            subset.info = dataclasses.replace(info, n_members=len(x_train))
        return train(dataclasses.replace(cfg, seed=int(seed)), data=subset).model

    return train_fn


def reference_pool(
    train_fn: TrainFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_models: int = 16,
    seed: int = 0,
    batch_size: int = 1024,
    cache_path: str | Path | None = None,
    cache_key: str = "",
    on_model: Callable[[int, int], None] | None = None,
) -> ReferencePool:
    """Train ``n_models`` reference models on complementary random halves of ``(x, y)`` and score them.

    ``x``/``y`` are the whole pool (for a target run: its members followed by its non-members).
    ``train_fn(x_train, y_train, seed) -> nn.Module`` must train the way the target was trained (same
    model, DP config, epochs). Each model's phi of every pool example is kept; the models are dropped.
    ``n_models`` is even: 16 by default, ``POOL_SIZES['thorough']`` = 64 for per-example variances.
    With ``cache_path`` the pool is loaded from that ``.npz`` when its fingerprint (data, n_models,
    seed, ``cache_key`` - pass e.g. a hash of the training config) matches, else trained and saved there.
    ``on_model(done, total)`` is called after each model (progress; raise inside it to cancel).
    """
    if len(x) != len(y) or len(x) < 2:
        raise ConfigError(f"reference_pool needs x and y of the same length >= 2, got {len(x)} and {len(y)}")
    in_masks = pool_in_masks(len(x), n_models=n_models, seed=seed)
    fingerprint = _fingerprint(x, y, n_models, seed, cache_key)
    if cache_path is not None and Path(cache_path).exists():
        cached = ReferencePool.load(cache_path)
        if cached.fingerprint == fingerprint:
            return cached
    seeds = np.random.SeedSequence(seed).generate_state(n_models, dtype=np.uint32).astype(np.int64) % (2**31 - 1)
    labels = _labels(y)
    scores = np.empty((n_models, len(x)), dtype=np.float64)
    for i in range(n_models):
        index = torch.from_numpy(np.flatnonzero(in_masks[i]))
        model = train_fn(x[index], y[index], int(seeds[i]))
        scores[i] = stable_logit(model_logits(model, x, batch_size=batch_size), labels)
        del model
        if on_model is not None:
            on_model(i + 1, n_models)
    pool = ReferencePool(scores=scores, in_masks=in_masks, seeds=seeds, fingerprint=fingerprint, seed=seed)
    if cache_path is not None:
        pool.save(cache_path)
    return pool


# ----------------------------------------------------------------------------------------------------------------------
# Score functions: (target_phi [N], ref_phi [R, N], ref_in [R, N]) -> member score [N]
# ----------------------------------------------------------------------------------------------------------------------


def _check_reference_shapes(target_phi: np.ndarray, ref_phi: np.ndarray, ref_in: np.ndarray) -> None:
    if ref_phi.ndim != 2 or ref_phi.shape != ref_in.shape or ref_phi.shape[1] != target_phi.shape[0]:
        raise ConfigError(
            f"reference scores must be [models, examples] matching the target's {target_phi.shape[0]} examples, "
            f"got scores {ref_phi.shape} and in-masks {ref_in.shape}"
        )


def _masked_mean_var(phi: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Per-example mean, per-example variance (ddof 1, NaN where < 2 samples), counts, pooled variance."""
    counts = mask.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, (phi * mask).sum(axis=0) / np.maximum(counts, 1), np.nan)
        squares = (((phi - mean) ** 2) * mask).sum(axis=0)
        var = np.where(counts > 1, squares / np.maximum(counts - 1, 1), np.nan)
    dof = float(np.maximum(counts - 1, 0).sum())
    pooled = float(np.nansum(np.where(counts > 1, squares, 0.0)) / dof) if dof > 0 else float("nan")
    return mean, var, counts, pooled


_MIN_STD = 1e-6


def _lira_std(var: np.ndarray, pooled: float, use_global: bool) -> np.ndarray | float:
    if use_global or not np.all(np.isfinite(var)):
        if not math.isfinite(pooled):
            raise ConfigError("LiRA needs at least two reference models on one side (in or out) to fit a variance")
        return max(math.sqrt(pooled), _MIN_STD)
    return np.maximum(np.sqrt(var), _MIN_STD)


def lira_online_scores(
    target_phi: np.ndarray, ref_phi: np.ndarray, ref_in: np.ndarray, *, global_variance: bool | None = None
) -> np.ndarray:
    """Online LiRA (Carlini et al. 2022): log N(phi; mu_in, sd_in) - log N(phi; mu_out, sd_out).

    Gaussians are fitted per example to the reference models that did / did not train on it. With
    ``global_variance=None`` one pooled variance per side is used when there are fewer than 64
    reference models (per-example variances are too noisy below that). Returns a log-likelihood ratio
    in nats per example (higher = member). Every example needs at least one in and one out model.
    """
    target_phi, ref_phi, ref_in = np.asarray(target_phi, float), np.asarray(ref_phi, float), np.asarray(ref_in, bool)
    _check_reference_shapes(target_phi, ref_phi, ref_in)
    mean_in, var_in, count_in, pooled_in = _masked_mean_var(ref_phi, ref_in)
    mean_out, var_out, count_out, pooled_out = _masked_mean_var(ref_phi, ~ref_in)
    if (count_in == 0).any() or (count_out == 0).any():
        raise ConfigError(
            f"online LiRA needs every example to have reference models with and without it; "
            f"{int((count_in == 0).sum())} examples have no 'in' and {int((count_out == 0).sum())} no 'out' model "
            f"among {ref_phi.shape[0]}. Use a pool of >= 4 models (2 pairs), or 'lira-offline' / 'rmia'"
        )
    use_global = ref_phi.shape[0] < LIRA_PER_EXAMPLE_VARIANCE_MIN_MODELS if global_variance is None else global_variance
    sd_in = _lira_std(var_in, pooled_in, use_global)
    sd_out = _lira_std(var_out, pooled_out, use_global)
    return stats.norm.logpdf(target_phi, mean_in, sd_in) - stats.norm.logpdf(target_phi, mean_out, sd_out)


def lira_offline_scores(
    target_phi: np.ndarray, ref_phi: np.ndarray, ref_in: np.ndarray, *, global_variance: bool | None = None
) -> np.ndarray:
    """Offline LiRA (Carlini et al. 2022): one-sided test against the "out" Gaussian only.

    The paper's score is 1 - Pr[Z > phi] with Z ~ N(mu_out, sd_out^2). This returns
    ``-log Pr[Z > phi]`` (nats), which orders examples identically but does not saturate at 1 for
    strongly memorised examples, so low-FPR thresholds stay resolvable. Higher = member. Only the
    reference models that did not train on an example are used; every example needs at least one.
    """
    target_phi, ref_phi, ref_in = np.asarray(target_phi, float), np.asarray(ref_phi, float), np.asarray(ref_in, bool)
    _check_reference_shapes(target_phi, ref_phi, ref_in)
    mean_out, var_out, count_out, pooled_out = _masked_mean_var(ref_phi, ~ref_in)
    if (count_out == 0).any():
        raise ConfigError(
            f"offline LiRA needs at least one reference model that did not train on each example; "
            f"{int((count_out == 0).sum())} examples have none among {ref_phi.shape[0]}. Use a larger pool"
        )
    use_global = ref_phi.shape[0] < LIRA_PER_EXAMPLE_VARIANCE_MIN_MODELS if global_variance is None else global_variance
    sd_out = _lira_std(var_out, pooled_out, use_global)
    return -stats.norm.logsf(target_phi, mean_out, sd_out)


def rmia_scores(
    target_phi: np.ndarray,
    ref_phi: np.ndarray,
    ref_in: np.ndarray,
    *,
    a: float = 0.3,
    gamma: float = 1.0,
    offline: bool = False,
    population: np.ndarray | None = None,
) -> np.ndarray:
    """RMIA (Zarifzadeh, Liu, Shokri 2024): how often x's likelihood ratio beats population points z.

    Pr(x|theta) is the target's probability of the true label (sigmoid(phi)); Pr(x) averages it over
    reference models, the in and out halves weighted equally. Where only out models exist (or with
    ``offline=True``) the paper's approximation Pr(x) = 0.5 * ((1 + a) * mean_out + (1 - a)) is used
    (and its inverse where only in models exist), so one pair of reference models is enough.
    score(x) = fraction of z in ``population`` (indices into the examples; default all of them, x
    itself excluded) with ratio(x) / ratio(z) > ``gamma``. Returns fractions in [0, 1]; higher = member.
    Everything is computed on 1 - p in the log domain, so near-certain predictions keep their order.
    """
    target_phi, ref_phi, ref_in = np.asarray(target_phi, float), np.asarray(ref_phi, float), np.asarray(ref_in, bool)
    _check_reference_shapes(target_phi, ref_phi, ref_in)
    if not 0.0 < a <= 1.0:
        raise ConfigError(f"RMIA offline parameter a must be in (0, 1], got {a}")
    if gamma <= 0:
        raise ConfigError(f"RMIA gamma must be > 0, got {gamma}")
    if ref_phi.shape[0] == 0:
        raise ConfigError("RMIA needs at least one reference model; got none")
    wrong = _prob_wrong(ref_phi)  # 1 - Pr(x | reference model)
    count_in, count_out = ref_in.sum(axis=0), (~ref_in).sum(axis=0)
    wrong_in = (wrong * ref_in).sum(axis=0) / np.maximum(count_in, 1)
    wrong_out = (wrong * ~ref_in).sum(axis=0) / np.maximum(count_out, 1)
    # The paper's p_in ~ a * p_out + (1 - a) is (1 - p_in) ~ a * (1 - p_out): impute a missing side with it.
    if offline:
        wrong_out = np.where(count_out == 0, np.minimum(wrong_in / a, 1.0), wrong_out)
        wrong_in = a * wrong_out
    else:
        wrong_in = np.where(count_in == 0, a * wrong_out, wrong_in)
        wrong_out = np.where(count_out == 0, np.minimum(wrong_in / a, 1.0), wrong_out)
    log_marginal = np.log1p(-0.5 * (wrong_in + wrong_out))
    log_ratio = _log_prob_true(target_phi) - log_marginal
    pool_index = np.arange(len(target_phi)) if population is None else np.asarray(population, dtype=np.int64)
    z_sorted = np.sort(log_ratio[pool_index])
    # count z with log_ratio_z < log_ratio_x - log(gamma)
    wins = np.searchsorted(z_sorted, log_ratio - math.log(gamma), side="left").astype(float)
    if population is None and gamma < 1.0:
        wins -= 1.0  # x itself passed its own test; it is not a population point for itself
    denominator = len(pool_index) - (1 if population is None else 0)
    return np.clip(wins, 0.0, None) / max(denominator, 1)


def _loss_score(target_phi: np.ndarray, ref_phi: np.ndarray | None = None, ref_in: np.ndarray | None = None
                ) -> np.ndarray:
    """Minus the cross-entropy (nats) from phi: -log sigmoid(phi)."""
    return _log_prob_true(np.asarray(target_phi, float))


def _logit_score(target_phi: np.ndarray, ref_phi: np.ndarray | None = None, ref_in: np.ndarray | None = None
                 ) -> np.ndarray:
    """The stable logit phi itself."""
    return np.asarray(target_phi, float)


# ----------------------------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttackSpec:
    """One entry of ``ATTACKS``.

    ``score_fn(target_phi [N], ref_phi [R, N], ref_in [R, N], **options) -> scores [N]`` works on
    stable logits, so every attack runs the same way against a target model (``attack_model``) or in a
    leave-one-out game on a pool (``leave_one_out``). ``min_reference_models`` is the fewest reference
    models it works with (0: none needed); leave-one-out needs two more (the target and its partner).
    """

    name: str
    title: str
    description: str
    reference: str
    score_fn: Callable[..., np.ndarray]
    min_reference_models: int = 0

    @property
    def needs_references(self) -> bool:
        """True for attacks that need a ``ReferencePool``."""
        return self.min_reference_models > 0

    def __call__(self, model: torch.nn.Module, data: MembershipData, **kwargs: Any) -> AttackResult:
        """``attack_model(self.name, model, data, **kwargs)``."""
        return attack_model(self.name, model, data, **kwargs)


ATTACKS: dict[str, AttackSpec] = {
    "loss": AttackSpec(
        "loss", "Loss threshold", "Members tend to have lower training loss: score = minus the cross-entropy.",
        "Yeom et al. 2018, Privacy Risk in Machine Learning", _loss_score),
    "logit": AttackSpec(
        "logit", "Stable logit", "Threshold on phi = log p_y - log(1 - p_y), computed from logits without "
        "softmax saturation.", "Carlini et al. 2022, Membership Inference Attacks From First Principles",
        _logit_score),
    "lira-online": AttackSpec(
        "lira-online", "LiRA (online)", "Likelihood ratio of phi under Gaussians fitted to reference models "
        "trained with and without each example.", "Carlini et al. 2022, Membership Inference Attacks From "
        "First Principles", lira_online_scores, min_reference_models=4),
    "lira-offline": AttackSpec(
        "lira-offline", "LiRA (offline)", "One-sided test: how unusually high phi is for models that did not "
        "train on the example.", "Carlini et al. 2022, Membership Inference Attacks From First Principles",
        lira_offline_scores, min_reference_models=4),
    "rmia": AttackSpec(
        "rmia", "RMIA", "Likelihood ratio Pr(x|model)/Pr(x) compared against population points; works with "
        "one pair of reference models.", "Zarifzadeh, Liu, Shokri 2024, Low-Cost High-Power Membership "
        "Inference Attacks", rmia_scores, min_reference_models=2),
}


def _resolve_attack(attack: str | AttackSpec | Callable[..., np.ndarray]) -> tuple[str, Callable[..., np.ndarray], int]:
    if isinstance(attack, AttackSpec):
        return attack.name, attack.score_fn, attack.min_reference_models
    if isinstance(attack, str):
        if attack not in ATTACKS:
            raise ConfigError(f"unknown attack {attack!r}; choose one of {sorted(ATTACKS)}")
        spec = ATTACKS[attack]
        return spec.name, spec.score_fn, spec.min_reference_models
    if callable(attack):
        return getattr(attack, "__name__", "custom"), attack, 0
    raise ConfigError(f"attack must be a name in {sorted(ATTACKS)} or a score function, got {attack!r}")


def attack_model(
    attack: str | AttackSpec,
    model: torch.nn.Module,
    data: MembershipData,
    *,
    pool: ReferencePool | None = None,
    batch_size: int = 1024,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    **options: Any,
) -> AttackResult:
    """Run attack ``attack`` (a key of ``ATTACKS``) against a trained target model.

    Reference attacks need ``pool``: a ``ReferencePool`` built on the target's members followed by its
    non-members (``torch.cat([x_members, x_non_members])``), trained like the target. ``options`` go to
    the score function (e.g. ``a=0.3`` for RMIA). The ROC rests on the target's own members and
    non-members; for many more non-members use ``leave_one_out`` on the pool.
    """
    name, score_fn, min_models = _resolve_attack(attack)
    x_in, y_in, x_out, y_out = _membership_tensors(data)
    n_members = len(x_in)
    phi = np.concatenate([
        stable_logit(model_logits(model, x_in, batch_size=batch_size), _labels(y_in)),
        stable_logit(model_logits(model, x_out, batch_size=batch_size), _labels(y_out)),
    ])
    details: dict[str, Any] = {}
    if min_models > 0:
        if pool is None:
            raise ConfigError(f"attack {name!r} needs a reference pool (reference_pool(train_fn, x, y)); none given")
        if pool.n_examples != len(phi):
            raise ConfigError(
                f"the reference pool covers {pool.n_examples} examples but the target has {len(phi)} "
                f"({n_members} members + {len(phi) - n_members} non-members); build the pool on exactly these"
            )
        if pool.n_models < min_models:
            raise ConfigError(f"attack {name!r} needs at least {min_models} reference models, the pool has "
                              f"{pool.n_models}; build it with n_models >= {min_models}")
        scores = score_fn(phi, pool.scores, pool.in_masks, **options)
        details["n_reference_models"] = pool.n_models
    else:
        scores = score_fn(phi, None, None, **options)
    return evaluate_scores(scores[:n_members], scores[n_members:], name=name, n_bootstrap=n_bootstrap,
                           confidence=confidence, seed=seed, details=details)


def leave_one_out(
    scores_matrix: np.ndarray,
    in_masks: np.ndarray,
    attack: str | AttackSpec | Callable[..., np.ndarray],
    *,
    targets: Sequence[int] | None = None,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    **options: Any,
) -> AttackResult:
    """Leave-one-out evaluation on a reference pool: each model in turn is the target, the rest its references.

    ``scores_matrix``/``in_masks`` are ``[M, N]`` (a ``ReferencePool``'s ``scores``/``in_masks``).
    Per-example scores and in/out labels are pooled over all targets (or over ``targets``, a subset of
    model indices), so the ROC rests on about M*N/2 non-members rather than N/2. A model trained on
    exactly the complement of the target's data (its pair partner) is left out of the references too:
    its in-mask would tell the attack the target's membership (with one reference, every in/out
    imbalance becomes a label leak). So M complementary pairs leave M - 2 references per target.
    ``options`` go to the attack's score function. ``details`` records targets and reference counts.
    """
    scores_matrix = np.asarray(scores_matrix, dtype=np.float64)
    in_masks = np.asarray(in_masks, dtype=bool)
    if scores_matrix.ndim != 2 or scores_matrix.shape != in_masks.shape:
        raise ConfigError(f"scores and in-masks must both be [models, examples], got {scores_matrix.shape} "
                          f"and {in_masks.shape}")
    name, score_fn, min_models = _resolve_attack(attack)
    n_models = scores_matrix.shape[0]
    chosen = range(n_models) if targets is None else [int(t) for t in targets]
    member_parts, non_member_parts, reference_counts = [], [], []
    for target in chosen:
        if not 0 <= target < n_models:
            raise ConfigError(f"target index {target} out of range for a pool of {n_models} models")
        partners = np.all(in_masks == ~in_masks[target], axis=1)
        references = (np.arange(n_models) != target) & ~partners
        if references.sum() < max(min_models, 0) or not in_masks[target].any() or in_masks[target].all():
            raise ConfigError(
                f"leave-one-out with {name!r} needs at least {min_models} reference models besides the target and "
                f"its complementary partner, and targets with both members and non-members; the pool has "
                f"{n_models} models. Build it with n_models >= {min_models + 2}"
            )
        scores = score_fn(scores_matrix[target], scores_matrix[references], in_masks[references], **options)
        member_parts.append(scores[in_masks[target]])
        non_member_parts.append(scores[~in_masks[target]])
        reference_counts.append(int(references.sum()))
    if not member_parts:
        raise ConfigError("leave-one-out needs at least one target model; targets was empty")
    return evaluate_scores(
        np.concatenate(member_parts), np.concatenate(non_member_parts), name=name, n_bootstrap=n_bootstrap,
        confidence=confidence, seed=seed,
        details={"evaluation": "leave-one-out", "n_targets": len(member_parts),
                 "n_reference_models": min(reference_counts)},
    )


# ----------------------------------------------------------------------------------------------------------------------
# Empirical epsilon lower bounds
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class EpsilonBound:
    """A statistical lower bound on epsilon: with probability >= 1 - ``alpha`` the true epsilon is at least
    ``epsilon_lower`` (never an estimate of the real epsilon; 0 means "no evidence of leakage").

    ``threshold`` is the decision threshold on the attack score (for the one-run audit a pair
    ``(out_below, in_at_or_above)``); ``counts`` are the counts the bound was computed from.
    """

    epsilon_lower: float
    threshold: float | tuple[float, float] | None
    counts: dict[str, int]
    method: str
    alpha: float
    delta: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        threshold = (
            [_json_float(t) for t in self.threshold] if isinstance(self.threshold, tuple)
            else _json_float(self.threshold)
        )
        return {"epsilon_lower": self.epsilon_lower, "threshold": threshold, "counts": dict(self.counts),
                "method": self.method, "alpha": self.alpha, "delta": self.delta}


def _threshold_bounds(
    tp: np.ndarray, n_pos: int, fp: np.ndarray, n_neg: int, *, delta: float, alpha: float
) -> np.ndarray:
    """Vectorised Jagielski et al. bound (nats) for arrays of TP / FP counts; floored at 0."""
    tail = alpha / 2.0
    tpr_low, fpr_high = _cp_lower(tp, n_pos, tail), _cp_upper(fp, n_neg, tail)
    tnr_low, fnr_high = _cp_lower(n_neg - fp, n_neg, tail), _cp_upper(n_pos - tp, n_pos, tail)
    with np.errstate(divide="ignore", invalid="ignore"):
        forward = np.log(np.maximum(tpr_low - delta, 0.0) / fpr_high)
        backward = np.log(np.maximum(tnr_low - delta, 0.0) / fnr_high)
    bound = np.maximum(np.nan_to_num(forward, nan=0.0, neginf=0.0), np.nan_to_num(backward, nan=0.0, neginf=0.0))
    return np.maximum(bound, 0.0)


def epsilon_lower_bound_from_counts(
    true_positives: int, n_members: int, false_positives: int, n_non_members: int, *, delta: float,
    alpha: float = 0.05,
) -> float:
    """Threshold-attack lower bound on epsilon (Jagielski et al. 2020), in nats, from one confusion matrix.

    With one-sided Clopper-Pearson limits at alpha/2 each, eps >= ln((TPR_low - delta) / FPR_high) and
    eps >= ln((TNR_low - delta) / FNR_high); returns the larger, floored at 0. Valid with probability
    >= 1 - alpha only if the threshold was chosen without looking at these counts.

    >>> round(epsilon_lower_bound_from_counts(500, 500, 0, 500, delta=0.0, alpha=0.01), 6)
    4.541916
    """
    _check_delta_alpha(delta, alpha)
    if not (0 <= true_positives <= n_members and 0 <= false_positives <= n_non_members and min(n_members,
                                                                                              n_non_members) > 0):
        raise ConfigError(f"need 0 <= TP <= members and 0 <= FP <= non-members, got TP {true_positives}/{n_members}, "
                          f"FP {false_positives}/{n_non_members}")
    bound = _threshold_bounds(np.array([true_positives]), n_members, np.array([false_positives]), n_non_members,
                              delta=delta, alpha=alpha)
    return float(bound[0])


def _check_delta_alpha(delta: float, alpha: float) -> None:
    if not 0.0 <= delta < 1.0:
        raise ConfigError(f"delta must be in [0, 1), got {delta}")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha (1 - confidence) must be in (0, 1), got {alpha}")


def _confusion_at_thresholds(
    member_scores: np.ndarray, non_member_scores: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """TP and FP counts when "member" means score >= threshold."""
    members, non_members = np.sort(member_scores), np.sort(non_member_scores)
    tp = len(members) - np.searchsorted(members, thresholds, side="left")
    fp = len(non_members) - np.searchsorted(non_members, thresholds, side="left")
    return tp, fp


def empirical_epsilon(
    member_scores: np.ndarray | Sequence[float],
    non_member_scores: np.ndarray | Sequence[float],
    *,
    delta: float,
    alpha: float = 0.05,
    seed: int = 0,
) -> EpsilonBound:
    """Empirical lower bound on epsilon (nats) from a threshold attack (Jagielski et al. 2020).

    Members and non-members are each split into two random halves (seeded). The threshold that gives
    the largest bound on the first half is chosen, and the bound is computed on the second half only,
    so the choice does not inflate it. Holds with probability >= 1 - ``alpha`` when every score comes
    from an independent trial (e.g. one canary, in or out, per training run): it is a lower bound, not
    the real epsilon. Scores of many examples under one model share that model, so on a single run the
    number is an indication of leakage; ``one_run_audit`` is the single-run audit with a proof.
    """
    _check_delta_alpha(delta, alpha)
    member_scores = np.asarray(member_scores, dtype=np.float64).ravel()
    non_member_scores = np.asarray(non_member_scores, dtype=np.float64).ravel()
    if len(member_scores) < 2 or len(non_member_scores) < 2:
        raise ConfigError(f"empirical_epsilon needs >= 2 member and >= 2 non-member scores, got "
                          f"{len(member_scores)} and {len(non_member_scores)}")
    rng = np.random.default_rng(seed)
    member_perm, non_member_perm = rng.permutation(len(member_scores)), rng.permutation(len(non_member_scores))
    half_m, half_n = len(member_scores) // 2, len(non_member_scores) // 2
    select_m, audit_m = member_scores[member_perm[:half_m]], member_scores[member_perm[half_m:]]
    select_n, audit_n = non_member_scores[non_member_perm[:half_n]], non_member_scores[non_member_perm[half_n:]]
    candidates = np.unique(np.concatenate([select_m, select_n]))
    tp, fp = _confusion_at_thresholds(select_m, select_n, candidates)
    selection_bounds = _threshold_bounds(tp, len(select_m), fp, len(select_n), delta=delta, alpha=alpha)
    threshold = float(candidates[int(np.argmax(selection_bounds))])
    tp_audit, fp_audit = _confusion_at_thresholds(audit_m, audit_n, np.array([threshold]))
    tp_count, fp_count = int(tp_audit[0]), int(fp_audit[0])
    bound = _threshold_bounds(np.array([tp_count]), len(audit_m), np.array([fp_count]), len(audit_n),
                              delta=delta, alpha=alpha)
    counts = {"true_positives": tp_count, "false_negatives": len(audit_m) - tp_count,
              "false_positives": fp_count, "true_negatives": len(audit_n) - fp_count,
              "n_members": len(audit_m), "n_non_members": len(audit_n),
              "n_selection_members": len(select_m), "n_selection_non_members": len(select_n)}
    return EpsilonBound(
        epsilon_lower=float(bound[0]), threshold=threshold, counts=counts, alpha=alpha, delta=delta,
        method="threshold attack lower bound (Jagielski et al. 2020), Clopper-Pearson, threshold chosen on a "
               "held-out half",
    )


def one_run_p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """p-value of >= ``v`` correct guesses out of ``r`` under an (epsilon, delta)-DP null hypothesis.

    Steinke, Nasr, Jagielski 2023 (Theorem 5.2 / their Algorithm for approximate DP): with m canaries
    each included with probability 1/2, the tail of Binomial(r, e^eps / (1 + e^eps)) at v plus
    2 * m * delta * max_i P[v - i <= Binomial < v] / i. Returns a probability in [0, 1].
    """
    if not 0 <= v <= r <= m:
        raise ConfigError(f"one-run audit needs 0 <= correct <= guesses <= canaries, got v={v}, r={r}, m={m}")
    if epsilon < 0:
        raise ConfigError(f"epsilon must be >= 0, got {epsilon}")
    q = special.expit(epsilon)  # accuracy of epsilon-DP randomised response
    tail = float(stats.binom.sf(v - 1, r, q))  # P[Binomial(r, q) >= v]
    if delta > 0 and v > 0:
        steps = np.arange(1, v + 1)
        below = np.cumsum(stats.binom.pmf(v - steps, r, q))  # P[v - i <= Binomial < v]
        tail += 2.0 * m * delta * float(np.max(below / steps))
    return min(tail, 1.0)


def _one_run_epsilon(m: int, r: int, v: int, delta: float, p_limit: float) -> float:
    """Largest epsilon (nats) whose one-run p-value of v correct out of r guesses is below ``p_limit`` (0 if none)."""
    if one_run_p_value(m, r, v, 0.0, delta) >= p_limit:
        return 0.0
    low, high = 0.0, 1.0
    while one_run_p_value(m, r, v, high, delta) < p_limit and high < 1e3:
        low, high = high, high * 2.0
    for _ in range(60):
        middle = 0.5 * (low + high)
        if one_run_p_value(m, r, v, middle, delta) < p_limit:
            low = middle
        else:
            high = middle
    return low


def one_run_power(*, canaries: int, guesses: int, delta: float, confidence: float = 0.95) -> float:
    """The largest epsilon (nats) a one-run audit with ``guesses`` guesses on ``canaries`` canaries can certify:
    its lower bound when every guess is right, at ``confidence``. No audit of that size can show more, so a run
    whose accountant epsilon exceeds this cannot be caught overspending by it.

    >>> round(one_run_power(canaries=1000, guesses=100, delta=1e-5), 2)
    3.47
    """
    if not 0 < guesses <= canaries:
        raise ConfigError(f"need 0 < guesses <= canaries, got {guesses} guesses on {canaries} canaries")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    return _one_run_epsilon(int(canaries), int(guesses), int(guesses), delta, 1.0 - confidence)


#: Shares of the canaries the one-run audit guesses on (each share once with all guesses "in" on the highest
#: scores, once split evenly between "in" on the highest and "out" on the lowest): 10 choices, fixed in advance.
#: Simulated DP-SGD audits (white-box, 1000-4000 canaries) found their best bound at 1/40-1/5; 1/2 gives the
#: power to certify epsilon >= 5 when nearly every guess is right (a run without DP).
ONE_RUN_GUESS_SHARES: tuple[float, ...] = (1 / 40, 1 / 20, 1 / 10, 1 / 5, 1 / 2)


def one_run_guess_choices(canaries: int, guess_shares: Sequence[float] = ONE_RUN_GUESS_SHARES
                          ) -> list[tuple[int, int]]:
    """The (k_pos, k_neg) pairs ``one_run_audit_best`` tries for ``canaries`` canaries, fixed before any score
    is seen: for each share f, r = max(2, round(f * canaries)) guesses as (r, 0) and (r - r // 2, r // 2).

    >>> one_run_guess_choices(200)
    [(5, 0), (3, 2), (10, 0), (5, 5), (20, 0), (10, 10), (40, 0), (20, 20), (100, 0), (50, 50)]
    """
    choices: list[tuple[int, int]] = []
    for share in guess_shares:
        r = min(canaries, max(2, round(share * canaries)))
        for pair in ((r, 0), (r - r // 2, r // 2)):
            if pair not in choices:
                choices.append(pair)
    return choices


def one_run_audit_best(
    scores: np.ndarray | Sequence[float],
    included_mask: np.ndarray | Sequence[bool],
    *,
    delta: float,
    confidence: float = 0.95,
    guess_shares: Sequence[float] = ONE_RUN_GUESS_SHARES,
) -> EpsilonBound:
    """The one-run audit (``one_run_audit``) at several guess counts, accounting for the choice.

    Every pair of ``one_run_guess_choices`` is evaluated at confidence 1 - (1 - ``confidence``) / K (Bonferroni
    over the K pairs, fixed before the scores are seen), and the largest bound is returned: it holds with
    probability >= ``confidence``. ``counts`` gains ``choices`` (K) and ``power_guesses`` (the largest guess
    count tried); ``one_run_audit_power`` turns the result into the audit's power.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    choices = one_run_guess_choices(len(scores), guess_shares)
    alpha = (1.0 - confidence) / len(choices)
    best: EpsilonBound | None = None
    for k_pos, k_neg in choices:
        bound = one_run_audit(scores, included_mask, k_pos=k_pos, k_neg=k_neg, delta=delta, confidence=1.0 - alpha)
        if best is None or bound.epsilon_lower > best.epsilon_lower:
            best = bound
    assert best is not None
    most = max(k_pos + k_neg for k_pos, k_neg in choices)
    best.counts.update(choices=len(choices), power_guesses=most)
    best.alpha = round(1.0 - confidence, 12)
    best.method = (f"one-run canary audit lower bound (Steinke, Nasr, Jagielski 2023), best of {len(choices)} "
                   "guess counts fixed in advance, Bonferroni-corrected")
    return best


def one_run_audit_power(bound: EpsilonBound, *, confidence: float = 0.95) -> float:
    """Power (nats) of a ``one_run_audit_best`` result: the bound it would give were all its largest guess
    count's guesses right, at the same Bonferroni-corrected confidence."""
    counts = bound.counts
    choices = int(counts.get("choices", 1))
    return one_run_power(canaries=int(counts["canaries"]), guesses=int(counts.get("power_guesses", counts["guesses"])),
                         delta=bound.delta, confidence=1.0 - (1.0 - confidence) / choices)


def one_run_audit(
    scores: np.ndarray | Sequence[float],
    included_mask: np.ndarray | Sequence[bool],
    *,
    k_pos: int,
    k_neg: int,
    delta: float,
    confidence: float = 0.95,
) -> EpsilonBound:
    """One-run canary audit (Steinke, Nasr, Jagielski 2023): a lower bound on epsilon from one training run.

    ``scores`` are the attack scores of the m canaries (higher = "included"), ``included_mask`` which
    canaries were really trained on (each with probability 1/2). The auditor guesses "in" for the
    ``k_pos`` highest and "out" for the ``k_neg`` lowest scores and abstains on the rest; with r guesses
    and v correct, the result is the largest epsilon (nats) whose p-value is below 1 - ``confidence``,
    found by bisection. Choose ``k_pos``/``k_neg`` before looking at the scores. Lower bound only.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    included = np.asarray(included_mask, dtype=bool).ravel()
    m = len(scores)
    if len(included) != m:
        raise ConfigError(f"scores and included_mask must have the same length, got {m} and {len(included)}")
    if k_pos < 0 or k_neg < 0 or k_pos + k_neg > m or k_pos + k_neg == 0:
        raise ConfigError(f"need k_pos, k_neg >= 0 with 0 < k_pos + k_neg <= {m} canaries, got {k_pos} and {k_neg}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    _check_delta_alpha(delta, 1.0 - confidence)
    order = np.argsort(scores, kind="stable")
    guessed_out, guessed_in = order[:k_neg], order[m - k_pos:]
    correct_in, correct_out = int(included[guessed_in].sum()), int((~included[guessed_out]).sum())
    r, v = k_pos + k_neg, correct_in + correct_out
    p_limit = 1.0 - confidence
    epsilon_lower = _one_run_epsilon(m, r, v, delta, p_limit)
    threshold = (
        float(scores[guessed_out[-1]]) if k_neg else float("-inf"),
        float(scores[guessed_in[0]]) if k_pos else float("inf"),
    )
    counts = {"canaries": m, "guesses": r, "correct": v, "k_pos": k_pos, "k_neg": k_neg,
              "correct_in": correct_in, "correct_out": correct_out, "included": int(included.sum())}
    return EpsilonBound(
        epsilon_lower=float(epsilon_lower), threshold=threshold, counts=counts, alpha=round(p_limit, 12),
        delta=delta,
        method="one-run canary audit lower bound (Steinke, Nasr, Jagielski 2023)",
    )


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
    x_in, y_in, _, y_out = _membership_tensors(data)
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
    return stable_logit(model_logits(model, canaries.canary_x, batch_size=batch_size), _labels(canaries.canary_y))
