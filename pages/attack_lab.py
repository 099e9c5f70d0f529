"""Attack lab: run membership-inference attacks (loss, LiRA, RMIA) against a finished run and compare the
empirical epsilon lower bound with the accountant's epsilon. The work runs as a queued job
(``dpcore.jobs.attack``); this page picks the run and options, shows progress and draws the stored result.
"""

from __future__ import annotations

import json
import math
from typing import Any

import streamlit as st

from dpcore.attacks import ATTACKS, POOL_SIZES
from dpcore.config import TrainConfig
from dpcore.errors import DPExplorerError
from dpcore.jobs import attack as audit
from dpcore.privacy import tradeoff
from dpcore.privacy.caveats import epsilon_status
from dpcore.store.runs import ACTIVE_STATUSES, DONE, FAILED, RunRecord, RunStore
from dpcore.views import plots
from dpcore.views.explain import BOUND_CAPTION, attack_bound_sentence, explain
from dpcore.views.progress import format_duration
from pages import ui

POLL_S = 1.0
# Plain (non-widget) session keys: widget values vanish when the user visits another page.
RUN_KEY = "attack_lab_run"
SETTINGS_KEY = "attack_lab_settings"
DEFAULT_SETTINGS: dict[str, Any] = {"attacks": list(audit.DEFAULT_ATTACKS), "pool": "standard", "canary": False,
                                    "canary_mode": audit.DEFAULT_CANARY_MODE, "seed": 0,
                                    **{f"canaries_{mode}": n for mode, n in audit.DEFAULT_CANARIES_BY_MODE.items()}}
QUICK_DATASETS = ("synthetic", "digits", "breast-cancer")  # offline: a demo run never waits for a download
EVALUATIONS = {"target": "this run's model", "pool": "reference models (leave-one-out)"}
HELP = {
    "auc": "Area under the ROC curve of the strongest attack: 0.5 = coin flip, 1.0 = perfect membership guesses.",
    "tpr": ("Share of members the strongest attack catches while wrongly accusing only 10 % of non-members. "
            "The low-FPR corner is where an attack is dangerous: see the log-log ROC."),
    "accountant": "The ε of the (ε, δ) guarantee from the privacy accountant: an upper bound on the privacy loss.",
    "lower": ("The largest ε the attacks demonstrate with 95 % confidence (all attack bounds together). It can only "
              "show that privacy is at least this bad; 0 means no evidence of leakage."),
    "attacks": "\n\n".join(f"**{spec.title}**: {spec.description} ({spec.reference})" for spec in ATTACKS.values()),
    "pool": ("Reference models trained like the target on random halves of its members and non-members. LiRA and "
             "RMIA compare the target's behaviour on each example with these models'. More models give sharper "
             "attacks (per-example variances from 64) and take proportionally longer."),
    "canary": ("A one-run audit (Steinke, Nasr, Jagielski 2023): canaries are each included with probability 1/2 "
               "in one extra training run, and the auditor guesses which were. It gives an ε lower bound with a "
               "proof, for THAT run: compare it with that run's own ε, shown beside it. Its power is the largest "
               "ε its number of guesses could certify."),
    "canary_mode": ("**White-box** (strongest): each canary is one model coordinate; when an included canary is "
                    "Poisson-sampled (rate q, like real examples) a gradient of norm exactly C along it is added "
                    "before the noise, in a DP-SGD run with this run's σ, q, C and steps. Scored from every step's "
                    "privatised gradient (what the sequence of updates shows). Its run's ε is this schedule's ε.\n\n"
                    "**Black-box**: training examples with a wrong label, scored from the final model's outputs "
                    "(what a released model shows). Its run has fewer members, so another q and ε."),
    "canaries": ("Number of canaries. More canaries allow more guesses and so a higher power. White-box: up to "
                 "half the model's parameters, 4000 take seconds on synthetic/digits; black-box: at most half the "
                 "members are used."),
    "seed": "Seed of the random halves the reference models train on and of the bootstrap intervals.",
}


def _duration(seconds: float | None) -> str:
    """Like ``format_duration`` but with a decimal under 10 s (runs here often take a second)."""
    return f"{seconds:.1f} s" if seconds is not None and seconds < 10 else format_duration(seconds)


def _settings() -> dict[str, Any]:
    return st.session_state.setdefault(SETTINGS_KEY, dict(DEFAULT_SETTINGS))


