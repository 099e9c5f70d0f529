"""The Attack lab's result and history panels (not a page): what ``pages/attack_lab.py`` shows once a run
has been attacked. Texts, cards and figures come from ``dpcore.views.attack_lab``; the stored result from
``dpcore.jobs.attack_results``.
"""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from dpcore.config import TrainConfig
from dpcore.engine.data import load_for_config
from dpcore.errors import DPExplorerError
from dpcore.jobs import attack as audit
from dpcore.jobs import attack_results
from dpcore.store.records import StoredRun
from dpcore.store.runs import RunStore
from dpcore.views import attack_lab as lab
from dpcore.views import plots
from dpcore.views.explain import explain
from pages import group_results
from pages.run_view import show_cards

HELP = lab.HELP


@st.cache_resource(show_spinner=False, max_entries=4)
def _dataset(config_json: str) -> Any:
    return load_for_config(TrainConfig.from_dict(json.loads(config_json)).resolve())


def render_results(run: StoredRun, result: dict[str, Any], scores: dict[str, Any]) -> None:
    """The newest attack result of ``run``: cards, ROC charts, TPR table, score histogram, ε bounds, canary audit,
    most exposed members. ``scores`` are the stored per-example scores by attack."""
    st.subheader("Results")
    st.caption(lab.result_caption(result))
    evaluation = "target"
    if result.get("pool_evaluation"):
        evaluation = st.segmented_control("Evaluate on", list(lab.EVALUATIONS), default="target",
                                          format_func=lab.EVALUATIONS.get, help=HELP["evaluate"]) or "target"
    show_cards(lab.headline_cards(result, evaluation))
    roc = lab.roc_view(run, result, evaluation=evaluation)
    left, right = st.columns(2)
    left.plotly_chart(roc.linear, width="stretch")
    right.plotly_chart(roc.log, width="stretch")
    if roc.bound_sentence:
        st.markdown(roc.bound_sentence)
    st.caption(roc.caption)
    st.markdown("**True-positive rate at fixed false-positive rates**")
    st.dataframe(attack_results.tpr_table(result, evaluation=evaluation), hide_index=True, width="stretch")
    st.caption(lab.CAPTIONS["tpr_table"])
    left, right = st.columns(2)
    with left:
        names, titles = [name for name in result["attacks"] if name in scores], result["attacks"]
        if names:
            strongest = result["strongest_attack"]
            shown = st.selectbox("Score histogram of", names, format_func=lambda n: titles[n]["title"],
                                 index=names.index(strongest) if strongest in names else 0)
            st.plotly_chart(plots.score_histogram(*scores[shown], title="Member vs non-member scores (this run's "
                                                  "model)"), width="stretch")
            st.caption(lab.scores_caption(pooled=bool(result.get("pool_evaluation"))))
    with right:
        st.plotly_chart(plots.epsilon_audit_chart(attack_results.epsilon_table(result), confidence=audit.CONFIDENCE),
                        width="stretch")
        st.caption(explain("lower_bound") + " " + result["epsilon"]["note"])
    if result["epsilon"].get("canary"):
        title, cards, caption = lab.canary_cards(result["epsilon"]["canary"])
        st.markdown(title)
        show_cards(cards)
        st.caption(caption)
    _vulnerable(run, result)
    if result.get("pool"):
        st.caption(result["pool"]["note"])
    _by_group(run, result, scores)


def _by_group(run: StoredRun, result: dict[str, Any], scores: dict[str, Any]) -> None:
    """Results by class and slice for the strongest attack's stored per-example scores (the loss attack's without)."""
    if run.store is None:
        return
    strongest = result.get("strongest_attack")
    if strongest in scores:
        title = result["attacks"][strongest].get("title", strongest)
        group_results.render_panel(run, store=run.store, key="lab", scores=scores[strongest], attack=title,
                                   scores_stamp=f"{strongest}:{result.get('created')}")
    else:
        group_results.render_panel(run, store=run.store, key="lab")


def _vulnerable(run: StoredRun, result: dict[str, Any]) -> None:
    st.markdown("**Most exposed training examples**")
    names = list(result["attacks"])
    attack = st.selectbox("Ranked by", names, index=names.index(result["strongest_attack"]), help=HELP["exposed"],
                          format_func=lambda n: result["attacks"][n]["title"])
    try:
        data = _dataset(json.dumps(dict(run.config), sort_keys=True))
        table, images = attack_results.vulnerable_members(result, data, attack=attack)
    except DPExplorerError as err:
        st.warning(str(err))
        return
    if images is not None:
        captions = [f"#{i} · {label}" for i, label in zip(table["member index"], table["label"], strict=True)]
        st.plotly_chart(plots.image_grid(images, captions, columns=8), width="content")
    score_column = st.column_config.NumberColumn("score", format="%.3g", help="Attack score: higher = more likely "
                                                 "a member")
    st.dataframe(table, hide_index=True, width="stretch", column_config={"score": score_column})
    st.caption(lab.CAPTIONS["exposed"])


def render_history(store: RunStore, run_id: str, *, count: int) -> None:
    """Every attack job on this run, so an earlier result (say, a quick pool) stays comparable with the newest."""
    number = st.column_config.NumberColumn
    config = {name: number(title, format=spec) for name, (title, spec) in lab.HISTORY_NUMBERS.items()}
    config["finished"] = st.column_config.DatetimeColumn("Finished", format="distance")
    with st.expander(f"All attacks on this run ({count})", icon=":material/history:"):
        st.caption(lab.CAPTIONS["history"])
        st.dataframe(attack_results.attack_history(store, run_id), hide_index=True, width="stretch",
                     column_config=config)
