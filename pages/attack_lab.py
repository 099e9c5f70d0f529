"""Attack lab: run membership-inference attacks (loss, LiRA, RMIA) against a finished run and compare the
empirical epsilon lower bound with the accountant's epsilon. The work runs as a queued job
(``dpcore.jobs.attack``); this page picks the run and options, shows progress and draws the stored result.
Texts, cards and decisions come from ``dpcore.views.attack_lab``; the run (``?run=``) and the attack
settings are kept by ``pages.state``.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from dpcore.attacks import ATTACKS, POOL_SIZES
from dpcore.config import TrainConfig
from dpcore.errors import DPExplorerError
from dpcore.jobs import attack as audit
from dpcore.jobs import attack_results
from dpcore.store.records import StoredRun
from dpcore.store.runs import ACTIVE_STATUSES, DONE, RunRecord, RunStore
from dpcore.views import attack_lab as lab
from dpcore.views.explain import explain
from pages import state, ui
from pages.attack_results import render_history, render_results
from pages.run_view import show_cards

POLL_S = 1.0
RUN_KEY = "attack_lab_run"  # plain session key of the run shown (the URL's ``run`` wins)
SETTINGS = state.PageState(key="attack_lab_settings", widget_prefix="attack_lab_",
                           defaults=lab.default_settings)
HELP = lab.HELP


# ---------------------------------------------------------------------- start a run when there is none
def _quick_start(queue: Any, *, expanded: bool) -> None:
    with st.expander("Train a new run to attack", expanded=expanded, icon=":material/model_training:"), \
            st.form("attack_lab_quick_start", border=False):
        left, middle, right = st.columns(3)
        dataset = left.selectbox("Dataset", lab.QUICK_DATASETS, help="Built-in datasets that need no download.")
        private = middle.toggle("Differential privacy", value=True,
                                help="Off trains the non-private baseline, the easiest target for the attacks.")
        epsilon = right.number_input("Target ε", min_value=0.1, max_value=100.0, value=3.0, step=0.5,
                                     help="Privacy budget for the whole run (δ = 1e-5); used when DP is on.")
        attack_too = st.checkbox("Attack it with the standard suite when it finishes", value=True,
                                 help="Queues the attack job behind the training job.")
        if st.form_submit_button("Train", icon=":material/play_arrow:"):
            cfg = TrainConfig(dataset=dataset, private=private, target_epsilon=float(epsilon) if private else None)
            try:
                run_id = queue.submit(cfg)
                if attack_too:
                    audit.submit_attack(queue, run_id)
            except DPExplorerError as err:
                st.error(str(err))
                return
            state.remember("run", RUN_KEY, run_id)  # the page follows the new run: it waits for it, then opens it
            st.toast("Training queued" + (" with an attack behind it." if attack_too else "."),
                     icon=":material/schedule:")
            st.rerun()


# ---------------------------------------------------------------------- choose run and options
def _choose_run(runs: list[StoredRun], wanted: str | None) -> StoredRun | None:
    """The run picker; None while the run named in the address is not one of ``runs`` (it says why)."""
    ids, by_id = [run.id for run in runs], {run.id: run for run in runs}
    unknown = wanted is not None and wanted not in by_id
    if unknown:
        store = ui.store()
        st.warning(lab.unknown_run_text(wanted, StoredRun.load(store, wanted) if store.exists(wanted) else None)
                   + " Pick a finished run below.", icon=":material/search_off:")
    chosen = st.selectbox("Run to attack", ids, index=None if unknown else ids.index(wanted) if wanted else 0,
                          format_func=lambda rid: lab.run_label(by_id[rid]), placeholder="Pick a finished run",
                          help="Finished training runs, newest first. Train one on the Train page or below.")
    if chosen is not None and chosen != wanted:
        state.remember("run", RUN_KEY, chosen)
        if unknown:
            st.rerun()  # drop the message about the unknown run
    return by_id.get(chosen)


def _options_form(run: StoredRun, queue: Any, *, busy: bool) -> None:
    settings, bind = SETTINGS.settings(), SETTINGS.bind
    settings["attacks"] = [name for name in settings["attacks"] if name in ATTACKS]
    with st.container(border=True):
        st.markdown("**Attack settings**")
        left, right = st.columns([3, 2])
        with left:
            chosen = bind(st.multiselect, "Attacks", "attacks", options=list(ATTACKS), help=HELP["attacks"],
                          format_func=lambda name: ATTACKS[name].title)
        previous = settings["pool"]
        with right:
            pool = bind(st.segmented_control, "Reference models", "pool", options=list(POOL_SIZES), help=HELP["pool"],
                        format_func=lambda name: f"{name} ({POOL_SIZES[name]})") or previous
        settings["pool"] = pool
        left, mode_column, middle, right = st.columns([2, 2, 2, 1])
        with left:
            canary = bind(st.checkbox, "One-run canary audit", "canary", help=HELP["canary"])
        previous = settings["canary_mode"]
        with mode_column:
            canary_mode = bind(st.segmented_control, "Canaries", "canary_mode", options=list(audit.CANARY_MODES),
                               help=HELP["canary_mode"], disabled=not canary) or previous
        settings["canary_mode"] = canary_mode
        with middle:
            canaries = bind(st.number_input, "Number of canaries", f"canaries_{canary_mode}", step=100,
                            min_value=audit.MIN_CANARIES, max_value=audit.MAX_CANARIES, disabled=not canary,
                            help=HELP["canaries"])
        with right:
            seed = bind(st.number_input, "Seed", "seed", min_value=0, max_value=2**31 - 1, help=HELP["seed"])
        n_models, needs_pool = POOL_SIZES[pool], any(ATTACKS[name].needs_references for name in chosen)
        timing = lab.pool_timing(ui.store(), run, n_models=n_models, seed=int(seed))
        estimate = audit.estimate_seconds(run.summary, n_models=n_models, canaries=int(canary),
                                          needs_pool=needs_pool, **timing)
        st.caption(lab.plan_text(run, n_models=n_models, needs_pool=needs_pool, cached=bool(timing.get("cached")),
                                 canary_mode=canary_mode if canary else None, canaries=int(canaries),
                                 estimate=estimate))
        if st.button("Run attacks", type="primary", icon=":material/policy:", disabled=busy or not chosen,
                     help="An attack of this run is already queued or running." if busy else None):
            try:
                audit.submit_attack(queue, run.id, attacks=chosen, n_models=n_models, seed=int(seed),
                                    canaries=int(canaries) if canary else 0, canary_mode=canary_mode,
                                    estimate_s=estimate)
            except DPExplorerError as err:
                st.error(str(err))
                return
            st.toast("Attack job queued.", icon=":material/schedule:")
            st.rerun()


# ---------------------------------------------------------------------- job progress
def _attack_jobs(store: RunStore, run_id: str) -> list[RunRecord]:
    return store.records(kind=audit.ATTACK_KIND, group=run_id)


@st.fragment(run_every=POLL_S)
def _progress_fragment(run_id: str) -> None:
    store, queue = ui.store(), ui.queue()
    active = [job for job in _attack_jobs(store, run_id) if job.active]
    if not active:
        st.rerun()  # the job ended: redraw the whole page with its result
    for job in active:
        with st.container(border=True):
            kind, text = lab.job_status(job, position=queue.position(job.id) if job.status == "queued" else None,
                                        run_training=store.get(job.group).active)
            if kind == "queued":
                st.info(text, icon=":material/schedule:")
            else:
                st.progress(job.progress or 0.0, text=text)
            if st.button("Cancel attack", key=f"cancel-{job.id}", icon=":material/stop_circle:",
                         disabled=job.cancel_requested, help=HELP["cancel"]):
                try:
                    queue.cancel(job.id)
                except DPExplorerError as err:
                    st.error(str(err))
                st.rerun()


# ---------------------------------------------------------------------- waiting for a run
def _wait_for(run: StoredRun) -> None:
    """The run in the address is still training: say so, follow it, and open it when it is done."""
    st.info(lab.waiting_text(run, attack_queued=bool(_attack_jobs(ui.store(), run.id))),
            icon=":material/hourglass_top:")
    if st.button("Pick a finished run instead", icon=":material/list:", key="attack_lab_stop_waiting"):
        state.remember("run", RUN_KEY, None)
        st.rerun()
    _training_fragment(run.id)


@st.fragment(run_every=POLL_S)
def _training_fragment(run_id: str) -> None:
    record = ui.store().get(run_id)
    if not record.active:
        st.rerun()  # finished: redraw the page, which now lists and opens it
    st.progress(record.progress or 0.0, text=f"Training: {record.progress or 0.0:.0%}{lab.job_eta_suffix(record)}")


@st.fragment(run_every=POLL_S)
def _progress_fragment_for_any(store: RunStore) -> None:
    """With no finished run yet: rerun the page as soon as one finishes."""
    if store.records(kind="train", status=DONE):
        st.rerun()


# ---------------------------------------------------------------------- page
def main() -> None:
    st.title("Attack lab")
    st.caption(lab.INTRO)
    with st.expander("How these attacks work", icon=":material/help:"):
        for topic in ("mia", "auc", "lower_bound"):
            st.markdown(explain(topic))
    store, queue = ui.store(), ui.queue()
    wanted = state.url_or_session("run", RUN_KEY)
    state.sync_url({"run": wanted})  # this page's parameter only
    runs = [StoredRun.from_record(record, store=store) for record in store.records(kind="train", status=DONE)]
    if not runs:
        training = store.records(kind="train", status=ACTIVE_STATUSES)
        st.info(lab.no_runs_text(len(training)), icon=":material/hourglass_top:" if training else ":material/info:")
        _quick_start(queue, expanded=True)
        if training:
            _progress_fragment_for_any(store)
        return
    if wanted and store.exists(wanted) and store.get(wanted).active:
        _wait_for(StoredRun.load(store, wanted))
        _quick_start(queue, expanded=False)
        return
    run = _choose_run(runs, wanted)
    if run is None:
        _quick_start(queue, expanded=False)
        return
    show_cards(lab.run_cards(run))
    jobs = _attack_jobs(store, run.id)
    busy = any(job.active for job in jobs)
    # The form stays drawn while a job runs (its button disabled): widgets that skip a run lose their state.
    _options_form(run, queue, busy=busy)
    if busy:
        _progress_fragment(run.id)
    try:
        result = attack_results.load_attack_result(store, run.id)
        scores = attack_results.load_attack_scores(store, run.id) if result else {}
    except DPExplorerError as err:
        st.error(str(err))
        result, scores = None, {}
    problem = None if busy else lab.job_problem(jobs, result)
    if problem:
        level, text = problem
        (st.error if level == "error" else st.info)(text, icon=":material/error:" if level == "error"
                                                    else ":material/cancel:")
    if notice := lab.result_notice(busy=busy, has_result=result is not None):
        st.info(notice, icon=":material/history:" if busy else ":material/policy:")
    if result is not None:
        render_results(run, result, scores)
    if jobs:
        render_history(store, run.id, count=len(jobs))
    _quick_start(queue, expanded=False)


ui.route_through_app()
main()