def _run_label(record: RunRecord) -> str:
    summary = record.summary
    epsilon = summary.get("final_epsilon") if record.config.get("private", True) else math.inf
    attacked = " · attacked" if summary.get("attack_created") else ""
    return (f"{record.name} · ε {ui.fmt(epsilon, '.2f')} · test acc {ui.fmt(summary.get('test_accuracy'), '.1%')}"
            f"{attacked} · {record.id}")


# ---------------------------------------------------------------------- start a run when there is none
def _quick_start(queue: Any, *, expanded: bool) -> None:
    with st.expander("Train a new run to attack", expanded=expanded, icon=":material/model_training:"), \
            st.form("attack_lab_quick_start", border=False):
        left, middle, right = st.columns(3)
        dataset = left.selectbox("Dataset", QUICK_DATASETS, help="Built-in datasets that need no download.")
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
            st.session_state[RUN_KEY] = run_id
            st.query_params["run"] = run_id  # the page follows the new run: it waits for it, then opens it
            st.toast("Training queued" + (" with an attack behind it." if attack_too else "."),
                     icon=":material/schedule:")
            st.rerun()


# ---------------------------------------------------------------------- choose run and options
def _choose_run(runs: list[RunRecord]) -> RunRecord:
    ids = [record.id for record in runs]
    wanted = st.query_params.get("run") or st.session_state.get(RUN_KEY)
    index = ids.index(wanted) if wanted in ids else 0
    by_id = {record.id: record for record in runs}
    chosen = st.selectbox("Run to attack", ids, index=index, format_func=lambda rid: _run_label(by_id[rid]),
                          help="Finished training runs, newest first. Train one on the Train page or below.")
    st.session_state[RUN_KEY] = chosen
    if st.query_params.get("run") != chosen:
        st.query_params["run"] = chosen
    return by_id[chosen]


def _run_cards(record: RunRecord) -> None:
    summary = record.summary
    private = bool(record.config.get("private", True))
    cols = st.columns(4)
    status = epsilon_status(config=record.config, summary=summary)
    cols[0].metric("Accountant ε", ui.fmt(summary.get("final_epsilon") if private else math.inf, ".2f"),
                   help=HELP["accountant"] + f" δ = {record.config.get('target_delta', 1e-5):g}. "
                   + " ".join(status.explanations()), border=True,
                   delta=status.short_note(".2f") or None, delta_color="off", delta_arrow="off")
    cols[1].metric("Test accuracy", ui.fmt(summary.get("test_accuracy"), ".1%"), border=True,
                   help="Accuracy on held-out non-members (the attacks' negatives).")
    cols[2].metric("Members / non-members", f"{summary.get('n_members', '-')} / {summary.get('n_non_members', '-')}",
                   border=True, help="Training examples and held-out examples: the attack's positives and negatives.")
    cols[3].metric("Training time", _duration(summary.get("seconds")), border=True,
                   help="Wall time of the run's training; each reference model costs about as much.")


def _seed_widget(key: str, value: Any) -> str:
    """Give widget ``key`` its remembered value when the widget is (re)created; returns the key."""
    if key not in st.session_state:
        st.session_state[key] = value
    return key


def _pool_timing(record: RunRecord, n_models: int, seed: int) -> dict[str, Any]:
    """Whether this pool is cached already, and the per-model time an earlier pool of this run measured."""
    store = ui.store()
    try:
        cached = audit.pool_cache_path(store, record, n_models=n_models, seed=seed).is_file()
        previous = audit.load_attack_result(store, record.id) or {}
    except DPExplorerError:
        return {}
    return {"cached": cached, "seconds_per_model": (previous.get("pool") or {}).get("seconds_per_model")}


