"""Train: pick data, a model and a privacy budget, train with DP-SGD as a job, and watch and read the result.

Settings live in a plain session dict (``pages.state.PageState``, key ``train_form``) bound to the
widgets, so they survive moving to other pages; the form's logic and texts are in
``dpcore.views.train_form``. The settings and the current run's id are the page's URL parameters
(``?dataset=...&run=...``), so a reload or a shared link reopens both; the Budget planner's
"Use these settings" lands here too. The run itself is drawn by ``pages.live_view`` (kept current while it trains).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import streamlit as st

from dpcore.config import ACCOUNTANTS, DEVICES, GRAD_SAMPLE_MODES, OPTIMIZERS, TrainConfig
from dpcore.engine import data
from dpcore.engine.models import MODELS, models_for
from dpcore.errors import ConfigError, DPExplorerError
from dpcore.jobs.training import baseline_config, find_baseline_for_config, link_baseline
from dpcore.privacy.guidance import guidance
from dpcore.store.artifacts import upload_id, upload_path
from dpcore.views import train_form as tf
from dpcore.views import train_url
from dpcore.views.explain import explain
from pages import clip_probe, data_picker, live_view, processes, state, ui

FORM = state.PageState(key="train_form", widget_prefix="train_w_", defaults=tf.default_settings)
RUN_KEY = "train_run_id"  # plain session key: the run shown under the form
HANDOFF_KEY = "planner_handoff"  # plain session key the Budget planner fills for "Use these settings"
FLASH_KEY = "train_flash"  # plain session key: toasts to show after the next rerun
bind, HELP = FORM.bind, tf.HELP


def load_into_form(cfg: TrainConfig) -> None:
    """Replace the form (and its widgets) with ``cfg``; call before any widget is drawn."""
    FORM.load(tf.settings_from(cfg))
    clip_probe.forget()


def restore_settings() -> None:
    """Fill the form from the planner's hand-off (always), or seed a new session from the URL or a ``?run=`` link."""
    handoff = st.session_state.pop(HANDOFF_KEY, None)
    if handoff:
        try:
            load_into_form(tf.handoff_config(FORM.settings(), handoff.get("config", {})))
            flash("Loaded the Budget planner's settings.", ":material/calculate:")
        except (DPExplorerError, TypeError) as err:
            flash(f"Could not use the planner's settings: {err}", ":material/error:")
        return
    if not FORM.first_visit:
        return
    store, linked_run = ui.store(), state.url_value("run")
    try:
        if any(key in train_url.LINK_KEYS for key in st.query_params):  # never a server path: upload ids only
            cfg, refused = train_url.read_link(st.query_params, resolve_upload=partial(upload_path, store.root))
            load_into_form(cfg)
            if refused:
                st.warning(train_url.refusal_text(refused), icon=":material/link_off:")
        elif linked_run and store.exists(linked_run):
            load_into_form(store.get(linked_run).train_config())
    except DPExplorerError as err:
        flash(f"Could not restore the settings from the link: {err}", ":material/link_off:")


def on_dataset_change() -> None:
    """A new dataset resets the recipe knobs (model, C, epochs, batch, lr, optimizer) to its recipe."""
    FORM.settings()["dataset"] = FORM.widget_value("dataset")
    FORM.load(tf.recipe_settings(FORM.widget_value("dataset")))
    clip_probe.forget()


def flash(message: str, icon: str) -> None:
    """A toast shown on the next run of the page (survives the st.rerun that follows a submit)."""
    st.session_state.setdefault(FLASH_KEY, []).append((message, icon))


def set_current_run(run_id: str | None) -> None:
    """Show ``run_id`` under the form, in this session and in the URL."""
    state.remember("run", RUN_KEY, run_id)


privacy_plan = st.cache_data(show_spinner=False, max_entries=64)(tf.privacy_plan)


