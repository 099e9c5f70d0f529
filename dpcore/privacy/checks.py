"""The seed's four privacy/utility checks, as data: each with its threshold, measured value and verdict.

A private run also gets a fifth, advisory check (``CLIP_IN_BAND``: the median per-step clip fraction in the
50-80 % band the app calls healthy); it shows amber when it does not pass and never fails the gate.

``run_checks`` is the one builder of the checks from plain values (a config dict and a summary
dict, or explicit numbers): the run view (pass/fail badges), reports, JSON exports,
``StoredRun.checks`` and ``python -m dpcore check`` (a privacy gate for users' CI) all call it.
Thresholds default to the seed's test suite. ``run_checks`` checks the budget with a proven bound
(``dpcore.privacy.caveats``), never a GDP approximation, and fails a reproducible run (noise that
followed the seed) unless explicitly allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from dpcore.privacy.caveats import NO_BOUND_TEXT, REPRODUCIBLE_GATE_TEXT, epsilon_status

WITHIN_BUDGET = "epsilon within budget"
MEANINGFUL_EPSILON = "meaningful epsilon"
ATTACK_NEAR_CHANCE = "membership attack near chance"
USEFUL = "model is useful"
SECRET_NOISE = "noise kept secret"
CLIP_IN_BAND = "clipping in the healthy band"
#: The clip-fraction band the app's explanations call healthy (``dpcore.views.explain``, the clip chart).
HEALTHY_CLIP_BAND = (0.5, 0.8)


@dataclass(frozen=True)
class Check:
    """One check: ``passed`` is None when it could not be evaluated (e.g. no attack was run).

    An ``advisory`` check is advice, not a gate: when it does not pass it shows amber, never red, and
    ``all_passed`` and ``python -m dpcore check`` ignore it.
    """

    name: str
    description: str
    value: float | None
    threshold: float
    passed: bool | None
    advisory: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def value_text(self, *, epsilon_format: str = ".3f") -> str:
        """The measured value as people read it: '70.5%', 'AUC 0.535', 'ε = 3.000', 'ε = ∞' or 'not measured'."""
        value = self.value
        if self.name == SECRET_NOISE:
            return "seeded noise (reproducible)"
        if value is None or math.isnan(value):
            return "not measured"
        if self.name == USEFUL:
            return f"{value:.1%}"
        if self.name == CLIP_IN_BAND:
            return f"{value:.0%} clipped (median step)"
        if self.name == ATTACK_NEAR_CHANCE:
            return f"AUC {value:.3f}"
        return "ε = ∞" if math.isinf(value) else f"ε = {value:{epsilon_format}}"


def seed_checks(*, final_epsilon: float, target_epsilon: float | None, test_accuracy: float,
                mia_auc: float | None, max_epsilon: float = 10.0, max_auc: float = 0.60,
                min_accuracy: float = 0.55, budget_slack: float = 1.1, checked_by: str | None = None,
                no_bound: str | None = None, reproducible: bool = False,
                allow_reproducible: bool = False) -> list[Check]:
    """The four checks: epsilon within budget, epsilon meaningful, attack near chance, model useful.

    ``final_epsilon`` is inf for a non-private run, which fails both epsilon checks
    on purpose: a baseline has no guarantee. ``final_epsilon`` should be a proven bound;
    ``checked_by`` names the accountant that gave it (shown in the descriptions). ``no_bound``
    is the reason no proven bound exists (a run without Poisson sampling): both epsilon checks
    then fail with that reason. A ``reproducible`` run (noise that followed the seed) gets a
    fifth check, failed unless ``allow_reproducible``.
    """
    def verdict(value: float | None, ok: bool) -> bool | None:
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else ok

    by = f", by the {checked_by.upper()} accountant" if checked_by and no_bound is None else ""
    checks = []
    if target_epsilon is not None:
        bound = budget_slack * target_epsilon
        description = f"epsilon spent is at most {budget_slack:g} x the target ({target_epsilon:g}){by}"
        checks.append(Check(WITHIN_BUDGET, f"{description}; {no_bound}" if no_bound else description,
                            final_epsilon, bound,
                            False if no_bound else verdict(final_epsilon, final_epsilon <= bound)))
    description = f"epsilon spent is below {max_epsilon:g}{by}"
    checks.append(Check(MEANINGFUL_EPSILON, f"{description}; {no_bound}" if no_bound else description,
                        final_epsilon, max_epsilon,
                        False if no_bound else verdict(final_epsilon, final_epsilon < max_epsilon)))
    checks.append(Check(ATTACK_NEAR_CHANCE, f"loss-threshold attack AUC below {max_auc:g}",
                        mia_auc, max_auc, verdict(mia_auc, mia_auc is not None and mia_auc < max_auc)))
    checks.append(Check(USEFUL, f"test accuracy above {min_accuracy:g}",
                        test_accuracy, min_accuracy, verdict(test_accuracy, test_accuracy > min_accuracy)))
    if reproducible:
        checks.append(Check(SECRET_NOISE,
                            f"{REPRODUCIBLE_GATE_TEXT}; allowed by --allow-reproducible" if allow_reproducible
                            else f"DP noise and batch sampling must not follow the seed; this run is "
                                 f"{REPRODUCIBLE_GATE_TEXT}",
                            None, 0.0, allow_reproducible))
    return checks


def clip_band_check(median_clip_fraction: float | None, *,
                    band: tuple[float, float] = HEALTHY_CLIP_BAND) -> Check:
    """The advisory check: the run's median per-step clip fraction (a fraction 0..1) lies within ``band``.

    Returns an ``advisory`` Check (threshold: the band's upper end); ``passed`` is None when not measured.
    """
    low, high = band
    measured = median_clip_fraction is not None and not math.isnan(median_clip_fraction)
    return Check(CLIP_IN_BAND, f"advisory: median per-step clip fraction within {low:.0%}-{high:.0%}; "
                               "near 100 % the clip bound C is too small, near 0 % too large (never fails the gate)",
                 median_clip_fraction if measured else None, high,
                 (low <= median_clip_fraction <= high) if measured else None, advisory=True)


def _number(value: Any) -> float | None:
    """``value`` as a float, None when it is not a number (booleans, text, None)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def run_checks(config: Mapping[str, Any], summary: Mapping[str, Any], *, test_accuracy: float | None = None,
               mia_auc: float | None = None, final_epsilon: float | None = None, max_epsilon: float = 10.0,
               max_auc: float = 0.60, min_accuracy: float = 0.55, allow_reproducible: bool = False,
               clip_fraction: float | None = None) -> list[Check]:
    """The privacy gate's checks for a run's config and summary (plain dicts: a stored run or a fresh result).

    The one place that derives the checks: pages, reports, exports, the CLI gate and
    ``StoredRun.checks`` all call it. ``test_accuracy`` (a fraction), ``mia_auc`` and
    ``final_epsilon`` override the summary's values when the caller measured them elsewhere
    (metrics tables, the ROC file, an active run's latest ε); NaN or None means not measured.

    The epsilon checks compare a proven bound (``dpcore.privacy.caveats.epsilon_status``: the run's own
    RDP/PRV ε, or the RDP ε of a GDP run's schedule) with the thresholds, never a GDP
    approximation; a run without Poisson sampling has no bound and fails them. A reproducible
    run (or one stored before the noise became secret) fails an extra check unless
    ``allow_reproducible``. A private run also gets the advisory ``clip_band_check`` on the summary's
    ``median_clip_fraction`` (or ``clip_fraction``, a fraction, when given); it never fails the gate.
    """
    status = epsilon_status(config=config, summary=summary, epsilon=final_epsilon)
    private = status.private
    if not private:
        checked = math.inf
    elif status.bound is not None:
        checked = status.bound
    else:
        checked = status.epsilon
    if status.no_proven_bound:
        no_bound = NO_BOUND_TEXT
    elif status.bound is None and math.isfinite(checked) and not status.is_guarantee:
        no_bound = "no proven bound: the schedule was not stored"
    else:
        no_bound = None
    accuracy = _number(summary.get("test_accuracy") if test_accuracy is None else test_accuracy)
    auc = _number(summary.get("mia_auc") if mia_auc is None else mia_auc)
    checks = seed_checks(final_epsilon=checked, target_epsilon=config.get("target_epsilon") if private else None,
                         test_accuracy=math.nan if accuracy is None else accuracy,
                         mia_auc=None if auc is None or math.isnan(auc) else auc, max_epsilon=max_epsilon,
                         max_auc=max_auc, min_accuracy=min_accuracy,
                         checked_by=status.bound_accountant if private else None, no_bound=no_bound,
                         reproducible=status.reproducible, allow_reproducible=allow_reproducible)
    if private:
        checks.append(clip_band_check(_number(summary.get("median_clip_fraction") if clip_fraction is None
                                              else clip_fraction)))
    return checks


def gate_checks(checks: list[Check]) -> list[Check]:
    """The checks that gate (every one but the advisory ones)."""
    return [check for check in checks if not check.advisory]


def all_passed(checks: list[Check]) -> bool:
    """True when every gating check ran and passed (advisory checks are ignored)."""
    return all(check.passed is True for check in gate_checks(checks))