def _options_form(record: RunRecord, queue: Any, *, busy: bool) -> None:
    settings = _settings()
    with st.container(border=True):
        st.markdown("**Attack settings**")
        left, right = st.columns([3, 2])
        remembered = [name for name in settings["attacks"] if name in ATTACKS]
        chosen = left.multiselect("Attacks", list(ATTACKS), format_func=lambda name: ATTACKS[name].title,
                                  help=HELP["attacks"], key=_seed_widget("attack_lab_attacks", remembered))
        pool = right.segmented_control("Reference models", list(POOL_SIZES), help=HELP["pool"],
                                       format_func=lambda name: f"{name} ({POOL_SIZES[name]})",
                                       key=_seed_widget("attack_lab_pool", settings["pool"]))
        pool = pool or settings["pool"]
        left, mode_column, middle, right = st.columns([2, 2, 2, 1])
        canary = left.checkbox("One-run canary audit", help=HELP["canary"],
                               key=_seed_widget("attack_lab_canary", settings["canary"]))
        canary_mode = mode_column.segmented_control(
            "Canaries", list(audit.CANARY_MODES), help=HELP["canary_mode"], disabled=not canary,
            key=_seed_widget("attack_lab_canary_mode", settings.get("canary_mode", audit.DEFAULT_CANARY_MODE)),
        ) or settings.get("canary_mode", audit.DEFAULT_CANARY_MODE)
        count_key = f"canaries_{canary_mode}"
        canaries = middle.number_input("Number of canaries", min_value=audit.MIN_CANARIES, max_value=audit.MAX_CANARIES,
                                       step=100, disabled=not canary, help=HELP["canaries"],
                                       key=_seed_widget(f"attack_lab_{count_key}",
                                                        settings.get(count_key,
                                                                     audit.DEFAULT_CANARIES_BY_MODE[canary_mode])))
        seed = right.number_input("Seed", min_value=0, max_value=2**31 - 1, help=HELP["seed"],
                                  key=_seed_widget("attack_lab_seed", settings["seed"]))
        settings.update(attacks=chosen, pool=pool, canary=canary, canary_mode=canary_mode, seed=int(seed),
                        **{count_key: int(canaries)})

        n_models = POOL_SIZES[pool]
        needs_pool = any(ATTACKS[name].needs_references for name in chosen)
        timing = _pool_timing(record, n_models, int(seed))
        estimate = audit.estimate_seconds(record.summary, n_models=n_models, canaries=int(canary),
                                          needs_pool=needs_pool, **timing)
        sigma = record.summary.get("noise_multiplier")
        parts = []
        if needs_pool and timing.get("cached"):
            parts.append(f"reuses the {n_models} reference models already trained for this run")
        elif needs_pool:
            parts.append(f"trains {n_models} reference models with this run's settings"
                         + (f" and its noise multiplier σ = {sigma:.3g} fixed (not re-calibrated)"
                            if record.config.get("private", True) and sigma else ""))
        if canary:
            parts.append(f"trains one {canary_mode} canary model with {int(canaries)} canaries")
        text = ("This " + " and ".join(parts) if parts else "These attacks need no extra training")
        text += f"; estimated time ≈ {format_duration(estimate)}." if estimate is not None else "."
        st.caption(text + " Reference models are cached with the run, so trying other attacks later is quick.")
        if st.button("Run attacks", type="primary", icon=":material/policy:", disabled=busy or not chosen,
                     help="An attack of this run is already queued or running." if busy else None):
            try:
                audit.submit_attack(queue, record.id, attacks=chosen, n_models=n_models, seed=int(seed),
                                    canaries=int(canaries) if canary else 0, canary_mode=canary_mode)
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
        _job_progress(job, store=store, queue=queue)


def _job_progress(job: RunRecord, *, store: RunStore, queue: Any) -> None:
    with st.container(border=True):
        if job.status == "queued":
            position = queue.position(job.id)
            st.info(f"Attack queued{f' (position {position})' if position else ''}; it starts when the worker is "
                    "free" + (" and the run has finished training." if store.get(job.group).active else "."),
                    icon=":material/schedule:")
        else:
            phase = job.summary.get("phase") or "starting"
            st.progress(job.progress or 0.0, text=f"Attack running: {phase} ({job.progress or 0.0:.0%})")
        if st.button("Cancel attack", key=f"cancel-{job.id}", icon=":material/stop_circle:",
                     disabled=job.cancel_requested, help="Stop after the reference model being trained now; "
                     "nothing is stored and earlier results are kept."):
            try:
                queue.cancel(job.id)
            except DPExplorerError as err:
                st.error(str(err))
            st.rerun()


def _last_job_problem(jobs: list[RunRecord], result: dict[str, Any] | None) -> None:
    finished = [job for job in jobs if not job.active]
    if not finished:
        return
    last = finished[0]
    newer = result is None or (last.finished or "") > (result.get("created") or "")
    if newer and last.status == FAILED:
        st.error(f"The last attack failed: {last.error_message}", icon=":material/error:")
    elif newer and last.status != DONE:
        st.info(f"The last attack was {last.status}; nothing was stored.", icon=":material/cancel:")


