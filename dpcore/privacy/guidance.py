"""Non-fatal advice on a training config before it runs: weak ε, δ too large, small batches, ...

``guidance(cfg, n)`` returns a list of ``Guidance`` notes, one per piece of advice, each
naming the field it is about. Every advice is its own small function; ``guidance`` runs
them in order. Invalid configs give no advice: ``TrainConfig.validate`` rejects those.

>>> from dpcore.config import TrainConfig, suggest_delta
>>> [note.field for note in guidance(TrainConfig(target_epsilon=20.0), 800)]
['target_epsilon']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dpcore.config import TrainConfig, suggest_delta
from dpcore.errors import ConfigError
from dpcore.privacy import accounting
from dpcore.privacy.bands import EPSILON_BANDS, format_big, odds_factor


@dataclass(frozen=True)
class Guidance:
    """One piece of non-fatal advice. ``level`` is 'info' or 'warning'."""

    field: str
    level: str
    message: str


def _delta_advice(cfg: TrainConfig, n: int) -> Guidance | None:
    if cfg.target_delta >= 1.0 / n:
        return Guidance("target_delta", "warning",
                        f"delta {cfg.target_delta:g} is at or above 1/N = {1 / n:.2g}: the guarantee "
                        f"allows leaking a whole record. Use delta < 1/N, e.g. {suggest_delta(n):g}.")
    if cfg.target_delta > 1.0 / (10 * n):
        # Below 1/N but not well below: a mechanism that leaks each record with probability delta
        # still exposes about delta * N whole records (0.8 at delta 1e-3 on 800 members).
        return Guidance("target_delta", "warning",
                        f"delta {cfg.target_delta:g} is not well below 1/N = {1 / n:.2g}: the guarantee "
                        f"still allows leaking about {cfg.target_delta * n:.2g} whole records of N = {n}. "
                        f"Use delta at most 1/(10 N) = {1 / (10 * n):.2g}, e.g. {suggest_delta(n):g}.")
    return None


def planned_epsilon(cfg: TrainConfig, n: int) -> float | None:
    """The ε (RDP, at ``cfg.target_delta``) a fixed-σ run of ``cfg`` on ``n`` members will end at.

    None for a run with a target ε (that target is its plan) or when it cannot be computed;
    ``inf`` for σ = 0. Uses the trainer's sampling (q = 1 / ceil(n / batch)).
    """
    if cfg.noise_multiplier is None or cfg.target_epsilon is not None or n < 1:
        return None
    try:
        sampling = accounting.sampling_for(n=n, batch_size=min(cfg.batch_size, n))
        return float(accounting.rdp_epsilon(noise_multiplier=cfg.noise_multiplier, sample_rate=sampling.sample_rate,
                                            steps=sampling.steps(cfg.epochs), delta=cfg.target_delta))
    except (ConfigError, ArithmeticError, RuntimeError, TypeError, ValueError):
        return None


def _fixed_sigma_advice(cfg: TrainConfig, n: int) -> Guidance | None:
    """A warning when a fixed σ plans an ε beyond the bands (above the 'weak' band's upper end)."""
    eps = planned_epsilon(cfg, n)
    weak_end = EPSILON_BANDS[-1][0]
    if eps is None or not eps > weak_end:  # NaN and in-band plans say nothing
        return None
    what = ("gives no meaningful guarantee: treat this run as non-private" if eps > 50
            else f"is beyond the bands (above {weak_end:g} is a very weak guarantee; most deployments aim for 1-8)")
    shown = format_big(eps, ".1f")
    return Guidance("noise_multiplier", "warning",
                    f"sigma {cfg.noise_multiplier:g} plans epsilon ≈ {shown} after {cfg.epochs} epochs "
                    f"(RDP, delta {cfg.target_delta:g}), which {what}. An attacker's odds of telling whether a "
                    f"person was in the training data could rise by a factor of up to {odds_factor(eps)}. "
                    "Raise sigma or set a target epsilon instead.")


def _epsilon_advice(cfg: TrainConfig) -> Guidance | None:
    eps = cfg.target_epsilon
    if eps is None:
        return None
    if eps > 50:
        return Guidance("target_epsilon", "warning",
                        f"epsilon {eps:g} > 50 gives no meaningful guarantee: treat this run as non-private.")
    if eps > 10:
        return Guidance("target_epsilon", "warning",
                        f"epsilon {eps:g} > 10 is a weak guarantee; most deployments aim for 1-8.")
    if eps < 1:
        return Guidance("target_epsilon", "info",
                        f"epsilon {eps:g} < 1 is a strong guarantee; expect a clear accuracy loss.")
    return None


def _planned_sigma(cfg: TrainConfig, n: int, batch: int) -> float | None:
    """The sigma the trainer will calibrate (RDP, the trainer's sampling); None when it cannot be reached."""
    if cfg.noise_multiplier is not None:
        return cfg.noise_multiplier
    try:
        sampling = accounting.sampling_for(n=n, batch_size=batch)  # q = 1 / ceil(n / batch), as trained
        return accounting.noise_for_epsilon(target_epsilon=cfg.target_epsilon, delta=cfg.target_delta,
                                            sample_rate=sampling.sample_rate, steps=sampling.steps(cfg.epochs),
                                            accountant="rdp")
    except (ConfigError, ArithmeticError, RuntimeError, TypeError, ValueError):  # unreachable target
        return None


def _batch_advice(cfg: TrainConfig, n: int, sigma: float | None) -> Guidance | None:
    batch = min(cfg.batch_size, n)
    if sigma is None:
        sigma = _planned_sigma(cfg, n, batch)
    if sigma is None:
        return None
    noise_to_signal = sigma / batch  # noise std on the averaged gradient, relative to the clipping bound
    if noise_to_signal <= 0.05:
        return None
    return Guidance("batch_size", "warning",
                    f"batch {batch} is small for sigma {sigma:.3f}: the noise on each averaged "
                    f"gradient is {noise_to_signal:.0%} of the clipping bound. " + larger_batch_text(batch=batch, n=n))


def larger_batch_text(*, batch: int, n: int) -> str:
    """The batch advice sized to ``n`` training examples: a larger batch up to about N/4 (256 at most, the usual
    advice), or, when ``batch`` is already that large, what helps instead (a 240-row file is not told 256+)."""
    cap = max(1, n // 4)  # sampling at most a quarter of the data keeps subsampling's privacy amplification
    target = 256 if cap >= 256 else 2 ** int(math.log2(cap))
    if target <= batch:
        return (f"With {n:,} training examples a larger batch cannot help much (this one is already {batch / n:.0%} "
                "of the data): more data, a larger epsilon or fewer epochs lower the noise.")
    return (f"Larger batches ({target}{'+' if target == 256 else f', at most about N/4 = {cap:,}'}) average the "
            "noise away at the same epsilon.")


def _sampling_advice(cfg: TrainConfig) -> Guidance | None:
    if cfg.poisson_sampling:
        return None
    return Guidance("poisson_sampling", "warning",
                    "Poisson sampling is off: batches are shuffled instead, but the accountants assume "
                    "Poisson sampling, so the ε reported is not a proven guarantee for this run "
                    "(shuffled batches can leak more). Turn it on for a real guarantee.")


def _accountant_advice(cfg: TrainConfig) -> Guidance | None:
    if cfg.accountant != "gdp":
        return None
    return Guidance("accountant", "warning",
                    "The GDP accountant is a central-limit approximation, not an upper bound: the true ε "
                    "can be higher. The RDP bound of the same schedule is shown beside it; use RDP or "
                    "PRV for a guarantee.")


def _reproducible_advice(cfg: TrainConfig) -> Guidance | None:
    if not cfg.reproducible:
        return None
    return Guidance("reproducible", "warning",
                    "Reproducible run: the DP noise and batch sampling follow the seed, so it is not "
                    "private against anyone who knows the seed. Use it for tests and teaching only.")


def _lr_advice(cfg: TrainConfig) -> Guidance | None:
    if not ((cfg.optimizer == "sgd" and cfg.lr > 1.0) or (cfg.optimizer == "adam" and cfg.lr > 0.01)):
        return None
    return Guidance("lr", "warning",
                    f"lr {cfg.lr:g} is high for DP-SGD with {cfg.optimizer}: noisy steps that large "
                    "often diverge. Try sgd lr 0.05-0.5 or adam lr 1e-3.")


def _clipping_advice(cfg: TrainConfig, grad_norms: Sequence[float] | np.ndarray | None) -> Guidance | None:
    if grad_norms is None or not len(grad_norms):
        return None
    norms = np.asarray(grad_norms, dtype=float)
    clipped = float(np.mean(norms > cfg.max_grad_norm))
    if 0.3 <= clipped <= 0.95:
        return None
    return Guidance("max_grad_norm", "warning",
                    f"max_grad_norm {cfg.max_grad_norm:g} clips {clipped:.0%} of per-sample "
                    f"gradients (median norm {float(np.median(norms)):.3g}); a bound that clips 50-80 % usually "
                    "trains best.")


def guidance(cfg: TrainConfig, n: int, *, grad_norms: Sequence[float] | np.ndarray | None = None,
             noise_multiplier: float | None = None) -> list[Guidance]:
    """Non-fatal advice for ``cfg`` trained on ``n`` examples, in a fixed order (δ, ε, batch, ...).

    ``grad_norms`` (optional array of per-sample gradient norms from a probe)
    enables the advice about the clipping bound. ``noise_multiplier`` is the sigma
    the run will use, when the caller has calibrated it already (so the advice quotes
    the same number); otherwise it is calibrated here with RDP and the trainer's
    sampling. Invalid configs give no advice: call ``validate`` first for those.
    """
    cfg = cfg.resolve()
    if not cfg.private:
        return [Guidance("private", "info",
                         "No differential privacy: this is the baseline. Nothing limits what the model memorises.")]
    notes = [_delta_advice(cfg, n), _epsilon_advice(cfg), _fixed_sigma_advice(cfg, n),
             _batch_advice(cfg, n, noise_multiplier),
             _sampling_advice(cfg), _accountant_advice(cfg), _reproducible_advice(cfg), _lr_advice(cfg),
             _clipping_advice(cfg, grad_norms)]
    return [note for note in notes if note is not None]


__all__ = ["Guidance", "guidance", "larger_batch_text", "planned_epsilon"]
