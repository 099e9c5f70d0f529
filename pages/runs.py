"""Runs: every stored run in one sortable, filterable table; compare, open, continue, export or delete them.

Thin page: the numbers come from ``dpcore.views.tables`` (overview, comparison, overlays, exports)
and ``dpcore.jobs.resume`` (what continuing a run costs); the charts from ``dpcore.views.plots``; one
run's full view from ``pages.run_view``. While any run is queued or running, the page body
is a fragment that redraws every ``REFRESH_S`` seconds.
"""

from __future__ import annotations

import hashlib
import html
import math
from typing import Any

import pandas as pd
import streamlit as st

from dpcore.errors import DPExplorerError
from dpcore.jobs.resume import plan_resume, resume_problem
from dpcore.store.runs import ACTIVE_STATUSES, RunActive, RunNotFound, RunRecord, RunStore
from dpcore.views import plots, report
from dpcore.views import tables as compare
from dpcore.views.explain import explain
from pages import ui
from pages.run_view import render_run

REFRESH_S = 2.0
# Plain session keys (widget keys vanish when the user visits another page).
SELECTED_KEY = "runs_selected_ids"
FILTERS_KEY = "runs_filters"
NOTICE_KEY = "runs_notice"
FILTER_WIDGETS = {"datasets": "runs-filter-datasets", "statuses": "runs-filter-statuses",
                  "modes": "runs-filter-modes", "text": "runs-filter-text"}
TABLE_COLUMNS = ["name", "dataset", "model", "privacy", "epsilon_shown", "epsilon_note", "accuracy_pct", "mia_auc",
                 "lira_auc", "empirical_epsilon_lower", "status_label", "created_at"]
ROW_PX = 35  # st.dataframe row height, to size tables that should not scroll


# ---------------------------------------------------------------------- page
def main() -> None:
    st.title("Runs")
    store = ui.store()
    overview = compare.runs_overview(store)
    _show_notice()
    if overview.empty:
        _empty_state()
        return
    st.caption("Every training run stored in this runs directory. Tick runs in the table to compare them "
               "side by side or to open, continue, download or delete one. Click a column header to sort. "
               "The address bar keeps the runs you tick: copy it to share this comparison.")
    filters = _filters(overview)
    polling = bool(overview["status"].isin(ACTIVE_STATUSES).any())
    body = st.fragment(run_every=REFRESH_S if polling else None)(_body)
    body(filters, polling)


def _show_notice() -> None:
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice:
        st.toast(notice[1], icon=notice[0])


def _empty_state() -> None:
    with st.container(border=True):
        st.markdown("#### No runs yet")
        st.markdown("Train a model on the **Train** page. Every run lands here with the privacy it spent (ε), "
                    "its accuracy and how well a membership attack does against it, ready to compare "
                    "side by side, continue, download or delete.")
        st.page_link("pages/train.py", label="Train a model", icon=":material/model_training:")


# ---------------------------------------------------------------------- filters
def _persisted(name: str, default: Any, allowed: list[Any] | None = None) -> str:
    """Seed the widget key of filter ``name`` from the plain settings (they outlive page switches)."""
    key = FILTER_WIDGETS[name]
    value = st.session_state.get(key, st.session_state.get(FILTERS_KEY, {}).get(name, default))
    if allowed is not None:  # e.g. the last run of a chosen dataset was deleted
        value = [item for item in value if item in allowed]
    st.session_state[key] = value
    return key


def _filters(overview: pd.DataFrame) -> dict[str, Any]:
    datasets = sorted(overview["dataset"].dropna().unique().tolist())
    statuses = [status for status in ("queued", "running", "done", "cancelled", "failed", "interrupted")
                if status in set(overview["status"])]
    modes = [mode for mode in compare.MODE_LABELS if mode in set(overview["mode"].dropna())]
    text_col, dataset_col, status_col, mode_col = st.columns([2, 1.3, 1.3, 1.3])
    text = text_col.text_input("Search names", key=_persisted("text", ""), placeholder="e.g. digits eps 3",
                               help="Shows runs whose name or id contains every word you type.",
                               icon=":material/search:")
    chosen_datasets = dataset_col.multiselect("Dataset", datasets, key=_persisted("datasets", [], datasets),
                                              placeholder="All datasets")
    chosen_statuses = status_col.multiselect("Status", statuses, key=_persisted("statuses", [], statuses),
                                             placeholder="All statuses",
                                             help="done: trained to the end or stopped at the ε limit; "
                                                  "interrupted: the app stopped while it ran.")
    chosen_modes = mode_col.multiselect("Privacy", modes, key=_persisted("modes", [], modes),
                                        format_func=compare.mode_label, placeholder="All settings",
                                        help="target ε: noise calibrated to reach a target ε; fixed σ: noise "
                                             "multiplier set by hand; no DP: the non-private baseline.")
    filters = {"datasets": chosen_datasets, "statuses": chosen_statuses, "modes": chosen_modes, "text": text}
    st.session_state[FILTERS_KEY] = filters
    return filters


