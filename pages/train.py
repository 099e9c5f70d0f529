"""Train: pick data, a model and a privacy budget, train with DP-SGD as a job, and watch and read the result.

Settings live under one plain session key (``train_form``) and are copied into the widgets,
so they survive moving to other pages. The settings and the current run's id are mirrored in
the URL (``?dataset=...&run=...``), so a reload or a shared link reopens both; the Budget
planner's "Use these settings" lands here too. The run itself is drawn by ``pages.run_view``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import streamlit as st

from dpcore.cli import FIELD_HELP
from dpcore.config import (
    ACCOUNTANTS,
    DEVICES,
    GRAD_SAMPLE_MODES,
    OPTIMIZERS,
    TrainConfig,
    from_query,
    guidance,
    to_query,
)
from dpcore.engine import data
from dpcore.engine.models import MODELS, models_for
from dpcore.errors import ConfigError, DatasetError, DPExplorerError
from dpcore.jobs.training import baseline_config, find_baseline_for_config, link_baseline
from dpcore.privacy import accounting
from dpcore.views import plots
from dpcore.views.explain import explain
from pages import run_view, ui

FORM_KEY = "train_form"  # plain session key: every setting on this page
RUN_KEY = "train_run_id"  # plain session key: the run shown under the form
HANDOFF_KEY = "planner_handoff"  # plain session key the Budget planner fills for "Use these settings"
CONFIG_FIELDS = frozenset(TrainConfig.__dataclass_fields__)
PROBE_KEY = "train_probe"  # plain session key: the last gradient-norm probe
FLASH_KEY = "train_flash"  # plain session key: toasts to show after the next rerun
W = "train_w_"  # widget keys: W + field name
RECIPE_FIELDS = ("model", "max_grad_norm", "epochs", "batch_size", "lr", "optimizer", "physical_batch_size")
PROBE_FIELDS = ("dataset", "data_path", "label_column", "model", "batch_size", "lr", "optimizer", "seed")
DEFAULT_DATASET = "synthetic"
DEFAULT_EPSILON = 3.0
PROBE_STEPS = 30  # at most; fewer with large batches (about PROBE_SAMPLES norms are plenty for a quantile)
PROBE_SAMPLES = 4096
MODES = {"epsilon": "Target ε", "sigma": "Noise σ", "baseline": "No DP"}
STATUS_TEXT = {
    "offline": ":green[:material/check_circle:] built in, works offline",
    "cached": ":green[:material/download_done:] downloaded, in the local cache",
    "download": ":orange[:material/cloud_download:] not downloaded yet: needs internet once",
}
LABEL_HINTS = ("label", "target", "class", "y", "outcome")


# ---------------------------------------------------------------------- settings
def recipe_settings(dataset: str) -> dict[str, Any]:
    """The knobs a dataset's recipe sets (TrainConfig(dataset=...).resolve())."""
    cfg = TrainConfig(dataset=dataset, target_epsilon=DEFAULT_EPSILON).resolve()
    return {"model": cfg.model, "max_grad_norm": float(cfg.max_grad_norm), "epochs": int(cfg.epochs),
            "batch_size": int(cfg.batch_size), "lr": float(cfg.lr), "optimizer": cfg.optimizer,
            "physical_batch_size": None}


def default_settings(dataset: str = DEFAULT_DATASET) -> dict[str, Any]:
    """Every setting of the form for ``dataset``: its recipe plus the TrainConfig defaults."""
    base = TrainConfig(dataset=dataset)
    return {"dataset": dataset, "mode": "epsilon", "target_epsilon": DEFAULT_EPSILON, "noise_multiplier": 1.0,
            "target_delta": float(base.target_delta), "momentum": float(base.momentum),
            "accountant": base.accountant, "seed": int(base.seed), "epsilon_limit": None,
            "grad_sample_mode": base.grad_sample_mode, "device": base.device,
            "poisson_sampling": base.poisson_sampling, "reproducible": base.reproducible,
            "data_path": None, "csv_name": None, "label_column": None,
            "with_baseline": True, **recipe_settings(dataset)}


