"""Budget planner: what a training run would cost in privacy, before training anything.

The plan's inputs are kept by ``pages.state`` (session and URL: a copied link reopens the same plan); its numbers,
texts and decisions are ``dpcore.views.planner`` (the trainer's sampling and accountants, so a run with these
settings reports the same ε). "Use these settings" stores them under ``planner_handoff`` for the Train page.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from dpcore.engine import data
from dpcore.errors import DPExplorerError
from dpcore.privacy import accounting, tradeoff
from dpcore.privacy.accounting import Sampling
from dpcore.privacy.bands import epsilon_band
from dpcore.views import planner as plan
from dpcore.views import plots
from dpcore.views.explain import BOUND_CAPTION, attack_bound_sentence, epsilon_sentence, explain
from pages import state, ui

HANDOFF_KEY = "planner_handoff"
SETTINGS = state.PageState(key="planner_settings", widget_prefix="planner_", defaults=lambda: dict(plan.DEFAULTS))
epsilon_text, sigma_text = plan.epsilon_text, plan.sigma_text


# ---------------------------------------------------------------------- settings
def _settings() -> dict[str, Any]:
    """The plan; on a session's first visit it is read from the URL, and what did not parse is reported."""
    if not SETTINGS.first_visit:
        return SETTINGS.settings()
    settings, ignored = SETTINGS.settings(), []
    for name, parse in plan.PARSERS.items():
        low, high = plan.BOUNDS.get(name, (None, None))
        try:
            value = state.url_value(plan.URL_NAMES.get(name, name), parse, choices=plan.CHOICES.get(name),
                                    low=low, high=high)
        except state.BadUrlValue as err:
            ignored.append(str(err))
            continue
        if value is not None:
            settings[name] = value
    ignored += plan.fit_dataset(settings, member_counts=data.member_counts(), n_given=state.url_value("n") is not None)
    SETTINGS.load(settings)
    if ignored:
        st.warning(f"Ignored link parameters that are not valid: {', '.join(ignored)}. Defaults are used for them.")
    return settings


def _dataset_picked() -> None:
    """Fill N with the picked dataset's member count."""
    name = SETTINGS.widget_value("dataset")
    if name != plan.CUSTOM:
        SETTINGS.set("n", data.member_counts()[name])


def _n_edited() -> None:
    """A hand-typed N that no longer matches the picked dataset makes the picker say 'custom'."""
    name = SETTINGS.widget_value("dataset")
    if name != plan.CUSTOM and data.member_counts().get(name) != SETTINGS.widget_value("n"):
        SETTINGS.set("dataset", plan.CUSTOM)


# ---------------------------------------------------------------------- sections
def _number(field: str, **kwargs: Any) -> Any:
    """Number input of ``field``; out-of-bounds values are refused inline (widget min/max: silently, in the browser)."""
    spec, settings = plan.NUMBER_INPUTS[field], SETTINGS.settings()
    kept, value = settings[field], SETTINGS.bind(st.number_input, spec["label"], field, step=spec["step"],
                                                 format=spec.get("format"), help=spec["help"], **kwargs)
    if refused := plan.refused_text(field, value, kept=kept):
        settings[field] = kept
        st.error(refused, icon=":material/error:")
    return settings[field]


def _inputs(settings: dict[str, Any]) -> None:
    counts = data.member_counts()
    with st.container(border=True):
        first = st.columns(4)
        with first[0]:
            SETTINGS.bind(st.selectbox, "Dataset", "dataset", options=[plan.CUSTOM, *counts], help=plan.HELP["dataset"],
                          on_change=_dataset_picked, format_func=lambda name: "Custom N" if name == plan.CUSTOM
                          else f"{name} ({counts[name]:,} members)")
        for column, field in zip(first[1:], ("n", "epochs", "target_delta"), strict=True):
            with column:
                _number(field, on_change=_n_edited if field == "n" else None)
        second = st.columns(4)
        with second[0]:
            size_by = SETTINGS.bind(st.radio, "Batch set by", "size_by", options=plan.CHOICES["size_by"],
                                    horizontal=True, format_func=plan.SIZE_BY_LABELS.get, help=explain("sampling"))
        sized = "batch_size" if size_by == "batch" else "sample_rate"
        for column, field in zip(second[1:], (sized, "noise_multiplier", "target_epsilon"), strict=True):
            with column:
                _number(field)
    state.sync_url(plan.url_params(settings))


