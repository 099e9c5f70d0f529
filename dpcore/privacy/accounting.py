"""Privacy accounting without training: epsilon for a schedule, sigma for a target, curves.

Thin, fast wrappers over Opacus' accountants (RDP, PRV, GDP). A schedule is a
list of ``(noise_multiplier, sample_rate, steps)`` segments, the same shape as
``accountant.history``, so a resumed run accounts for the budget it already spent.
RDP and GDP answer in milliseconds; PRV is exact-er but slow at large epsilon, so
curves evaluate it on a grid and interpolate between exact points.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Callable, Iterable, Sequence

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
#: Above this RDP ε, ``schedule_epsilon`` answers PRV requests with RDP's (upper-bound) value: PRV there
#: takes tens of seconds and GBs of memory (RDP ε 1000: 40 s, 2.5 GB) and returns ∞.
PRV_MAX_EPSILON = 200.0
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
    if accountant == "rdp" and len(history) == 1:  # the common case: the fast path gives Opacus' number
        sigma, sample_rate, steps = history[0]
        return rdp_epsilon(noise_multiplier=sigma, sample_rate=sample_rate, steps=steps, delta=delta)
    if accountant == "prv":  # PRV's domain grows with ε: past PRV_MAX_EPSILON it takes minutes and GBs, then
        rdp = schedule_epsilon(history, delta=delta, accountant="rdp")  # gives ∞ or runs out of memory
        if not rdp <= PRV_MAX_EPSILON:
            return rdp  # RDP is an upper bound too, and at such ε the few percent PRV saves mean nothing
    acc = make_accountant(accountant, history)
    try:
        epsilon = max(float(acc.get_epsilon(delta=delta)), 0.0)  # see rdp_epsilon: a large delta can give < 0
    except (ValueError, RuntimeError, OverflowError, MemoryError) as err:
        if accountant == "prv":  # PRV's domain breaks down at very large epsilon; RDP still answers
            return schedule_epsilon(history, delta=delta, accountant="rdp")
        raise ConfigError(f"the {accountant} accountant could not evaluate this schedule: {err}") from err
    if accountant == "prv" and math.isinf(epsilon):
        return schedule_epsilon(history, delta=delta, accountant="rdp")
    return epsilon


def epsilon_for(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                accountant: str = "rdp") -> float:
    """Epsilon after ``steps`` DP-SGD steps with noise ``noise_multiplier`` and Poisson rate ``sample_rate``.

    >>> round(epsilon_for(noise_multiplier=1.0, sample_rate=0.01, steps=1000, delta=1e-5), 2)
    2.1
    """
    return schedule_epsilon([(noise_multiplier, sample_rate, steps)], delta=delta, accountant=accountant)


def noise_for_epsilon(*, target_epsilon: float, delta: float, sample_rate: float, epochs: int | None = None,
                      steps: int | None = None, accountant: str = "rdp", prior: Sequence[Segment] = ()) -> float:
    """Smallest noise multiplier (sigma) whose schedule spends at most ``target_epsilon`` at ``delta``.

    ``steps`` defaults to ``epochs / sample_rate``; ``prior`` segments (a resumed run)
    are spent first. Raises ConfigError when even huge noise cannot meet the target.
    """
    _check_accountant(accountant)
    if steps is None:
        if epochs is None:
            raise ConfigError("noise_for_epsilon needs epochs or steps")
        steps = round(epochs / sample_rate)  # 1/q steps per epoch; round, float error truncates

    prior = tuple(tuple(seg) for seg in prior)
    return _noise_for_epsilon(float(target_epsilon), float(delta), float(sample_rate), int(steps), accountant,
                              prior)


@functools.lru_cache(maxsize=512)
def _noise_for_epsilon(target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str,
                       prior: tuple[Segment, ...]) -> float:
    """Cached root finding with ``_smallest_sigma``.

    PRV and GDP start from the RDP answer (RDP is looser, so its sigma is an upper
    bound), which keeps them away from tiny sigmas where PRV is very slow and GDP fails.
    """
    def epsilon_of(sigma: float) -> float:
        try:
            return schedule_epsilon([*prior, (sigma, sample_rate, steps)], delta=delta, accountant=accountant)
        except ConfigError:  # the accountant's numerics give up at huge epsilon: far above target
            return math.inf

    start = 1.0 if accountant == "rdp" else _noise_for_epsilon(target_epsilon, delta, sample_rate, steps, "rdp",
                                                               prior)
    why = ("the budget already spent may exceed it, or raise the target" if prior else
           "raise the target, or train for fewer steps (fewer epochs or a larger batch)")
    return _smallest_sigma(epsilon_of, target_epsilon, start=start, xtol=1e-4,
                           unreachable=f"no noise multiplier up to 5000 reaches epsilon {target_epsilon:g} at delta "
                                       f"{delta:g} in {steps:,} steps; {why}")


def _smallest_sigma(epsilon_of: Callable[[float], float], target_epsilon: float, *, start: float, xtol: float,
                    unreachable: str) -> float:
    """Smallest sigma with ``epsilon_of(sigma) <= target_epsilon`` (epsilon falls as sigma grows).

    Works on log sigma, where log epsilon is close to linear: bracket from ``start`` by
    doubling or halving, Brent's method to ``xtol`` (in log sigma), then a step to the safe
    side, since Brent may stop just past the root. ConfigError(``unreachable``) when no
    sigma up to 5000 meets the target; sigmas below 1e-3 are not searched.
    """
    def log_excess(log_sigma: float) -> float:
        value = epsilon_of(math.exp(log_sigma))
        return math.log(value / target_epsilon) if 0 < value < math.inf else (-50.0 if value == 0 else 50.0)

    low = high = math.log(start)
    if log_excess(high) > 0:
        while log_excess(high) > 0:
            low, high = high, high + math.log(2)
            if high > math.log(5000):
                raise ConfigError(unreachable)
    else:
        while log_excess(low) <= 0:
            high, low = low, low - math.log(2)
            if low < math.log(1e-3):
                return math.exp(high)
    root = optimize.brentq(log_excess, low, high, xtol=xtol)
    while log_excess(root) > 0:
        root += xtol
    return math.exp(root)


def epsilon_curve(*, noise_multiplier: float, sample_rate: float, steps: Sequence[int] | np.ndarray, delta: float,
                  accountant: str = "rdp", prior: Sequence[Segment] = ()) -> np.ndarray:
    """Epsilon after each step count in ``steps`` (after the ``prior`` schedule), one value per entry.

    RDP is computed exactly at every point from one RDP vector (RDP adds up over
    steps); GDP is exact everywhere; PRV is exact at up to PRV_GRID_POINTS
    points, geometrically spaced and including the first and the last, and linearly
    interpolated between them. Epsilon rises fastest in the first steps, so an even
    grid would underestimate it there by far more (0.18 vs 0.003 at q = 0.01,
    sigma = 0.8 over 500 steps). Use ``max_steps_within`` for an exact stop.
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
            max(rdp_analysis.get_privacy_spent(orders=RDP_ORDERS, rdp=prior_rdp + per_step * int(n), delta=delta)[0],
                0.0)
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
        spaced = np.geomspace(max(int(unique[0]), 1), int(unique[-1]), PRV_GRID_POINTS).round().astype(np.int64)
        grid = np.unique(np.concatenate([[unique[0]], spaced, [unique[-1]]]))
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


