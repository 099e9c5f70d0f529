"""Empirical epsilon lower bounds: from a threshold attack's counts and from the one-run canary audit.

``empirical_epsilon`` and ``epsilon_lower_bound_from_counts`` turn a threshold attack's outcomes into a
statistical *lower bound* on epsilon (Jagielski et al. 2020); ``one_run_audit`` and ``one_run_audit_best``
do so from the canaries of a single training run (Steinke, Nasr, Jagielski 2023). They can show a model
leaks at least that much, never what the real epsilon is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special, stats

from dpcore.attacks.metrics import clopper_pearson_lower, clopper_pearson_upper
from dpcore.errors import ConfigError
from dpcore.jsonable import json_number

__all__ = ["ONE_RUN_GUESS_SHARES", "EpsilonBound", "empirical_epsilon", "epsilon_lower_bound_from_counts",
           "one_run_audit", "one_run_audit_best", "one_run_audit_power", "one_run_guess_choices",
           "one_run_p_value", "one_run_power"]


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
            [json_number(t) for t in self.threshold] if isinstance(self.threshold, tuple)
            else json_number(self.threshold)
        )
        return {"epsilon_lower": self.epsilon_lower, "threshold": threshold, "counts": dict(self.counts),
                "method": self.method, "alpha": self.alpha, "delta": self.delta}


def _threshold_bounds(
    tp: np.ndarray, n_pos: int, fp: np.ndarray, n_neg: int, *, delta: float, alpha: float
) -> np.ndarray:
    """Vectorised Jagielski et al. bound (nats) for arrays of TP / FP counts; floored at 0."""
    tail = alpha / 2.0
    tpr_low, fpr_high = clopper_pearson_lower(tp, n_pos, tail=tail), clopper_pearson_upper(fp, n_neg, tail=tail)
    tnr_low = clopper_pearson_lower(n_neg - fp, n_neg, tail=tail)
    fnr_high = clopper_pearson_upper(n_pos - tp, n_pos, tail=tail)
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
