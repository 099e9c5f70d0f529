"""DP Explorer: the Streamlit entry point. Builds the navigation and the shared sidebar.

Run with ``streamlit run app.py``. Pages live in ``pages/`` and stay thin: they read
widgets, call ``dpcore`` and draw figures from ``dpcore.views.plots``.
"""

from __future__ import annotations

import streamlit as st

from dpcore.engine.threads import set_process_threads
from pages import ui

PAGES = [
    ("pages/train.py", "Train", ":material/model_training:", True),
    ("pages/runs.py", "Runs", ":material/table_view:", False),
    ("pages/watch.py", "Watch live", ":material/live_tv:", False),
    ("pages/attack_lab.py", "Attack lab", ":material/policy:", False),
    ("pages/tradeoffs.py", "Tradeoffs", ":material/insights:", False),
    ("pages/planner.py", "Budget planner", ":material/calculate:", False),
    ("pages/guide.py", "Guide", ":material/menu_book:", False),
]

#: The browser-tab icon: an emoji, so no network fetch (works offline).
PAGE_ICON = "🛡️"


def build_navigation():
    """The router: one st.Page per file in PAGES (automatic pages/ discovery is off once this runs)."""
    return st.navigation([st.Page(path, title=title, icon=icon, default=default)
                          for path, title, icon, default in PAGES])


def main() -> None:
    # The server only draws pages: training runs in worker processes (dpcore.jobs.workers), each with
    # its share of the cores, so one torch thread here keeps the server from competing with them.
    set_process_threads(1)
    # An emoji favicon is drawn inline by the browser; a ":material/...:" favicon is fetched from
    # fonts.gstatic.com, which fails offline. (st.Page icons use the font bundled with Streamlit.)
    st.set_page_config(page_title="DP Explorer", page_icon=PAGE_ICON, layout="wide")
    navigation = build_navigation()
    ui.require_store()
    ui.render_sidebar()
    navigation.run()


if __name__ == "__main__":  # a spawned worker re-imports this file as __mp_main__: it must not draw (or spawn)
    main()
