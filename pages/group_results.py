"""The "Results by class and slice" panel (not a page), shared by the run view and the Attack lab: attack AUC,
TPR at 1 % FPR and accuracy per class or per value of a CSV column, beside the baseline's accuracy.

Numbers come from ``dpcore.jobs.group_results`` (scored once per run, kept in its artifacts), cached here per
run, column, attack and baseline state, so a rerun of a finished run's view costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import streamlit as st

from dpcore.errors import DPExplorerError
from dpcore.jobs import group_results as groups
from dpcore.store.records import StoredRun
from dpcore.store.runs import RunNotFound, RunStore
from dpcore.views import live, plots, tables

TITLE = "Results by class and slice"
INTRO = ("Which group leaks most, and which loses most accuracy under DP? Each row is one class (or one value of "
         "the column you slice by): members are training examples, non-members held-out ones of that group.")
CAPTION = ("Attack AUC per group with a 95 % bootstrap interval (0.5 = chance); accuracy is the share of the "
           "group's members (train) or non-members (test) the model classifies right. A TPR at 1 % FPR needs at "
           "least 1,000 non-members in the group (10 false alarms' worth, the rule of the whole-run numbers): "
           "'≈' marks a rough value from fewer, and below 100 non-members not even one false alarm fits in 1 %. "
           "Small groups are flagged: their numbers move a lot by chance.")
SLICE_HELP = ("Slice by the class, or by any column of your CSV (its original values; a numeric column with many "
              "values is cut into four quantile bins).")


@st.cache_data(show_spinner=False, max_entries=8)
def _columns(root: str, run_id: str, _store: RunStore) -> list[str]:
    return groups.slice_columns(groups.run_data(_store, run_id))


@st.cache_data(show_spinner="Scoring every example by group…", max_entries=32)
def _report(root: str, run_id: str, column: str, baseline_state: str, attack: str, scores_stamp: str,
            _store: RunStore, _scores: tuple[np.ndarray, np.ndarray] | None) -> groups.GroupReport:
    return groups.group_report(_store, run_id, column=column, scores=_scores, attack=attack)


def _baseline_state(run: StoredRun, store: RunStore) -> str:
    if not run.baseline_run:
        return ""
    try:
        return f"{run.baseline_run}:{store.get(run.baseline_run).status}"
    except RunNotFound:
        return f"{run.baseline_run}:deleted"


def render_panel(run: StoredRun, *, store: RunStore, key: str,
                 scores: tuple[np.ndarray, np.ndarray] | None = None, attack: str = "loss threshold",
                 scores_stamp: str = "", expanded: bool = False, waiting: bool = False) -> None:
    """An expander "Results by class and slice" for stopped training run ``run``: a slice picker (CSV runs), the
    ``plots.group_chart`` figure, the ``tables.group_table`` table and notes. ``scores`` (members, non-members) are
    another attack's per-example scores, named ``attack`` and identified by ``scores_stamp`` (e.g. the attack
    result's creation time); default: the run's own loss-threshold attack. ``waiting``: the run's training job is
    still attacking it (it keeps the outputs then), so the panel only says so. Widget key ``f"{key}-slice-{run.id}"``.
    """
    if run.kind != "train" or run.active:
        return
    with st.expander(TITLE, icon=":material/groups:", expanded=expanded):
        st.caption(INTRO)
        if waiting:  # the training job is still attacking and scoring the model: it keeps the outputs
            st.info("The results by group appear when the run's membership attack is done.",
                    icon=":material/hourglass_top:")
            return
        try:
            columns: Sequence[str] = (_columns(str(store.root), run.id, store) if run.dataset == "csv"
                                      else [groups.BY_CLASS])
            column = groups.BY_CLASS
            if len(columns) > 1:
                column = st.selectbox("Slice by", columns, key=f"{key}-slice-{run.id}", help=SLICE_HELP,
                                      format_func=lambda name: "class (the label)" if name == groups.BY_CLASS
                                      else name)
            report = _report(str(store.root), run.id, column, _baseline_state(run, store), attack, scores_stamp,
                             store, scores)
        except DPExplorerError as err:
            st.info(f"No results by group for this run: {err}", icon=":material/info:")
            return
        by = "class" if column == groups.BY_CLASS else f"'{column}'"
        figure = live.FIGURES.get(  # built once for every session showing this run (shared: never modified)
            ("groups", run.id, column, _baseline_state(run, store), attack, scores_stamp),
            lambda: plots.group_chart(report.table, title=f"By {by}", attack=report.attack))
        st.plotly_chart(figure, key=f"{key}-groups-chart-{run.id}")
        st.dataframe(tables.group_table(report.table), hide_index=True, width="stretch")
        st.caption(CAPTION)
        for note in report.notes:
            st.caption(f":material/info: {note[0].upper()}{note[1:]}.")