def privacy_section(settings: dict[str, Any], loaded: data.SplitData | None) -> None:
    """Model, privacy mode with epsilon or sigma, delta, the clipping bound and its probe."""
    options = models_for(loaded.info.kind if loaded is not None else data.DATASETS[settings["dataset"]].kind)
    if settings["model"] not in options:
        FORM.set("model", tf.model_for(settings, options))
    model = bind(st.selectbox, "Model", "model", options=options, format_func=lambda m: MODELS[m].title,
                 help="Models that suit this data. " + " ".join(f"**{MODELS[m].title}**: {MODELS[m].description}"
                                                                for m in options))
    if model == "cnn-bn":
        st.caption(":material/build: BatchNorm is not DP-compatible: the trainer swaps it for GroupNorm and "
                   "lists the change with the result.")
    mode = bind(st.radio, "Privacy", "mode", options=list(tf.MODES), format_func=tf.MODES.get, horizontal=True,
                help=HELP["mode"])
    if mode == "baseline":
        return st.caption(explain("baseline").replace("**", ""))
    if mode == "epsilon":
        bind(st.number_input, "Target ε", "target_epsilon", min_value=0.0, max_value=1000.0, step=0.5,
             format="%.2f", help=HELP["target_epsilon"])
    else:
        bind(st.number_input, "Noise multiplier σ", "noise_multiplier", min_value=0.0, max_value=1000.0,
             step=0.1, format="%.2f", help=HELP["noise_multiplier"])
    bind(st.number_input, "δ (delta)", "target_delta", min_value=0.0, max_value=0.5, step=1e-6, format="%.1e",
         help=HELP["target_delta"])
    bind(st.number_input, "Clipping bound C (max_grad_norm)", "max_grad_norm", min_value=0.0, max_value=1e6,
         step=0.1, format="%g", help=HELP["max_grad_norm"])
    if st.button("Suggest C from the data", key="train-probe", icon=":material/auto_fix_high:", width="stretch",
                 disabled=loaded is None, help=HELP["probe"]):
        clip_probe.run_probe(settings)


def training_section(settings: dict[str, Any]) -> None:
    """Epochs, batch size, learning rate and optimizer; the rest in an Advanced expander."""
    left, right = st.columns(2)
    with left:
        bind(st.number_input, "Epochs", "epochs", min_value=1, max_value=1000, step=1, help=HELP["epochs"])
        bind(st.number_input, "Learning rate", "lr", min_value=0.0, max_value=100.0, step=0.01, format="%g",
             help=HELP["lr"])
    with right:
        bind(st.number_input, "Batch size", "batch_size", min_value=1, max_value=1_000_000, step=16,
             help=HELP["batch_size"])
        bind(st.selectbox, "Optimizer", "optimizer", options=list(OPTIMIZERS),
             format_func={"sgd": "SGD", "adam": "Adam"}.get, help=HELP["optimizer"])
    with st.expander("Advanced", icon=":material/tune:"):
        a_left, a_right = st.columns(2)
        with a_left:
            bind(st.selectbox, "Accountant", "accountant", options=list(ACCOUNTANTS), format_func=str.upper,
                 help=HELP["accountant"])
            bind(st.number_input, "ε limit (hard stop)", "epsilon_limit", min_value=0.0, max_value=1000.0, step=0.5,
                 format="%.2f", placeholder="no limit", disabled=settings["mode"] == "baseline",
                 help=HELP["epsilon_limit"])
            bind(st.number_input, "Physical batch size", "physical_batch_size", min_value=1, max_value=1_000_000,
                 step=16, placeholder="same as batch", help=HELP["physical_batch_size"])
            bind(st.number_input, "Seed", "seed", min_value=0, max_value=2**32 - 1, step=1, help=HELP["seed"])
            bind(st.checkbox, "Reproducible (noise follows the seed — not private)", "reproducible",
                 help=HELP["reproducible"])
        with a_right:
            bind(st.selectbox, "Per-sample gradients", "grad_sample_mode", options=list(GRAD_SAMPLE_MODES),
                 help=HELP["grad_sample_mode"])
            bind(st.selectbox, "Device", "device", options=list(DEVICES),
                 help=HELP["device"] + f"{ui.device_description()}.")
            processes.nproc_select(FORM, settings)
            bind(st.number_input, "SGD momentum", "momentum", min_value=0.0, max_value=0.99, step=0.05,
                 format="%.2f", disabled=settings["optimizer"] != "sgd", help=HELP["momentum"])
            bind(st.checkbox, "Poisson sampling", "poisson_sampling", help=HELP["poisson_sampling"])


