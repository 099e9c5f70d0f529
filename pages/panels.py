"""Panels shared by several pages (not a page): ONE "Continue training" panel, and the run view's "Results by
class and slice" (``group_results_panel``, drawn by ``pages/group_results.py``).

``continue_panel(run, store=..., queue=..., key=..., on_new_run=...)`` draws its contents where the
caller puts it (a bordered box under a run's result on the Train page, a popover on the Runs page).
Widget keys are ``f"{key}-more-epochs-{run.id}"``, ``f"{key}-more-limit-{run.id}"`` and the button
``f"{key}-continue-{run.id}"``. Texts come from ``dpcore.views.run_summary``.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from dpcore.config import MAX_EPOCHS
from dpcore.errors import DPExplorerError
from dpcore.jobs.queue import JobQueue
from dpcore.jobs.resume import plan_resume, resume_problem
from dpcore.store.records import StoredRun
from dpcore.store.runs import RunStore
from dpcore.views import run_summary
from pages import group_results


def continue_panel(run: StoredRun, *, store: RunStore, queue: JobQueue, key: str,
                   on_new_run: Callable[[str], None] | None = None) -> None:
    """"Continue training for N more epochs" from the run's checkpoint (``JobQueue.resume``), with the ε it brings.

    A run that cannot be continued says why. After queuing, ``on_new_run(new_id)`` is called and the page reruns.
    """
    problem = resume_problem(store, run.id)
    if problem:
        st.info(problem[0].upper() + problem[1:] + ".", icon=":material/block:")
        return
    st.markdown(run_summary.continue_intro(run))
    epochs_col, limit_col = st.columns(2)
    more = int(epochs_col.number_input("More epochs", min_value=1, max_value=MAX_EPOCHS, value=5, step=1,
                                       key=f"{key}-more-epochs-{run.id}",
                                       help="Epochs to train on top of the ones already done."))
    limit = None
    if run.private:
        own = run.epsilon_limit
        limit = limit_col.number_input("New ε limit (total)", min_value=0.01, max_value=1000.0, value=None, step=0.5,
                                       format="%.2f", key=f"{key}-more-limit-{run.id}",
                                       placeholder=f"keep {own:g}" if own is not None else "no limit",
                                       help="Hard stop on the total ε, including what this run already spent. "
                                            "Leave empty to keep the run's own limit (none if it had none).")
    try:
        plan = plan_resume(store, run.id, epochs=more, epsilon_limit=limit)
    except DPExplorerError as err:
        st.warning(str(err), icon=":material/warning:")
        plan = None
    if plan is not None:
        line, warning = run_summary.continue_plan_text(plan, epochs=more)
        st.markdown(line)
        if warning:
            st.warning(warning, icon=":material/warning:")
    if st.button("Continue training", type="primary", disabled=plan is None, key=f"{key}-continue-{run.id}",
                 icon=":material/replay:", help="Queue the continuation as a new run linked to this one."):
        try:
            new_id = queue.resume(run.id, epochs=more, epsilon_limit=limit)
        except DPExplorerError as err:
            st.error(str(err), icon=":material/error:")
            return
        if on_new_run is not None:
            on_new_run(new_id)
        st.rerun()


def group_results_panel(run: StoredRun, *, store: RunStore, key: str, attack: str = "done") -> None:
    """The "Results by class and slice" expander of a stopped run (``pages.group_results.render_panel``); ``attack``
    is the run's attack state (``run_view.attack_state``): while 'running' the panel waits for the job's outputs."""
    group_results.render_panel(run, store=store, key=key, waiting=attack == "running")