def _headline(settings: dict[str, Any], sampling: Sampling, steps: int) -> tuple[dict[str, float], Callable[[], None]]:
    """Epsilon from RDP and GDP as metric cards; returns them and a function that fills in PRV (the slow one).

    The page calls that function last, so everything else is on screen while PRV computes.
    """
    sigma, delta = float(settings["noise_multiplier"]), float(settings["target_delta"])
    st.subheader(f"ε after {settings['epochs']} epochs at σ = {sigma:g}")
    left, right = st.columns([3, 2.2])
    cards = left.columns(3)
    schedule = {"sigma": sigma, "sample_rate": sampling.sample_rate, "steps": steps, "delta": delta}
    eps = {"rdp": plan.accountant_epsilon(accountant="rdp", **schedule)}
    eps["gdp"], gdp_problem = plan.epsilon_or_problem(accountant="gdp", **schedule)
    titles = accounting.ACCOUNTANT_TITLES
    cards[0].metric("RDP ε", epsilon_text(eps["rdp"]), border=True,
                    help=titles["rdp"] + ". The Train page's default accountant.")
    prv_card = cards[1].empty()
    prv_card.metric("PRV ε", "…", help=titles["prv"], border=True)
    cards[2].metric("GDP ε", epsilon_text(eps["gdp"]) if gdp_problem is None else "n/a", help=titles["gdp"],
                    border=True)
    cards[0].caption(f"{epsilon_band(eps['rdp'])} guarantee")
    prv_note = cards[1].empty()
    cards[2].caption(f":material/warning: {gdp_problem or 'approximation; can underestimate ε'}")
    chart = right.empty()
    with chart:
        st.info("PRV is computing… the chart appears when it is done.", icon=":material/hourglass_top:")
    with left:
        st.markdown(epsilon_sentence(eps["rdp"], delta) + " (RDP)")
        with st.expander("Why three numbers? Which one to report?"):
            st.markdown(explain("accountants"))
            st.markdown(explain("gdp_caveat"))

    def fill_prv() -> None:
        eps["prv"], prv_problem = plan.epsilon_or_problem(accountant="prv", **schedule)
        if prv_problem:
            prv_note.caption(f":material/warning: {prv_problem}")
        prv_card.metric("PRV ε", epsilon_text(eps["prv"]) if math.isfinite(eps["prv"]) else "n/a",
                        help=titles["prv"], border=True)
        if math.isfinite(eps["prv"]) and eps["prv"] == eps["rdp"]:
            prv_note.caption("PRV gave up at this large ε; RDP's value is shown")
        table = pd.DataFrame({"accountant": ["rdp", "prv", "gdp"], "epsilon": [eps["rdp"], eps["prv"], eps["gdp"]]})
        chart.plotly_chart(plots.accountant_comparison_chart(table, title="Accountants compared"),
                           key="planner_chart_accountants")

    return eps, fill_prv


def _attack_limit_section(settings: dict[str, Any], sampling: Sampling, steps: int, eps: dict[str, float]) -> None:
    """The most any membership attack could achieve on a model trained with this plan, before any training."""
    sigma = float(settings["noise_multiplier"])
    bound = tradeoff.tradeoff_bound(noise_multiplier=sigma, sample_rate=sampling.sample_rate, steps=steps)
    st.subheader("The most any membership attack could achieve")
    left, middle, right = st.columns([1.2, 2, 2])
    left.metric("Found at 1 % FPR, at most", f"{100 * bound.headline():.3g} %", border=True,
                help=plan.HELP["bound"])
    left.caption(f"next to RDP ε = {epsilon_text(eps['rdp'])}; computed in {bound.seconds:.2f} s")
    middle.plotly_chart(plots.roc_chart([], bound=bound, bound_epsilon=eps["rdp"], title="Attack limit (linear)",
                                        width=300), key="planner_chart_bound")
    right.plotly_chart(plots.roc_chart([], bound=bound, bound_epsilon=eps["rdp"], log_scale=True, width=300,
                                       title="Attack limit (log-log)"), key="planner_chart_bound_log")
    st.caption(attack_bound_sentence(bound_tpr=bound.headline()) + " " + BOUND_CAPTION)