def check_config(settings: dict[str, Any], loaded: data.SplitData | None) -> TrainConfig | None:
    """Validate the form; show the ConfigError inline (None) or the guidance and the plan (the config)."""
    if loaded is None:
        return st.caption(":material/block: Training needs a loaded dataset (see above).") and None
    n, plan = loaded.n_members, None
    try:
        cfg = tf.config_from(settings).validate(n=n)
    except ConfigError as err:
        return st.error(f"**Fix this setting to train:** {err}", icon=":material/error:") and None
    if cfg.private:
        try:
            plan = privacy_plan(mode=cfg.mode, target_epsilon=cfg.target_epsilon, noise_multiplier=cfg.noise_multiplier,
                                delta=cfg.target_delta, n=n, batch_size=cfg.batch_size, epochs=cfg.epochs,
                                accountant=cfg.accountant)
        except DPExplorerError as err:
            return st.error(f"**Cannot plan this run:** {err}", icon=":material/error:") and None
    probe = clip_probe.current_probe(settings) or {}
    for note in guidance(cfg, n, grad_norms=probe.get("norms"), noise_multiplier=plan.sigma if plan else None):
        (st.warning if note.level == "warning" else st.info)(
            note.message, icon=":material/warning:" if note.level == "warning" else ":material/info:")
    if plan is not None:
        st.markdown(tf.plan_text(cfg, plan))
    return cfg


def submit(cfg: TrainConfig, *, with_baseline: bool) -> None:
    """Queue the run (and its non-private baseline, or link an identical finished one) and show it."""
    store, queue = ui.store(), ui.queue()
    try:
        run_id = queue.submit(cfg)
    except DPExplorerError as err:
        return st.error(str(err), icon=":material/error:")
    set_current_run(run_id)
    flash(f"Training queued: {store.get(run_id).name}. Its progress is shown below the settings.",
          ":material/play_arrow:")
    if with_baseline and cfg.private:
        existing = find_baseline_for_config(store, cfg, exact=True, active=True)
        try:
            if existing is not None:
                link_baseline(store, run_id, existing.id)
                flash(f"Comparing with the baseline run {existing.id}: same settings without DP, "
                      f"{'already trained' if existing.status == 'done' else 'already queued'}.", ":material/link:")
            else:
                link_baseline(store, run_id, queue.submit(baseline_config(cfg)))
        except DPExplorerError as err:
            return st.warning(f"The run is queued, but its non-private baseline could not be: {err}")
    st.rerun()  # redraw the whole page, so the sidebar's job queue shows the new run too


def train_bar(settings: dict[str, Any], cfg: TrainConfig | None) -> None:
    """The baseline checkbox and the Train button (disabled until the settings are valid)."""
    left, right = st.columns([3, 1], vertical_alignment="center")
    with left:
        bind(st.checkbox, "Also train the non-private baseline (same data, model, seed and knobs)", "with_baseline",
             disabled=settings["mode"] == "baseline", help=HELP["with_baseline"])
    if right.button("Train", key="train-submit", type="primary", icon=":material/play_arrow:", disabled=cfg is None,
                    width="stretch", help=HELP["train"]) and cfg is not None:
        submit(cfg, with_baseline=bool(settings["with_baseline"]))


def main() -> None:
    restore_settings()
    settings = FORM.settings()
    for message, icon in st.session_state.pop(FLASH_KEY, []):
        st.toast(message, icon=icon)
    st.title("Train a model with differential privacy")
    st.caption("Pick data, a model and a privacy budget. Training runs in the background with DP-SGD (Opacus); "
               "ε, clipping and accuracy update live, then a membership attack tests what the model leaks.")
    data_col, privacy_col, training_col = st.columns([4, 5, 4], gap="medium")
    with data_col, st.container(border=True):
        st.markdown("##### :material/database: Data")
        loaded = data_picker.dataset_section(FORM, on_change=on_dataset_change)
    with privacy_col, st.container(border=True):
        st.markdown("##### :material/shield_lock: Model and privacy")
        privacy_section(settings, loaded)
    with training_col, st.container(border=True):
        st.markdown("##### :material/tune: Training")
        training_section(settings)
    clip_probe.probe_panel(FORM)
    train_bar(settings, check_config(settings, loaded))
    store, run_id = ui.store(), state.url_or_session("run", RUN_KEY)
    shown = run_id if run_id is not None and store.exists(run_id) else None
    state.remember("run", RUN_KEY, shown)
    state.sync_url({**train_url.link_params(settings, upload_of=partial(upload_id, store.root)), "run": shown})
    st.divider()
    if run_id != shown:
        return st.warning(f"Run `{train_url.shown(run_id)}` is not in {store.root}: it was deleted or belongs to "
                          "another runs folder.", icon=":material/search_off:")
    if shown is None:
        with st.container(border=True):
            st.markdown("##### :material/monitoring: No run yet")
            st.markdown(tf.NO_RUN_TEXT)
        return
    live_view.live_run(shown, store=store, queue=ui.queue(), key="train", on_new_run=set_current_run)


ui.route_through_app()
main()
