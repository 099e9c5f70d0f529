"""pages/state.py (AppTest): settings outlive their widgets, the URL holds only the page's own parameters."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def _page() -> None:
    import streamlit as st

    from pages import state

    form = state.PageState(key="demo_settings", widget_prefix="demo_w_", defaults=lambda: {"epochs": 10, "tag": "a"})
    if form.first_visit:
        try:
            epochs = state.url_value("epochs", int, low=1, high=100)
        except state.BadUrlValue as err:
            st.warning(f"ignored {err}")
        else:
            if epochs is not None:
                form.settings()["epochs"] = epochs
    settings = form.settings()
    if st.session_state.get("draw", True):
        form.bind(st.number_input, "Epochs", "epochs", min_value=1, max_value=100)
    run_id = state.url_or_session("run", "demo_run")
    state.sync_url({"epochs": str(settings["epochs"]), "run": run_id, "tag": None})


def test_the_url_keeps_only_the_pages_own_parameters_and_the_setting_outlives_its_widget():
    at = AppTest.from_function(_page)
    at.query_params["n"] = "5000"  # another page's leftover (the planner's N)
    at.query_params["epochs"] = "7"
    at.query_params["run"] = "r1"
    at.run()
    assert not at.exception
    assert at.number_input(key="demo_w_epochs").value == 7
    assert dict(at.query_params) == {"epochs": "7", "run": "r1"}  # 'n' removed, 'tag' (None) never written

    at.number_input(key="demo_w_epochs").set_value(9).run()
    assert at.query_params["epochs"] == "9"
    at.session_state["draw"] = False  # the user is on another page: Streamlit drops the widget's own key
    at.run()
    assert "demo_w_epochs" not in at.session_state
    del at.query_params["run"]  # the session remembers the run the URL named
    at.session_state["draw"] = True
    at.run()
    assert at.number_input(key="demo_w_epochs").value == 9
    assert dict(at.query_params) == {"epochs": "9", "run": "r1"}


def test_a_bad_url_value_is_reported_and_the_default_kept():
    for text in ("abc", "0", "1e9", "nan"):
        at = AppTest.from_function(_page)
        at.query_params["epochs"] = text
        at.run()
        assert not at.exception
        assert at.number_input(key="demo_w_epochs").value == 10, text
        assert [w.value for w in at.warning] == [f"ignored epochs={text}"]
