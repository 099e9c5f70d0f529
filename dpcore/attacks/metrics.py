"""Attack metrics: exact binomial intervals, the AUC with a bootstrap interval, TPR at low FPR, the ROC.

``evaluate_scores`` turns member and non-member scores (higher = "more likely a member") into an
``AttackResult``: the full ROC, AUC with a bootstrap interval, and TPR at ``DEFAULT_FPRS`` with
Clopper-Pearson intervals (``OperatingPoint``), reported only where enough non-members resolve the FPR.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import roc_curve

from dpcore.engine.membership import mann_whitney_auc
from dpcore.errors import ConfigError
from dpcore.jsonable import json_number, jsonable

__all__ = ["DEFAULT_FPRS", "MIN_NON_MEMBERS_PER_FPR", "AttackResult", "OperatingPoint", "bootstrap_auc",
           "clopper_pearson", "clopper_pearson_lower", "clopper_pearson_upper", "downsample_roc",
           "evaluate_scores"]

# FPRs at which every AttackResult reports TPR (10 %, 1 %, 0.1 %).
DEFAULT_FPRS: tuple[float, ...] = (0.1, 0.01, 0.001)
# A TPR at FPR x is only reported when there are at least this many / x non-members, so that the
# operating point rests on >= 10 false positives' worth of non-members.
MIN_NON_MEMBERS_PER_FPR = 10


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


def clopper_pearson_lower(successes: np.ndarray, trials: int, *, tail: float) -> np.ndarray:
    """Vectorised one-sided Clopper-Pearson lower limit (failure probability ``tail``)."""
    successes = np.asarray(successes, dtype=float)
    with np.errstate(invalid="ignore"):
        low = stats.beta.ppf(tail, successes, trials - successes + 1)
    return np.where(successes <= 0, 0.0, low)


def clopper_pearson_upper(successes: np.ndarray, trials: int, *, tail: float) -> np.ndarray:
    """Vectorised one-sided Clopper-Pearson upper limit (failure probability ``tail``)."""
    successes = np.asarray(successes, dtype=float)
    with np.errstate(invalid="ignore"):
        high = stats.beta.ppf(1.0 - tail, successes + 1, trials - successes)
    return np.where(successes >= trials, 1.0, high)


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
            "threshold": json_number(self.threshold),
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
        return downsample_roc(self.fpr, self.tpr, max_points=max_points, n_non_members=self.n_non_members)

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
            "details": jsonable(self.details),
        }



def downsample_roc(
    fpr: np.ndarray, tpr: np.ndarray, *, max_points: int, n_non_members: int
) -> dict[str, list[float]]:
    """At most ``max_points`` points of the ROC ``(fpr, tpr)`` as ``{'fpr': [...], 'tpr': [...]}`` (fractions).

    See ``AttackResult.roc_points``: both ends are kept, the rest picked on a linear and a logarithmic FPR grid
    down to 1 / ``n_non_members``, each the highest-TPR point at or below its grid FPR.
    """
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
    auc = mann_whitney_auc(member_scores, non_member_scores)
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