# ---------------------------------------------------------------------- results
@st.cache_resource(show_spinner=False, max_entries=4)
def _dataset(config_json: str) -> Any:
    from dpcore.engine.data import load_for_config

    return load_for_config(TrainConfig.from_dict(json.loads(config_json)).resolve())


def _headline(result: dict[str, Any], evaluation: str = "target") -> None:
    """Four cards: the strongest attack's AUC and TPR in the chosen evaluation, then the two ε bounds."""
    ran = result["attacks"] if evaluation == "target" else result["pool_evaluation"]
    entries = {name: entry for name, entry in ran.items() if "auc" in entry}
    if evaluation == "target" and result["strongest_attack"] in entries:
        strongest = entries[result["strongest_attack"]]
    else:  # leave-one-out: the strongest attack there, which need not be the target's strongest
        strongest = max(entries.values(), key=lambda entry: entry["auc"])
    where = "" if evaluation == "target" else " (reference models)"
    epsilon = result["epsilon"]
    point = next((p for p in strongest["operating_points"] if math.isclose(p["target_fpr"], 0.1)), None)
    cols = st.columns(4)
    cols[0].metric(f"AUC · {strongest['title']}{where}", f"{strongest['auc']:.3f}", help=HELP["auc"], border=True)
    cols[1].metric(f"TPR at 10 % FPR{where}", ui.fmt(point["tpr"] if point else None, ".1%"), help=HELP["tpr"],
                   border=True)
    cols[2].metric("Accountant ε (upper bound)", ui.fmt(epsilon["accountant"] if epsilon["accountant"] is not None
                                                        else math.inf, ".2f"), help=HELP["accountant"], border=True)
    cols[3].metric("Empirical ε (lower bound)", f"{epsilon['lower_bound']:.2f}", help=HELP["lower"], border=True)


def _results(record: RunRecord, result: dict[str, Any], scores: dict[str, Any]) -> None:
    pool = result.get("pool")
    pool_text = f"{pool['n_models']} reference models" + (" (cached)" if pool.get("cached") else "") if pool else \
        "no reference models"
    st.subheader("Results")
    titles = ", ".join(entry["title"] for entry in result["attacks"].values())
    st.caption(f"Computed {result['created'][:19].replace('T', ' ')} UTC · {pool_text} · took "
               f"{_duration(result['seconds'])} · attacks: {titles}")
    evaluation = "target"
    if result.get("pool_evaluation"):
        evaluation = st.segmented_control(
            "Evaluate on", list(EVALUATIONS), default="target", format_func=EVALUATIONS.get,
            help="This run's model: the real question, but its ROC rests on few non-members. Reference models "
                 "(leave-one-out): each reference model in turn is attacked with the others, giving many more "
                 "members and non-members and so resolvable low-FPR numbers for models trained this way. The ε "
                 "bounds and the score histogram are always this run's model's.",
        ) or "target"
    _headline(result, evaluation)
    entries = {name: e for name, e in (result["attacks"] if evaluation == "target"
                                        else result["pool_evaluation"]).items() if "roc" in e}
    curves = audit.roc_curves(result, evaluation=evaluation)
    n_non_members = max((e["n_non_members"] for e in entries.values()), default=None)
    # The DP bound is this run's: drawn for its own model, not for the reference models (other schedules).
    bound = None
    if evaluation == "target":
        bound = tradeoff.tradeoff_for_run(summary=record.summary, config=record.config,
                                          artifacts=ui.store().artifacts_path(record.id))
    bound_epsilon = result["epsilon"]["accountant"] if bound is not None else None
    left, right = st.columns(2)
    left.plotly_chart(plots.roc_chart(curves, title="ROC (linear axes)", bound=bound, bound_epsilon=bound_epsilon),
                      width="stretch")
    right.plotly_chart(plots.roc_chart(curves, log_scale=True, n_non_members=n_non_members,
                                       title="ROC (log-log: the low-FPR regime)", bound=bound,
                                       bound_epsilon=bound_epsilon), width="stretch")
    if bound is not None:
        strongest = max((tradeoff.empirical_tpr_at(fpr=fpr, tpr=tpr) for _, fpr, tpr, _ in curves), default=None)
        st.markdown(attack_bound_sentence(bound_tpr=bound.headline(), empirical_tpr=strongest, caveat=bound.caveat,
                                          attack="the strongest attack here"))
    st.caption(f"Each curve trades catching members (TPR) against falsely accusing non-members (FPR); the dotted "
               f"diagonal is guessing. The log-log view starts at FPR = 1/{n_non_members}, the smallest rate "
               "these non-members can show." + (" " + BOUND_CAPTION if bound is not None else ""))
    st.markdown("**True-positive rate at fixed false-positive rates**")
    st.dataframe(audit.tpr_table(result, evaluation=evaluation), hide_index=True, width="stretch")
    st.caption("Brackets: 95 % intervals (bootstrap for the AUC, Clopper-Pearson for TPRs). A TPR at FPR x is only "
               "reported with an interval when there are at least 10/x non-members; otherwise the raw ROC value is "
               "marked ≈. The ε lower bound column is each attack's threshold bound (Jagielski et al. 2020); "
               "n in / out counts the members and non-members the numbers rest on.")

    left, right = st.columns(2)
    with left:
        names = [name for name in result["attacks"] if name in scores]
        if names:
            shown = st.selectbox("Score histogram of", names, format_func=lambda n: result["attacks"][n]["title"],
                                 index=names.index(result["strongest_attack"]) if result["strongest_attack"] in names
                                 else 0)
            members, non_members = scores[shown]
            st.plotly_chart(plots.score_histogram(members, non_members,
                                                  title="Member vs non-member scores (this run's model)"),
                            width="stretch")
            st.caption("The further apart the two groups, the easier membership is to tell. Scores are this "
                       "run's model's, higher = more likely a member"
                       + (", whichever evaluation is chosen above." if result.get("pool_evaluation") else "."))
    with right:
        st.plotly_chart(plots.epsilon_audit_chart(audit.epsilon_table(result), confidence=audit.CONFIDENCE),
                        width="stretch")
        st.caption(explain("lower_bound") + " " + result["epsilon"]["note"])
    canary = result["epsilon"].get("canary")
    if canary:
        _canary_cards(canary)
    _vulnerable(record, result)
    if pool:
        st.caption(pool["note"])


