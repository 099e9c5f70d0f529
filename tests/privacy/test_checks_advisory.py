"""The fifth, advisory check: clipping in the healthy band (amber when not met, never fails the gate)."""

from __future__ import annotations

from dpcore.privacy import accounting
from dpcore.privacy.checks import CLIP_IN_BAND, HEALTHY_CLIP_BAND, all_passed, clip_band_check, gate_checks, run_checks
from dpcore.views.explain import TOPICS
from dpcore.views.report_html import checks_section
from dpcore.views.run_summary import check_line

SAMPLE_RATE, STEPS, DELTA = 1 / 13, 130, 1e-5


def _stored(*, clip: float | None) -> tuple[dict, dict]:
    sigma = accounting.noise_for_epsilon(target_epsilon=3.0, delta=DELTA, sample_rate=SAMPLE_RATE, steps=STEPS)
    config = {"private": True, "accountant": "rdp", "target_epsilon": 3.0, "target_delta": DELTA,
              "poisson_sampling": True, "reproducible": False}
    summary = {"final_epsilon": 2.999, "accountant": "rdp", "noise_multiplier": sigma, "sample_rate": SAMPLE_RATE,
               "steps": STEPS, "test_accuracy": 0.8, "mia_auc": 0.52}
    if clip is not None:
        summary["median_clip_fraction"] = clip
    return config, summary


def test_the_band_is_the_one_the_explanations_call_healthy():
    low, high = HEALTHY_CLIP_BAND
    assert f"{low * 100:.0f}-{high * 100:.0f} %" in "".join(TOPICS["clip_fraction"])


def test_clip_band_check_verdicts():
    assert clip_band_check(0.65).passed is True and clip_band_check(0.5).passed is True
    assert clip_band_check(1.0).passed is False and clip_band_check(0.1).passed is False
    assert clip_band_check(None).passed is None and clip_band_check(float("nan")).passed is None
    assert clip_band_check(1.0).advisory and clip_band_check(1.0).value_text() == "100% clipped (median step)"


def test_an_out_of_band_run_still_passes_the_gate_and_shows_amber():
    config, summary = _stored(clip=1.0)
    checks = run_checks(config, summary, max_auc=0.6, min_accuracy=0.55)
    (advice,) = [c for c in checks if c.name == CLIP_IN_BAND]
    assert advice.passed is False and advice.advisory and advice.to_dict()["advisory"] is True
    assert len(checks) == 5 and len(gate_checks(checks)) == 4  # budget, meaningful, attack, useful + the advice
    assert all_passed(checks)  # the gate's verdict is unchanged by the advisory check
    assert ":orange-badge" in check_line(advice) and ":red-badge" not in check_line(advice)
    html = checks_section(checks)
    assert '<span class="badge amber">advice</span>' in html and "all checks pass" in html
    assert '<span class="badge fail">' not in html


def test_an_in_band_run_passes_the_advice_and_a_baseline_has_none():
    config, summary = _stored(clip=0.7)
    (advice,) = [c for c in run_checks(config, summary) if c.name == CLIP_IN_BAND]
    assert advice.passed is True and advice.value == 0.7
    (advice,) = [c for c in run_checks(config, summary, clip_fraction=0.95) if c.name == CLIP_IN_BAND]
    assert advice.passed is False  # an explicit measurement overrides the summary
    baseline = run_checks({"private": False}, {"test_accuracy": 0.9})
    assert CLIP_IN_BAND not in [c.name for c in baseline]


def test_every_built_in_recipe_clip_bound_is_offered_by_the_sweep_form():
    from dpcore.config import RECIPES
    from dpcore.views.tradeoffs import CLIP_CHOICES

    assert {recipe["max_grad_norm"] for recipe in RECIPES.values()} <= set(CLIP_CHOICES)