# ---------------------------------------------------------------------- body (refreshes while runs are active)
def _body(filters: dict[str, Any], polling: bool) -> None:
    store = ui.store()
    overview = compare.runs_overview(store)
    if polling and not overview["status"].isin(ACTIVE_STATUSES).any():
        st.rerun()  # the last active run stopped: redraw the whole page without the timer
    if overview.empty:
        _empty_state()
        return
    shown = compare.filter_runs(overview, **filters)
    if shown.empty:
        st.info(f"No run matches these filters ({len(overview)} stored). Clear a filter to see more.",
                icon=":material/filter_alt_off:")
        return
    selected = _table(shown, total=len(overview))
    if not selected:
        st.caption(":material/touch_app: Tick one run to open it, two or more to compare them.")
        return
    labels = compare.unique_labels({run_id: shown.loc[shown["id"] == run_id, "name"].iloc[0]
                                    for run_id in selected})
    if len(selected) >= 2:
        _comparison(store, selected)
    _run_panel(store, selected, labels)


def _table(shown: pd.DataFrame, *, total: int) -> list[str]:
    """The runs table; returns the ids of the ticked rows (kept across refreshes and new rows)."""
    ids = shown["id"].tolist()
    previous = [run_id for run_id in st.session_state.get(SELECTED_KEY, []) if run_id in ids]
    wanted = [run_id for run_id in (st.query_params.get("run") or "").split(",") if run_id in ids]
    if not previous and wanted and not st.session_state.get("runs_query_used"):
        previous = list(dict.fromkeys(wanted))  # a shared link ?run=<id>[,<id>...] opens those runs once
        st.session_state["runs_query_used"] = True
    # Selections are row positions: a new key whenever the rows change, seeded with the runs ticked before.
    signature = hashlib.sha1("\n".join(ids).encode()).hexdigest()[:12]
    # The grid cannot print infinity: no-DP runs show '–' here and 'no DP (ε = ∞)' under Privacy.
    display = shown.assign(accuracy_pct=shown["accuracy"] * 100,
                           epsilon_shown=shown["epsilon"].where(shown["epsilon"].abs() < math.inf))
    event = st.dataframe(
        display, key=f"runs-table-{signature}", on_select="rerun", selection_mode="multi-row",
        selection_default={"selection": {"rows": [ids.index(run_id) for run_id in previous]}},
        hide_index=True, width="stretch", column_order=TABLE_COLUMNS, placeholder="–",
        column_config={
            "name": st.column_config.TextColumn("Run", width=320,
                                                help="Continuations end in (+N epochs)."),
            "dataset": st.column_config.TextColumn("Dataset"),
            "model": st.column_config.TextColumn("Model"),
            "privacy": st.column_config.TextColumn(
                "Privacy", help="target ε: noise calibrated to reach that ε; fixed σ: noise multiplier set by hand; "
                                "no DP: the non-private baseline, with no guarantee (ε = ∞)."),
            "epsilon_shown": st.column_config.NumberColumn(
                "ε spent", format="%.2f", help="Privacy spent, at the run's δ: smaller is more private. "
                "Latest value while a run trains; empty for runs without DP (ε = ∞)."),
            "epsilon_note": st.column_config.TextColumn(
                "ε caveat", help="Why this ε is not a guarantee, with the proven (RDP) bound of the same schedule: "
                "GDP is an approximation, runs without Poisson sampling have no proven bound, and reproducible "
                "runs are not private against anyone who knows the seed. Empty: the ε is a proven bound."),
            "accuracy_pct": st.column_config.NumberColumn(
                "Test accuracy", format="%.1f %%", help="Accuracy on held-out examples the model never "
                "trained on, after the last epoch (latest epoch while training)."),
            "mia_auc": st.column_config.NumberColumn(
                "Attack AUC", format="%.3f", help="Loss-threshold membership attack: 0.5 means the attacker "
                "does no better than a coin flip, 1.0 that it tells members apart perfectly."),
            "lira_auc": st.column_config.NumberColumn(
                "LiRA AUC", format="%.3f", help="Attack lab: LiRA with reference models, a much stronger "
                "attack. Empty until the run was attacked on the Attack lab page."),
            "empirical_epsilon_lower": st.column_config.NumberColumn(
                "ε lower bound", format="%.2f", help="Attack lab: the ε an attack demonstrates with 95 % "
                "confidence. A lower bound: only the accountant's ε covers every attack."),
            "status_label": st.column_config.TextColumn("Status", width=120,
                                                        help="running N %: share of optimizer steps done."),
            "created_at": st.column_config.DatetimeColumn("Created", format="distance",
                                                          help="When the run was submitted."),
        },
    )
    rows = list(event.selection.rows) if event is not None else []
    selected = [ids[row] for row in rows if 0 <= row < len(ids)]
    st.session_state[SELECTED_KEY] = selected
    shown_text = f"{len(shown)} of {total} runs" if len(shown) != total else f"{total} run{'s' if total != 1 else ''}"
    active = int(shown["status"].isin(ACTIVE_STATUSES).sum())
    st.caption(shown_text + (f" · {active} active, refreshing every {REFRESH_S:g} s" if active else "")
               + (f" · {len(selected)} selected" if selected else ""))
    if selected:  # the address bar now opens this view: one run, or a comparison
        st.query_params["run"] = ",".join(selected)
    elif "run" in st.query_params:
        del st.query_params["run"]
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
                       help="This comparison in one HTML file that opens offline: the table, the four charts and "
                            "every run's checks, for a review.")
    st.dataframe(table, width="stretch", height=ROW_PX * (len(table) + 1) + 3,
                 column_config={"_index": st.column_config.TextColumn("", width=230)})
    shared = f"All {len(ids)} runs: {', '.join(data.shared)}. " if data.shared else ""
    st.caption(shared + "ε at each run's own δ; accuracies on held-out data; attack AUC 0.5 = chance. A "
               "continuation counts the ε of its parent too: privacy spent only grows.")
    colors, figures = compare.overlay_charts(frame, data)
    captions = {
        "eps": "Privacy spent after each optimizer step (lower is more private). Runs without DP are named under "
               "the title, not drawn.",
        "clip": "Share of per-sample gradients clipped to the bound C in each step; 50-80 % usually trains best.",
        "acc": "Test accuracy (solid) and train accuracy (dashed) per epoch. A wide gap means the model memorises "
               "its training data.",
        "roc": "Membership-inference ROC of each run's loss-threshold attack (AUC in the table above): the closer "
               "to the dotted diagonal (chance), the less the model gives away."
               + (f" No attack stored for: {', '.join(data.without_roc)}." if data.without_roc else ""),
    }
    # One colour key for all four charts: long run names would wrap into tall legends in half-width charts.
    st.markdown(_colour_key(colors), unsafe_allow_html=True)
    columns = st.columns(2, gap="large")
    for index, (name, figure) in enumerate(figures.items()):
        figure.update_layout(showlegend=False)
        with columns[index % 2]:
            st.plotly_chart(plots.finish_figure(figure), key=f"runs-cmp-{name}")
            st.caption(captions[name])


