"""Streamlit helpers shared by the pages: the run store and job queue, the sidebar, small widgets.

Not a page (app.py lists the pages explicitly). Logic that is not about drawing
belongs in dpcore, not here.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitAPIException
from streamlit.runtime.pages_manager import PagesManager

from dpcore.engine.training import describe_device, resolve_device
from dpcore.jobs import recovery
from dpcore.jobs import sweep as sweeps
from dpcore.jobs.queue import JobQueue, get_queue
from dpcore.jobs.ray_executor import RayUnavailable
from dpcore.privacy.bands import format_number
from dpcore.store import runs
from dpcore.store.runs import RunStore
from dpcore.views.live import REDRAW_S, SharedCache, redraw_interval

log = logging.getLogger(__name__)
SWEEPS_NOTED_KEY = "ui_continued_sweeps_noted"  # plain session key: the restart toast was shown


def route_through_app() -> None:
    """Make a page request that bypassed app.py go through app.py's navigation; every page calls it first.

    Until app.py has called st.navigation once, Streamlit treats pages/ as an
    old-style pages folder: a first request for /planner runs pages/planner.py on
    its own (no wide layout, no sidebar, raw file names in the menu). Every page
    calls this first, so switching that mode off and rerunning here makes the
    rerun execute app.py, which routes to the requested page. A call per run, not
    an import-time side effect: each AppTest resets the mode, and a module is imported once.
    """
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


@st.cache_resource(show_spinner=False)
def _store(root: str) -> RunStore:
    return RunStore(root)


def store() -> RunStore:
    """The process-wide run store for the configured runs directory (StoreUnavailable if it cannot be used)."""
    return _store(str(runs.default_root()))


def require_store() -> None:
    """Stop the page with an explanation when the runs directory cannot be used (app.py calls it first)."""
    try:
        store()
    except runs.StoreUnavailable as err:
        st.error(f"**DP Explorer cannot start:** {err}", icon=":material/folder_off:")
        st.caption("Runs are stored in the folder named by DPEXPLORER_RUNS_DIR (default: ./runs next to where "
                   "you started the app). Fix the folder, then reload this page.")
        st.stop()


def queue() -> JobQueue:
    """The process-wide job queue (one per runs directory, shared by every browser session).

    The first call in a process also continues the sweeps a stopped app left unfinished. A Ray cluster
    (``DPEXPLORER_RAY_ADDRESS``) that cannot be reached stops the page with what to do.
    """
    try:
        job_queue = get_queue(store().root)
    except RayUnavailable as err:
        st.error(f"**Jobs cannot start:** {err}", icon=":material/cloud_off:")
        st.stop()
    continued_sweeps(str(store().root))
    return job_queue


@st.cache_resource(show_spinner=False)
def continued_sweeps(root: str) -> dict[str, list[str]]:
    """Once per process and runs directory: ``sweeps.resume_after_restart`` (and ``recovery.requeue_baselines``:
    baselines still waiting when the server stopped are queued again); ``{sweep id: run ids}``."""
    try:
        recovery.requeue_baselines(get_queue(root))
        return sweeps.resume_after_restart(get_queue(root))
    except Exception:  # a convenience at start-up must never keep the app from opening
        log.exception("could not continue the interrupted sweeps in %s", root)
        return {}


@st.cache_resource(show_spinner=False)
def device_description() -> str:
    """'cuda:0 (GPU name)' or 'cpu': where training runs on this machine (the workers' threads are shown below it)."""
    return describe_device(resolve_device("auto"), threads=False)


def fmt(value: Any, spec: str = ".3f", *, unit: str = "") -> str:
    """Number for display: '-' for missing, '∞' for infinite (``dpcore.privacy.bands.format_number``), plus ``unit``."""
    text = format_number(value, spec)
    return text if text in ("-", "∞") else f"{text}{unit}"


def page_link(page: str, *, label: str, icon: str | None = None, help: str | None = None,
              query_params: dict[str, str] | None = None) -> None:
    """``st.page_link`` to another page of the app (a path as listed in app.PAGES, e.g. "pages/train.py").

    ``query_params`` open that page on them (say ``{"run": run_id}``). Where that page is not
    registered (a page file run on its own, as in AppTest) it shows a caption naming the page instead of raising.
    """
    try:
        st.page_link(page, label=label, icon=icon, help=help, query_params=query_params)
    except StreamlitAPIException:
        st.caption(f"{label}: open it from the navigation menu.")

QUEUE_POLL_S = REDRAW_S  # as often as the run view (both back off together when many sessions watch)
WATCHER_KEY = "live_watcher_id"  # plain session key: this session's id in dpcore.views.live.redraw_interval


def watcher_id() -> str:
    """This session's id among the sessions that redraw live views (made once per session)."""
    return st.session_state.setdefault(WATCHER_KEY, secrets.token_hex(8))


def poll_interval() -> float:
    """Seconds between this session's live redraws: ``QUEUE_POLL_S`` alone, longer when many sessions watch."""
    return max(QUEUE_POLL_S, redraw_interval(watcher_id()))

#: The queue panel's text, read once per poll interval for every session (not once per session).
QUEUE_LINES = SharedCache(max_items=8, ttl_s=QUEUE_POLL_S * 0.9)


def render_sidebar() -> None:
    """Device, runs directory and the job queue, on every page."""
    with st.sidebar:
        st.caption("Compute")
        st.markdown(f":material/memory: **{device_description()}**")
        job_queue = queue()
        st.caption(f"Jobs run on {job_queue.describe_executor()}")
        st.caption(f"Runs stored in `{store().root}`")
        st.caption("Job queue")
        running, pending = job_queue.snapshot()
        busy = bool(running or pending)
        continued = continued_sweeps(str(store().root))
        if continued and not st.session_state.get(SWEEPS_NOTED_KEY):
            st.session_state[SWEEPS_NOTED_KEY] = True
            what = "a sweep" if len(continued) == 1 else f"{len(continued)} sweeps"
            st.toast(f"Continued {what} interrupted when the app last stopped; see the Tradeoffs page.",
                     icon=":material/replay:")
        # Poll only while jobs exist: an idle app does no background reruns.
        st.fragment(_queue_panel, run_every=poll_interval() if busy else None)()


def _queue_panel() -> None:
    """What runs and what waits; a fragment, so it refreshes while the page itself stays put."""
    # One element, so a shorter queue never leaves an earlier, longer listing behind on screen.
    running, pending = queue().snapshot()  # in memory; the key, so a queue change shows at once
    key = (str(store().root), tuple(running), tuple(pending))
    st.markdown(QUEUE_LINES.get(key, lambda: _queue_text(running, pending)))


def _queue_text(running: list[str], pending: list[str]) -> str:
    """The queue panel's markdown: running runs with their progress, then the waiting ones, or 'Idle'."""
    lines = []
    for run_id in running:
        record = store().get(run_id)
        progress = f" — {fmt(record.progress, '.0%')}" if record.progress is not None else ""
        lines.append(f":material/play_circle: {record.name}{progress}")
    for place, run_id in enumerate(pending, start=1):
        lines.append(f":material/schedule: #{place} {store().get(run_id).name}")
    return "  \n".join(lines) or "Idle"