def form() -> dict[str, Any]:
    """The page's settings (a plain session dict, created with the defaults)."""
    if FORM_KEY not in st.session_state:
        st.session_state[FORM_KEY] = default_settings()
    return st.session_state[FORM_KEY]


def settings_from(cfg: TrainConfig) -> dict[str, Any]:
    """Form settings describing ``cfg`` (the inverse of ``config_from``); other knobs keep their defaults."""
    cfg = cfg.resolve()
    settings = default_settings(cfg.dataset)
    settings.update({field: getattr(cfg, field) for field in (
        "model", "target_delta", "max_grad_norm", "epochs", "batch_size", "physical_batch_size", "lr",
        "optimizer", "momentum", "accountant", "grad_sample_mode", "poisson_sampling", "seed", "reproducible",
        "device", "epsilon_limit", "data_path", "label_column")})
    settings["mode"] = cfg.mode
    if cfg.target_epsilon is not None:
        settings["target_epsilon"] = float(cfg.target_epsilon)
    if cfg.noise_multiplier is not None:
        settings["noise_multiplier"] = float(cfg.noise_multiplier)
    if cfg.data_path:
        settings["csv_name"] = cfg.data_path.rsplit("/", 1)[-1]
    for field in ("max_grad_norm", "lr", "target_delta", "momentum"):
        settings[field] = float(settings[field])
    return settings


def load_into_form(cfg: TrainConfig) -> None:
    """Replace the form (and its widgets) with ``cfg``; call before any widget is drawn."""
    for field, value in settings_from(cfg).items():
        set_field(field, value)
    st.session_state.pop(PROBE_KEY, None)


def restore_settings() -> None:
    """Fill the form from what asked for it: the planner's hand-off, a shared URL, or a linked run.

    The planner wins (the user just pressed its button); a URL with config fields or a
    ``?run=`` link only seeds a new session, so later edits are not overwritten.
    """
    handoff = st.session_state.pop(HANDOFF_KEY, None)
    if handoff:
        try:
            given = {key: value for key, value in handoff.get("config", {}).items() if key in CONFIG_FIELDS}
            current = config_from(form())
            if given.get("dataset", current.dataset) != current.dataset:
                current = TrainConfig(dataset=given["dataset"])  # the new dataset's recipe, not the old knobs
            if "target_epsilon" in given:
                current = current.replace(noise_multiplier=None, private=True)
            elif "noise_multiplier" in given:
                current = current.replace(target_epsilon=None, private=True)
            load_into_form(current.replace(**given))
            flash("Loaded the Budget planner's settings.", ":material/calculate:")
        except (DPExplorerError, TypeError) as err:
            flash(f"Could not use the planner's settings: {err}", ":material/error:")
        return
    if FORM_KEY in st.session_state:
        return
    params = st.query_params
    try:
        if any(key in CONFIG_FIELDS for key in params):
            load_into_form(from_query(params))
        elif params.get("run") and ui.store().exists(params["run"]):
            load_into_form(ui.store().get(params["run"]).train_config())
    except DPExplorerError as err:
        flash(f"Could not restore the settings from the link: {err}", ":material/link_off:")


def sync_url(settings: dict[str, Any]) -> None:
    """Mirror the form in the URL so a copied link reopens the same configuration."""
    wanted = to_query(config_from(settings))
    for key in [key for key in st.query_params if key in CONFIG_FIELDS and key not in wanted]:
        del st.query_params[key]
    for key, value in wanted.items():
        if st.query_params.get(key) != value:
            st.query_params[key] = value


def config_from(settings: dict[str, Any]) -> TrainConfig:
    """The TrainConfig the form describes (not validated)."""
    mode = settings["mode"]
    csv = settings["dataset"] == "csv"
    return TrainConfig(
        dataset=settings["dataset"], model=settings["model"], private=mode != "baseline",
        target_epsilon=settings["target_epsilon"] if mode == "epsilon" else None,
        noise_multiplier=settings["noise_multiplier"] if mode == "sigma" else None,
        target_delta=settings["target_delta"], max_grad_norm=settings["max_grad_norm"], epochs=settings["epochs"],
        batch_size=settings["batch_size"], physical_batch_size=settings["physical_batch_size"], lr=settings["lr"],
        optimizer=settings["optimizer"], momentum=settings["momentum"], accountant=settings["accountant"],
        grad_sample_mode=settings["grad_sample_mode"], poisson_sampling=settings["poisson_sampling"],
        seed=settings["seed"], reproducible=bool(settings.get("reproducible", False)), device=settings["device"],
        epsilon_limit=settings["epsilon_limit"] if mode != "baseline" else None,
        data_path=settings["data_path"] if csv else None, label_column=settings["label_column"] if csv else None)