def _colour_key(colors: dict[str, str]) -> str:
    """HTML: a short coloured line and the label of each run, on one wrapping line."""
    items = [f'<span style="white-space:nowrap;margin-right:1.4rem"><span style="display:inline-block;width:18px;'
             f'height:3px;background:{color};vertical-align:middle;margin-right:0.4rem"></span>{html.escape(label)}'
             "</span>" for label, color in colors.items()]
    return f'<div style="line-height:2">{"".join(items)}</div>'
    with st.expander("What do these numbers mean?", icon=":material/help:"):
        for topic in ("epsilon", "clip_fraction", "auc"):
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
        record = store.get(run_id)
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
            popover = st.popover(label, icon=icon, key=f"runs-pop-{name}-{record.id}", on_change="rerun")
            if popover.open:
                with popover:
                    draw(store, record)
    render_run(run_id, store=store, key="runs-view")


def _continue(store: RunStore, record: RunRecord) -> None:
    problem = resume_problem(store, record.id)
    if problem:
        st.info(problem[0].upper() + problem[1:] + ".", icon=":material/block:")
        return
    summary = record.summary
    st.markdown(f"Train **{record.name}** further from its checkpoint (epoch {summary.get('epochs_done', '?')}, "
                f"step {summary.get('steps', record.steps_done)}). The continuation is a new run; this one "
                "stays as it is.")
    more = st.number_input("More epochs", min_value=1, max_value=1000, value=5, step=1,
                           key=f"runs-more-epochs-{record.id}", help="Epochs to train on top of those done.")
    own_limit = record.config.get("epsilon_limit")
    private = bool(record.config.get("private", True))
    limit = None
    if private:
        limit = st.number_input("ε limit (total)", min_value=0.01, value=own_limit, step=0.5, placeholder="no limit",
                                key=f"runs-more-limit-{record.id}",
                                help="Hard stop on the total ε, including what this run already spent. Empty "
                                     "keeps the run's own limit (none if it had none).")
    try:
        plan = plan_resume(store, record.id, epochs=int(more), epsilon_limit=limit)
    except DPExplorerError as err:
        st.warning(str(err), icon=":material/warning:")
        plan = None
    if plan is not None and private:
        delta = plan.config.target_delta
        st.markdown(f"ε spent so far **{ui.fmt(plan.spent_epsilon, '.2f')}** → about "
                    f"**{ui.fmt(plan.final_epsilon, '.2f')}** after {int(more)} more epoch"
                    f"{'s' if more != 1 else ''} (δ = {delta:g}, σ = {ui.fmt(plan.noise_multiplier, '.2f')} kept).")
        if plan.stops_at_limit:
            st.caption(f"The ε limit {plan.epsilon_limit:g} stops it before all {plan.more_steps} planned steps.")
        if plan.over_target:
            st.warning(f"This spends more than the run's target ε = {plan.target_epsilon:g}. The extra epochs get no "
                       "fresh budget: the continued model's guarantee is the total ε.", icon=":material/warning:")
    elif plan is not None:
        st.caption("No DP: the continuation trains without noise, like its parent (ε stays ∞).")
    if st.button("Continue training", type="primary", disabled=plan is None, key=f"runs-continue-{record.id}",
                 icon=":material/replay:"):
        try:
            new_id = ui.queue().resume(record.id, epochs=int(more), epsilon_limit=limit)
        except DPExplorerError as err:
            st.error(str(err))
            return
        st.session_state[SELECTED_KEY] = [new_id]
        st.session_state[NOTICE_KEY] = (":material/replay:", f"Queued {store.get(new_id).name}")
        st.rerun()


