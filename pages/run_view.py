"""One run's full view, shared by the Train, Runs and Tradeoffs pages (not a page itself).

``render_run`` draws a run once: while active its progress (Cancel, progress bar with ETA, cards, charts from the
rows read so far, downsampled), else its result: cards, ε sentence, attack ROC, checks, fixes, why it stopped,
charts, explanations, Continue training. ``pages.live_view.live_run`` keeps it current from these pieces
(``cancel_button``, ``render_progress_body``, ``render_live_charts``). The run is read as a ``StoredRun``;
numbers and texts come from ``dpcore.views.run_summary`` and ``dpcore.views.cards``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import pandas as pd
import streamlit as st

from dpcore.errors import DPExplorerError
from dpcore.jobs.queue import JobQueue
from dpcore.privacy.bands import format_number
from dpcore.privacy.checks import run_checks
from dpcore.store.records import StoredRun
from dpcore.store.runs import CANCELLED, FAILED, QUEUED, RUNNING, RunNotFound, RunStore
from dpcore.views import live, report
from dpcore.views import run_summary as rs
from dpcore.views.cards import Card, cards_html
from dpcore.views.explain import BOUND_CAPTION, attack_bound_sentence, epsilon_sentence, explain
from dpcore.views.progress import estimate_progress
from pages import panels

SAMPLES_KEY = "run_view_step_samples"  # plain session key: {run_id: [(posix time, steps done), ...]}
MAX_SAMPLES = 20
NewRun = Callable[[str], None] | None


def render_run(run_id: str, *, store: RunStore, queue: JobQueue | None = None, key: str = "run",
               on_new_run: NewRun = None, stopped: Callable[[StoredRun], None] | None = None) -> StoredRun | None:
    """Draw run ``run_id`` once: its progress when active, else its full result view (or ``stopped(run)``: the
    Watch page's lighter one).

    Returns the run drawn, or None (with a warning shown) when the run does not exist.
    """
    try:
        run = StoredRun.load(store, run_id)
    except RunNotFound as err:
        st.warning(str(err), icon=":material/search_off:")
        return None
    if run.active:
        render_progress(run, store=store, queue=queue, key=key)
    elif stopped is not None:
        stopped(run)
    else:
        render_result(run, store=store, queue=queue, key=key, on_new_run=on_new_run)
    return run


def needs_polling(run: StoredRun, *, store: RunStore, queue: JobQueue | None) -> bool:
    """Whether the view of ``run`` can still change: active, attack pending in a live job, or baseline active."""
    try:
        return (run.active or attack_state(run, queue=queue) == "running"
                or (isinstance(run.baseline_run, str) and store.get(run.baseline_run).active))
    except RunNotFound:
        return False


def attack_state(run: StoredRun, *, queue: JobQueue | None) -> str:
    """'done', 'running', 'stalled', 'failed' or 'none' (``dpcore.views.run_summary.attack_state``)."""
    return rs.attack_state(run, job_alive=queue is not None and queue.position(run.id) is not None)


def render_header(run: StoredRun) -> None:
    """Run name, state badge, a one-line summary of its settings, and the ε caveats."""
    (label, color, icon), (title_col, badge_col) = rs.badge(run), st.columns([5, 1], vertical_alignment="center")
    title_col.markdown(f"#### {run.name}")
    badge_col.badge(label, icon=icon, color=color, width="stretch")
    st.caption(f"Run `{run.id}` · " + rs.config_line(run))
    if warning := rs.caveat_warning(run):
        st.warning(warning, icon=":material/warning:")


def show_cards(cards: Sequence[Card]) -> None:
    """One framed ``st.metric`` per card in a row; a card's note is a grey delta, not a change."""
    for col, card in zip(st.columns(len(cards)), cards, strict=True):
        col.metric(card.label, card.value, delta=card.note or None, help=card.help or None, border=True,
                   height="stretch", delta_color="off", delta_arrow="off")


def _samples(run: StoredRun) -> list[tuple[float, int]]:
    """Record this poll's (time, steps done) and return the recent samples for the ETA."""
    samples = st.session_state.setdefault(SAMPLES_KEY, {}).setdefault(run.id, [])
    if not samples or samples[-1][1] != run.record.steps_done:
        samples.append((time.time(), run.record.steps_done))
        del samples[:-MAX_SAMPLES]
    return samples


def render_progress(run: StoredRun, *, store: RunStore, queue: JobQueue | None = None, key: str = "run") -> None:
    """An active run drawn once: header, Cancel, queue position or progress bar with ETA, cards and charts."""
    render_header(run)
    cancel_button(run, store=store, queue=queue, key=key)
    render_progress_body(run, queue=queue)
    if run.status == RUNNING:
        render_live_charts(run)


def cancel_button(run: StoredRun, *, store: RunStore, queue: JobQueue | None = None, key: str = "run") -> None:
    """The Cancel button of an active run (disabled once a cancel was requested)."""
    if st.button("Cancel run", key=f"{key}-cancel-{run.id}", icon=":material/stop_circle:",
                 disabled=run.record.cancel_requested,
                 help="Stop this run before its next step. What it trained so far is kept, with the ε it spent."):
        try:
            status = queue.cancel(run.id) if queue is not None else store.request_cancel(run.id)
        except DPExplorerError as err:
            st.error(str(err))
            return
        st.toast("Cancelled before it started." if status == CANCELLED else
                 "Cancel requested: stopping after this step.", icon=":material/stop_circle:")
        st.rerun()


def render_progress_body(run: StoredRun, *, queue: JobQueue | None = None) -> None:
    """Queue position, or the progress bar with elapsed time and ETA and the live cards."""
    if run.status == QUEUED:
        position = queue.position(run.id) if queue is not None else None
        st.info(rs.queue_text(position, worker_busy=queue is not None and bool(queue.running())),
                icon=":material/schedule:")
        return
    fraction, text = rs.progress_text(estimate_progress(run.record, samples=_samples(run)))
    st.progress(fraction, text=text)
    if run.record.cancel_requested:
        st.caption("Cancel requested: the run stops before its next step.")
    if run.status == RUNNING:
        steps, epochs = live.live_metrics(run, cache=st.session_state.setdefault(live.CACHE_KEY, live.SHARED_STEPS))
        st.markdown(cards_html(rs.live_cards(run, steps, epochs)), unsafe_allow_html=True)  # one element: cheap
        if steps.empty:
            st.caption(rs.PREPARING_CAPTION)


def render_live_charts(run: StoredRun) -> None:
    """The running run's charts from the rows read so far (downsampled, static SVG; nothing before its first step).

    One Markdown element for all six charts (``rs.live_charts_html``): a watching browser redraws it for a tenth
    of what six interactive plotly charts cost. The stopped run's result view draws the interactive ones.
    """
    steps, epochs = live.live_metrics(run, cache=st.session_state.setdefault(live.CACHE_KEY, live.SHARED_STEPS))
    if not steps.empty:
        st.markdown(rs.live_charts_html(run, live.downsample_history(steps), epochs,
                                        baseline_epochs=rs.baseline_of(run)[1]), unsafe_allow_html=True)


def render_stopped_head(run: StoredRun) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """A stopped run's header and why it stopped; returns its (steps, epochs) metrics, or None when it failed before
    training anything (the error then says it all)."""
    render_header(run)
    level, text, icon = rs.stop_message(run)
    getattr(st, level)(text, icon=icon)
    steps, epochs = rs.metrics(run)
    return None if run.status == FAILED and steps.empty else (steps, epochs)


def render_result(run: StoredRun, *, store: RunStore, queue: JobQueue | None = None, key: str = "run",
                  on_new_run: NewRun = None) -> None:
    """The full view of a stopped run: why it stopped, cards, checks, ROC, fixes, charts, explanations."""
    if (metrics := render_stopped_head(run)) is None:
        return
    steps, epochs = metrics
    st.download_button("Report (HTML)", data=lambda: report.run_report(store, run.id),
                       file_name=report.report_filename(run.id), mime="text/html", on_click="ignore",
                       icon=":material/description:", key=f"{key}-report-{run.id}", help=rs.REPORT_HELP)
    baseline, baseline_epochs = rs.baseline_of(run)
    final_epsilon = rs.final_epsilon(run, steps)
    test_accuracy = rs.number(run.summary.get("test_accuracy"), rs.last(epochs, "test_accuracy"))
    attack = attack_state(run, queue=queue)
    show_cards(rs.result_cards(run, steps, epochs, baseline=baseline, attack=attack))
    if not run.private or math.isfinite(final_epsilon):
        st.markdown(epsilon_sentence(final_epsilon, float(run.config.get("target_delta", 0.0))))
    if baseline is not None and baseline.active:
        st.caption(f":material/hourglass_top: The non-private baseline `{baseline.id}` is still training "
                   f"({format_number(baseline.progress, '.0%')}); its accuracy appears here when "
                   "it finishes.")
    if run.summary.get("fixes"):
        with st.container(border=True):
            st.markdown(":material/build: **Model changed for DP:** "
                        + "; ".join(f"`{fix}`" for fix in run.summary["fixes"]))
            st.markdown(explain("batchnorm"))
    roc_col, checks_col = st.columns([3, 2], gap="large")
    with roc_col:
        render_roc(run, key=key, attack=attack)
    with checks_col:
        st.markdown("##### Checks")
        for check in run_checks(run.config, run.summary, test_accuracy=test_accuracy, mia_auc=rs.number(run.mia_auc),
                                final_epsilon=final_epsilon if run.private and math.isfinite(final_epsilon) else None):
            st.markdown(rs.check_line(check))
        if not run.private:
            st.caption("A non-private baseline fails the ε checks by design: it has no guarantee.")
    render_charts(run, steps, epochs, key=f"{key}-final", baseline_epochs=baseline_epochs)
    panels.group_results_panel(run, store=store, key=key, attack=attack)
    for col, (title, topics) in zip(st.columns(len(rs.EXPLANATIONS)), rs.explanations(run), strict=True):
        with col.expander(title, icon=":material/help:"):
            st.markdown("\n\n".join(explain(topic) for topic in topics))
    if queue is not None and rs.offers_continue(run):
        with st.container(border=True):
            st.markdown("##### :material/replay: Continue training")
            panels.continue_panel(run, store=store, queue=queue, key=key, on_new_run=on_new_run)


def render_roc(run: StoredRun, *, key: str = "run", attack: str = "done") -> None:
    """The loss-threshold attack's ROC curve (with the chance diagonal and the bound) from the run's roc.json."""
    roc = run.roc()
    if roc is None:
        st.plotly_chart(rs.placeholder("Membership-inference ROC", rs.attack_message(run, attack)),
                        key=f"{key}-roc-{run.id}")
        return
    log_axes = st.toggle("Log axes (the low false-positive regime)", key=f"{key}-roc-log-{run.id}",
                         help="A dangerous attack finds some members with almost no false alarms; log axes "
                              "show that corner.")
    bound = rs.attack_bound(run)
    st.plotly_chart(rs.roc_figure(run, roc, bound=bound, log_scale=log_axes), key=f"{key}-roc-{run.id}")
    st.markdown(attack_bound_sentence(bound_tpr=bound.headline(), empirical_tpr=rs.empirical_tpr(run, roc),
                                      caveat=bound.caveat))
    st.caption(rs.roc_caption(roc) + BOUND_CAPTION)


def render_charts(run: StoredRun, steps: pd.DataFrame, epochs: pd.DataFrame, *, key: str = "run",
                  baseline_epochs: pd.DataFrame | None = None) -> None:
    """A stopped run's interactive charts: ε and clip fraction per step, loss per step, train/test accuracy and
    the attack per epoch (with the baseline)."""
    if baseline_epochs is None:
        baseline_epochs = rs.baseline_of(run)[1]
    charts = rs.shared_chart_specs(run, steps, epochs, baseline_epochs=baseline_epochs, live=False)  # built once
    for start in range(0, len(charts), 2):
        for col, (figure, name, caption) in zip(st.columns(2, gap="large"), charts[start:start + 2], strict=True):
            col.plotly_chart(figure, key=f"{key}-{name}-{run.id}")
            col.caption(caption)


__all__ = ["attack_state", "cancel_button", "needs_polling", "render_live_charts", "render_progress",
           "render_progress_body", "render_result", "render_run", "render_stopped_head"]
