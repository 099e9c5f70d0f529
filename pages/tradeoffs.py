"""Tradeoffs page: sweeps over target epsilon x clipping bound x seed, and the privacy/utility frontier they trace.

Start a sweep (``pages.sweep_form``), follow its progress, and read the tradeoff: accuracy, attack success and
empirical lower bounds against epsilon, and which clipping bound works best per epsilon. Clicking a point opens
that run. The view lives in the URL (``?sweep=...&run=...``, or ``?dataset=...&model=...`` for all runs of a
dataset) through ``pages.state``. Sweeps run in ``dpcore.jobs.sweep``; data, texts and charts come from
``dpcore.views.frontier`` and ``dpcore.views.tradeoffs``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dpcore.errors import DPExplorerError
from dpcore.jobs import sweep as sweeps
from dpcore.views import frontier as frontiers
from dpcore.views import report
from dpcore.views import tradeoffs as texts
from dpcore.views.explain import explain
from pages import state, ui
from pages.run_view import render_run
from pages.sweep_form import new_sweep_form

SELECTION_KEY = "tradeoffs_selections"  # plain session key: last seen selection per chart (a click acts once)
POLL_S = 2.0


# ---------------------------------------------------------------------- view state: URL first, then session
def _get(name: str) -> str | None:
    """A view setting ('sweep', 'dataset', 'model', 'run'): the URL's value, else the one remembered here."""
    return state.url_or_session(name, f"tradeoffs_view_{name}")


def _set(**values: str | None) -> None:
    """Keep view settings in the URL (shareable) and in the session (survives page changes); None removes one."""
    for name, value in values.items():
        state.remember(name, f"tradeoffs_view_{name}", value)


# ---------------------------------------------------------------------- choosing what to show
def choose_source(store: Any, stored: list[sweeps.Sweep]) -> tuple[str, Any]:
    """('sweep', Sweep), ('runs', (dataset, model)) or ('none', None), from the widgets and the URL."""
    wanted_sweep, wanted_dataset = _get("sweep"), _get("dataset")
    all_runs = store.list_runs(kind="train")
    done = all_runs[all_runs["status"] == "done"] if not all_runs.empty else all_runs
    if not stored and done.empty:
        return "none", None
    default = texts.SOURCE_RUNS if (wanted_dataset and not wanted_sweep) or not stored else texts.SOURCE_SWEEP
    source = st.segmented_control("Show", [texts.SOURCE_SWEEP, texts.SOURCE_RUNS], default=default, key=None,
                                  help=texts.HELP["source"]) or default
    if source == texts.SOURCE_SWEEP:
        if not stored:
            st.info("No sweeps yet: start one above.", icon=":material/info:")
            return "none", None
        ids, names = [sweep.id for sweep in stored], {sweep.id: sweep.name for sweep in stored}
        if wanted_sweep and wanted_sweep not in ids:
            st.warning(f"Sweep {wanted_sweep} is not in this runs directory; showing the newest one.",
                       icon=":material/search_off:")
        chosen = st.selectbox("Sweep", ids, index=ids.index(wanted_sweep) if wanted_sweep in ids else 0,
                              format_func=lambda i: f"{names[i]} · {i}",
                              help="Sweeps stored in the runs directory, newest first.")
        if chosen != _get("sweep"):
            _set(sweep=chosen, run=None)
        _set(dataset=None, model=None)
        return "sweep", next(sweep for sweep in stored if sweep.id == chosen)
    if done.empty:
        st.info("No finished runs yet.", icon=":material/info:")
        return "none", None
    datasets = sorted(done["dataset"].dropna().unique())
    left, right = st.columns(2)
    dataset = left.selectbox("Dataset", datasets,
                             index=datasets.index(wanted_dataset) if wanted_dataset in datasets else 0)
    models = sorted(done.loc[done["dataset"] == dataset, "model"].dropna().unique())
    wanted_model = _get("model")
    model = right.selectbox("Model", models, index=models.index(wanted_model) if wanted_model in models else 0)
    if dataset != _get("dataset") or model != _get("model"):
        _set(run=None)
    _set(sweep=None, dataset=dataset, model=model)
    return "runs", (dataset, model)


