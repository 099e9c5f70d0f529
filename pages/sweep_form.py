"""The Tradeoffs page's "Start a new sweep" form (not a page): grid values, seeds and epochs, the run count
and a time estimate, and the button that queues the sweep. Its values are kept by ``pages.state``; the
choices, texts and the grid itself come from ``dpcore.views.tradeoffs``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from dpcore.engine.data import DATASETS, dataset_status
from dpcore.engine.models import MODELS
from dpcore.errors import DPExplorerError
from dpcore.jobs import sweep as sweeps
from dpcore.views import tradeoffs as texts
from pages import state, ui

FORM = state.PageState(key="tradeoffs_form", widget_prefix="tradeoffs_new_", defaults=texts.default_form)


def _on_dataset_change() -> None:
    FORM.load(texts.recipe_settings(FORM.widget_value("dataset")))


def new_sweep_form(store: Any, *, expanded: bool, on_started: Callable[[str], None]) -> None:
    """The form in an expander; after queuing a sweep it calls ``on_started(sweep_id)`` and reruns the page."""
    bind, help_ = FORM.bind, texts.HELP
    with st.expander("Start a new sweep", expanded=expanded, icon=":material/add_chart:"):
        left, middle, right = st.columns(3)
        with left:
            dataset = bind(st.selectbox, "Dataset", "dataset", options=texts.sweep_datasets(), help=help_["dataset"],
                           on_change=_on_dataset_change, format_func=lambda name: f"{name} — {DATASETS[name].title}")
        models, fallback = texts.models_for(dataset)
        if FORM.settings()["model"] not in models:
            FORM.set("model", fallback)
        with middle:
            bind(st.selectbox, "Model", "model", options=models, format_func=lambda name: MODELS[name].title,
                 help=help_["model"])
        with right:
            bind(st.number_input, "Epochs per run", "epochs", min_value=1, max_value=200, step=1, help=help_["epochs"])
        left, middle, right = st.columns(3)
        with left:
            bind(st.multiselect, "Target ε values", "epsilons", options=texts.EPSILON_CHOICES,
                 format_func=lambda v: f"{v:g}", help=help_["epsilons"])
        with middle:
            bind(st.multiselect, "Clipping bounds C", "clips", options=texts.CLIP_CHOICES,
                 format_func=lambda v: f"{v:g}", help=help_["clips"])
        with right:
            bind(st.number_input, "Seeds", "seeds", min_value=1, max_value=texts.MAX_SEEDS, step=1, help=help_["seeds"])
        bind(st.checkbox, "Include the non-private baseline", "baseline", help=help_["baseline"])
        try:
            spec = texts.sweep_spec(FORM.settings())
            guess = sweeps.estimate(spec, store=store, parallel=ui.queue().workers)
        except DPExplorerError as err:
            st.error(str(err), icon=":material/error:")
            return
        st.markdown(texts.estimate_text(spec, seconds=guess.seconds, basis=guess.basis, parallel=guess.parallel))
        notes, warning = texts.spec_notes(spec, dataset_status=dataset_status(dataset))
        for note in notes:
            st.caption(note)
        if warning:
            st.warning(warning, icon=":material/hourglass_top:")
        if st.button("Start sweep", type="primary", icon=":material/play_arrow:", key="tradeoffs_start"):
            waiting, limit = len(ui.queue().pending()), ui.queue().max_pending
            if waiting >= limit:  # a sweep on a full queue would be recorded with no run queued
                st.error(f"The job queue is full: {waiting} jobs are waiting (limit {limit}). Wait for some to "
                         "finish or cancel queued ones, then start the sweep.", icon=":material/error:")
                return
            try:
                sweep = sweeps.submit_sweep(ui.queue(), spec, estimate_s=guess.seconds)
            except DPExplorerError as err:
                st.error(str(err), icon=":material/error:")
                return
            on_started(sweep.id)
            st.rerun()
