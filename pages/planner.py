"""Budget planner: what a training run would cost in privacy, before training anything.

Inputs (dataset size, batch size or sample rate, epochs, delta, noise multiplier, target
epsilon) live under one plain session key (``planner_settings``) and in the URL, so they
survive page switches and a copied link reopens the same plan. The numbers come from
``dpcore.privacy.accounting`` with the trainer's sampling (``sampling_for``), so a run with these
settings reports the same epsilon; charts come from ``dpcore.views.plots``. "Use these settings"
stores them under ``planner_handoff`` for the Train page.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import streamlit as st

from dpcore.config import TrainConfig, guidance, recipe_for
from dpcore.errors import DPExplorerError
from dpcore.privacy import accounting, tradeoff
from dpcore.views import plots
from dpcore.views.explain import BOUND_CAPTION, attack_bound_sentence, epsilon_sentence, explain, format_significant
from pages import ui

SETTINGS_KEY = "planner_settings"
HANDOFF_KEY = "planner_handoff"
CUSTOM = "custom"
CURVE_SIGMAS = (0.5, 0.8, 1.0, 1.5, 2.0, 4.0, 8.0)
CURVE_CAP = (2.5, 12.0)  # curves ending above max(2.5 x the larger of target and your epsilon, 12) are left out
TARGET_RANGE = (0.5, 16.0)
DEFAULTS: dict[str, Any] = {  # the digits recipe's batch and epochs, and a sigma that lands near epsilon 3
    "dataset": "digits", "n": 1437, "size_by": "batch", "batch_size": recipe_for("digits")["batch_size"],
    "sample_rate": 0.01, "epochs": recipe_for("digits")["epochs"], "target_delta": 1e-5, "noise_multiplier": 2.7,
    "target_epsilon": 3.0, "handoff": "noise_multiplier",
}
# setting -> (widget key, parser of its URL text); the URL uses TrainConfig's field names where they exist
FIELDS: dict[str, tuple[str, Any]] = {
    "dataset": ("planner_dataset", str),
    "n": ("planner_n", int),
    "size_by": ("planner_size_by", str),
    "batch_size": ("planner_batch_size", int),
    "sample_rate": ("planner_sample_rate", float),
    "epochs": ("planner_epochs", int),
    "target_delta": ("planner_target_delta", float),
    "noise_multiplier": ("planner_noise_multiplier", float),
    "target_epsilon": ("planner_target_epsilon", float),
    "handoff": ("planner_handoff_mode", str),
}
# numeric settings -> (min, max) of their widgets; URL values outside are ignored (a widget would refuse them)
BOUNDS: dict[str, tuple[float, float | None]] = {
    "n": (1, 10**9), "batch_size": (1, None), "sample_rate": (1e-7, 1.0), "epochs": (1, 1000),
    "target_delta": (1e-12, 0.5), "noise_multiplier": (0.05, 1000.0), "target_epsilon": (0.01, 1000.0),
}
CHOICES = {"size_by": ("batch", "sample_rate"), "handoff": ("noise_multiplier", "target_epsilon")}


# ---------------------------------------------------------------------- cached maths (keyed on the inputs)
@st.cache_data(show_spinner=False, max_entries=1024)
def _member_counts() -> dict[str, int]:
    return accounting.member_counts()


@st.cache_data(show_spinner=False, max_entries=1024)
def _epsilon(accountant: str, sigma: float, sample_rate: float, steps: int, delta: float) -> float:
    if accountant == "rdp":  # the same number as epsilon_for(accountant="rdp"), reusing cached orders
        return accounting.rdp_epsilon(noise_multiplier=sigma, sample_rate=sample_rate, steps=steps, delta=delta)
    return accounting.epsilon_for(noise_multiplier=sigma, sample_rate=sample_rate, steps=steps, delta=delta,
                                  accountant=accountant)


@st.cache_data(show_spinner=False, max_entries=1024)
def _curve(sigma: float, n: int, batch_size: int, epochs: int, delta: float) -> pd.DataFrame:
    sampling = accounting.sampling_for(n=n, batch_size=batch_size)
    return accounting.rdp_epsilon_by_epoch(noise_multipliers=[sigma], sampling=sampling, epochs=epochs, delta=delta)


@st.cache_data(show_spinner=False, max_entries=1024)
def _sigma_for(target: float, sample_rate: float, steps: int, delta: float) -> float:
    return accounting.rdp_noise_for_epsilon(target_epsilon=target, delta=delta, sample_rate=sample_rate, steps=steps)


@st.cache_data(show_spinner=False, max_entries=256)
def _sigma_table(sample_rate: float, steps: int, delta: float) -> pd.DataFrame:
    return accounting.sigma_curve(sample_rate=sample_rate, steps=steps, delta=delta, epsilon_range=TARGET_RANGE)


# ---------------------------------------------------------------------- formatting
def epsilon_text(eps: float) -> str:
    """Epsilon for display: 3 significant digits like the chart labels, whole numbers from 1000 up."""
    if isinstance(eps, float) and math.isfinite(eps) and eps >= 1000:
        return ui.fmt(eps, ",.0f")
    return format_significant(eps)


def sigma_text(sigma: float) -> str:
    """A noise multiplier rounded *up* to 3 decimals, so the value shown still meets the target."""
    return f"{math.ceil(sigma * 1000 - 1e-9) / 1000:.3f}"


# ---------------------------------------------------------------------- settings: session + URL
def _from_url(defaults: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Defaults overridden by the URL's query parameters; the parameters that did not parse."""
    settings, ignored = dict(defaults), []
    for name, (_, parse) in FIELDS.items():
        if name not in st.query_params:
            continue
        text = st.query_params[name]
        try:
            value = parse(text)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(text)
            if name in CHOICES and value not in CHOICES[name]:
                raise ValueError(text)
            low, high = BOUNDS.get(name, (None, None))
            if (low is not None and value < low) or (high is not None and value > high):
                raise ValueError(text)
        except ValueError:
            ignored.append(f"{name}={text}")
            continue
        settings[name] = value
    counts = _member_counts()
    if settings["dataset"] != CUSTOM and settings["dataset"] not in counts:
        ignored.append(f"dataset={settings['dataset']}")
        settings["dataset"] = CUSTOM
    if settings["dataset"] != CUSTOM:
        if "n" not in st.query_params:
            settings["n"] = counts[settings["dataset"]]
        elif settings["n"] != counts[settings["dataset"]]:
            settings["dataset"] = CUSTOM  # an N of its own: say so rather than show a dataset it does not match
    return settings, ignored


