"""DP Explorer: the Streamlit entry point. Builds the navigation and the shared sidebar.

Run with ``streamlit run app.py``. Pages live in ``pages/`` and stay thin: they read
widgets, call ``dpcore`` and draw figures from ``dpcore.views.plots``.
"""

from __future__ import annotations

import streamlit as st

from pages import ui

PAGES = [
    ("pages/train.py", "Train", ":material/model_training:", True),
    ("pages/runs.py", "Runs", ":material/table_view:", False),
    ("pages/attack_lab.py", "Attack lab", ":material/policy:", False),
    ("pages/tradeoffs.py", "Tradeoffs", ":material/insights:", False),
    ("pages/planner.py", "Budget planner", ":material/calculate:", False),
    ("pages/guide.py", "Guide", ":material/menu_book:", False),
]


def build_navigation():
    """The router: one st.Page per file in PAGES (automatic pages/ discovery is off once this runs)."""
    return st.navigation([st.Page(path, title=title, icon=icon, default=default)
                          for path, title, icon, default in PAGES])


def main() -> None:
    st.set_page_config(page_title="DP Explorer", page_icon=":material/shield_lock:", layout="wide")
    navigation = build_navigation()
    ui.require_store()
    ui.render_sidebar()
    navigation.run()


main()
