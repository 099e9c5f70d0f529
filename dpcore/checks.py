"""The seed's four privacy/utility checks, as data: each with its threshold, measured value and verdict.

Used by the train page (pass/fail badges), reports and ``python -m dpcore check``
(a privacy gate for users' CI). Thresholds default to the seed's test suite.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

WITHIN_BUDGET = "epsilon within budget"
MEANINGFUL_EPSILON = "meaningful epsilon"
ATTACK_NEAR_CHANCE = "membership attack near chance"
USEFUL = "model is useful"


@dataclass(frozen=True)
class Check:
    """One check: ``passed`` is None when it could not be evaluated (e.g. no attack was run)."""

    name: str
    description: str
    value: float | None
    threshold: float
    passed: bool | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def value_text(self, *, epsilon_format: str = ".3f") -> str:
        """The measured value as people read it: '70.5%', 'AUC 0.535', 'ε = 3.000', 'ε = ∞' or 'not measured'."""
        value = self.value
        if value is None or math.isnan(value):
            return "not measured"
        if self.name == USEFUL:
            return f"{value:.1%}"
        if self.name == ATTACK_NEAR_CHANCE:
            return f"AUC {value:.3f}"
        return "ε = ∞" if math.isinf(value) else f"ε = {value:{epsilon_format}}"


def seed_checks(*, final_epsilon: float, target_epsilon: float | None, test_accuracy: float,
                mia_auc: float | None, max_epsilon: float = 10.0, max_auc: float = 0.60,
                min_accuracy: float = 0.55, budget_slack: float = 1.1) -> list[Check]:
    """The four checks: epsilon within budget, epsilon meaningful, attack near chance, model useful.

    ``final_epsilon`` is inf for a non-private run, which fails both epsilon checks
    on purpose: a baseline has no guarantee.
    """
    def verdict(value: float | None, ok: bool) -> bool | None:
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else ok

    checks = []
    if target_epsilon is not None:
        bound = budget_slack * target_epsilon
        checks.append(Check(WITHIN_BUDGET,
                            f"epsilon spent is at most {budget_slack:g} x the target ({target_epsilon:g})",
                            final_epsilon, bound, verdict(final_epsilon, final_epsilon <= bound)))
    checks.append(Check(MEANINGFUL_EPSILON, f"epsilon spent is below {max_epsilon:g}",
                        final_epsilon, max_epsilon, verdict(final_epsilon, final_epsilon < max_epsilon)))
    checks.append(Check(ATTACK_NEAR_CHANCE, f"loss-threshold attack AUC below {max_auc:g}",
                        mia_auc, max_auc, verdict(mia_auc, mia_auc is not None and mia_auc < max_auc)))
    checks.append(Check(USEFUL, f"test accuracy above {min_accuracy:g}",
                        test_accuracy, min_accuracy, verdict(test_accuracy, test_accuracy > min_accuracy)))
    return checks


def all_passed(checks: list[Check]) -> bool:
    """True when every check ran and passed."""
    return all(check.passed is True for check in checks)