def _settings() -> dict[str, Any]:
    """The plain settings dict (created from the URL on the first visit) with its values copied into the widgets."""
    if SETTINGS_KEY not in st.session_state:
        settings, ignored = _from_url(DEFAULTS)
        st.session_state[SETTINGS_KEY] = settings
        if ignored:
            st.warning(f"Ignored link parameters that are not valid: {', '.join(ignored)}. Defaults are used "
                       "for them.", icon=":material/link_off:")
    settings = st.session_state[SETTINGS_KEY]
    for name, (key, _) in FIELDS.items():
        if key not in st.session_state:  # widget state is dropped when the user visits another page
            st.session_state[key] = settings[name]
    return settings


def _save(settings: dict[str, Any]) -> None:
    """Copy the widgets' values back into the plain settings and mirror them in the URL."""
    for name, (key, _) in FIELDS.items():
        settings[name] = st.session_state[key]
    params = {name: str(settings[name]) for name in FIELDS
              if not (name == "sample_rate" and settings["size_by"] == "batch")
              and not (name == "batch_size" and settings["size_by"] == "sample_rate")}
    if dict(st.query_params) != params:
        st.query_params.from_dict(params)


def _dataset_picked() -> None:
    """Fill N with the picked dataset's member count."""
    name = st.session_state[FIELDS["dataset"][0]]
    if name != CUSTOM:
        st.session_state[FIELDS["n"][0]] = _member_counts()[name]


