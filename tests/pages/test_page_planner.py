"""Budget planner page (AppTest): numbers agree with dpcore.privacy.accounting, inputs react, bad input is explained."""

from __future__ import annotations

import json
import math

import pytest
from streamlit.testing.v1 import AppTest

from dpcore.engine import data
from dpcore.privacy import accounting
from dpcore.privacy.deployments import DEPLOYMENTS

PAGE = "../../pages/planner.py"
TIMEOUT = 60  # the first run imports opacus/torch and computes PRV cold
STEPS = 6 * 15  # digits recipe: 1437 members in batches of 256 (q = 1/6), 15 epochs


def epsilon_text(eps: float) -> str:
    """The page's epsilon format: 3 significant digits with trailing zeros, whole numbers from 1000 up."""
    if eps >= 1e4:  # a power of ten, so the card never cuts it off: '1.2 × 10⁴'
        mantissa, exponent = f"{eps:.1e}".split("e")
        return f"{mantissa} × 10" + str(int(exponent)).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    if eps >= 1000:
        return f"{eps:,.0f}"
    decimals = max(0, 2 - math.floor(math.log10(eps)))
    return f"{eps:.{decimals}f}"


def metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def widget(at: AppTest, kind: str, field: str):
    """The planner's widget of setting ``field`` (its key gains a ``~N`` suffix once the page replaced it)."""
    return next(element for element in getattr(at, kind) if element.key.split("~")[0] == f"planner_{field}")


def set_inputs(at: AppTest, **values) -> AppTest:
    for key, value in values.items():
        widget(at, "number_input", key).set_value(value)
    return at.run()


@pytest.fixture
def page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def sigma_of(at: AppTest) -> float:
    return widget(at, "number_input", "noise_multiplier").value


def test_defaults_show_three_accountants_matching_epsilon_for(page):
    shown, sigma = metrics(page), sigma_of(page)
    sampling = accounting.sampling_for(n=1437, batch_size=256)  # digits' members, default batch
    steps = sampling.steps(15)
    assert sampling.sample_rate == pytest.approx(1 / 6) and steps == STEPS
    for name in ("rdp", "prv", "gdp"):
        eps = accounting.epsilon_for(noise_multiplier=sigma, sample_rate=sampling.sample_rate, steps=steps,
                                     delta=1e-5, accountant=name)
        assert shown[f"{name.upper()} ε"] == epsilon_text(eps)
    assert len(page.get("plotly_chart")) == 5  # accountants, attack limit (linear, log), ε over epochs, σ needed
    assert not page.error
    assert page.query_params["noise_multiplier"] == str(sigma) and page.query_params["n"] == "1437"


def test_attack_limit_before_training(page):
    """The trade-off bound of the planned schedule, as 'at most X % at 1 % FPR', next to ε; more noise, lower."""
    from dpcore.privacy import tradeoff

    label = "Found at 1 % FPR, at most"
    sigma = sigma_of(page)
    bound = tradeoff.tradeoff_bound(noise_multiplier=sigma, sample_rate=1 / 6, steps=STEPS)
    assert metrics(page)[label] == f"{100 * bound.headline():.3g} %"
    before = float(metrics(page)[label].rstrip(" %"))
    set_inputs(page, noise_multiplier=sigma * 2)
    assert 1.0 < float(metrics(page)[label].rstrip(" %")) < before


def test_changing_sigma_changes_the_numbers(page):
    before, sigma = metrics(page), sigma_of(page)
    set_inputs(page, noise_multiplier=sigma / 2)
    after = metrics(page)
    for name in ("RDP ε", "PRV ε", "GDP ε"):
        assert float(after[name]) > float(before[name])  # less noise, more epsilon
    eps = accounting.epsilon_for(noise_multiplier=sigma / 2, sample_rate=1 / 6, steps=STEPS, delta=1e-5)
    assert after["RDP ε"] == epsilon_text(eps)
    assert page.query_params["noise_multiplier"] == str(sigma / 2)


def test_inverse_sigma_meets_the_target(page):
    set_inputs(page, target_epsilon=2.0)
    label = next(label for label in metrics(page) if label.startswith("σ needed"))
    sigma = float(metrics(page)[label])
    sampling = accounting.sampling_for(n=1437, batch_size=256)
    eps = accounting.epsilon_for(noise_multiplier=sigma, sample_rate=sampling.sample_rate, steps=STEPS, delta=1e-5)
    assert 1.99 <= eps <= 2.0  # meets the target, and is not wastefully large
    calibrated = accounting.noise_for_epsilon(target_epsilon=2.0, delta=1e-5, sample_rate=sampling.sample_rate,
                                              steps=STEPS)
    assert sigma == pytest.approx(calibrated, rel=2e-3)  # what training would calibrate


def test_delta_at_or_above_one_over_n_warns(page):
    assert not page.warning
    set_inputs(page, n=500, target_delta=0.01)
    warnings = " ".join(warning.value for warning in page.warning)
    assert "1/N" in warnings and "0.01" in warnings
    assert not page.exception