def _canary_cards(canary: dict[str, Any]) -> None:
    """The canary audit's bound, its power and its own run's ε side by side: the bound is compared with that ε."""
    mode = canary.get("mode", "black-box")
    st.markdown(f"**One-run canary audit ({mode}, {canary['canaries']} canaries)**")
    cols = st.columns(3)
    cols[0].metric("Canary audit: ε lower bound", f"{canary['epsilon_lower']:.2f}", border=True,
                   help=f"Holds with {100 * (1 - canary['alpha']):.0f} % confidence for the canary run.")
    power = canary.get("power")
    cols[1].metric("Audit power", ui.fmt(power, ".2f"), border=True,
                   help="The largest ε this audit could certify were every one of its guesses right: it cannot "
                        "show that a run spends more than this.")
    own = canary.get("accountant_epsilon")
    cols[2].metric("Canary run's own ε (compare with this)", ui.fmt(own if own is not None else math.inf, ".2f"),
                   border=True, help="The accountant's ε of the run the canaries were trained in, at "
                   f"δ = {canary.get('delta', 0):g}: the upper bound this audit's lower bound must stay under.")
    st.caption(audit.canary_sentence(canary) + " " + canary.get("note", audit.CANARY_COMPARE_NOTE))


def _vulnerable(record: RunRecord, result: dict[str, Any]) -> None:
    st.markdown("**Most exposed training examples**")
    names = list(result["attacks"])
    attack = st.selectbox("Ranked by", names, index=names.index(result["strongest_attack"]),
                          format_func=lambda n: result["attacks"][n]["title"],
                          help="The members this attack is most confident were in the training set.")
    try:
        data = _dataset(json.dumps(record.config, sort_keys=True))
        table, images = audit.vulnerable_members(result, data, attack=attack)
    except DPExplorerError as err:
        st.warning(str(err))
        return
    if images is not None:
        captions = [f"#{i} · {label}" for i, label in zip(table["member index"], table["label"], strict=True)]
        st.plotly_chart(plots.image_grid(images, captions, columns=8), width="content")
    score_column = st.column_config.NumberColumn("score", format="%.3g", help="Attack score: higher = more likely "
                                                 "a member")
    st.dataframe(table, hide_index=True, width="stretch", column_config={"score": score_column})
    st.caption("These are the examples whose membership leaks most: typically outliers, rare classes or mislabelled "
               "rows. DP-SGD bounds exactly this worst case.")