def bind(widget: Any, label: str, field: str, **kwargs: Any) -> Any:
    """Draw ``widget`` for form field ``field``: seeded from the form, its value written back to the form."""
    settings = form()
    key = W + field
    if key not in st.session_state:
        st.session_state[key] = settings[field]
    value = widget(label, key=key, **kwargs)
    settings[field] = value
    return value


def set_field(field: str, value: Any) -> None:
    """Change a setting and its widget (call from callbacks, before the widget is drawn)."""
    form()[field] = value
    st.session_state[W + field] = value


def on_dataset_change() -> None:
    """A new dataset resets the recipe knobs (model, C, epochs, batch, lr, optimizer) to its recipe."""
    name = st.session_state[W + "dataset"]
    form()["dataset"] = name
    for field, value in recipe_settings(name).items():
        set_field(field, value)
    st.session_state.pop(PROBE_KEY, None)


def flash(message: str, icon: str) -> None:
    """A toast shown on the next run of the page (survives the st.rerun that follows a submit)."""
    st.session_state.setdefault(FLASH_KEY, []).append((message, icon))


def show_flashes() -> None:
    for message, icon in st.session_state.pop(FLASH_KEY, []):
        st.toast(message, icon=icon)


def set_current_run(run_id: str | None) -> None:
    """Show ``run_id`` under the form, in this session and in the URL."""
    if run_id is None:
        st.session_state.pop(RUN_KEY, None)
        st.query_params.pop("run", None)
    else:
        st.session_state[RUN_KEY] = run_id
        st.query_params["run"] = run_id


def current_run() -> str | None:
    """The run to show: the URL's ``?run=`` wins (a reload or a shared link), else the session's."""
    from_url = st.query_params.get("run")
    if from_url and from_url != st.session_state.get(RUN_KEY):
        st.session_state[RUN_KEY] = from_url
    run_id = st.session_state.get(RUN_KEY)
    if run_id and not from_url:
        st.query_params["run"] = run_id
    return run_id


# ---------------------------------------------------------------------- data
@st.cache_resource(show_spinner="Loading the dataset…", max_entries=6)
def load_data(name: str, data_path: str | None, label_column: str | None) -> data.SplitData:
    """The dataset, without downloading (DatasetError when a download is needed). Cached: do not modify."""
    return data.load_dataset(name, data_path=data_path, label_column=label_column, download=False)


@st.cache_data(show_spinner=False, max_entries=6)
def csv_header(path: str) -> list[str]:
    """Column names of a saved CSV upload."""
    return data.csv_columns(path)


@st.cache_data(show_spinner=False, max_entries=64)
def privacy_plan(mode: str, target_epsilon: float | None, noise_multiplier: float | None, delta: float,
                 n: int, batch_size: int, epochs: int, accountant: str) -> tuple[float, float, int, float]:
    """(sigma, epsilon after all epochs, steps, sample rate) the trainer will use for these settings."""
    sampling = accounting.sampling_for(n=n, batch_size=batch_size)  # the trainer's q = 1 / ceil(n / batch)
    sample_rate, steps = sampling.sample_rate, sampling.steps(epochs)
    if mode == "epsilon":
        sigma = accounting.noise_for_epsilon(target_epsilon=target_epsilon, delta=delta, sample_rate=sample_rate,
                                             steps=steps, accountant=accountant)
    else:
        sigma = float(noise_multiplier)
    epsilon = accounting.epsilon_for(noise_multiplier=sigma, sample_rate=sample_rate, steps=steps, delta=delta,
                                     accountant=accountant)
    return sigma, epsilon, steps, sample_rate


