"""How people read an ε and a number: the ε bands, the odds factor e^ε, and number formatting.

One vocabulary for charts (band shading), explanations, reports, pages and the CLI, so they
all say "moderate" for ε = 3 and print ``∞`` for a non-private run the same way.

>>> epsilon_band(3.0), format_number(float("inf")), format_significant(2.7), odds_factor(2.0)
('moderate', '∞', '2.70', '7.4')
"""

from __future__ import annotations

import math
from typing import Any

from dpcore.errors import ConfigError

#: Rough reading of an epsilon value: (lower, upper, name), lower bound inclusive.
EPSILON_BANDS: list[tuple[float, float, str]] = [
    (0.0, 1.0, "strong"),
    (1.0, 5.0, "moderate"),
    (5.0, 10.0, "weak"),
    (10.0, math.inf, "very weak"),
]


def epsilon_band(eps: float) -> str:
    """Name of the EPSILON_BANDS band that ``eps`` falls in: 'strong', 'moderate', 'weak' or 'very weak'.

    ``inf`` (a non-private run) gives 'none (not private)' and NaN gives 'unknown'; a negative
    ε raises ConfigError.

    >>> epsilon_band(0.5), epsilon_band(1.0), epsilon_band(8), epsilon_band(50)
    ('strong', 'moderate', 'weak', 'very weak')
    """
    eps = float(eps)
    if math.isnan(eps):
        return "unknown"
    if math.isinf(eps) and eps > 0:
        return "none (not private)"
    if eps < 0:
        raise ConfigError(f"epsilon must be >= 0, got {eps!r}; epsilon is a privacy loss and is never negative")
    for lower, upper, name in EPSILON_BANDS:
        if lower <= eps < upper:
            return name
    return EPSILON_BANDS[-1][2]


def format_number(value: Any, spec: str = ".3f", *, infinity: str = "∞") -> str:
    """A number for people: '-' when missing or NaN, ``infinity`` when infinite, else ``format(value, spec)``.

    Strings (and ``spec == "s"``) pass through; a value the spec cannot format is shown as is.

    >>> format_number(float("inf")), format_number(None), format_number(0.12345, ".1%")
    ('∞', '-', '12.3%')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isinf(value):
        return infinity
    if spec == "s" or isinstance(value, str):
        return str(value)
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def format_significant(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits, trailing zeros kept (unlike ``.3g``): 2.7 -> '2.70'.

    Numbers a person compares side by side (three accountants' ε) then line up.
    Missing and infinite values as in ``format_number``.

    >>> format_significant(2.7), format_significant(3.0149), format_significant(0.5), format_significant(123.4)
    ('2.70', '3.01', '0.500', '123')
    """
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value) or value == 0:
        return format_number(value, "g")
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


_SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def format_compact(value: float, digits: int = 2) -> str:
    """``value`` in scientific notation people read, ``digits`` significant digits: 1.2e6 -> '1.2 × 10⁶'.

    Missing, NaN and infinite values as in ``format_number``; 0 gives '0'.

    >>> format_compact(1_201_345.0), format_compact(3265.8, 3), format_compact(2e-7), format_compact(0.0)
    ('1.2 × 10⁶', '3.27 × 10³', '2.0 × 10⁻⁷', '0')
    """
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return format_number(value, "g")
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:.{max(1, digits) - 1}e}".split("e")
    return f"{mantissa} × 10{str(int(exponent)).translate(_SUPERSCRIPTS)}"


def format_big(value: Any, spec: str = ".2f", *, compact_from: float = 1e4) -> str:
    """A number for a narrow card: ``format_number(value, spec)`` below 1000, whole with thousands
    separators up to ``compact_from`` ('3,266'), then ``format_compact`` ('1.2 × 10⁶'); never long.

    >>> format_big(2.5), format_big(3265.8), format_big(1.2e6), format_big(float("inf")), format_big(None)
    ('2.50', '3,266', '1.2 × 10⁶', '∞', '-')
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return format_number(value, spec)
    if abs(value) >= compact_from:
        return format_compact(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return format_number(value, spec)


def odds_factor(epsilon: float) -> str:
    """e^ε, the most an attacker's odds can move, as text: '2.7', '148', '2.69e+43', '10^434' (for huge ε).

    Computed in log space, so any ε (the config allows up to 1000, past where e^ε overflows a
    float at about 709.8) gives text instead of an OverflowError; ∞ for ε = ∞, '-' for NaN.

    >>> odds_factor(1.0), odds_factor(10.0), odds_factor(1000.0)
    ('2.7', '2.2e+04', '10^434')
    """
    epsilon = float(epsilon)
    if math.isnan(epsilon):
        return "-"
    if math.isinf(epsilon):
        return "∞" if epsilon > 0 else "0"
    if epsilon < 700:  # math.exp(709.8) is the largest finite float
        factor = math.exp(epsilon)
        return f"{factor:.1f}" if factor < 100 else f"{factor:.3g}"
    return f"10^{math.floor(epsilon / math.log(10))}"


__all__ = ["EPSILON_BANDS", "epsilon_band", "format_big", "format_compact", "format_number", "format_significant",
           "odds_factor"]