def _epochs_section(settings: dict[str, Any], sampling: Sampling, eps: dict[str, float]) -> None:
    shown, caption = plan.epoch_curves(settings, sampling, epsilon=eps["rdp"])
    st.plotly_chart(plots.epsilon_vs_epochs_chart(shown, target_epsilon=float(settings["target_epsilon"]),
                                                  delta=float(settings["target_delta"]),
                                                  title="ε over the epochs, for several noise multipliers"),
                    key="planner_chart_epochs")
    st.caption(caption)


def _inverse_section(settings: dict[str, Any], sampling: Sampling, steps: int) -> float | None:
    target, delta = float(settings["target_epsilon"]), float(settings["target_delta"])
    st.subheader(f"Noise needed to end at ε = {target:g}")
    left, right = st.columns([1, 2.2])
    sigma_needed: float | None = None
    with left:
        try:
            sigma_needed, reached = plan.sigma_needed(target=target, sample_rate=sampling.sample_rate, steps=steps,
                                                      delta=delta)
        except DPExplorerError as err:
            st.error(str(err))
        else:
            st.metric(f"σ needed for ε ≤ {target:g}", sigma_text(sigma_needed), border=True,
                      help=plan.HELP["sigma_needed"])
            st.caption(f"Check: with σ = {sigma_text(sigma_needed)}, RDP ε = {reached:.4f} after "
                       f"{steps:,} steps at δ = {delta:g}.")
    with right:
        try:
            table = plan.sigma_table(sample_rate=sampling.sample_rate, steps=steps, delta=delta)
        except DPExplorerError as err:
            table = None
            st.info(f"No noise curve for targets {plan.TARGET_RANGE[0]:g}-{plan.TARGET_RANGE[1]:g}: {err}")
        st.plotly_chart(plots.sigma_for_epsilon_chart(table, title="Noise needed for each target ε"),
                        key="planner_chart_sigma")
        st.caption(f"RDP, {steps:,} steps at δ = {delta:g}. More noise buys a smaller ε; halving ε roughly "
                   "doubles the noise needed once ε is small.")
    return sigma_needed


def _handoff(settings: dict[str, Any], sampling: Sampling, eps: dict[str, float], sigma_needed: float | None) -> None:
    st.subheader("Train with these settings")
    options = plan.handoff_options(settings, epsilon=eps["rdp"], sigma_needed=sigma_needed)
    SETTINGS.bind(st.radio, "Privacy budget to send", "handoff_mode", options=list(options), format_func=options.get)
    sent = plan.handoff(settings, sampling, epsilon=eps)

    def store() -> None:
        st.session_state[HANDOFF_KEY] = {**sent, "epsilon": dict(eps)}  # with PRV, filled in after this is drawn

    columns = st.columns([2.2, 1.4, 2.1])  # wide enough for the button's label at 1400 px
    columns[0].button("Use these settings on the Train page", type="primary", on_click=store,
                      icon=":material/send:", key="planner_use", help=plan.HELP["use"])
    with columns[1]:
        ui.page_link("pages/train.py", label="Open the Train page", icon=":material/model_training:")
    stored = st.session_state.get(HANDOFF_KEY)
    if stored is not None:
        columns[2].caption(plan.handoff_caption(stored, sent["config"]))
    state.sync_url(plan.url_params(settings))


# ---------------------------------------------------------------------- page
def main() -> None:
    st.title("Budget planner")
    st.caption(plan.INTRO)
    settings = _settings()
    _inputs(settings)
    try:
        sampling = plan.sampling_of(settings)
    except DPExplorerError as err:
        st.error(f"{err}.", icon=":material/error:")
        st.stop()
    steps = sampling.steps(settings["epochs"])
    st.caption(plan.sampling_caption(sampling, settings))
    for level, message in plan.guidance_notes(settings, sampling):
        (st.warning if level == "warning" else st.info)(message, icon=":material/warning:")
    try:
        eps, fill_prv = _headline(settings, sampling, steps)
        _attack_limit_section(settings, sampling, steps, eps)
        _epochs_section(settings, sampling, eps)
        sigma_needed = _inverse_section(settings, sampling, steps)
        _handoff(settings, sampling, eps, sigma_needed)
        fill_prv()
    except DPExplorerError as err:
        st.error(str(err), icon=":material/error:")


ui.route_through_app()
main()