def _n_edited() -> None:
    """A hand-typed N that no longer matches the picked dataset makes the picker say 'custom'."""
    name = st.session_state[FIELDS["dataset"][0]]
    if name != CUSTOM and _member_counts().get(name) != st.session_state[FIELDS["n"][0]]:
        st.session_state[FIELDS["dataset"][0]] = CUSTOM


# ---------------------------------------------------------------------- sections
def _inputs(settings: dict[str, Any]) -> None:
    counts = _member_counts()
    key = {name: widget for name, (widget, _) in FIELDS.items()}
    with st.container(border=True):
        first = st.columns(4)
        first[0].selectbox(
            "Dataset", [CUSTOM, *counts], key=key["dataset"], on_change=_dataset_picked,
            format_func=lambda name: "Custom N" if name == CUSTOM else f"{name} ({counts[name]:,} members)",
            help="Fills N with the number of training examples (members) the dataset gives the trainer: "
                 "its fixed member split. Pick 'Custom N' to type any size.")
        first[1].number_input("Dataset size N (training examples)", *BOUNDS["n"], step=100,
                              key=key["n"], on_change=_n_edited,
                              help="Number of training examples. Only the sample rate derived from it and the "
                                   "batch size enters ε; δ should be well below 1/N.")
        first[2].number_input("Epochs", *BOUNDS["epochs"], step=1, key=key["epochs"],
                              help="Passes over the data; each is ⌈N/B⌉ noisy steps.")
        first[3].number_input("δ (delta)", *BOUNDS["target_delta"], step=1e-6, format="%.1e",
                              key=key["target_delta"], help=explain("delta"))
        second = st.columns(4)
        second[0].radio("Batch set by", CHOICES["size_by"], key=key["size_by"], horizontal=True,
                        format_func={"batch": "batch size B", "sample_rate": "sample rate q"}.get,
                        help=explain("sampling"))
        if st.session_state[key["size_by"]] == "batch":
            second[1].number_input("Batch size B (examples)", *BOUNDS["batch_size"], step=16, key=key["batch_size"],
                                   help="Expected examples per batch. The trainer samples each example with "
                                        "probability q = 1/⌈N/B⌉ (Poisson sampling).")
        else:
            second[1].number_input("Sample rate q", *BOUNDS["sample_rate"], step=0.001, format="%.5f",
                                   key=key["sample_rate"],
                                   help="Chance that an example joins a batch. Training turns it into a batch size "
                                        "B = round(q·N) and then uses q = 1/⌈N/B⌉, shown below.")
        second[2].number_input("Noise multiplier σ", *BOUNDS["noise_multiplier"], step=0.05, format="%.2f",
                               key=key["noise_multiplier"], help=explain("noise_multiplier"))
        second[3].number_input("Target ε", *BOUNDS["target_epsilon"], step=0.5, format="%.2f",
                               key=key["target_epsilon"],
                               help="For the 'noise needed' answer and the dashed line on the epochs chart. "
                                    + explain("epsilon"))
    _save(settings)


def _sampling(settings: dict[str, Any]) -> accounting.Sampling:
    """The trainer's sampling for the inputs; ConfigError for impossible ones."""
    if settings["size_by"] == "batch":
        return accounting.sampling_for(n=int(settings["n"]), batch_size=int(settings["batch_size"]))
    return accounting.sampling_for(n=int(settings["n"]), sample_rate=float(settings["sample_rate"]))


def _sampling_caption(sampling: accounting.Sampling, settings: dict[str, Any]) -> None:
    steps = sampling.steps(settings["epochs"])
    parts = [f"q = 1/{sampling.steps_per_epoch:,} = {sampling.sample_rate:.4g}",
             f"{sampling.steps_per_epoch:,} steps per epoch", f"{steps:,} steps in all",
             f"≈ {sampling.expected_batch_size:,.1f} examples per batch on average"]
    if settings["size_by"] == "sample_rate":
        parts.insert(0, f"batch size B = {sampling.batch_size:,}")
    st.caption("Training will use: " + " · ".join(parts) + ". (Poisson sampling: each example joins each step "
               "with probability q.)")