def test_batch_larger_than_n_is_a_clear_message(page):
    set_inputs(page, batch_size=5000)
    assert not page.exception
    assert len(page.error) == 1
    message = page.error[0].value
    assert "5000" in message and "1437" in message and "at most" in message
    assert not page.metric  # nothing computed from an impossible plan


def test_a_refused_value_is_explained_under_its_input_and_the_plan_keeps_the_last_good_one(page):
    before = metrics(page)["RDP ε"]
    assert widget(page, "number_input", "noise_multiplier").min is None  # the browser refuses nothing silently
    set_inputs(page, noise_multiplier=0.01)
    assert not page.exception
    errors = " ".join(error.value for error in page.error)
    assert "Noise multiplier σ" in errors and "0.05" in errors and "0.01 was entered" in errors
    assert "keeps 2.7" in errors
    assert metrics(page)["RDP ε"] == before and page.query_params["noise_multiplier"] == "2.7"
    set_inputs(page, epochs=5000)
    assert "**Epochs** must be between 1 and 1000" in " ".join(error.value for error in page.error)
    set_inputs(page, noise_multiplier=1.0, epochs=15)
    assert not page.error and page.query_params["noise_multiplier"] == "1.0"


def test_dataset_picker_fills_n_and_sample_rate_mode(page):
    page.selectbox(key="planner_dataset").set_value("breast-cancer").run()
    assert widget(page, "number_input", "n").value == data.member_counts()["breast-cancer"] == 455
    page.radio(key="planner_size_by").set_value("sample_rate").run()
    set_inputs(page, sample_rate=0.1)
    caption = " ".join(caption.value for caption in page.caption)
    assert "batch size B = 46" in caption and "q = 1/10" in caption  # round(0.1 * 455), then 1/ceil(455/46)
    assert "sample_rate" in page.query_params and "batch_size" not in page.query_params


def test_url_parameters_restore_a_plan_and_bad_ones_are_reported():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.query_params.update({"dataset": "custom", "n": "60000", "batch_size": "512", "epochs": "5",
                            "noise_multiplier": "banana", "sample_rate": "7"})
    at.run()
    assert not at.exception
    assert at.number_input(key="planner_n").value == 60000
    warning = " ".join(warning.value for warning in at.warning)
    assert "noise_multiplier=banana" in warning and "sample_rate=7" in warning  # unparsable, out of range
    eps = accounting.epsilon_for(noise_multiplier=sigma_of(at), sample_rate=1 / math.ceil(60000 / 512),
                                 steps=5 * math.ceil(60000 / 512), delta=1e-5)
    assert metrics(at)["RDP ε"] == epsilon_text(eps)

    named = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    named.query_params["dataset"] = "breast-cancer"  # no n: the dataset's member count
    named.run()
    assert named.number_input(key="planner_n").value == 455 and not named.warning


def test_use_on_train_page_stores_the_handoff(page):
    page.radio(key="planner_handoff_mode").set_value("target_epsilon").run()
    page.button(key="planner_use").click().run()
    handoff = page.session_state["planner_handoff"]
    assert handoff["config"] == {"dataset": "digits", "batch_size": 256, "epochs": 15, "target_delta": 1e-5,
                                 "accountant": "rdp", "target_epsilon": 3.0}
    assert handoff["n"] == 1437 and handoff["steps"] == STEPS
    assert set(handoff["epsilon"]) == {"rdp", "prv", "gdp"}


@pytest.mark.parametrize("inputs", [{"noise_multiplier": 0.3}, {"target_delta": 0.5}])
def test_an_accountant_without_an_answer_leaves_the_rest_of_the_page(page, inputs):
    """GDP (and PRV) have no answer for some schedules; RDP, the charts and the hand-off must stay."""
    set_inputs(page, **inputs)
    assert not page.exception and not page.error
    shown = metrics(page)
    assert shown["GDP ε"] == "n/a" and shown["RDP ε"] not in ("n/a", "-")
    assert any("GDP has no answer for this schedule" in caption.value for caption in page.caption)
    assert page.button(key="planner_use") is not None
    chart_ids = " ".join(chart.proto.id for chart in page.get("plotly_chart"))
    assert "planner_chart_epochs" in chart_ids and "planner_chart_accountants" in chart_ids


def test_charts_carry_the_reference_points_of_real_deployments(page):
    """Issue 12 §5: published ε drawn on the planner's ε axes by default, explained in a caption."""
    specs = {chart.proto.id: json.loads(chart.proto.spec) for chart in page.get("plotly_chart")}

    def marks(fragment: str) -> list[str]:
        spec = next(spec for key, spec in specs.items() if fragment in key)
        return [shape["name"] for shape in spec["layout"].get("shapes", [])
                if shape.get("name", "").startswith("reference: ")]

    assert marks("planner_chart_sigma")  # σ needed for targets across decades: several deployments in range
    labels = {ref.label for ref in DEPLOYMENTS}
    assert {name.removeprefix("reference: ") for name in marks("planner_chart_sigma")} <= labels
    assert any("Dotted purple lines" in caption.value for caption in page.caption)