def dataset_section(settings: dict[str, Any]) -> data.SplitData | None:
    """Dataset picker, CSV upload, description, size, status and preview; returns the loaded data or None."""
    names = list(data.DATASETS)
    if settings["dataset"] not in names:
        settings["dataset"] = DEFAULT_DATASET
    bind(st.selectbox, "Dataset", "dataset", options=names, format_func=lambda name: data.DATASETS[name].title,
         on_change=on_dataset_change, help=FIELD_HELP["dataset"].split(" (")[0].capitalize()
         + ". Changing it resets the model and training knobs to that dataset's tuned recipe.")
    name = settings["dataset"]
    spec = data.DATASETS[name]
    st.caption(spec.description)
    if name == "csv":
        return csv_section(settings)
    status = data.dataset_status(name)
    st.markdown(STATUS_TEXT.get(status, status))
    if status == "download":
        st.info(f"**{spec.title}** is not in the local cache yet. Download it once (about "
                f"{spec.n_examples:,} rows from OpenML; needs internet), or pick a built-in dataset.",
                icon=":material/cloud_download:")
        if st.button("Download now", key="train-download", icon=":material/download:"):
            with st.spinner(f"Downloading {spec.title} from OpenML…"):
                try:
                    data.fetch_dataset(name)
                except DatasetError as err:
                    st.error(str(err))
                    return None
            st.rerun()
        return None
    try:
        loaded = load_data(name, None, None)
    except DatasetError as err:
        st.error(str(err))
        return None
    size_line(loaded)
    preview(loaded)
    return loaded


def csv_section(settings: dict[str, Any]) -> data.SplitData | None:
    """Upload a CSV (kept in the run store), choose the label column, load it; errors inline."""
    uploaded = st.file_uploader("CSV file", type=["csv", "txt", "tsv"], key=W + "csv_file",
                                help="A header row, then one example per row. Numeric columns are standardised, "
                                     "text columns one-hot encoded. The file is kept with your runs.")
    if uploaded is not None:
        try:
            path = ui.store().save_upload(uploaded.getvalue(), uploaded.name)
        except (OSError, TypeError) as err:
            st.error(f"Could not keep the uploaded file: {err}")
            return None
        if settings.get("data_path") != str(path):
            settings.update(data_path=str(path), csv_name=uploaded.name, label_column=None)
            st.session_state.pop(W + "label_column", None)
    if not settings.get("data_path"):
        st.info("Upload a CSV to train on your own data, or pick a built-in dataset.", icon=":material/upload:")
        return None
    if uploaded is None:
        st.caption(f":material/description: Using `{settings.get('csv_name') or 'your CSV'}` (uploaded earlier).")
    try:
        columns = csv_header(settings["data_path"])
    except DatasetError as err:
        st.error(str(err), icon=":material/error:")
        return None
    if not columns:
        st.error("The CSV has no columns: it needs a header row naming them.")
        return None
    if settings.get("label_column") not in columns:
        hinted = [column for column in columns if column.strip().lower() in LABEL_HINTS]
        settings["label_column"] = hinted[0] if hinted else columns[-1]
        st.session_state[W + "label_column"] = settings["label_column"]
    bind(st.selectbox, "Label column", "label_column", options=columns,
         help=FIELD_HELP["label_column"].capitalize() + ": what the model predicts; every other column is a feature.")
    try:
        loaded = load_data("csv", settings["data_path"], settings["label_column"])
    except DatasetError as err:
        st.error(str(err), icon=":material/error:")
        return None
    st.caption(loaded.info.description)
    fit_batch_to(loaded, settings)
    size_line(loaded)
    preview(loaded)
    return loaded