def _guidance(settings: dict[str, Any], sampling: accounting.Sampling) -> None:
    """config.guidance's advice about delta and batch size, in its own words."""
    dataset = settings["dataset"] if settings["dataset"] != CUSTOM else "csv"
    cfg = TrainConfig(dataset=dataset, noise_multiplier=float(settings["noise_multiplier"]),
                      target_delta=float(settings["target_delta"]), batch_size=sampling.batch_size,
                      epochs=int(settings["epochs"]))
    for note in guidance(cfg, sampling.n):
        if note.field in ("target_delta", "batch_size"):
            (st.warning if note.level == "warning" else st.info)(note.message, icon=":material/warning:")


def _headline(settings: dict[str, Any], sampling: accounting.Sampling, steps: int) -> tuple[dict[str, float], Any]:
    """Epsilon from RDP and GDP as metric cards; returns them and a function that fills in PRV (the slow one).

    The page calls that function last, so everything else is on screen while PRV computes.
    """
    sigma, delta = float(settings["noise_multiplier"]), float(settings["target_delta"])
    st.subheader(f"ε after {settings['epochs']} epochs at σ = {sigma:g}")
    left, right = st.columns([3, 2.2])
    cards = left.columns(3)
    eps = {"rdp": _epsilon("rdp", sigma, sampling.sample_rate, steps, delta)}
    try:  # GDP is an approximation that has no answer for some schedules (tiny σ, large δ): say so on its card
        eps["gdp"], gdp_problem = _epsilon("gdp", sigma, sampling.sample_rate, steps, delta), None
    except DPExplorerError:
        eps["gdp"], gdp_problem = math.nan, "GDP has no answer for this schedule (σ too small or δ too large)"
    cards[0].metric("RDP ε", epsilon_text(eps["rdp"]), border=True,
                    help=accounting.ACCOUNTANT_TITLES["rdp"] + ". The Train page's default accountant.")
    prv_card = cards[1].empty()
    prv_card.metric("PRV ε", "…", help=accounting.ACCOUNTANT_TITLES["prv"], border=True)
    cards[2].metric("GDP ε", epsilon_text(eps["gdp"]) if gdp_problem is None else "n/a",
                    help=accounting.ACCOUNTANT_TITLES["gdp"], border=True)
    with cards[0]:
        st.caption(f"{plots.epsilon_band(eps['rdp'])} guarantee")
    prv_note = cards[1].empty()
    with cards[2]:
        st.caption(f":material/warning: {gdp_problem or 'approximation; can underestimate ε'}")
    chart = right.empty()
    with chart:
        st.info("PRV is computing… the chart appears when it is done.", icon=":material/hourglass_top:")
    with left:
        st.markdown(epsilon_sentence(eps["rdp"], delta) + " (RDP)")
        with st.expander("Why three numbers? Which one to report?"):
            st.markdown(explain("accountants"))
            st.markdown(explain("gdp_caveat"))

    def fill_prv() -> None:
        try:
            eps["prv"] = _epsilon("prv", sigma, sampling.sample_rate, steps, delta)
        except DPExplorerError:
            eps["prv"] = math.nan
            prv_note.caption(":material/warning: PRV has no answer for this schedule (σ too small or δ too large)")
        prv_card.metric("PRV ε", epsilon_text(eps["prv"]) if math.isfinite(eps["prv"]) else "n/a",
                        help=accounting.ACCOUNTANT_TITLES["prv"], border=True)
        if math.isfinite(eps["prv"]) and eps["prv"] == eps["rdp"]:
            prv_note.caption("PRV gave up at this large ε; RDP's value is shown")
        table = pd.DataFrame({"accountant": ["rdp", "prv", "gdp"],
                              "epsilon": [eps["rdp"], eps["prv"], eps["gdp"]]})
        chart.plotly_chart(plots.accountant_comparison_chart(table, title="Accountants compared"),
                           key="planner_chart_accountants")

    return eps, fill_prv


