"""Runs: every stored run in one sortable, filterable table; compare, open, continue, export or delete them.

Thin page: the numbers come from ``dpcore.views.tables`` (overview, comparison, overlays, exports), the
table's columns, filters and texts from ``dpcore.views.runs_table``; the charts from ``dpcore.views.plots``;
one run's full view from ``pages.run_view`` and "Continue training" from ``pages.panels``. Filters and the
ticked runs (``?run=<id>,<id>``) are kept by ``pages.state``. While any run is queued or running, the page
body is a fragment that redraws every ``REFRESH_S`` seconds (longer when many sessions watch: ``ui.poll_interval``).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dpcore.errors import DPExplorerError
from dpcore.store.records import StoredRun
from dpcore.store.runs import ACTIVE_STATUSES, RunActive, RunNotFound, RunStore
from dpcore.views import plots, report
from dpcore.views import runs_table as texts
from dpcore.views import tables as compare
from dpcore.views.explain import explain
from pages import state, ui
from pages.panels import continue_panel
from pages.run_view import render_run

REFRESH_S = 2.0
# Plain session keys (widget keys vanish when the user visits another page).
SELECTED_KEY = "runs_selected_ids"
LINK_USED_KEY = "runs_query_used"  # a shared link's runs are ticked once per session
NOTICE_KEY = "runs_notice"
FILTERS = state.PageState(key="runs_filters", widget_prefix="runs-filter-",
                          defaults=lambda: {name: (list(value) if isinstance(value, list) else value)
                                            for name, value in texts.FILTER_DEFAULTS.items()})
COLUMN_CHOICE = state.PageState(key="runs_columns", widget_prefix="runs-columns-", defaults=lambda: {"extra": []})


# ---------------------------------------------------------------------- page
def main() -> None:
    st.title("Runs")
    store = ui.store()
    overview = compare.runs_overview(store)
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice:
        st.toast(notice[1], icon=notice[0])
    if overview.empty:
        state.sync_url({})  # no parameters of its own here: drop the ones another page (the planner) left
        return _empty_state()
    st.caption(texts.INTRO)
    filters = _filters(overview)
    polling = bool(overview["status"].isin(ACTIVE_STATUSES).any())
    every = max(REFRESH_S, ui.poll_interval())  # longer when many sessions watch
    st.fragment(run_every=every if polling else None)(_body)(filters, polling, every)


def _empty_state() -> None:
    with st.container(border=True):
        st.markdown("#### No runs yet")
        st.markdown(texts.EMPTY)
        st.page_link("pages/train.py", label="Train a model", icon=":material/model_training:")


def _filters(overview: pd.DataFrame) -> dict[str, Any]:
    """The search box and the three multiselects; their values (kept across pages) as ``filter_runs`` arguments."""
    options = texts.filter_options(overview)
    for name, allowed in options.items():  # e.g. the last run of a chosen dataset was deleted
        current = st.session_state.get(FILTERS.widget_key(name), FILTERS.settings()[name])
        if any(item not in allowed for item in current):
            FILTERS.set(name, [item for item in current if item in allowed])
    text_col, dataset_col, status_col, mode_col, column_col = st.columns([2, 1.3, 1.3, 1.3, 1.5])
    with column_col:
        COLUMN_CHOICE.bind(st.multiselect, "More columns", "extra", options=texts.EXTRA_COLUMNS,
                           format_func=texts.column_title, placeholder="Dataset, model, …", help=texts.HELP["columns"])
    with text_col:
        FILTERS.bind(st.text_input, "Search names", "text", placeholder="e.g. digits eps 3", help=texts.HELP["text"],
                     icon=":material/search:")
    with dataset_col:
        FILTERS.bind(st.multiselect, "Dataset", "datasets", options=options["datasets"], placeholder="All datasets")
    with status_col:
        FILTERS.bind(st.multiselect, "Status", "statuses", options=options["statuses"], placeholder="All statuses",
                     help=texts.HELP["statuses"])
    with mode_col:
        FILTERS.bind(st.multiselect, "Privacy", "modes", options=options["modes"], format_func=compare.mode_label,
                     placeholder="All settings", help=texts.HELP["modes"])
    return dict(FILTERS.settings())


# ---------------------------------------------------------------------- body (refreshes while runs are active)
def _body(filters: dict[str, Any], polling: bool, every: float) -> None:
    store = ui.store()
    overview = compare.runs_overview(store)
    if polling and not overview["status"].isin(ACTIVE_STATUSES).any():
        st.rerun()  # the last active run stopped: redraw the whole page without the timer
    if overview.empty:
        _empty_state()
        return
    shown = compare.filter_runs(overview, **filters)
    if shown.empty:
        state.sync_url({})  # nothing ticked can show: the address names no run
        st.info(f"No run matches these filters ({len(overview)} stored). Clear a filter to see more.",
                icon=":material/filter_alt_off:")
        return
    selected = _table(shown, stored=overview["id"].tolist(), refresh_s=every)
    if not selected:
        st.caption(":material/touch_app: Tick one run to open it, two or more to compare them.")
        return
    labels = compare.unique_labels({run_id: shown.loc[shown["id"] == run_id, "name"].iloc[0] for run_id in selected})
    if len(selected) >= 2:
        _comparison(store, selected)
    _run_panel(store, selected, labels)


def _table(shown: pd.DataFrame, *, stored: list[str], refresh_s: float) -> list[str]:
    """The runs table (its caption names the refresh interval ``refresh_s``); returns the ids of the ticked rows
    (kept across refreshes, new rows and pages)."""
    ids = shown["id"].tolist()
    previous = [run_id for run_id in st.session_state.get(SELECTED_KEY, []) if run_id in ids]
    link = state.url_value("run")
    if not previous and link and not st.session_state.get(LINK_USED_KEY):
        st.session_state[LINK_USED_KEY] = True  # a shared link ?run=<id>[,<id>...] opens those runs once
        previous, unknown = texts.linked_runs(link, shown=ids, stored=stored)
        if unknown:
            st.warning(texts.unknown_runs_text(unknown), icon=":material/search_off:")
    kinds = {"text": st.column_config.TextColumn, "number": st.column_config.NumberColumn,
             "datetime": st.column_config.DatetimeColumn}
    event = st.dataframe(
        texts.table_frame(shown), key=texts.table_key(ids),
        on_select="rerun", selection_mode="multi-row", hide_index=True, width="stretch",
        selection_default={"selection": {"rows": [ids.index(run_id) for run_id in previous]}},
        column_order=texts.table_columns(COLUMN_CHOICE.settings()["extra"]), placeholder="–",
        column_config={name: kinds[kind](title, **options) for name, (kind, title, options) in texts.COLUMNS.items()})
    rows = list(event.selection.rows) if event is not None else []
    selected = [ids[row] for row in rows if 0 <= row < len(ids)]
    st.session_state[SELECTED_KEY] = selected
    st.caption(texts.count_caption(shown, total=len(stored), selected=len(selected), refresh_s=refresh_s))
    state.sync_url({"run": ",".join(selected) or None})  # the address bar opens this view: one run or a comparison
    return selected


# ---------------------------------------------------------------------- comparison
def _comparison(store: RunStore, ids: list[str]) -> None:
    st.subheader(f"Compare {len(ids)} runs")
    try:
        frame = compare.compare_runs(store, ids)
        data = compare.overlays(store, ids)
    except RunNotFound as err:  # deleted by another session between the table and here
        st.warning(str(err))
        return
    table = compare.comparison_table(frame)
    identifier = ",".join(ids)
    st.download_button("Comparison report (HTML)", data=lambda: report.report_for(store, identifier),
                       file_name=report.report_filename(f"compare-{len(ids)}-runs-{ids[0]}"), mime="text/html",
                       icon=":material/description:", on_click="ignore", key="runs-cmp-report",
                       help=texts.HELP["report"])
    st.dataframe(table, width="stretch", height=texts.ROW_PX * (len(table) + 1) + 3,
                 column_config={"_index": st.column_config.TextColumn("", width=230)})
    st.caption(texts.comparison_caption(data.shared, len(ids)))
    colors, figures = compare.overlay_charts(frame, data)
    captions = texts.chart_captions(data.without_roc)
    st.markdown(texts.colour_key(colors), unsafe_allow_html=True)
    columns = st.columns(2, gap="large")
    for index, (name, figure) in enumerate(figures.items()):
        figure.update_layout(showlegend=False)
        with columns[index % 2]:
            st.plotly_chart(plots.finish_figure(figure), key=f"runs-cmp-{name}")
            st.caption(captions[name])
    with st.expander("What do these numbers mean?", icon=":material/help:"):
        for topic in texts.EXPLAINED_TOPICS:
            st.markdown(explain(topic))


# ---------------------------------------------------------------------- one run
def _run_panel(store: RunStore, ids: list[str], labels: dict[str, str]) -> None:
    st.divider()
    if len(ids) > 1:
        run_id = st.selectbox("Open run", ids, format_func=labels.get, key="runs-open",
                              help="The run whose full view, downloads and actions are shown below.")
    else:
        run_id = ids[0]
    try:
        run = StoredRun.load(store, run_id)
    except RunNotFound as err:
        st.warning(str(err))
        return
    # Stateful popovers: their contents (accounting, exports) are computed only while open, and a key per
    # run closes them when another run is opened (e.g. the continuation just queued).
    with st.container(horizontal=True):
        for label, icon, draw in (("Continue training", ":material/replay:", _continue),
                                  ("Download", ":material/download:", _downloads),
                                  ("Delete", ":material/delete:", _delete)):
            name = label.split()[0].lower()
            popover = st.popover(label, icon=icon, key=f"runs-pop-{name}-{run.id}", on_change="rerun")
            if popover.open:
                with popover:
                    draw(store, run)
    render_run(run_id, store=store, key="runs-view")


def _continue(store: RunStore, run: StoredRun) -> None:
    def opened(new_id: str) -> None:
        st.session_state[SELECTED_KEY] = [new_id]
        st.session_state[NOTICE_KEY] = (":material/replay:", f"Queued {store.get(new_id).name}")

    continue_panel(run, store=store, queue=ui.queue(), key="runs", on_new_run=opened)


def _downloads(store: RunStore, run: StoredRun) -> None:
    st.caption(texts.HELP["downloads"])
    for table, label, icon in (("steps", "Steps (CSV)", ":material/table_rows:"),
                               ("epochs", "Epochs (CSV)", ":material/calendar_view_week:")):
        st.download_button(label, data=compare.export_metrics_csv(store, run.id, table=table),
                           file_name=compare.export_filename(run.id, table), mime="text/csv", icon=icon,
                           on_click="ignore", key=f"runs-download-{table}-{run.id}", width="stretch")
    st.download_button("Summary (JSON)", data=compare.export_summary_json(store, run.id),
                       file_name=compare.export_filename(run.id, "summary"), mime="application/json",
                       icon=":material/data_object:", on_click="ignore", key=f"runs-download-summary-{run.id}",
                       width="stretch")


def _delete(store: RunStore, run: StoredRun) -> None:
    if run.active:
        st.warning(f"This run is {run.status}: cancel it and wait until it stops before deleting it.",
                   icon=":material/pending:")
        if st.button("Cancel run", key=f"runs-cancel-{run.id}", icon=":material/stop_circle:",
                     disabled=run.record.cancel_requested):
            try:
                ui.queue().cancel(run.id)
            except DPExplorerError as err:
                st.error(str(err))
            else:
                st.rerun()
    continuations = [child for child in store.records(kind="train", group=run.id) if child.id != run.id]
    st.markdown(texts.delete_text(run, continuations=len(continuations)))
    confirmed = st.checkbox("Yes, delete this run for good", key=f"runs-delete-confirm-{run.id}")
    if st.button("Delete run", type="primary", disabled=not confirmed, key=f"runs-delete-{run.id}",
                 icon=":material/delete_forever:"):
        try:
            store.delete(run.id)
        except (RunActive, RunNotFound) as err:
            st.error(str(err))
            return
        st.session_state[SELECTED_KEY] = [run_id for run_id in st.session_state.get(SELECTED_KEY, [])
                                          if run_id != run.id]
        st.session_state[NOTICE_KEY] = (":material/delete:", f"Deleted {run.name}")
        st.rerun()


ui.route_through_app()
main()
