"""Watch live: the run training now, for an audience; it follows the queue from run to run by itself.

Put ``/watch`` on a projector or share its address: it shows the run that is training (else the next one queued)
with its live progress and charts, and moves on to the next run when this one stops training, in the same page
(no reload). With nothing to train it shows the last run's result and waits for the next. ``/watch?run=<id>``
watches one run, without the Train page's settings form. Watching is cheap for the server: all live views back off
together when many sessions watch (``dpcore.views.live.redraw_interval``).
"""

from __future__ import annotations

import streamlit as st

from dpcore.views import live
from pages import live_view, state, ui

FOLLOW_CAPTION = ("Follows the job queue: this page shows the run training now and moves on to the next one by "
                  "itself. Share its address with an audience; each viewer costs the server little, and the "
                  "redraws slow down when many watch at once.")


def _followed() -> str | None:
    """The training run to show now: the first running, else the next queued (``live.followed_run``)."""
    running, pending = ui.queue().snapshot()
    store = ui.store()
    return live.followed_run(running, pending, shown=lambda run_id: store.exists(run_id)
                             and store.get(run_id).kind == "train")


def _wait_for_a_run() -> None:
    if _followed() is not None:
        st.rerun()  # whole page: show the run that started


def main() -> None:
    st.title("Watch live")
    store, queue = ui.store(), ui.queue()
    pinned = state.url_value("run")
    if pinned:
        st.caption(f"Watching run `{pinned}`. Open this page without `?run=` to follow the queue instead.")
        if not store.exists(pinned):
            st.warning(f"Run `{pinned}` is not in {store.root}: it was deleted or belongs to another runs folder.",
                       icon=":material/search_off:")
            return
        live_view.live_run(pinned, store=store, queue=queue, key="watch", audience=True)
        return
    st.caption(FOLLOW_CAPTION)
    target = _followed()
    if target is not None:
        live_view.live_run(target, store=store, queue=queue, key="watch", follow=lambda: _followed() == target,
                           audience=True)  # no Cancel (that is for the Train and Runs pages), light result view
        return
    st.info("Nothing is training now. The next run appears here as soon as it is queued.", icon=":material/schedule:")
    st.fragment(_wait_for_a_run, run_every=ui.poll_interval())()
    latest = [record for record in store.records(kind="train") if record.steps_done] or store.records(kind="train")
    if latest:  # the newest run that trained (not, say, a baseline cancelled before it started)
        st.markdown("##### The last run")
        live_view.live_run(latest[0].id, store=store, queue=queue, key="watch-last", audience=True)


ui.route_through_app()
main()