def _attack_limit_section(settings: dict[str, Any], sampling: accounting.Sampling, steps: int,
                          eps: dict[str, float]) -> None:
    """The most any membership attack could achieve on a model trained with this plan, before any training."""
    sigma = float(settings["noise_multiplier"])
    bound = tradeoff.tradeoff_bound(noise_multiplier=sigma, sample_rate=sampling.sample_rate, steps=steps)
    st.subheader("The most any membership attack could achieve")
    left, middle, right = st.columns([1.2, 2, 2])
    left.metric("Members found at 1 % false alarms, at most", f"{100 * bound.headline():.3g} %", border=True,
                help="Proven by this schedule's privacy accounting (PRV privacy profile): no attack, known or "
                     "future, can find more members at a 1 % false-positive rate. Chance is 1 %.")
    with left:
        st.caption(f"next to RDP ε = {epsilon_text(eps['rdp'])}; computed in {bound.seconds:.2f} s")
    middle.plotly_chart(plots.roc_chart([], bound=bound, bound_epsilon=eps["rdp"], title="Attack limit (linear)"),
                        key="planner_chart_bound")
    right.plotly_chart(plots.roc_chart([], bound=bound, bound_epsilon=eps["rdp"], log_scale=True,
                                       title="Attack limit (log-log: low false alarms)"), key="planner_chart_bound_log")
    st.caption(attack_bound_sentence(bound_tpr=bound.headline()) + " " + BOUND_CAPTION)


def _epochs_section(settings: dict[str, Any], sampling: accounting.Sampling, eps: dict[str, float]) -> None:
    sigma, delta, epochs = float(settings["noise_multiplier"]), float(settings["target_delta"]), int(settings["epochs"])
    target = float(settings["target_epsilon"])
    curves = {s: _curve(s, sampling.n, sampling.batch_size, epochs, delta) for s in sorted({*CURVE_SIGMAS, sigma})}
    # lines that end far above the interesting range would squash the rest against the axis
    cap = max(CURVE_CAP[0] * max(target, eps["rdp"]), CURVE_CAP[1])
    left_out = [s for s, curve in curves.items() if s != sigma and curve.epsilon.iloc[-1] > cap]
    shown = pd.concat([curve for s, curve in curves.items() if s not in left_out], ignore_index=True)
    fig = plots.epsilon_vs_epochs_chart(shown, target_epsilon=target, delta=delta,
                                        title="ε over the epochs, for several noise multipliers")
    st.plotly_chart(fig, key="planner_chart_epochs")
    note = (f" Left out: σ = {', '.join(f'{s:g}' for s in left_out)} (ε would pass {cap:.3g})." if left_out else "")
    st.caption(f"RDP accountant, exact after every epoch (⌈N/B⌉ = {sampling.steps_per_epoch:,} steps each). Your σ "
               f"= {sigma:g} is one of the lines; the dashed line is the target ε.{note} Shaded bands: strong "
               "(<1), moderate (1-5), weak (5-10), very weak (>10).")


def _inverse_section(settings: dict[str, Any], sampling: accounting.Sampling, steps: int) -> float | None:
    target, delta = float(settings["target_epsilon"]), float(settings["target_delta"])
    st.subheader(f"Noise needed to end at ε = {target:g}")
    left, right = st.columns([1, 2.2])
    sigma_needed: float | None = None
    with left:
        try:
            sigma_needed = _sigma_for(target, sampling.sample_rate, steps, delta)
        except DPExplorerError as err:
            st.error(str(err))
        if sigma_needed is not None:
            shown = float(sigma_text(sigma_needed))
            reached = _epsilon("rdp", shown, sampling.sample_rate, steps, delta)
            st.metric(f"σ needed for ε ≤ {target:g}", sigma_text(sigma_needed), border=True,
                      help="Smallest noise multiplier whose RDP ε after all the steps stays at or below the target "
                           "(rounded up). Training with a target ε calibrates the same σ.")
            st.caption(f"Check: with σ = {sigma_text(sigma_needed)}, RDP ε = {reached:.4f} after "
                       f"{steps:,} steps at δ = {delta:g}.")
    with right:
        try:
            table = _sigma_table(sampling.sample_rate, steps, delta)
        except DPExplorerError as err:
            table = None
            st.info(f"No noise curve for targets {TARGET_RANGE[0]:g}-{TARGET_RANGE[1]:g}: {err}")
        st.plotly_chart(plots.sigma_for_epsilon_chart(table, title="Noise needed for each target ε"),
                        key="planner_chart_sigma")
        st.caption(f"RDP, {steps:,} steps at δ = {delta:g}. More noise buys a smaller ε; halving ε roughly "
                   "doubles the noise needed once ε is small.")
    return sigma_needed


