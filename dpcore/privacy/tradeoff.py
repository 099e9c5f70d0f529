"""The trade-off curve that bounds every membership test: the most any attacker can achieve at a run's ε.

A DP guarantee holding at every pair (ε, δ(ε)) of a privacy profile limits every test that
tells "this person was a member" from "was not": with false-positive rate α, the true-positive
rate is at most ``1 − f(α)``, where

    f(α) = sup over ε of max(0, 1 − δ(ε) − e^ε α, e^(−ε) (1 − δ(ε) − α))

(Kairouz, Oh & Viswanath 2015; Dong, Roth & Su 2019). The profile comes from the run's schedule
of ``(noise_multiplier, sample_rate, steps)`` segments, the same shape as ``accountant.history``:
the PRV accountant's composed privacy-loss distribution (Opacus' discretisation, with its error
bounds added on the safe side) together with the RDP conversion at many ε, or from a single
(ε, δ) pair where only that is known. Every pair used is a valid guarantee on its own, so the
envelope over all of them is a valid bound, never an estimate. As for Opacus' ε, the profile is
that of the Poisson-subsampled Gaussian mechanism in the direction Opacus accounts for.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from opacus.accountants import PRVAccountant
from opacus.accountants.analysis import rdp as rdp_analysis
from opacus.accountants.analysis.prv import PoissonSubsampledGaussianPRV, compute_safe_domain_size

from dpcore.errors import ConfigError
from dpcore.privacy.accounting import RDP_ORDERS
from dpcore.privacy.caveats import NO_POISSON, REPRODUCIBLE, run_caveats

Segment = tuple[float, float, int]

#: FPR grid of every curve: 0, log-spaced from 1e-5 (the low-FPR regime that log-log ROCs show) and even steps.
FPR_GRID = np.unique(np.concatenate([[0.0], np.geomspace(1e-5, 1.0, 201), np.linspace(0.0, 1.0, 101)]))
#: The false-alarm rate of the headline figure, "at most X % of members found at 1 % false alarms".
HEADLINE_FPR = 0.01
#: δ error allowed in the PRV discretisation; added to every δ, so it is the floor of the bound at FPR 0.
PRV_DELTA_ERROR = 1e-10
#: Round-off allowance of the FFT composition and the sums (measured well below 1e-10), added on the safe side.
NUMERIC_SLACK = 1e-10
#: Most points of the PRV domain: sets its ε error (0.001 to 0.05); about 0.5 s per schedule at this size.
PRV_MAX_POINTS = 400_000
#: Most (ε, δ) pairs kept from each source for the envelope.
MAX_PAIRS = 3000
ACCOUNTANTS = ("prv", "rdp")
#: Why the bound is not a proven limit for a run (``dpcore.privacy.caveats`` kinds; GDP does not matter here).
BOUND_CAVEATS = {
    NO_POISSON: "assumes Poisson sampling, which this run did not use: not a proven limit",
    REPRODUCIBLE: "reproducible run: no limit against anyone who knows the seed",
}


@dataclass(frozen=True)
class TradeoffCurve:
    """Upper bound on the true-positive rate of any membership test, as a function of its false-positive rate.

    ``fpr`` (ascending, 0 to 1) and ``tpr_max`` (same length, each in [fpr, 1]) are fractions, not
    percentages. ``epsilons``/``deltas`` are the (ε, δ) pairs the bound was built from (empty for the
    two extremes: ``source`` "no-steps", the diagonal, and "no-dp", no limit at all). ``source`` says
    where the pairs came from ("prv+rdp", "rdp", "epsilon-delta"). ``seconds`` is the compute time.
    ``caveat`` says why the curve is not a proven limit for a particular run (None when it is).
    """

    fpr: np.ndarray
    tpr_max: np.ndarray
    source: str
    epsilons: np.ndarray = field(default_factory=lambda: np.zeros(0))
    deltas: np.ndarray = field(default_factory=lambda: np.zeros(0))
    seconds: float = 0.0
    caveat: str | None = None

    @property
    def unlimited(self) -> bool:
        """True when nothing bounds the attack (no DP, or ε = ∞): TPR up to 1 at every FPR."""
        return self.source == "no-dp"

    def tpr_at(self, fpr: float | Sequence[float] | np.ndarray) -> float | np.ndarray:
        """The most TPR any attack can reach at false-positive rate ``fpr`` (a fraction; scalar or array).

        Computed exactly from the (ε, δ) pairs, not interpolated (the curve is concave, so
        interpolation would fall below it).
        """
        alpha = np.clip(np.asarray(fpr, dtype=float), 0.0, 1.0)
        value = _tpr_bound(alpha, self.epsilons, self.deltas, self.source)
        return float(value) if np.ndim(value) == 0 else value

    def headline(self, fpr: float = HEADLINE_FPR) -> float:
        """``tpr_at(fpr)``: the most members any attack finds at that false-alarm rate (a fraction)."""
        return float(self.tpr_at(fpr))


def _tpr_bound(alpha: np.ndarray, epsilons: np.ndarray, deltas: np.ndarray, source: str) -> np.ndarray:
    """1 − f(α) over the pairs (fractions in [α, 1]); the diagonal or 1 for the two extremes."""
    if source == "no-dp":
        return np.ones_like(alpha)
    if source == "no-steps" or epsilons.size == 0:
        return alpha.copy()
    flat = alpha.reshape(-1, 1)
    with np.errstate(over="ignore", invalid="ignore"):
        scale = np.exp(epsilons)[None, :]
        first = 1.0 - deltas[None, :] - scale * flat
        second = np.exp(-epsilons)[None, :] * (1.0 - deltas[None, :] - flat)
    f = np.maximum(np.nan_to_num(np.maximum(first, second), nan=0.0, neginf=0.0), 0.0).max(axis=1)
    tpr = np.clip(1.0 - f, flat[:, 0], 1.0)
    return tpr.reshape(alpha.shape)


def _curve(epsilons: np.ndarray, deltas: np.ndarray, source: str, seconds: float = 0.0) -> TradeoffCurve:
    epsilons = np.asarray(epsilons, dtype=float)
    deltas = np.clip(np.asarray(deltas, dtype=float), 0.0, 1.0)
    keep = deltas < 1.0  # a pair with δ = 1 says nothing
    epsilons, deltas = epsilons[keep], deltas[keep]
    if source not in ("no-dp", "no-steps") and epsilons.size == 0:
        source = "no-dp"
    tpr = _tpr_bound(FPR_GRID, epsilons, deltas, source)
    for array in (epsilons, deltas, tpr):
        array.setflags(write=False)
    fpr = FPR_GRID.copy()
    fpr.setflags(write=False)
    return TradeoffCurve(fpr=fpr, tpr_max=tpr, source=source, epsilons=epsilons, deltas=deltas, seconds=seconds)


def diagonal() -> TradeoffCurve:
    """The curve of perfect privacy (ε = 0, δ = 0): no attack beats guessing, TPR ≤ FPR."""
    return _curve(np.zeros(0), np.zeros(0), "no-steps")


def no_limit() -> TradeoffCurve:
    """No guarantee (no DP, σ = 0, ε = ∞): TPR up to 1 at every FPR."""
    return _curve(np.zeros(0), np.zeros(0), "no-dp")


def tradeoff_from_epsilon_delta(epsilon: float, delta: float) -> TradeoffCurve:
    """The bound implied by the single guarantee (``epsilon``, ``delta``): TPR ≤ min(δ + e^ε α, 1 − e^−ε (1 − δ − α)).

    ε = 0 and δ = 0 give the diagonal; ε = ∞ or δ ≥ 1 no limit. Raises ConfigError for negative or NaN inputs.
    """
    epsilon, delta = float(epsilon), float(delta)
    if math.isnan(epsilon) or math.isnan(delta) or epsilon < 0 or delta < 0:
        raise ConfigError(f"epsilon and delta must be >= 0, got epsilon={epsilon!r}, delta={delta!r}")
    if math.isinf(epsilon) or delta >= 1:
        return no_limit()
    if epsilon == 0 and delta == 0:
        return diagonal()
    return _curve(np.array([epsilon]), np.array([delta]), "epsilon-delta")


def _clean_history(history: Sequence[Sequence[float]]) -> tuple[Segment, ...] | None:
    """Segments with steps > 0 as a hashable tuple; None when a segment has no noise (no guarantee)."""
    cleaned = []
    for segment in history:
        sigma, q, steps = (float(segment[0]), float(segment[1]), int(segment[2]))
        if steps <= 0 or q <= 0:
            continue
        if not sigma > 0:  # no noise (or NaN): nothing is guaranteed
            return None
        if math.isinf(sigma):
            continue  # infinite noise releases nothing
        if not 0 < q <= 1:
            raise ConfigError(f"sample rate must be in (0, 1], got {q!r}")
        cleaned.append((sigma, q, steps))
    return tuple(cleaned)


def tradeoff_from_history(history: Sequence[Sequence[float]], *, accountant: str = "prv") -> TradeoffCurve:
    """The bound for a schedule of ``(noise_multiplier, sample_rate, steps)`` segments (``accountant.history``).

    ``accountant`` "prv" (default) takes the envelope of PRV and RDP pairs (either alone is
    valid; PRV is tighter, RDP covers where PRV's numerics give up); "rdp" uses RDP only. A
    schedule with no steps gives the diagonal, one with σ ≤ 0 no limit. Cached per schedule.
    """
    if accountant not in ACCOUNTANTS:
        raise ConfigError(f"accountant must be one of {', '.join(ACCOUNTANTS)} for the trade-off bound (a "
                          f"guarantee; GDP is an approximation), got {accountant!r}")
    cleaned = _clean_history(history)
    if cleaned is None:
        return no_limit()
    if not cleaned:
        return diagonal()
    return _history_curve(cleaned, accountant)


def tradeoff_bound(*, noise_multiplier: float, sample_rate: float, steps: int,
                   accountant: str = "prv") -> TradeoffCurve:
    """The bound after ``steps`` DP-SGD steps at noise ``noise_multiplier`` and Poisson rate ``sample_rate``.

    >>> curve = tradeoff_bound(noise_multiplier=1.0, sample_rate=1.0, steps=1)
    >>> round(curve.tpr_at(0.01), 3)  # the Gaussian mechanism, mu = 1: 1 - Phi(Phi^-1(0.99) - 1)
    0.092
    """
    return tradeoff_from_history([(noise_multiplier, sample_rate, steps)], accountant=accountant)


@functools.lru_cache(maxsize=256)
def _history_curve(history: tuple[Segment, ...], accountant: str) -> TradeoffCurve:
    started = time.perf_counter()
    eps_rdp, delta_rdp = _rdp_pairs(history)
    epsilons, deltas, source = [eps_rdp], [delta_rdp], "rdp"
    if accountant == "prv":
        try:
            eps_prv, delta_prv = _prv_pairs(history)
        except (ValueError, RuntimeError, OverflowError, FloatingPointError, MemoryError):
            pass  # PRV's domain breaks down at very large ε; the RDP pairs alone are still a valid bound
        else:
            epsilons.append(eps_prv)
            deltas.append(delta_prv)
            source = "prv+rdp"
    return _curve(np.concatenate(epsilons), np.concatenate(deltas), source, time.perf_counter() - started)


def _rdp_pairs(history: tuple[Segment, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(ε, δ) pairs from the RDP curve: δ(ε) = min over orders a of exp((a−1)(RDP_a − ε + log(1 − 1/a)) − log a).

    The same conversion Opacus uses for ``get_epsilon`` (Balle et al. 2020), applied at many ε.
    """
    orders = np.asarray(RDP_ORDERS, dtype=float)
    rdp = np.zeros(orders.size)
    for sigma, q, steps in history:
        rdp += rdp_analysis.compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=orders)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        eps_far = rdp + (math.log(1e16) - np.log(orders)) / (orders - 1) + np.log((orders - 1) / orders)
    eps_max = float(np.nanmin(eps_far)) if np.isfinite(eps_far).any() else 0.0
    if not math.isfinite(eps_max) or eps_max <= 0:
        eps_max = 1.0
    epsilons = np.unique(np.concatenate([np.linspace(0, eps_max, 1500), np.geomspace(1e-4, eps_max, 500)]))
    with np.errstate(over="ignore", invalid="ignore"):
        log_delta = ((orders[None, :] - 1) * (rdp[None, :] - epsilons[:, None] + np.log(1 - 1 / orders[None, :]))
                     - np.log(orders[None, :]))
    log_delta = np.nan_to_num(log_delta, nan=np.inf, posinf=np.inf).min(axis=1)
    deltas = np.exp(np.minimum(log_delta, 0.0))
    return epsilons, deltas


