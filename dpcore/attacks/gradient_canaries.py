"""White-box one-run audit with gradient (Dirac) canaries (Steinke, Nasr, Jagielski 2023, Section 6).

Each of m canaries is one parameter coordinate. A canary is included with probability 1/2; an included
canary is Poisson-sampled in each step with the real examples' sample rate q, and when sampled adds a
per-sample gradient of norm exactly C along its coordinate (clipping leaves it as it is). Then the usual
Gaussian noise (std sigma * C per coordinate) is added and the optimizer steps. The auditor sees every
privatised gradient (what the sequence of parameter updates reveals) and scores each canary by the
log-likelihood ratio of its coordinate's per-step values, "sampled at rate q" against "never there".
``gradient_canary_audit`` runs this with the audited run's sigma, q, C, steps, model and optimizer, so the
accountant's epsilon of that schedule is the epsilon the bound must be compared with.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from dpcore.attacks.bounds import EpsilonBound, one_run_audit_best, one_run_audit_power
from dpcore.config import TrainConfig
from dpcore.engine.data import SplitData
from dpcore.engine.training import fresh_model
from dpcore.errors import ConfigError
from dpcore.privacy import accounting

__all__ = ["GradientCanaryAudit", "audit_summary", "canary_scores", "gradient_canary_audit",
           "max_gradient_canaries"]

PROBE_EXAMPLES = 256  # members whose clipped gradients at initialisation pick the quietest coordinates


@dataclass
class GradientCanaryAudit:
    """Outcome of ``gradient_canary_audit``: the bound (nats), the audit's power (nats: the bound were every
    guess right), the schedule it ran (sigma, sample rate q, steps, C) and its accountant epsilon at ``delta``
    (``math.inf`` without DP), the canaries' ``scores`` and ``included`` mask, and wall ``seconds``."""

    bound: EpsilonBound
    power: float
    accountant_epsilon: float
    delta: float
    accountant: str | None
    noise_multiplier: float | None
    sample_rate: float
    steps: int
    max_grad_norm: float
    canaries: int
    scores: np.ndarray = field(repr=False)
    included: np.ndarray = field(repr=False)
    coordinates: np.ndarray = field(repr=False)
    observations: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))
    seconds: float = 0.0
    reproducible: bool = False


def max_gradient_canaries(model: nn.Module) -> int:
    """How many Dirac canaries ``model`` can hold: half its trainable parameters (each canary needs its own
    coordinate, and most coordinates should stay with the real training)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad) // 2


def canary_scores(observations: np.ndarray, *, sample_rate: float, noise_multiplier: float | None) -> np.ndarray:
    """Score of each canary from its per-step privatised gradient values ``observations`` [steps, m] (in units
    of C); higher = "included".

    With DP noise, the score is the log-likelihood ratio sum_t log(1 - q + q exp((x_t - 1/2) / s^2)) of "adds 1
    when sampled at rate q" against "absent", s the larger of sigma and the observed spread (1.4826 x the median
    absolute value of all values). Without noise each canary's values are first centred on their median over
    the steps (the real training's steady push on that coordinate, which a canary sampled in a share q of the
    steps hardly moves) and s is their spread; with noise that centring was measured to hurt (it shifts every
    step of a canary alike), so it is left out.
    """
    x = np.asarray(observations, dtype=np.float64)
    if not noise_multiplier:
        x = x - np.median(x, axis=0, keepdims=True)
    spread = 1.4826 * float(np.median(np.abs(x - np.median(x))))
    scale = max(float(noise_multiplier or 0.0), spread, 1e-3)
    shifted = (x - 0.5) / scale**2
    if sample_rate >= 1.0:
        return shifted.sum(axis=0)
    return np.logaddexp(math.log1p(-sample_rate), math.log(sample_rate) + shifted).sum(axis=0)


def _streams(seed: int, reproducible: bool) -> tuple[torch.Generator, torch.Generator]:
    """(sampling generator, noise generator): from OS entropy used once and never stored, or from ``seed``."""
    if reproducible:
        return torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    return (torch.Generator().manual_seed(secrets.randbits(63)),
            torch.Generator().manual_seed(secrets.randbits(63)))


def _per_sample_grads(model: nn.Module, names: list[str], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample gradients of the cross-entropy, flattened: [batch, n_params]."""
    params = {name: p.detach() for name, p in model.named_parameters() if name in names}
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def loss_of(values: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, (values, buffers), (xi.unsqueeze(0),))
        return nn.functional.cross_entropy(out, yi.unsqueeze(0))

    grads = vmap(grad(loss_of), in_dims=(None, 0, 0))(params, x, y)
    return torch.cat([grads[name].reshape(len(x), -1) for name in names], dim=1)