# ---------------------------------------------------------------------- planner helpers
# Used by the budget planner page (and anything else that needs many what-if numbers fast).
# Headline numbers still come from epsilon_for / noise_for_epsilon; these helpers give the
# same RDP values (tested to 1e-9) in a fraction of the time, for charts with many points.

@dataclasses.dataclass(frozen=True)
class Sampling:
    """How DP-SGD walks over ``n`` training examples with batch size ``batch_size``, as the trainer does it.

    dpcore.engine.training builds a DataLoader with ``batch_size`` (``ceil(n / batch_size)`` batches per
    epoch); Opacus then samples every example independently with probability
    ``sample_rate = 1 / steps_per_epoch`` (Poisson sampling), so an epoch is ``steps_per_epoch``
    logical steps and a batch holds ``expected_batch_size`` examples on average.
    """

    n: int
    batch_size: int
    steps_per_epoch: int
    sample_rate: float

    @property
    def expected_batch_size(self) -> float:
        """Average examples per Poisson-sampled batch: ``n * sample_rate`` (can differ a little from batch_size)."""
        return self.n * self.sample_rate

    def steps(self, epochs: int) -> int:
        """Logical optimizer steps in ``epochs`` epochs."""
        return self.steps_per_epoch * int(epochs)


def sampling_for(*, n: int, batch_size: int | None = None, sample_rate: float | None = None) -> Sampling:
    """The ``Sampling`` the trainer uses for ``n`` examples and a batch size (or a sample rate).

    Give exactly one of ``batch_size`` and ``sample_rate``. A sample rate q becomes the batch
    size ``round(q * n)`` (at least 1), then q is recomputed the way training does,
    ``1 / ceil(n / batch_size)``, so the planner reports what a run will report.
    Raises ConfigError for sizes that training would reject (batch larger than the data, ...).

    >>> s = sampling_for(n=1437, batch_size=256)
    >>> s.steps_per_epoch, round(s.sample_rate, 4), s.steps(40)
    (6, 0.1667, 240)
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"dataset size N must be a whole number of at least 1 training example, got {n!r}")
    n = int(n)
    if (batch_size is None) == (sample_rate is None):
        raise ConfigError("give a batch size or a sample rate (exactly one of them)")
    if sample_rate is not None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.floating)) \
                or not math.isfinite(sample_rate) or not 0 < sample_rate <= 1:
            raise ConfigError(f"sample rate q must be in (0, 1] (the chance that an example joins a batch), "
                              f"got {sample_rate!r}")
        batch_size = max(1, round(float(sample_rate) * n))
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch size must be a whole number of at least 1, got {batch_size!r}")
    batch_size = int(batch_size)
    if batch_size > n:
        raise ConfigError(f"batch size {batch_size} is larger than the dataset (N = {n} examples); "
                          f"use a batch size of at most {n}, or a larger N")
    steps_per_epoch = math.ceil(n / batch_size)
    return Sampling(n=n, batch_size=batch_size, steps_per_epoch=steps_per_epoch, sample_rate=1.0 / steps_per_epoch)


_ORDERS = np.asarray(RDP_ORDERS, dtype=float)
_WHOLE = np.flatnonzero(_ORDERS == np.round(_ORDERS))  # cheap orders: a finite sum of order + 1 terms
_WHOLE_SET = frozenset(int(index) for index in _WHOLE)


@functools.lru_cache(maxsize=65536)
def _rdp_at(sample_rate: float, noise_multiplier: float, order: float) -> float:
    """RDP of one step at one order (Opacus' formula), cached: charts ask for the same points often."""
    return float(rdp_analysis.compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1,
                                          orders=[order])[0])


