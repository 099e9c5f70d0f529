"""ε bands, the odds factor and number formatting (dpcore.privacy.bands): one vocabulary for every view."""

from __future__ import annotations

import math

import pytest

from dpcore.config import MAX_EPSILON
from dpcore.errors import ConfigError
from dpcore.privacy.bands import EPSILON_BANDS, epsilon_band, format_number, format_significant, odds_factor
from dpcore.views.explain import epsilon_sentence


def test_epsilon_bands_constant_and_lookup():
    assert EPSILON_BANDS == [(0, 1, "strong"), (1, 5, "moderate"), (5, 10, "weak"), (10, math.inf, "very weak")]
    assert [epsilon_band(e) for e in (0, 0.99, 1, 4.99, 5, 9.99, 10, 1e6)] == [
        "strong", "strong", "moderate", "moderate", "weak", "weak", "very weak", "very weak"]
    assert epsilon_band(math.inf) == "none (not private)"
    assert epsilon_band(float("nan")) == "unknown"
    with pytest.raises(ConfigError, match="got -1"):
        epsilon_band(-1)


def test_format_number_and_significant_digits():
    assert [format_number(v) for v in (None, math.nan, math.inf, "text", 0.5)] == ["-", "-", "∞", "text", "0.500"]
    assert format_number(math.inf, infinity="inf") == "inf"
    assert format_number(0.1234, ".1%") == "12.3%"
    assert [format_significant(v) for v in (2.7, 3.0149, 0.5, 123.4, 0.0)] == ["2.70", "3.01", "0.500", "123", "0"]
    assert format_significant(math.inf) == "∞"


@pytest.mark.parametrize("epsilon", [709.0, 710.0, 800.0, MAX_EPSILON])
def test_odds_factor_and_epsilon_sentence_survive_epsilons_past_float_overflow(epsilon):
    """e^ε overflows a float above ε ≈ 709.8, yet the config allows ε up to MAX_EPSILON (1000)."""
    text = odds_factor(epsilon)
    exponent = int(text.split("e+")[1]) if "e+" in text else int(text.removeprefix("10^"))
    assert exponent == math.floor(epsilon / math.log(10))  # the right power of ten
    assert text in epsilon_sentence(epsilon, 1e-5)


def test_odds_factor_small_and_special_values():
    assert odds_factor(1.0) == "2.7"
    assert odds_factor(5.0) == "148"
    assert odds_factor(10.0) == "2.2e+04"
    assert odds_factor(math.inf) == "∞"
    assert odds_factor(math.nan) == "-"