def fit_batch_to(loaded: data.SplitData, settings: dict[str, Any]) -> None:
    """A small CSV can hold fewer examples than the recipe's batch: lower it (to a power of two) and say so."""
    n = loaded.n_members
    if settings["batch_size"] > n:
        batch = 2 ** max(0, math.floor(math.log2(max(1, n // 2))))
        set_field("batch_size", batch)
        st.caption(f":material/info: Batch size lowered to {batch}: the recipe's batch is larger than the "
                   f"{n} training examples.")


def size_line(loaded: data.SplitData) -> None:
    info = loaded.info
    st.markdown(f"**{info.n_members:,}** training examples (members) · **{info.n_non_members:,}** held out · "
                f"{info.num_classes} classes · input {' × '.join(str(d) for d in info.input_shape)}",
                help="The held-out examples measure test accuracy and are the membership attack's non-members. "
                     "The split is fixed, whatever the training seed.")


def preview(loaded: data.SplitData) -> None:
    with st.expander("Preview", icon=":material/visibility:"):
        try:
            if loaded.info.kind == "image":
                images = data.preview_images(loaded, n=16)
                labels = [loaded.info.class_names[int(y)] for y in loaded.y_members[: len(images)]]
                st.plotly_chart(plots.image_grid(images, labels, columns=4, tile_px=40), width="content",
                                key="train-preview", config={"displayModeBar": False})
                st.caption("The first 16 training images with their labels.")
            else:
                st.dataframe(data.preview_table(loaded, n=10), hide_index=True, height=250)
                st.caption("The first 10 training rows, original values; the label is the last column.")
        except DatasetError as err:
            st.error(str(err))


# ---------------------------------------------------------------------- model and privacy
def privacy_section(settings: dict[str, Any], loaded: data.SplitData | None) -> None:
    """Model, privacy mode with epsilon or sigma, delta, the clipping bound and its probe."""
    kind = loaded.info.kind if loaded is not None else data.DATASETS[settings["dataset"]].kind
    options = models_for(kind)
    if settings["model"] not in options:
        set_field("model", recipe_settings(settings["dataset"])["model"] if
                  recipe_settings(settings["dataset"])["model"] in options else options[0])
    model = bind(st.selectbox, "Model", "model", options=options, format_func=lambda m: MODELS[m].title,
                 help="Models that suit this data. " + " ".join(f"**{MODELS[m].title}**: {MODELS[m].description}"
                                                                for m in options))
    if model == "cnn-bn":
        st.caption(":material/build: BatchNorm is not DP-compatible: the trainer swaps it for GroupNorm and "
                   "lists the change with the result.")
    mode = bind(st.radio, "Privacy", "mode", options=list(MODES), format_func=MODES.get, horizontal=True,
                help="**Target ε**: the noise is calibrated so training spends exactly this budget. "
                     "**Noise σ**: you set the noise; ε follows. **No DP**: the non-private baseline, "
                     "no clipping and no noise.")
    if mode == "epsilon":
        bind(st.number_input, "Target ε", "target_epsilon", min_value=0.0, max_value=1000.0, step=0.5,
             format="%.2f", help=FIELD_HELP["target_epsilon"].capitalize() + ". Below 1 is strong, 1-5 moderate, "
             "5-10 weak, above 10 very weak privacy.")
    elif mode == "sigma":
        bind(st.number_input, "Noise multiplier σ", "noise_multiplier", min_value=0.0, max_value=1000.0,
             step=0.1, format="%.2f", help=explain("noise_multiplier").replace("**", ""))
    if mode != "baseline":
        bind(st.number_input, "δ (delta)", "target_delta", min_value=0.0, max_value=0.5, step=1e-6, format="%.1e",
             help=explain("delta").replace("**", ""))
        bind(st.number_input, "Clipping bound C (max_grad_norm)", "max_grad_norm", min_value=0.0,
             max_value=1e6, step=0.1, format="%g", help=explain("max_grad_norm").replace("**", ""))
        clicked = st.button("Suggest C from the data", key="train-probe", icon=":material/auto_fix_high:",
                            width="stretch", disabled=loaded is None,
                            help=f"Trains up to {PROBE_STEPS} short steps without noise or clipping, measures every "
                                 "per-sample gradient norm and proposes a C that clips about 65 % of them. "
                                 "The probe looks at the training data without privacy.")
        if clicked:
            run_probe(settings)
    else:
        st.caption(explain("baseline").replace("**", ""))


def probe_signature(settings: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(settings.get(field) for field in PROBE_FIELDS)


def run_probe(settings: dict[str, Any]) -> None:
    """Measure per-sample gradient norms and keep them (with the suggested C) for this configuration."""
    from dpcore.engine.training import probe_grad_norms, suggest_max_grad_norm

    probe_cfg = baseline_config(config_from(settings)).replace(max_grad_norm=1.0, physical_batch_size=None)
    steps = probe_steps(settings["batch_size"])
    try:
        with st.spinner(f"Probing per-sample gradient norms ({steps} steps, no privacy)…"):
            norms = probe_grad_norms(probe_cfg, steps=steps)
            suggested = suggest_max_grad_norm(norms)
    except DPExplorerError as err:
        st.session_state[PROBE_KEY] = {"error": str(err), "signature": probe_signature(settings)}
        return
    st.session_state[PROBE_KEY] = {"norms": norms, "suggested": suggested, "steps": steps,
                                   "signature": probe_signature(settings)}


def probe_steps(batch_size: int) -> int:
    """Probe steps for a batch size: up to PROBE_STEPS, fewer for big batches (a few thousand norms suffice)."""
    return max(3, min(PROBE_STEPS, PROBE_SAMPLES // max(1, int(batch_size or 1))))


def current_probe(settings: dict[str, Any]) -> dict[str, Any] | None:
    """The last probe, if it was taken with the current data, model and training knobs."""
    probe = st.session_state.get(PROBE_KEY)
    if probe and probe.get("signature") == probe_signature(settings):
        return probe
    return None


def apply_suggestion(value: float) -> None:
    set_field("max_grad_norm", float(value))


def probe_panel(settings: dict[str, Any]) -> None:
    """The probe's histogram with the proposed C, and a button that applies it."""
    probe = current_probe(settings)
    if probe is None or settings["mode"] == "baseline":
        return
    with st.container(border=True):
        if "error" in probe:
            st.error(f"The gradient-norm probe failed: {probe['error']}")
            return
        norms, suggested = probe["norms"], probe["suggested"]
        chart_col, text_col = st.columns([3, 2], gap="large")
        with chart_col:
            st.plotly_chart(plots.grad_norm_histogram(norms, bound=suggested, title="Per-sample gradient norms"),
                            key="train-probe-chart")
        with text_col:
            st.markdown(f"##### Suggested C = {suggested:g}")
            current = settings["max_grad_norm"]
            clipped_now = float(np.mean(np.asarray(norms) > current)) if current else 1.0
            st.markdown(f"It clips about **{float(np.mean(np.asarray(norms) > suggested)):.0%}** of the "
                        f"{len(norms):,} per-sample gradients measured over {probe.get('steps', PROBE_STEPS)} steps "
                        f"(median norm {float(np.median(norms)):.3g}). Your current C = {current:g} clips "
                        f"{clipped_now:.0%}.")
            st.caption(":material/visibility: The probe looked at the training data without privacy: its "
                       "norms are not covered by ε. A careful deployment probes on public data of the same kind.")
            applied = math.isclose(current or 0.0, suggested)
            st.button(f"Use C = {suggested:g}", key="train-probe-apply", type="primary", icon=":material/check:",
                      disabled=applied, on_click=apply_suggestion, args=(suggested,),
                      help="Puts the suggested bound in the form.")
            if applied:
                st.caption(":green[:material/check:] In use.")


# ---------------------------------------------------------------------- training knobs
def training_section(settings: dict[str, Any]) -> None:
    """Epochs, batch size, learning rate and optimizer; the rest in an Advanced expander."""
    left, right = st.columns(2)
    with left:
        bind(st.number_input, "Epochs", "epochs", min_value=1, max_value=1000, step=1,
             help=FIELD_HELP["epochs"].capitalize() + ". More epochs spend more ε at the same σ (with a target ε, "
             "more epochs mean more noise per step).")
        bind(st.number_input, "Learning rate", "lr", min_value=0.0, max_value=100.0, step=0.01, format="%g",
             help="Step size of the optimizer. DP-SGD usually wants a larger rate with SGD (0.05-0.5) and "
                  "about 1e-3 with Adam.")
    with right:
        bind(st.number_input, "Batch size", "batch_size", min_value=1, max_value=1_000_000, step=16,
             help=FIELD_HELP["batch_size"].capitalize() + ": with Poisson sampling each example joins a batch "
             "with probability batch/N. Larger batches average the noise away at the same ε.")
        bind(st.selectbox, "Optimizer", "optimizer", options=list(OPTIMIZERS),
             format_func={"sgd": "SGD", "adam": "Adam"}.get,
             help=FIELD_HELP["optimizer"].capitalize() + " (momentum under Advanced).")
    with st.expander("Advanced", icon=":material/tune:"):
        a_left, a_right = st.columns(2)
        with a_left:
            bind(st.selectbox, "Accountant", "accountant", options=list(ACCOUNTANTS), format_func=str.upper,
                 help=explain("accountants").replace("**", ""))
            bind(st.number_input, "ε limit (hard stop)", "epsilon_limit", min_value=0.0, max_value=1000.0,
                 step=0.5, format="%.2f", placeholder="no limit", disabled=settings["mode"] == "baseline",
                 help=explain("epsilon_limit").replace("**", "") + " Leave empty for no limit.")
            bind(st.number_input, "Physical batch size", "physical_batch_size", min_value=1, max_value=1_000_000,
                 step=16, placeholder="same as batch",
                 help=FIELD_HELP["physical_batch_size"].capitalize() + ": the same logical steps and the same ε, "
                 "computed in smaller pieces to save memory. Leave empty to process whole batches.")
            bind(st.number_input, "Seed", "seed", min_value=0, max_value=2**32 - 1, step=1,
                 help="Fixes the model's initial weights (also used for the baseline); the member/non-member "
                      "split is fixed whatever the seed. The DP noise and the batch sampling do not follow it: "
                      "they come from fresh operating-system entropy, used once and never stored, so nobody "
                      "can replay them - unless 'Reproducible' is ticked.")
            bind(st.checkbox, "Reproducible (noise follows the seed — not private)", "reproducible",
                 help="Noise and batch sampling follow the seed, so the same settings train the same model bit "
                      "for bit (for tests and teaching). Such a run is NOT private against anyone who knows the "
                      "seed: they can retrain it with and without a record and compare. Leave it off for any "
                      "model you release.")
        with a_right:
            bind(st.selectbox, "Per-sample gradients", "grad_sample_mode", options=list(GRAD_SAMPLE_MODES),
                 help="How Opacus gets per-sample gradients. auto: ghost clipping (fastest, flat clipping) unless "
                      "the model shares parameters; hooks: classic per-sample gradients; functorch: vmap-based.")
            bind(st.selectbox, "Device", "device", options=list(DEVICES),
                 help=f"Where training runs. auto picks CUDA, then Apple MPS, then the CPU; here: "
                      f"{ui.device_description()}.")
            bind(st.number_input, "SGD momentum", "momentum", min_value=0.0, max_value=0.99, step=0.05,
                 format="%.2f", disabled=settings["optimizer"] != "sgd", help=FIELD_HELP["momentum"] + " (SGD only).")
            bind(st.checkbox, "Poisson sampling", "poisson_sampling",
                 help=FIELD_HELP["poisson_sampling"].capitalize() + ". Without it the ε reported is not a "
                 "proven bound for the batches actually drawn.")


# ---------------------------------------------------------------------- check and train
def check_config(settings: dict[str, Any], loaded: data.SplitData | None) -> TrainConfig | None:
    """Validate the form; show the ConfigError inline (None) or the guidance and the plan (the config)."""
    cfg = config_from(settings)
    if loaded is None:
        st.caption(":material/block: Training needs a loaded dataset (see above).")
        return None
    n = loaded.n_members
    try:
        cfg = cfg.validate(n=n)
    except ConfigError as err:
        st.error(f"**Fix this setting to train:** {err}", icon=":material/error:")
        return None
    plan = None
    if cfg.private:
        try:
            plan = privacy_plan(cfg.mode, cfg.target_epsilon, cfg.noise_multiplier, cfg.target_delta, n,
                                cfg.batch_size, cfg.epochs, cfg.accountant)
        except DPExplorerError as err:
            st.error(f"**Cannot plan this run:** {err}", icon=":material/error:")
            return None
    probe = current_probe(settings)
    notes = guidance(cfg, n, grad_norms=probe.get("norms") if probe and "norms" in probe else None,
                     noise_multiplier=plan[0] if plan else None)  # the σ quoted below, not a second estimate
    for note in notes:
        if note.level == "warning":
            st.warning(note.message, icon=":material/warning:")
        else:
            st.info(note.message, icon=":material/info:")
    if plan is not None:
        sigma, epsilon, steps, rate = plan
        what = (f"σ = **{sigma:.3f}** is calibrated so that" if cfg.mode == "epsilon"
                else f"With σ = **{sigma:.3f}**,")
        st.markdown(f":material/calculate: {what} {steps:,} steps (sampling rate {rate:.2%} per step) spend "
                    f"ε = **{epsilon:.2f}** at δ = {cfg.target_delta:g} ({cfg.accountant.upper()})"
                    + (f"; the hard limit stops training at ε = {cfg.epsilon_limit:g}."
                       if cfg.epsilon_limit is not None and cfg.epsilon_limit < epsilon else "."))
    return cfg


def submit(cfg: TrainConfig, *, with_baseline: bool) -> None:
    """Queue the run (and its non-private baseline, or link an identical finished one) and show it."""
    store, queue = ui.store(), ui.queue()
    try:
        run_id = queue.submit(cfg)
    except DPExplorerError as err:
        st.error(str(err), icon=":material/error:")
        return
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
                baseline_id = queue.submit(baseline_config(cfg))
                link_baseline(store, run_id, baseline_id)
        except DPExplorerError as err:
            st.warning(f"The run is queued, but its non-private baseline could not be: {err}")
            return
    st.rerun()  # redraw the whole page, so the sidebar's job queue shows the new run too


def train_bar(settings: dict[str, Any], cfg: TrainConfig | None) -> None:
    """The baseline checkbox and the Train button (disabled until the settings are valid)."""
    left, right = st.columns([3, 1], vertical_alignment="center")
    with left:
        bind(st.checkbox, "Also train the non-private baseline (same data, model, seed and knobs)", "with_baseline",
             disabled=settings["mode"] == "baseline",
             help="Queued after this run (or reused when an identical one finished before). Its accuracy is drawn "
                  "on the accuracy chart and gives the accuracy cost of privacy.")
    with right:
        clicked = st.button("Train", key="train-submit", type="primary", icon=":material/play_arrow:",
                            disabled=cfg is None, width="stretch",
                            help="Queue this run; it trains in the background and you can keep exploring.")
    if clicked and cfg is not None:
        submit(cfg, with_baseline=bool(settings["with_baseline"]))


# ---------------------------------------------------------------------- page
def main() -> None:
    restore_settings()
    settings = form()
    show_flashes()
    st.title("Train a model with differential privacy")
    st.caption("Pick data, a model and a privacy budget. Training runs in the background with DP-SGD (Opacus); "
               "ε, clipping and accuracy update live, then a membership attack tests what the model leaks.")

    data_col, privacy_col, training_col = st.columns([4, 5, 4], gap="medium")
    with data_col, st.container(border=True):
        st.markdown("##### :material/database: Data")
        loaded = dataset_section(settings)
    with privacy_col, st.container(border=True):
        st.markdown("##### :material/shield_lock: Model and privacy")
        privacy_section(settings, loaded)
    with training_col, st.container(border=True):
        st.markdown("##### :material/tune: Training")
        training_section(settings)

    probe_panel(settings)
    cfg = check_config(settings, loaded)
    train_bar(settings, cfg)
    sync_url(settings)

    st.divider()
    run_id = current_run()
    if run_id is None:
        with st.container(border=True):
            st.markdown("##### :material/monitoring: No run yet")
            st.markdown("Press **Train**: progress, ε spent, clipped gradients, loss and accuracy appear here while "
                        "it trains; then the membership attack's ROC curve, the four checks and what the numbers "
                        "mean. Past runs are on the **Runs** page.")
        return
    store = ui.store()
    if not store.exists(run_id):
        st.warning(f"Run `{run_id}` is not in {store.root}: it was deleted or belongs to another runs folder.",
                   icon=":material/search_off:")
        set_current_run(None)
        return
    run_view.live_run(run_id, store=store, queue=ui.queue(), key="train", on_new_run=set_current_run)


ui.route_through_app()
main()