def _choose_coordinates(model: nn.Module, names: list[str], data: SplitData, m: int, *, max_grad_norm: float,
                        rng: np.random.Generator) -> np.ndarray:
    """The m coordinates whose clipped member gradients at initialisation are smallest in size (ties random):
    the real training moves them least, so a canary's own push stands out there. Uses only the members, not
    the inclusion of any canary, so the choice does not affect the audit's validity."""
    n = min(PROBE_EXAMPLES, len(data.x_members))
    index = torch.from_numpy(rng.choice(len(data.x_members), size=n, replace=False))
    g = _per_sample_grads(model, names, data.x_members[index], data.y_members[index])
    factor = (max_grad_norm / (g.norm(dim=1, keepdim=True) + 1e-6)).clamp(max=1.0)
    size = (g * factor).abs().mean(dim=0).numpy().astype(np.float64)
    order = np.lexsort((rng.random(len(size)), size))
    return np.sort(order[:m])


def _canary_model(config: TrainConfig, data: SplitData, n_canaries: int, *, rng: np.random.Generator
                  ) -> tuple[nn.Module, list[str], np.ndarray]:
    """``config``'s model at initialisation (weights from ``config.seed``) in train mode, the names of its
    trainable parameters, and the ``n_canaries`` coordinates (indices into their concatenation) the canaries
    use. Raises ``ConfigError`` when the model has too few parameters for ``n_canaries``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model, _ = fresh_model(config, data)
    model.train()
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    most = max_gradient_canaries(model)
    if not 2 <= n_canaries <= most:
        raise ConfigError(f"white-box canaries must be between 2 and {most} (half the model's {2 * most} "
                          f"parameters), got {n_canaries}")
    coordinates = _choose_coordinates(model, names, data, n_canaries, max_grad_norm=float(config.max_grad_norm),
                                      rng=rng)
    return model, names, coordinates


def _train_with_canaries(
    model: nn.Module,
    names: list[str],
    data: SplitData,
    *,
    config: TrainConfig,
    coordinates: np.ndarray,
    included: np.ndarray,
    sigma: float,
    sample_rate: float,
    steps: int,
    seed: int,
    should_stop: Callable[[], bool] | None,
) -> np.ndarray | None:
    """Train ``model`` for ``steps`` steps of the audited schedule with the ``included`` canaries adding C along
    their ``coordinates`` when sampled (``sigma`` = 0: no clipping and no noise). Returns every step's
    privatised gradient sum at the canaries' coordinates, ``[steps, m]`` in units of C, or None when
    ``should_stop()`` answered True."""
    params = [p for name, p in model.named_parameters() if name in names]
    optimizer: torch.optim.Optimizer = (torch.optim.Adam(params, lr=config.lr) if config.optimizer == "adam" else
                                        torch.optim.SGD(params, lr=config.lr, momentum=config.momentum))
    sampling, noise = _streams(int(seed), bool(config.reproducible))
    private, clip = sigma != 0.0, float(config.max_grad_norm)
    coordinate_index, included_t = torch.from_numpy(coordinates), torch.from_numpy(included)
    n = len(data.x_members)
    expected_batch = sample_rate * n
    observations = np.zeros((steps, len(coordinates)), dtype=np.float32)
    for step in range(steps):
        if should_stop is not None and should_stop():
            return None
        chosen = torch.nonzero(torch.rand(n, generator=sampling) < sample_rate).flatten()
        total = torch.zeros(sum(p.numel() for p in params))
        if len(chosen):
            g = _per_sample_grads(model, names, data.x_members[chosen], data.y_members[chosen])
            if private:
                g = g * (clip / (g.norm(dim=1, keepdim=True) + 1e-6)).clamp(max=1.0)
            total += g.sum(dim=0)
        sampled = included_t & (torch.rand(len(coordinates), generator=sampling) < sample_rate)
        total[coordinate_index] += clip * sampled.to(total.dtype)
        if private:
            total += torch.normal(0.0, sigma * clip, size=total.shape, generator=noise)
        observations[step] = (total[coordinate_index] / clip).numpy()
        update = total / expected_batch
        offset = 0
        for p in params:
            p.grad = update[offset:offset + p.numel()].view_as(p).clone()
            offset += p.numel()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return observations


def gradient_canary_audit(
    config: TrainConfig,
    data: SplitData,
    *,
    n_canaries: int,
    noise_multiplier: float | None,
    sample_rate: float,
    steps: int,
    seed: int = 0,
    confidence: float = 0.95,
    should_stop: Callable[[], bool] | None = None,
) -> GradientCanaryAudit | None:
    """Train ``config``'s model on ``data``'s members with ``n_canaries`` Dirac gradient canaries and audit it.

    The schedule is the audited run's: ``noise_multiplier`` (None or 0 = no DP: no clipping of the real
    gradients and no noise), Poisson sampling at ``sample_rate`` for real examples and included canaries alike,
    ``steps`` steps, clipping bound and optimizer from ``config``; the gradient is divided by the expected batch
    size, as Opacus does. The noise and the sampling draw OS entropy unless ``config.reproducible`` (then they
    follow ``seed``); which canaries are included follows ``seed``. Returns a ``GradientCanaryAudit`` (bound and
    power in nats, the schedule's accountant epsilon at ``config.target_delta``), or None when ``should_stop()``
    answered True. Raises ``ConfigError`` when the model has too few parameters for ``n_canaries``.
    """
    started = time.perf_counter()
    config = config.resolve()
    if not 0.0 < sample_rate <= 1.0:
        raise ConfigError(f"sample_rate must be in (0, 1], got {sample_rate}")
    if steps < 1:
        raise ConfigError(f"the audited schedule needs at least 1 step, got {steps}")
    private = bool(noise_multiplier)
    sigma = float(noise_multiplier) if private else 0.0
    rng = np.random.default_rng(seed)
    model, names, coordinates = _canary_model(config, data, n_canaries, rng=rng)
    included = rng.random(n_canaries) < 0.5
    observations = _train_with_canaries(model, names, data, config=config, coordinates=coordinates,
                                        included=included, sigma=sigma, sample_rate=sample_rate, steps=steps,
                                        seed=seed, should_stop=should_stop)
    if observations is None:
        return None
    scores = canary_scores(observations, sample_rate=sample_rate, noise_multiplier=sigma)
    if not np.all(np.isfinite(scores)):  # a diverged run: rank what is finite, the rest lowest
        scores = np.nan_to_num(scores, nan=-np.inf, posinf=np.finfo(np.float64).max, neginf=-np.inf)
        scores[~np.isfinite(scores)] = np.finfo(np.float64).min
    bound = one_run_audit_best(scores, included, delta=config.target_delta, confidence=confidence)
    power = one_run_audit_power(bound, confidence=confidence)
    accountant = config.accountant if private else None
    epsilon = (accounting.schedule_epsilon([(sigma, sample_rate, steps)], delta=config.target_delta,
                                           accountant=accountant) if private else math.inf)
    return GradientCanaryAudit(
        bound=bound, power=power, accountant_epsilon=float(epsilon), delta=config.target_delta,
        accountant=accountant, noise_multiplier=sigma if private else None, sample_rate=float(sample_rate),
        steps=int(steps), max_grad_norm=float(config.max_grad_norm), canaries=int(n_canaries), scores=scores,
        included=included, coordinates=coordinates, observations=observations,
        seconds=time.perf_counter() - started, reproducible=bool(config.reproducible),
    )


def audit_summary(audit: GradientCanaryAudit) -> dict[str, Any]:
    """JSON-ready dict of a ``GradientCanaryAudit`` without the per-canary arrays."""
    return {
        **audit.bound.to_dict(), "power": audit.power, "accountant_epsilon": audit.accountant_epsilon,
        "delta": audit.delta, "accountant": audit.accountant, "noise_multiplier": audit.noise_multiplier,
        "sample_rate": audit.sample_rate, "steps": audit.steps, "max_grad_norm": audit.max_grad_norm,
        "canaries": audit.canaries, "seconds": round(audit.seconds, 3), "reproducible": audit.reproducible,
    }