# ---------------------------------------------------------------------- page
def main() -> None:
    st.title("Attack lab")
    st.caption("Can an attacker tell which examples a model trained on? Run membership-inference attacks against a "
               "finished run and compare what they demonstrate with the accountant's guarantee.")
    with st.expander("How these attacks work", icon=":material/help:"):
        st.markdown(explain("mia"))
        st.markdown(explain("auc"))
        st.markdown(explain("lower_bound"))
    store, queue = ui.store(), ui.queue()
    runs = store.records(kind="train", status=DONE)
    if not runs:
        training = store.records(kind="train", status=ACTIVE_STATUSES)
        if training:
            st.info(f"{len(training)} run(s) are still training; this page lists them once they finish.",
                    icon=":material/hourglass_top:")
        else:
            st.info("No finished runs to attack yet. Train one on the **Train** page, or start a quick one here.",
                    icon=":material/info:")
        _quick_start(queue, expanded=True)
        if training:
            _progress_fragment_for_any(store)
        return

    wanted = st.query_params.get("run")
    if wanted and store.exists(wanted) and store.get(wanted).active:
        _wait_for(store.get(wanted))
        _quick_start(queue, expanded=False)
        return
    record = _choose_run(runs)
    _run_cards(record)
    jobs = _attack_jobs(store, record.id)
    busy = any(job.active for job in jobs)
    # The form stays drawn while a job runs (its button disabled): widgets that skip a run lose their state.
    _options_form(record, queue, busy=busy)
    if busy:
        _progress_fragment(record.id)
    try:
        result = audit.load_attack_result(store, record.id)
        scores = audit.load_attack_scores(store, record.id) if result else {}
    except DPExplorerError as err:
        st.error(str(err))
        result, scores = None, {}
    if not busy:
        _last_job_problem(jobs, result)
    if result is None:
        st.info("This run has not been attacked yet: choose attacks above and press **Run attacks**.",
                icon=":material/policy:")
    else:
        _results(record, result, scores)
    if jobs:
        _history(store, record.id, count=len(jobs))
    _quick_start(queue, expanded=False)


def _history(store: RunStore, run_id: str, *, count: int) -> None:
    """Every attack job on this run, so an earlier result (say, a quick pool) stays comparable with the newest."""
    with st.expander(f"All attacks on this run ({count})", icon=":material/history:"):
        st.caption("Newest first. The page above shows the newest finished result in full; earlier ones keep "
                   "their headline numbers here. Lower bounds are in nats, at the run's δ.")
        st.dataframe(audit.attack_history(store, run_id), hide_index=True, width="stretch",
                     column_config={
                         "finished": st.column_config.DatetimeColumn("Finished", format="distance"),
                         "best AUC": st.column_config.NumberColumn(format="%.3f"),
                         "ε lower bound": st.column_config.NumberColumn(format="%.2f"),
                         "canary ε lower bound": st.column_config.NumberColumn(format="%.2f"),
                         "canary power": st.column_config.NumberColumn(format="%.2f"),
                         "canary run's ε": st.column_config.NumberColumn(format="%.2f"),
                         "seconds": st.column_config.NumberColumn("Seconds", format="%.1f"),
                     })


def _wait_for(record: RunRecord) -> None:
    """The run in the address is still training: say so, follow it, and open it when it is done."""
    st.info(f"**{record.name}** is {record.status}; the Attack lab opens it here when it finishes"
            + (" (its attack job is queued behind it)." if _attack_jobs(ui.store(), record.id) else "."),
            icon=":material/hourglass_top:")
    if st.button("Pick a finished run instead", icon=":material/list:", key="attack_lab_stop_waiting"):
        del st.query_params["run"]
        st.session_state.pop(RUN_KEY, None)
        st.rerun()
    _training_fragment(record.id)


@st.fragment(run_every=POLL_S)
def _training_fragment(run_id: str) -> None:
    record = ui.store().get(run_id)
    if not record.active:
        st.rerun()  # finished: redraw the page, which now lists and opens it
    st.progress(record.progress or 0.0, text=f"Training: {record.progress or 0.0:.0%}")


@st.fragment(run_every=POLL_S)
def _progress_fragment_for_any(store: RunStore) -> None:
    """With no finished run yet: rerun the page as soon as one finishes."""
    if store.records(kind="train", status=DONE):
        st.rerun()


ui.route_through_app()
main()