# ---------------------------------------------------------------------- progress and controls
def sweep_controls(sweep: sweeps.Sweep, progress: sweeps.SweepProgress, *, eta_s: float | None = None) -> None:
    """Progress bar, counts, the ETA (``eta_s`` seconds left) and Cancel / Resume buttons."""
    st.progress(progress.fraction, text=texts.progress_text(progress, eta_s=eta_s))
    queue = ui.queue()
    if progress.status == "running":
        if st.button("Cancel sweep", icon=":material/stop_circle:", key="tradeoffs_cancel", help=texts.HELP["cancel"]):
            sweeps.cancel_sweep(queue, sweep.id)
            st.rerun()
    elif progress.status in ("incomplete", "cancelled", "failed"):
        st.info(texts.resume_text(progress), icon=":material/replay:")
        retry = bool(progress.counts.get("failed")) and st.checkbox(
            "Also retry failed runs", key="tradeoffs_retry_failed", help=texts.HELP["retry"])
        if st.button("Resume sweep", type="primary", icon=":material/replay:", key="tradeoffs_resume"):
            try:
                sweeps.resume_sweep(queue, sweep.id, retry_failed=retry)
            except DPExplorerError as err:
                st.error(str(err), icon=":material/error:")
                return
            st.rerun()


# ---------------------------------------------------------------------- charts and tables
def _new_selection(key: str, signature: tuple) -> bool:
    """Whether ``signature`` (what chart or table ``key`` has selected) is a new, non-empty selection."""
    seen = st.session_state.setdefault(SELECTION_KEY, {})
    new = bool(signature) and seen.get(key) != signature
    seen[key] = signature
    return new


def _open(run_id: str | None) -> None:
    if run_id and run_id != _get("run"):
        _set(run=run_id)
        st.rerun()


def _chart(fig: Any, chart_key: str, *, known: set[str], lookup: Any = None) -> None:
    event = st.plotly_chart(fig, key=f"tradeoffs_chart_{chart_key}", on_select="rerun", selection_mode="points",
                            theme=None, config={"displaylogo": False})
    st.caption(texts.CAPTIONS[chart_key])
    points = list(getattr(getattr(event, "selection", None), "points", None) or [])
    if _new_selection(chart_key, tuple((p.get("curve_number"), p.get("point_index")) for p in points)):
        _open(texts.clicked_run(points, known=known, lookup=lookup))


def tradeoff_charts(points: pd.DataFrame) -> None:
    """The frontier, attack and bound charts and the two heatmaps, two per row, each clickable."""
    if points.empty:
        st.info("No finished runs to plot yet: the charts fill in as runs finish.", icon=":material/hourglass_top:")
        return
    charts, known = texts.tradeoff_charts(points), set(points["run_id"])
    for warning in charts.warnings:
        st.warning(warning, icon=":material/warning:")
    for index, (chart_key, fig) in enumerate(charts.figures.items()):
        if index % 2 == 0:
            columns = st.columns(2, gap="large")
        with columns[index % 2]:
            _chart(fig, chart_key, known=known, lookup=charts.lookups.get(chart_key))


def members_table(rows: pd.DataFrame, *, key: str) -> None:
    """One row per run (or sweep cell), selectable: selecting a row opens its run."""
    if rows.empty:
        return
    config = {name: st.column_config.NumberColumn(title, format=spec, help=help_)
              for name, (title, spec, help_) in texts.TABLE_NUMBERS.items()}
    config["run_id"] = None
    event = st.dataframe(rows, hide_index=True, column_config=config, on_select="rerun",
                         selection_mode="single-row", key=key, width="stretch")
    selected = list(getattr(getattr(event, "selection", None), "rows", None) or [])
    if _new_selection(key, tuple(selected)):
        run_id = rows.iloc[selected[0]]["run_id"]
        _open(run_id if isinstance(run_id, str) else None)


