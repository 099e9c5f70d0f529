"""Privacy accounting without training: epsilon for a schedule, sigma for a target, curves.

Thin, fast wrappers over Opacus' accountants (RDP, PRV, GDP). A schedule is a
list of ``(noise_multiplier, sample_rate, steps)`` segments, the same shape as
``accountant.history``, so a resumed run accounts for the budget it already spent.
RDP and GDP answer in milliseconds; PRV is exact-er but slow at large epsilon, so
curves evaluate it on a grid and interpolate between exact points.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from opacus.accountants import GaussianAccountant, PRVAccountant, RDPAccountant
from opacus.accountants.analysis import rdp as rdp_analysis
from scipy import optimize

from dpcore.errors import ConfigError

ACCOUNTANT_CLASSES = {"rdp": RDPAccountant, "prv": PRVAccountant, "gdp": GaussianAccountant}
ACCOUNTANT_TITLES = {
    "rdp": "RDP (Renyi DP, Opacus default before 1.5; fast, slightly loose)",
    "prv": "PRV (privacy random variables; tightest, slower)",
    "gdp": "GDP (Gaussian DP / CLT approximation; fast, can underestimate)",
}
RDP_ORDERS = RDPAccountant.DEFAULT_ALPHAS  # the same orders Opacus uses, so curves match get_epsilon
PRV_GRID_POINTS = 24
Segment = tuple[float, float, int]

# GDP's "experimental, can underestimate" warning is shown to users as text next to the
# accountant choice; a global filter (not catch_warnings) because jobs run in threads.
warnings.filterwarnings("ignore", message="GDP accounting is experimental")
# Raised while bisecting over very large sigmas, where the bound is irrelevant anyway.
warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")


def _check_accountant(name: str) -> None:
    if name not in ACCOUNTANT_CLASSES:
        raise ConfigError(f"accountant must be one of {', '.join(ACCOUNTANT_CLASSES)}; got {name!r}")


def make_accountant(name: str, history: Iterable[Segment] = ()):
    """A fresh Opacus accountant of kind ``name`` carrying ``history`` segments."""
    _check_accountant(name)
    accountant = ACCOUNTANT_CLASSES[name]()
    accountant.history = [(float(s), float(q), int(n)) for s, q, n in history]
    return accountant


def schedule_epsilon(history: Sequence[Segment], *, delta: float, accountant: str = "rdp") -> float:
    """Epsilon spent at ``delta`` by a schedule of (sigma, sample_rate, steps) segments."""
    history = [seg for seg in history if seg[2] > 0]
    if not history:
        return 0.0
    if any(sigma <= 0 for sigma, _, _ in history):
        return math.inf
    acc = make_accountant(accountant, history)
    try:
        return float(acc.get_epsilon(delta=delta))
    except (ValueError, RuntimeError, OverflowError) as err:
        if accountant == "prv":  # PRV's domain breaks down at very large epsilon; RDP still answers
            return schedule_epsilon(history, delta=delta, accountant="rdp")
        raise ConfigError(f"the {accountant} accountant could not evaluate this schedule: {err}") from err


def epsilon_for(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                accountant: str = "rdp") -> float:
    """Epsilon after ``steps`` DP-SGD steps with noise ``noise_multiplier`` and Poisson rate ``sample_rate``.

    >>> round(epsilon_for(noise_multiplier=1.0, sample_rate=0.01, steps=1000, delta=1e-5), 2)
    2.1
    """
    return schedule_epsilon([(noise_multiplier, sample_rate, steps)], delta=delta, accountant=accountant)


def noise_for_epsilon(*, target_epsilon: float, delta: float, sample_rate: float, epochs: int | None = None,
                      steps: int | None = None, accountant: str = "rdp", prior: Sequence[Segment] = (),
                      tolerance: float = 0.01) -> float:
    """Smallest noise multiplier (sigma) whose schedule spends at most ``target_epsilon`` at ``delta``.

    ``steps`` defaults to ``epochs / sample_rate``; ``prior`` segments (a resumed run)
    are spent first. Raises ConfigError when even huge noise cannot meet the target.
    """
    _check_accountant(accountant)
    if steps is None:
        if epochs is None:
            raise ConfigError("noise_for_epsilon needs epochs or steps")
        steps = int(epochs / sample_rate)

    prior = tuple(tuple(seg) for seg in prior)
    return _noise_for_epsilon(float(target_epsilon), float(delta), float(sample_rate), int(steps), accountant,
                              prior, float(tolerance))


@functools.lru_cache(maxsize=512)
def _noise_for_epsilon(target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str,
                       prior: tuple[Segment, ...], tolerance: float) -> float:
    """Cached root finding: bracket sigma, then Brent's method on eps(sigma) - target, then nudge to meet it.

    PRV and GDP start from the RDP answer (RDP is looser, so its sigma is an upper
    bound), which keeps them away from tiny sigmas where PRV is very slow and GDP fails.
    """
    def excess(sigma: float) -> float:
        try:
            return schedule_epsilon([*prior, (sigma, sample_rate, steps)], delta=delta,
                                    accountant=accountant) - target_epsilon
        except ConfigError:  # the accountant's numerics give up at huge epsilon: far above target
            return math.inf

    if accountant == "rdp":
        high = 1.0
    else:
        high = _noise_for_epsilon(target_epsilon, delta, sample_rate, steps, "rdp", prior, tolerance)
    while excess(high) > 0:
        high *= 2
        if high > 5000:
            raise ConfigError(f"no noise multiplier reaches epsilon {target_epsilon:g} at delta {delta:g}; "
                              "the budget already spent may exceed it, or raise the target")
    low = high * 0.7
    while excess(low) <= 0:
        high, low = low, low * 0.7
        if low < 1e-3:
            return high
    sigma = optimize.brentq(lambda s: min(excess(s), 1e6), low, high, xtol=1e-4, rtol=1e-6)
    # Brent stops near the root from either side; step up until the target is met.
    while excess(sigma) > 0:
        sigma *= 1.0005
    return sigma


def epsilon_curve(*, noise_multiplier: float, sample_rate: float, steps: Sequence[int] | np.ndarray, delta: float,
                  accountant: str = "rdp", prior: Sequence[Segment] = ()) -> np.ndarray:
    """Epsilon after each step count in ``steps`` (after the ``prior`` schedule), one value per entry.

    RDP is computed exactly at every point from one RDP vector (RDP adds up over
    steps); GDP is exact everywhere; PRV is exact at up to PRV_GRID_POINTS
    points including the last and linearly interpolated between them.
    """
    steps_arr = np.asarray(steps, dtype=np.int64)
    if steps_arr.size == 0:
        return np.zeros(0)
    if noise_multiplier <= 0:
        return np.full(steps_arr.shape, math.inf)
    if accountant == "rdp":
        prior_rdp = np.zeros(len(RDP_ORDERS))
        for sigma, q, n in prior:
            prior_rdp += rdp_analysis.compute_rdp(q=q, noise_multiplier=sigma, steps=n, orders=RDP_ORDERS)
        per_step = rdp_analysis.compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1,
                                            orders=RDP_ORDERS)
        return np.array([
            rdp_analysis.get_privacy_spent(orders=RDP_ORDERS, rdp=prior_rdp + per_step * int(n), delta=delta)[0]
            if n > 0 or prior else 0.0
            for n in steps_arr
        ])
    if accountant == "gdp":
        return np.array([schedule_epsilon([*prior, (noise_multiplier, sample_rate, int(n))], delta=delta,
                                          accountant="gdp") for n in steps_arr])
    _check_accountant(accountant)
    unique = np.unique(steps_arr)
    if unique.size <= PRV_GRID_POINTS:
        grid = unique
    else:
        grid = np.unique(np.linspace(unique[0], unique[-1], PRV_GRID_POINTS).round().astype(np.int64))
    values = np.array([schedule_epsilon([*prior, (noise_multiplier, sample_rate, int(n))], delta=delta,
                                        accountant=accountant) for n in grid])
    return np.interp(steps_arr, grid, values)


def max_steps_within(limit: float, *, noise_multiplier: float, sample_rate: float, delta: float,
                     accountant: str = "rdp", prior: Sequence[Segment] = (), upper: int = 10**7) -> int:
    """Largest step count whose epsilon (after ``prior``) stays at or below ``limit``; 0 if none."""
    def eps(n: int) -> float:
        return schedule_epsilon([*prior, (noise_multiplier, sample_rate, n)], delta=delta, accountant=accountant)

    if eps(1) > limit:
        return 0
    low, high = 1, 2
    while high < upper and eps(high) <= limit:
        low, high = high, high * 2
    high = min(high, upper)
    while high - low > 1:
        mid = (low + high) // 2
        if eps(mid) <= limit:
            low = mid
        else:
            high = mid
    return low


def compare_accountants(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                        accountants: Sequence[str] = ("rdp", "prv", "gdp")) -> pd.DataFrame:
    """Epsilon from each accountant for one schedule: columns accountant, title, epsilon."""
    rows = [{"accountant": name, "title": ACCOUNTANT_TITLES[name],
             "epsilon": epsilon_for(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps,
                                    delta=delta, accountant=name)}
            for name in accountants]
    return pd.DataFrame(rows)


def epsilon_by_epoch(*, noise_multipliers: Sequence[float], sample_rate: float, epochs: int, delta: float,
                     accountant: str = "rdp") -> pd.DataFrame:
    """Long-format table (noise_multiplier, epoch, epsilon) for epsilon-vs-epochs charts."""
    steps_per_epoch = max(1, round(1 / sample_rate))
    epoch_axis = np.arange(1, epochs + 1)
    frames = [
        pd.DataFrame({"noise_multiplier": sigma, "epoch": epoch_axis,
                      "epsilon": epsilon_curve(noise_multiplier=sigma, sample_rate=sample_rate,
                                               steps=epoch_axis * steps_per_epoch, delta=delta,
                                               accountant=accountant)})
        for sigma in noise_multipliers
    ]
    return pd.concat(frames, ignore_index=True)


def sigma_by_target(*, targets: Sequence[float], sample_rate: float, epochs: int, delta: float,
                    accountant: str = "rdp") -> pd.DataFrame:
    """Table (target_epsilon, noise_multiplier): the sigma each target epsilon needs."""
    return pd.DataFrame({
        "target_epsilon": list(targets),
        "noise_multiplier": [noise_for_epsilon(target_epsilon=t, delta=delta, sample_rate=sample_rate,
                                               epochs=epochs, accountant=accountant) for t in targets],
    })
