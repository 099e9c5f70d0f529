"""The dataset picker of the Train page: built-in datasets (with their download state) or a CSV upload.

Not a page. Draws widgets bound to a ``pages.state.PageState`` whose settings are the Train form's
(``dpcore.views.train_form``): ``dataset``, ``data_path``, ``csv_name``, ``label_column``, ``batch_size``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st

from dpcore.engine import data
from dpcore.errors import DatasetError
from dpcore.store import artifacts
from dpcore.views import plots, train_url
from dpcore.views import train_form as tf
from pages import ui
from pages.state import PageState

HELP = tf.HELP


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=6)
def load_data(name: str, data_path: str | None, label_column: str | None,
              feature_columns: tuple[str, ...] | None = None) -> data.SplitData:
    """The dataset, without downloading (DatasetError when a download is needed). Cached: do not modify."""
    return data.load_dataset(name, data_path=data_path, label_column=label_column, download=False,
                             feature_columns=feature_columns)


csv_header = st.cache_data(show_spinner=False, max_entries=6)(data.csv_columns)


def dataset_section(form: PageState, *, on_change: Callable[[], None]) -> data.SplitData | None:
    """Dataset picker, CSV upload, description, size, status and preview; returns the loaded data or None.

    ``on_change`` runs when the user picks another dataset (before the rerun draws the widgets).
    """
    settings = form.settings()
    if settings["dataset"] not in data.DATASETS:
        settings["dataset"] = tf.DEFAULT_DATASET
    form.bind(st.selectbox, "Dataset", "dataset", options=list(data.DATASETS), on_change=on_change,
         format_func=lambda name: data.DATASETS[name].title, help=HELP["dataset"])
    name, spec = settings["dataset"], data.DATASETS[settings["dataset"]]
    st.caption(spec.description)
    if name == "csv":
        return loaded_csv(form)
    status = data.dataset_status(name)
    st.markdown(tf.STATUS_TEXT.get(status, status))
    if status == "download":
        st.info(tf.download_text(spec.title, spec.n_examples), icon=":material/cloud_download:")
        if st.button("Download now", key="train-download", icon=":material/download:"):
            with st.spinner(f"Downloading {spec.title} from OpenML…"):
                try:
                    data.fetch_dataset(name)
                except DatasetError as err:
                    return st.error(str(err)) and None
            st.rerun()
        return None
    try:
        return show_loaded(load_data(name, None, None))
    except DatasetError as err:
        return st.error(str(err)) and None


def loaded_csv(form: PageState) -> data.SplitData | None:
    """Upload a CSV (kept in the run store), choose the label column, load it; errors inline."""
    settings = form.settings()
    uploaded = st.file_uploader("CSV file", type=["csv", "txt", "tsv"], key=form.widget_key("csv_file"),
                                help=HELP["csv_file"])
    if uploaded is not None:
        try:
            path = str(ui.store().save_upload(uploaded.getvalue(), uploaded.name))
            if settings.get("data_path") != path:  # a new upload: cap the folder (uploads runs use stay)
                artifacts.prune_uploads(ui.store().root, used=used_uploads(), keep=[path])
        except (OSError, TypeError) as err:
            return st.error(f"Could not keep the uploaded file: {err}") and None
        if settings.get("data_path") != path:
            settings.update(data_path=path, csv_name=uploaded.name, label_column=None)
    if uploaded is None and settings.get("data_path") and not Path(settings["data_path"]).is_file():
        settings.update(data_path=None, csv_name=None, label_column=None)  # removed (a rejected upload)
    if not settings.get("data_path"):
        return st.info("Upload a CSV to train on your own data, or pick a built-in dataset.",
                       icon=":material/upload:") and None
    if uploaded is None:
        st.caption(f":material/description: Using `{settings.get('csv_name') or 'your CSV'}` (uploaded earlier).")
    try:
        columns = csv_header(settings["data_path"])
        if not columns:
            return st.error("The CSV has no columns: it needs a header row naming them.") and None
        if settings.get("label_column") not in columns:
            if settings.get("label_column"):
                st.caption(f":material/info: The CSV has no column `{train_url.shown(settings['label_column'])}`: "
                           "pick the label column.")
            form.set("label_column", tf.label_column_for(columns, settings.get("label_column")))
        label = form.bind(st.selectbox, "Label column", "label_column", options=columns, help=HELP["label_column"])
        features = feature_picker(form, columns, label)
        loaded = load_data("csv", settings["data_path"], label, tuple(features) if features is not None else None)
    except DatasetError as err:
        if uploaded is not None:  # a rejected upload is not kept (unless a run trains on the same file)
            artifacts.discard_upload(ui.store().root, settings["data_path"], used=used_uploads())
        return st.error(str(err), icon=":material/error:") and None
    st.caption(loaded.info.description)
    batch = tf.fitted_batch(loaded.n_members, settings["batch_size"])
    if batch is not None:
        form.set("batch_size", batch)
        st.caption(f":material/info: Batch size lowered to {batch}: the recipe's batch is larger than the "
                   f"{loaded.n_members} training examples.")
    return show_loaded(loaded)


def used_uploads() -> list[str]:
    """The ``data_path`` of every stored run (uploads they use are never removed)."""
    return [rec.config["data_path"] for rec in ui.store().records() if rec.config.get("data_path")]


def feature_picker(form: PageState, columns: list[str], label: str) -> list[str] | None:
    """The feature-column multiselect (all but the label ticked by default); returns the config's
    ``feature_columns``: None for all of them, else the ticked columns in file order."""
    settings, options = form.settings(), [column for column in columns if column != label]
    choice = settings.get("feature_choice")
    if choice is None or any(column not in options for column in choice):  # a new file or label
        form.set("feature_choice", tf.feature_columns_for(columns, label, settings.get("feature_columns")))
    chosen = form.bind(st.multiselect, "Feature columns", "feature_choice", options=options,
                       help=HELP["feature_columns"], placeholder="Tick at least one column")
    settings["feature_columns"] = tf.chosen_features(columns, label, chosen)
    return settings["feature_columns"]


def show_loaded(loaded: data.SplitData) -> data.SplitData:
    """The dataset's size line and a preview expander (images or the first rows); returns ``loaded``."""
    st.markdown(tf.size_text(loaded.info), help="The held-out examples measure test accuracy and are the membership "
                "attack's non-members. The split is fixed, whatever the training seed.")
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
    return loaded