def _epsilon_at_orders(index: np.ndarray, *, noise_multiplier: float, sample_rate: float, steps: int,
                       delta: float) -> np.ndarray:
    """Epsilon at each order ``_ORDERS[index]`` (Opacus' RDP -> (eps, delta) conversion); NaN where undefined."""
    orders = _ORDERS[index]
    rdp = np.array([_rdp_at(sample_rate, noise_multiplier, float(order)) for order in orders]) * steps
    with np.errstate(invalid="ignore", over="ignore"):
        return rdp - (math.log(delta) + np.log(orders)) / (orders - 1) + np.log((orders - 1) / orders)


def rdp_epsilon(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """Epsilon after ``steps`` steps by the RDP accountant: the same number as ``epsilon_for(accountant='rdp')``.

    Faster: the whole-number orders are cheap, so they are evaluated first; the fractional
    orders (costly at large sample rates) are visited only from the best whole order outwards,
    while epsilon keeps falling (the conversion is unimodal in the order, so the optimum over
    all of Opacus' orders is found). Per-order values are cached, so curves and inverses
    that revisit a sigma cost nothing more.

    >>> round(rdp_epsilon(noise_multiplier=1.0, sample_rate=0.01, steps=1000, delta=1e-5), 2)
    2.1
    """
    if steps <= 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    kwargs = dict(noise_multiplier=float(noise_multiplier), sample_rate=float(sample_rate), steps=int(steps),
                  delta=float(delta))
    whole = _epsilon_at_orders(_WHOLE, **kwargs)
    if np.isnan(whole).all():
        return math.inf
    best_whole = int(np.nanargmin(whole))
    best, position = float(whole[best_whole]), int(_WHOLE[best_whole])
    for direction in (1, -1):
        index, improved = position + direction, False
        while 0 <= index < len(_ORDERS) and index not in _WHOLE_SET:
            value = float(_epsilon_at_orders(np.array([index]), **kwargs)[0])
            if not value < best:
                break
            best, improved, index = value, True, index + direction
        if improved:  # unimodal: the other side cannot do better
            break
    # With a large delta the RDP conversion goes below 0, which only says epsilon 0 already holds.
    return max(best, 0.0)


def rdp_noise_for_epsilon(*, target_epsilon: float, delta: float, sample_rate: float, steps: int,
                          tolerance: float = 1e-4) -> float:
    """Smallest noise multiplier whose RDP epsilon after ``steps`` steps is at most ``target_epsilon``.

    The same answer as ``noise_for_epsilon(accountant='rdp')`` to about ``tolerance`` (relative),
    always on the safe side (its epsilon never exceeds the target), found with few evaluations:
    log epsilon is close to linear in log sigma. Raises ConfigError when no sigma up to 5000 reaches it.
    """
    if not (isinstance(target_epsilon, (int, float)) and math.isfinite(target_epsilon) and target_epsilon > 0):
        raise ConfigError(f"target epsilon must be a positive number, got {target_epsilon!r}")

    return _smallest_sigma(
        lambda sigma: rdp_epsilon(noise_multiplier=sigma, sample_rate=sample_rate, steps=steps, delta=delta),
        target_epsilon, start=1.0, xtol=tolerance / 4,
        unreachable=f"no noise multiplier up to 5000 reaches epsilon {target_epsilon:g} at delta {delta:g} in "
                    f"{steps} steps; raise the target or train for fewer steps")


def rdp_epsilon_by_epoch(*, noise_multipliers: Sequence[float], sampling: Sampling, epochs: int,
                         delta: float) -> pd.DataFrame:
    """Long-format table (noise_multiplier, epoch, epsilon) by RDP, for epsilon-vs-epochs charts.

    The same numbers as ``epsilon_by_epoch`` (RDP), computed with ``rdp_epsilon``.
    """
    rows = [{"noise_multiplier": float(sigma), "epoch": epoch,
             "epsilon": rdp_epsilon(noise_multiplier=sigma, sample_rate=sampling.sample_rate,
                                    steps=sampling.steps(epoch), delta=delta)}
            for sigma in noise_multipliers for epoch in range(1, int(epochs) + 1)]
    return pd.DataFrame(rows, columns=["noise_multiplier", "epoch", "epsilon"])


def sigma_curve(*, sample_rate: float, steps: int, delta: float, epsilon_range: tuple[float, float] = (0.5, 16.0),
                points: int = 12) -> pd.DataFrame:
    """Noise multiplier needed for each final epsilon across ``epsilon_range``, by RDP, for charts.

    Table (target_epsilon, noise_multiplier): every row is an exact pair, the RDP epsilon
    that ``steps`` steps at that sigma spend, for ``points`` sigmas spaced evenly in log scale
    between those that reach the two ends of the range. Inverting a forward curve needs
    one evaluation per point instead of a root search per target. Raises ConfigError when
    no sigma reaches the low end of the range.
    """
    low_eps, high_eps = (float(value) for value in epsilon_range)
    if not 0 < low_eps < high_eps:
        raise ConfigError(f"epsilon_range must be two increasing positive numbers, got {epsilon_range!r}")

    def eps(sigma: float) -> float:
        return rdp_epsilon(noise_multiplier=sigma, sample_rate=sample_rate, steps=steps, delta=delta)

    # the ends need no precision: the rows themselves are exact (epsilon, sigma) pairs
    sigma_high = rdp_noise_for_epsilon(target_epsilon=low_eps, delta=delta, sample_rate=sample_rate, steps=steps,
                                       tolerance=0.02)
    sigma_low = rdp_noise_for_epsilon(target_epsilon=high_eps, delta=delta, sample_rate=sample_rate, steps=steps,
                                      tolerance=0.02)
    sigmas = np.geomspace(min(sigma_low, sigma_high), max(sigma_low, sigma_high), max(2, int(points)))
    return pd.DataFrame({"target_epsilon": [eps(float(sigma)) for sigma in sigmas], "noise_multiplier": sigmas})