def selected_run(store: Any) -> None:
    """The run picked on a chart or in the table: the shared run view (with its report) and a link."""
    run_id = _get("run")
    if not run_id:
        st.caption("Click a point, a heatmap cell or a table row to open that run here.")
        return
    if not store.exists(run_id):
        st.warning(f"Run {run_id} is not in this runs directory (deleted?).", icon=":material/search_off:")
        return
    st.divider()
    header, close = st.columns([5, 1], vertical_alignment="center")
    header.subheader(f"Run {run_id}")
    if close.button("Close", icon=":material/close:", key="tradeoffs_close_run"):
        _set(run=None)
        st.rerun()
    ui.page_link("pages/runs.py", label="Open in the Runs page", icon=":material/table_view:",
                 query_params={"run": run_id})
    try:
        render_run(run_id, store=store, queue=ui.queue(), key="tradeoffs_run")
    except DPExplorerError as err:
        st.error(str(err), icon=":material/error:")


# ---------------------------------------------------------------------- page
def _sweep_body(sweep_id: str, polling: bool) -> None:
    store = ui.store()
    try:
        sweep = sweeps.load_sweep(store, sweep_id)
        states = sweeps.member_states(store, sweep)
        progress = sweeps.sweep_progress(store, sweep, states=states)
    except DPExplorerError as err:
        st.error(str(err), icon=":material/error:")
        return
    if polling and progress.status != "running":
        st.rerun()  # whole page once, without the timer
    st.markdown(f"**{sweep.name}**  \n:gray[{sweep.id} · created {sweep.created[:16].replace('T', ' ')} UTC]")
    eta = texts.sweep_eta(states, spec=sweep.spec, estimate_s=sweep.estimate_s) if polling else None
    sweep_controls(sweep, progress, eta_s=eta)
    points = frontiers.run_points(sweeps.sweep_runs(store, sweep))
    st.download_button("Sweep report (HTML)", data=lambda: report.sweep_report(store, sweep_id),
                       file_name=report.report_filename(sweep_id), mime="text/html", on_click="ignore",
                       icon=":material/download:", key="tradeoffs_sweep_report", help=texts.HELP["report"])
    tradeoff_charts(points)
    with st.expander(f"Runs of this sweep ({len(states)})", icon=":material/table_view:"):
        members_table(texts.member_rows(states, points), key="tradeoffs_members")
    selected_run(store)


def _runs_body(dataset: str, model: str) -> None:
    store = ui.store()
    points = frontiers.run_points(frontiers.runs_of(store, dataset=dataset, model=model))
    st.caption(texts.runs_caption(len(points), dataset=dataset, model=model))
    tradeoff_charts(points)
    with st.expander(f"Runs ({len(points)})", icon=":material/table_view:"):
        members_table(points[texts.RUNS_TABLE_COLUMNS] if not points.empty else points, key="tradeoffs_runs_table")
    selected_run(store)


def main() -> None:
    st.title("Tradeoffs")
    st.caption(texts.INTRO)
    state.sync_url({name: _get(name) for name in texts.VIEW_PARAMS})  # this page's parameters, no other page's
    store = ui.store()
    try:
        stored = sweeps.list_sweeps(store)
    except DPExplorerError as err:
        st.error(str(err), icon=":material/error:")
        stored = []
    new_sweep_form(store, expanded=not stored,
                   on_started=lambda sweep_id: _set(sweep=sweep_id, dataset=None, run=None))
    source, choice = choose_source(store, stored)
    if source == "none":
        if not stored:
            st.info(texts.EMPTY, icon=":material/info:")
        return
    with st.expander("How to read these charts", icon=":material/help:"):
        for topic in texts.READING_TOPICS:
            st.markdown(explain(topic))
    if source == "sweep":
        polling = sweeps.sweep_progress(store, choice).status == "running"
        st.fragment(run_every=POLL_S if polling else None)(_sweep_body)(choice.id, polling)
    else:
        _runs_body(*choice)


ui.route_through_app()
main()
