"""The gradient-norm probe of the Train page: measure per-sample gradient norms, propose a clipping bound C.

Not a page. The probe is kept under a plain session key with the settings it was taken with
(``dpcore.views.train_form.probe_signature``); a probe of other settings is not shown.
"""

from __future__ import annotations

import math
from typing import Any

import streamlit as st

from dpcore.engine.probe import probe_grad_norms, suggest_max_grad_norm
from dpcore.errors import DPExplorerError
from dpcore.jobs.training import baseline_config
from dpcore.views import plots
from dpcore.views import train_form as tf
from pages.state import PageState

PROBE_KEY = "train_probe"  # plain session key: the last gradient-norm probe


def forget() -> None:
    """Drop the last probe (the data or the model changed)."""
    st.session_state.pop(PROBE_KEY, None)


def run_probe(settings: dict[str, Any]) -> None:
    """Measure per-sample gradient norms and keep them (with the suggested C) for this configuration."""
    probe_cfg = baseline_config(tf.config_from(settings)).replace(max_grad_norm=1.0, physical_batch_size=None)
    steps, signature = tf.probe_steps(settings["batch_size"]), tf.probe_signature(settings)
    try:
        with st.spinner(f"Probing per-sample gradient norms ({steps} steps, no privacy)…"):
            norms = probe_grad_norms(probe_cfg, steps=steps)
            probe = {"norms": norms, "suggested": suggest_max_grad_norm(norms), "steps": steps}
    except DPExplorerError as err:
        probe = {"error": str(err)}
    st.session_state[PROBE_KEY] = {**probe, "signature": signature}


def current_probe(settings: dict[str, Any]) -> dict[str, Any] | None:
    """The last probe, if it was taken with the current data, model and training knobs."""
    probe = st.session_state.get(PROBE_KEY)
    return probe if probe and probe.get("signature") == tf.probe_signature(settings) else None


def probe_panel(form: PageState) -> None:
    """The probe's histogram with the proposed C, and a button that applies it to ``form``'s max_grad_norm."""
    settings = form.settings()
    probe = current_probe(settings)
    if probe is None or settings["mode"] == "baseline":
        return
    with st.container(border=True):
        if "error" in probe:
            return st.error(f"The gradient-norm probe failed: {probe['error']}")
        norms, suggested, current = probe["norms"], probe["suggested"], settings["max_grad_norm"]
        chart_col, text_col = st.columns([3, 2], gap="large")
        chart_col.plotly_chart(plots.grad_norm_histogram(norms, bound=suggested, title="Per-sample gradient norms"),
                               key="train-probe-chart")
        text_col.markdown(f"##### Suggested C = {suggested:g}")
        text_col.markdown(tf.probe_text(norms, suggested=suggested, current=current, steps=probe["steps"]))
        text_col.caption(":material/visibility: The probe looked at the training data without privacy: its norms "
                         "are not covered by ε. A careful deployment probes on public data of the same kind.")
        applied = math.isclose(current or 0.0, suggested)
        text_col.button(f"Use C = {suggested:g}", key="train-probe-apply", type="primary", icon=":material/check:",
                        disabled=applied, on_click=form.set, args=("max_grad_norm", float(suggested)),
                        help="Puts the suggested bound in the form.")
        if applied:
            text_col.caption(":green[:material/check:] In use.")
