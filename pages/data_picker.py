"""The dataset picker of the Train page: built-in datasets (with their download state) or a CSV upload.

Not a page. Draws widgets bound to a ``pages.state.PageState`` whose settings are the Train form's
(``dpcore.views.train_form``): ``dataset``, ``data_path``, ``csv_name``, ``label_column``, ``batch_size``.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from dpcore.engine import data
from dpcore.errors import DatasetError
from dpcore.views import plots
from dpcore.views import train_form as tf
from pages import ui
from pages.state import PageState

HELP = tf.HELP


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=6)
def load_data(name: str, data_path: str | None, label_column: str | None) -> data.SplitData:
    """The dataset, without downloading (DatasetError when a download is needed). Cached: do not modify."""
    return data.load_dataset(name, data_path=data_path, label_column=label_column, download=False)


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
        except (OSError, TypeError) as err:
            return st.error(f"Could not keep the uploaded file: {err}") and None
        if settings.get("data_path") != path:
            settings.update(data_path=path, csv_name=uploaded.name, label_column=None)
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
            form.set("label_column", tf.label_column_for(columns, settings.get("label_column")))
        form.bind(st.selectbox, "Label column", "label_column", options=columns, help=HELP["label_column"])
        loaded = load_data("csv", settings["data_path"], settings["label_column"])
    except DatasetError as err:
        return st.error(str(err), icon=":material/error:") and None
    st.caption(loaded.info.description)
    batch = tf.fitted_batch(loaded.n_members, settings["batch_size"])
    if batch is not None:
        form.set("batch_size", batch)
        st.caption(f":material/info: Batch size lowered to {batch}: the recipe's batch is larger than the "
                   f"{loaded.n_members} training examples.")
    return show_loaded(loaded)


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