def _downloads(store: RunStore, record: RunRecord) -> None:
    st.caption("Metrics as CSV (one row per optimizer step or per epoch; ε at the run's δ, fractions 0-1) and "
               "the summary as JSON (config, results, attack, checks). The HTML report is in the run's view below.")
    for table, label, icon in (("steps", "Steps (CSV)", ":material/table_rows:"),
                               ("epochs", "Epochs (CSV)", ":material/calendar_view_week:")):
        st.download_button(label, data=compare.export_metrics_csv(store, record.id, table=table),
                           file_name=compare.export_filename(record.id, table), mime="text/csv", icon=icon,
                           on_click="ignore", key=f"runs-download-{table}-{record.id}", width="stretch")
    st.download_button("Summary (JSON)", data=compare.export_summary_json(store, record.id),
                       file_name=compare.export_filename(record.id, "summary"), mime="application/json",
                       icon=":material/data_object:", on_click="ignore", key=f"runs-download-summary-{record.id}",
                       width="stretch")


def _delete(store: RunStore, record: RunRecord) -> None:
    if record.active:
        st.warning(f"This run is {record.status}: cancel it and wait until it stops before deleting it.",
                   icon=":material/pending:")
        if st.button("Cancel run", key=f"runs-cancel-{record.id}", icon=":material/stop_circle:",
                     disabled=record.cancel_requested):
            try:
                ui.queue().cancel(record.id)
            except DPExplorerError as err:
                st.error(str(err))
            else:
                st.rerun()
    continuations = [child for child in store.records(kind="train", group=record.id) if child.id != record.id]
    st.markdown(f"Delete **{record.name}** with its metrics, model, artifacts and attack results. "
                "This cannot be undone."
                + (f" Its {len(continuations)} continuation(s) keep their own copy of its history."
                   if continuations else ""))
    confirmed = st.checkbox("Yes, delete this run for good", key=f"runs-delete-confirm-{record.id}")
    if st.button("Delete run", type="primary", disabled=not confirmed, key=f"runs-delete-{record.id}",
                 icon=":material/delete_forever:"):
        try:
            store.delete(record.id)
        except (RunActive, RunNotFound) as err:
            st.error(str(err))
            return
        st.session_state[SELECTED_KEY] = [run_id for run_id in st.session_state.get(SELECTED_KEY, [])
                                          if run_id != record.id]
        st.session_state[NOTICE_KEY] = (":material/delete:", f"Deleted {record.name}")
        st.rerun()


ui.route_through_app()
main()