def _prv_pairs(history: tuple[Segment, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(ε, δ) pairs from Opacus' PRV composition, with its discretisation error on the safe side.

    Gopi et al. (2021), Thm 5.5: the true δ(ε + ε_err) ≤ δ_discrete(ε) + δ_err; so each grid point t
    gives the pair (t + ε_err, δ_discrete(t) + δ_err + slack). ε_err is chosen so the domain has at
    most ``PRV_MAX_POINTS`` points.
    """
    steps_total = sum(n for _, _, n in history)
    prvs = [PoissonSubsampledGaussianPRV(q, sigma) for sigma, q, _ in history]
    log_term = math.sqrt(steps_total * math.log(12 / PRV_DELTA_ERROR) / 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half_width = compute_safe_domain_size(prvs=prvs, max_self_compositions=[n for _, _, n in history],
                                              eps_error=0.01, delta_error=PRV_DELTA_ERROR)
        eps_error = float(np.clip(2 * half_width * log_term / PRV_MAX_POINTS, 1e-3, 0.05))
        if half_width > 600:  # e^t would overflow in the δ sums; RDP covers such schedules
            raise OverflowError("privacy loss too large for the PRV domain")
        accountant = PRVAccountant()
        accountant.history = list(history)
        with np.errstate(all="ignore"):
            dprv = accountant._get_dprv(eps_error=eps_error, delta_error=PRV_DELTA_ERROR)
    t = dprv.domain.ts
    pmf = np.clip(np.nan_to_num(dprv.pmf, nan=0.0), 0.0, None)  # FFT round-off: raising mass only raises δ
    start = int(np.searchsorted(t, -eps_error))
    t, pmf = t[start:], pmf[start:]
    tail_mass = np.flip(np.cumsum(np.flip(pmf)))
    with np.errstate(over="ignore", under="ignore"):
        tail_weighted = np.flip(np.cumsum(np.flip(pmf * np.exp(-t))))
        deltas = np.clip(tail_mass - np.exp(t) * tail_weighted, 0.0, 1.0)
    if not np.isfinite(deltas).all():
        raise FloatingPointError("non-finite delta in the PRV profile")
    nonzero = np.flatnonzero(deltas > 0)
    end = int(nonzero[-1]) + 2 if nonzero.size else 1
    t, deltas = t[:end], deltas[:end]
    if t.size > MAX_PAIRS:
        pick = np.unique(np.linspace(0, t.size - 1, MAX_PAIRS).round().astype(int))
        t, deltas = t[pick], deltas[pick]
    return np.maximum(t + eps_error, 0.0), deltas + PRV_DELTA_ERROR + NUMERIC_SLACK


def tradeoff_for_run(*, summary: Mapping[str, Any], config: Mapping[str, Any] | None = None,
                     history: Sequence[Sequence[float]] | None = None, accountant: str = "prv") -> TradeoffCurve:
    """The bound for a stored run: its accountant ``history`` when given, else the schedule in its summary.

    ``summary`` is the run's summary.json (``private``, ``noise_multiplier``, ``sample_rate``,
    ``steps``, ``final_epsilon``); ``history`` the exact ``(sigma, sample_rate, steps)`` segments,
    continuations included, that the caller read from the run's checkpoint
    (``dpcore.engine.checkpoint.checkpoint_history``). A non-private run, or one with ε = ∞, gets no limit.
    ``caveat`` says why the curve is not a proven limit (no Poisson sampling, noise that followed the seed).
    """
    config = config or {}
    curve = _run_curve(summary=summary, config=config, history=history, accountant=accountant)
    kinds = {caveat.kind for caveat in run_caveats(config=config)} if config and not curve.unlimited else set()
    caveats = [text for kind, text in BOUND_CAVEATS.items() if kind in kinds]
    return dataclasses.replace(curve, caveat="; ".join(caveats)) if caveats else curve


def _run_curve(*, summary: Mapping[str, Any], config: Mapping[str, Any],
               history: Sequence[Sequence[float]] | None, accountant: str) -> TradeoffCurve:
    private = summary.get("private", config.get("private", True))
    final_epsilon = summary.get("final_epsilon")
    if not private or (final_epsilon is not None and isinstance(final_epsilon, (int, float))
                       and math.isinf(final_epsilon)):
        return no_limit()
    if history is not None:
        return tradeoff_from_history(history, accountant=accountant)
    sigma, q, steps = summary.get("noise_multiplier"), summary.get("sample_rate"), summary.get("steps")
    if sigma is None or q is None or steps is None:
        if final_epsilon is not None and summary.get("target_delta") is not None:
            return tradeoff_from_epsilon_delta(float(final_epsilon), float(summary["target_delta"]))
        return no_limit()
    return tradeoff_bound(noise_multiplier=float(sigma), sample_rate=float(q), steps=int(steps),
                          accountant=accountant)


def empirical_tpr_at(*, fpr: Sequence[float] | np.ndarray, tpr: Sequence[float] | np.ndarray,
                     at: float = HEADLINE_FPR) -> float:
    """Largest TPR of an empirical ROC among points with FPR <= ``at`` (fractions; no interpolation).

    The same rule as ``AttackResult.tpr_at_fpr``, for a stored ROC (``roc.json``'s 'fpr' and 'tpr').
    """
    fpr_arr, tpr_arr = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
    reachable = fpr_arr <= at + 1e-12
    return float(np.max(tpr_arr[reachable])) if reachable.any() else 0.0


__all__ = [
    "FPR_GRID",
    "HEADLINE_FPR",
    "TradeoffCurve",
    "diagonal",
    "empirical_tpr_at",
    "no_limit",
    "tradeoff_bound",
    "tradeoff_for_run",
    "tradeoff_from_epsilon_delta",
    "tradeoff_from_history",
]