def _handoff(settings: dict[str, Any], sampling: accounting.Sampling, eps: dict[str, float],
             sigma_needed: float | None) -> None:
    st.subheader("Train with these settings")
    sigma, target = float(settings["noise_multiplier"]), float(settings["target_epsilon"])
    options = {"noise_multiplier": f"fixed σ = {sigma:g} (ends at RDP ε ≈ {epsilon_text(eps['rdp'])})",
               "target_epsilon": f"target ε = {target:g} (training calibrates σ"
                                 + (f" ≈ {sigma_text(sigma_needed)})" if sigma_needed is not None else ")")}
    st.radio("Privacy budget to send", list(options), format_func=options.get,
             key=FIELDS["handoff"][0])
    config: dict[str, Any] = {} if settings["dataset"] == CUSTOM else {"dataset": settings["dataset"]}
    config.update(batch_size=sampling.batch_size, epochs=int(settings["epochs"]),
                  target_delta=float(settings["target_delta"]), accountant="rdp")
    if st.session_state[FIELDS["handoff"][0]] == "noise_multiplier":
        config["noise_multiplier"] = sigma
    else:
        config["target_epsilon"] = target
    handoff = {"config": config, "n": sampling.n, "sample_rate": sampling.sample_rate,
               "steps": sampling.steps(settings["epochs"]), "epsilon": eps, "source": "planner"}

    def store() -> None:
        st.session_state[HANDOFF_KEY] = {**handoff, "epsilon": dict(eps)}

    columns = st.columns([2.2, 1.4, 2.1])  # wide enough for the button's label at 1400 px
    columns[0].button("Use these settings on the Train page", type="primary", on_click=store,
                      icon=":material/send:", key="planner_use",
                      help="Stores the dataset, batch size, epochs, δ and the privacy budget for the Train page.")
    with columns[1]:
        ui.page_link("pages/train.py", label="Open the Train page", icon=":material/model_training:")
    stored = st.session_state.get(HANDOFF_KEY)
    if stored is not None:
        label = ", ".join(f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}"
                          for key, value in stored["config"].items())
        columns[2].caption(f":material/check_circle: Sent to Train: {label}."
                           + (" (These differ from the inputs above.)" if stored["config"] != config else ""))


# ---------------------------------------------------------------------- page
def main() -> None:
    st.title("Budget planner")
    st.caption("What would a run cost in privacy? Instant answers from the accountants, no training: ε for your "
               "settings, how it grows epoch by epoch, and the noise needed for a target ε. Training uses the same "
               "sampling and accountants, so a run with these settings reports the same ε.")
    settings = _settings()
    _inputs(settings)
    try:
        sampling = _sampling(settings)
    except DPExplorerError as err:
        st.error(f"{err}.", icon=":material/error:")
        st.stop()
    steps = sampling.steps(settings["epochs"])
    _sampling_caption(sampling, settings)
    _guidance(settings, sampling)
    try:
        eps, fill_prv = _headline(settings, sampling, steps)
        _attack_limit_section(settings, sampling, steps, eps)
        _epochs_section(settings, sampling, eps)
        sigma_needed = _inverse_section(settings, sampling, steps)
        _handoff(settings, sampling, eps, sigma_needed)
        _save(settings)
        fill_prv()
    except DPExplorerError as err:
        st.error(str(err), icon=":material/error:")


ui.route_through_app()
main()
