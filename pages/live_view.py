"""A run's live view, kept cheap for the server and for every browser watching it (not a page itself).

``live_run`` draws a run and keeps it current while anything about it can still change. While it trains, the
header and the Cancel button are drawn once; one fragment redraws the progress bar and the cards (one HTML block)
every ``live.redraw_interval`` s (1.5 s for a few watchers, longer when many sessions watch, so the server's
redraws a second stay bounded), and a second one the charts, ``live.CHART_EVERY`` times less often, as static SVG
in one Markdown block (measured in headless Chromium: six plotly charts cost a watching browser ~600 ms of CPU per
redraw, the same charts as SVG ~55 ms, four ``st.metric`` cards ~3x one HTML block). Once the run stops, the page
is rerun and ``pages.run_view`` draws its interactive result. A follow-the-queue view (the Watch page) passes
``follow``: when it answers False, the page reruns to show the run it now follows; it also passes ``audience``,
which draws a stopped run as static SVG too (``render_audience_result``).
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from dpcore.jobs.queue import JobQueue
from dpcore.store.records import StoredRun
from dpcore.store.runs import RUNNING, RunNotFound, RunStore
from dpcore.views import live
from dpcore.views import run_summary as rs
from dpcore.views.cards import cards_html
from pages import ui
from pages.run_view import (
    NewRun,
    attack_state,
    cancel_button,
    needs_polling,
    render_header,
    render_live_charts,
    render_progress_body,
    render_run,
    render_stopped_head,
)

Follow = Callable[[], bool] | None


def live_run(run_id: str, *, store: RunStore, queue: JobQueue | None = None, key: str = "run",
             on_new_run: NewRun = None, follow: Follow = None, audience: bool = False) -> None:
    """Draw run ``run_id`` and keep it current while anything about it can still change.

    While the run is queued or running: header and Cancel once, then the progress fragment and the charts
    fragment. While only its attack or its baseline is pending: the result view, redrawn by one fragment. Once
    nothing can change, a single static draw. ``on_new_run(run_id)`` is called when the view starts another run
    (Continue training); ``follow()`` (when given) is asked on every redraw whether this run is still the one to
    show, and a False reruns the page. ``audience=True`` (the Watch page) leaves out the Cancel button and draws a
    stopped run as ``render_audience_result`` instead of the full result view.
    """
    try:
        run = StoredRun.load(store, run_id)
    except RunNotFound as err:
        st.warning(str(err), icon=":material/search_off:")
        return
    if not needs_polling(run, store=store, queue=queue):
        _draw(run_id, store=store, queue=queue, key=key, on_new_run=on_new_run, audience=audience)
        return
    every = live.redraw_interval(ui.watcher_id())  # longer when many sessions watch at once
    if not run.active:  # trained; its attack or its baseline is still running
        st.fragment(_result_fragment, run_every=every)(run_id, store, queue, key, on_new_run, follow, audience)
        return
    st.session_state[_drawn_key(run_id)] = run.status
    render_header(run)
    if not audience:
        cancel_button(run, store=store, queue=queue, key=key)
    st.fragment(_progress_fragment, run_every=every)(run_id, store, queue, every, follow)
    if run.status == RUNNING:
        st.fragment(_charts_fragment, run_every=live.chart_interval(every))(run_id, store)


def _drawn_key(run_id: str) -> str:
    """Session key: the status the page was last drawn for (a change redraws the whole page)."""
    return f"live-drawn-{run_id}"


def _progress_fragment(run_id: str, store: RunStore, queue: JobQueue | None, every: float, follow: Follow) -> None:
    run = StoredRun.load(store, run_id)
    if (run.status != st.session_state.get(_drawn_key(run_id)) or (follow is not None and not follow())
            or live.interval_changed(every, live.redraw_interval(ui.watcher_id()))):
        st.rerun()  # whole page: charts once it runs, its result once it stops, the next followed run, new interval
    render_progress_body(run, queue=queue)


def _charts_fragment(run_id: str, store: RunStore) -> None:
    run = StoredRun.load(store, run_id)
    if run.status == RUNNING:  # a stopped run's charts come with its result view
        render_live_charts(run)


def _result_fragment(run_id: str, store: RunStore, queue: JobQueue | None, key: str, on_new_run: NewRun,
                     follow: Follow, audience: bool) -> None:
    run = _draw(run_id, store=store, queue=queue, key=key, on_new_run=on_new_run, audience=audience)
    if run is None or not needs_polling(run, store=store, queue=queue) or (follow is not None and not follow()):
        st.rerun()  # whole page: redraw without the timer, or show the next followed run


def _draw(run_id: str, *, store: RunStore, queue: JobQueue | None, key: str, on_new_run: NewRun,
          audience: bool) -> StoredRun | None:
    """Draw the run once (``render_run``; for an audience a stopped run as ``render_audience_result``)."""
    stopped = (lambda run: render_audience_result(run, queue=queue)) if audience else None
    return render_run(run_id, store=store, queue=queue, key=key, on_new_run=on_new_run, stopped=stopped)


def render_audience_result(run: StoredRun, *, queue: JobQueue | None) -> None:
    """A stopped run for an audience (the Watch page): header, why it stopped, the summary cards, and the attack's
    ROC and the charts as static SVG, with a link to the interactive view on the Runs page.

    Each element is one Markdown block (``cards_html``, ``rs.result_charts_html``), so twenty browsers that
    follow the queue draw a finished run cheaply every time a run ends.
    """
    if (metrics := render_stopped_head(run)) is None:
        return
    steps, epochs = metrics
    baseline, baseline_epochs = rs.baseline_of(run)  # read once: the cards and the charts both show it
    st.markdown(cards_html(rs.result_cards(run, steps, epochs, baseline=baseline,
                                           attack=attack_state(run, queue=queue))), unsafe_allow_html=True)
    st.markdown(rs.result_charts_html(run, steps, epochs, baseline_epochs=baseline_epochs), unsafe_allow_html=True)
    ui.page_link("pages/runs.py", label="Open its interactive charts, checks and report on the Runs page",
                 icon=":material/open_in_new:", query_params={"run": run.id})


__all__ = ["Follow", "live_run", "render_audience_result"]
