"""Guide: the ideas behind every number in the app, for teaching demos and stakeholder reviews.

All wording comes from ``dpcore.views.explain`` (one source for pages and reports); the clipping
picture is ``dpcore.views.plots.clipping_illustration``. Topics added to ``explain.TOPICS`` later
show up under "Good to know" until a section places them.
"""

from __future__ import annotations

import streamlit as st

from dpcore.privacy import deployments
from dpcore.views import plots
from dpcore.views.explain import TOPICS, epsilon_band_table, epsilon_sentence, explain
from pages import state, ui

#: (page file, label, icon, topic) for "How to use each page", in app.py's order.
PAGE_TOPICS = [
    ("pages/train.py", "Train", ":material/model_training:", "page_train"),
    ("pages/runs.py", "Runs", ":material/table_view:", "page_runs"),
    ("pages/attack_lab.py", "Attack lab", ":material/policy:", "page_attack_lab"),
    ("pages/tradeoffs.py", "Tradeoffs", ":material/insights:", "page_tradeoffs"),
    ("pages/planner.py", "Budget planner", ":material/calculate:", "page_planner"),
    ("pages/guide.py", "Guide", ":material/menu_book:", "page_guide"),
]
shown: set[str] = set()
DEMO = state.PageState(key="guide_settings", widget_prefix="guide_", defaults=lambda: {"clip": 1.0, "sigma": 1.0})


def topic(name: str) -> None:
    """Draw one explain() topic and remember that it is on the page."""
    st.markdown(explain(name))
    shown.add(name)


def clipping_demo() -> None:
    controls, picture = st.columns([1, 2.4])
    with controls:
        clip = DEMO.bind(st.slider, "Clipping bound C", "clip", min_value=0.2, max_value=3.0, step=0.1,
                         help=explain("max_grad_norm"))
        sigma = DEMO.bind(st.slider, "Noise multiplier σ", "sigma", min_value=0.0, max_value=4.0, step=0.1,
                          help=explain("noise_multiplier"))
        st.caption("Eight made-up examples in a 2-D parameter space (real models have millions of dimensions). "
                   "Move C: long gradients shrink onto the circle, short ones stay. Move σ: the red arrow, the "
                   "step the model actually takes, wanders further from the black one. With thousands of "
                   "examples per batch the noise on the average shrinks, which is why bigger batches help.")
    picture.plotly_chart(plots.clipping_illustration(max_grad_norm=clip, noise_multiplier=sigma),
                         key="guide_chart_clipping")


def main() -> None:
    st.title("Guide: differential privacy in this app")
    state.sync_url({})  # no parameters of its own: drop the ones another page left
    st.caption("What DP-SGD does, how to read ε, and what each page is for. Short enough to walk through in a "
               "demo; every explanation here is the same text the other pages show next to their numbers.")

    st.header("1. What DP-SGD does")
    topic("dpsgd")
    clipping_demo()
    left, right = st.columns(2)
    with left:
        topic("max_grad_norm")
    with right:
        topic("noise_multiplier")
    topic("sampling")

    st.header("2. What ε and δ mean")
    left, right = st.columns(2)
    with left:
        topic("epsilon")
    with right:
        topic("delta")
    st.info("Example: " + epsilon_sentence(3.0, 1e-5), icon=":material/lightbulb:")

    st.header("3. Reading ε: the bands")
    topic("bands")
    st.dataframe(epsilon_band_table(), hide_index=True, width="stretch")
    st.caption("Charts in the app shade these bands behind every ε axis (green = strong … red = very weak).")
    st.subheader(deployments.HEADING)
    st.markdown(deployments.INTRO + "\n\n" + "\n".join(f"- {caveat}" for caveat in deployments.CAVEATS))
    st.dataframe(deployments.table_rows(), hide_index=True, width="stretch",
                 column_config={"source": st.column_config.LinkColumn("source")})

    st.header("4. During training: clip fraction and BatchNorm")
    left, right = st.columns(2)
    with left:
        topic("clip_fraction")
    with right:
        topic("batchnorm")
    topic("epsilon_limit")

    st.header("5. Did it work? Attacks and baselines")
    topic("mia")
    topic("auc")
    left, right = st.columns(2)
    with left:
        topic("lower_bound")
    with right:
        topic("baseline")

    st.header("6. Accountants: why there are three ε")
    topic("accountants")
    topic("gdp_caveat")
    topic("hyperparameter_choice")  # best-of-k selection and Papernot & Steinke (ICLR 2022)

    st.header("7. How to use each page")
    for path, label, icon, name in PAGE_TOPICS:
        with st.container(border=True):
            topic(name)
            if path != "pages/guide.py":
                ui.page_link(path, label=f"Open {label}", icon=icon)

    rest = [name for name in TOPICS if name not in shown]
    st.header("8. Good to know")
    topic("secure_mode")
    for name in rest:
        if name not in shown:
            topic(name)


ui.route_through_app()
main()
