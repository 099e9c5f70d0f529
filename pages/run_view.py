"""One run's full view, shared by the Train and Runs pages (not a page itself).

``live_run`` shows a run and keeps it current: progress, ETA, live charts and a Cancel button
while it is queued or running (a fragment polls the store every second), then the result view:
summary cards, the epsilon sentence, the membership-attack ROC, the four checks, the BatchNorm
fixes, why the run stopped, the final charts and short explanations. ``render_run`` draws the
same without polling. All numbers come from the run store; nothing here trains or attacks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from dpcore.errors import DPExplorerError
from dpcore.jobs.queue import JobQueue
from dpcore.jobs.training import MIA_DONE, MIA_FAILED, MIA_PENDING, find_baseline, load_roc
from dpcore.privacy import tradeoff
from dpcore.privacy.caveats import epsilon_status
from dpcore.privacy.checks import run_checks
from dpcore.store.runs import CANCELLED, DONE, FAILED, INTERRUPTED, QUEUED, RUNNING, RunNotFound, RunRecord, RunStore
from dpcore.views import plots, report
from dpcore.views.explain import BOUND_CAPTION, attack_bound_sentence, epsilon_sentence, explain
from dpcore.views.progress import estimate_progress, format_duration, parse_time
from pages import ui

POLL_S = 1.0
CARD = {"border": True, "height": "stretch"}  # summary cards: framed, equal heights in a row
NOTE = {"delta_color": "off", "delta_arrow": "off"}  # a card's delta used as a grey note, not a change
SAMPLES_KEY = "run_view_step_samples"  # plain session key: {run_id: [(posix time, steps done), ...]}
MAX_SAMPLES = 20
ATTACK_GRACE_S = 60.0  # keep polling this long after a run ended while its attack is marked pending

# (label, badge colour, icon) for a run's state; stop_status refines 'done'.
STATE_BADGES: dict[str, tuple[str, str, str]] = {
    QUEUED: ("Queued", "gray", ":material/schedule:"),
    RUNNING: ("Training", "blue", ":material/progress_activity:"),
    "finished": ("Finished", "green", ":material/check_circle:"),
    "epsilon_limit": ("Stopped at the ε limit", "orange", ":material/front_hand:"),
    "diverged": ("Diverged", "red", ":material/error:"),
    CANCELLED: ("Cancelled", "gray", ":material/cancel:"),
    FAILED: ("Failed", "red", ":material/error:"),
    INTERRUPTED: ("Interrupted", "orange", ":material/power_off:"),
}

ATTACK_MESSAGES = {
    "running": "The membership attack is running…",
    "stalled": "The membership attack did not finish: the app stopped while it ran.",
    "none": "No membership attack for this run: it took no training step, or predates the attack.",
}

HELP = {
    "epsilon": ("Privacy spent: the ε of the (ε, δ) guarantee this training gives, as computed by the "
                "accountant. Smaller is more private."),
    "sigma": ("Noise multiplier σ: standard deviation of the Gaussian noise added to each summed batch "
              "gradient, in units of the clipping bound C."),
    "accuracy": "Accuracy on the held-out non-members after the last epoch (the model never trained on them).",
    "mia": ("Area under the ROC curve of the loss-threshold membership attack: 0.5 means the attacker does no "
            "better than a coin flip at telling training members from held-out examples; 1.0 means perfectly."),
    "clip": ("Share of per-sample gradients longer than C (and so clipped) in the last epoch. Around "
             "50-80 % usually trains best."),
}


# ---------------------------------------------------------------------- entry points
def live_run(run_id: str, *, store: RunStore, queue: JobQueue | None = None, key: str = "run",
             on_new_run: Callable[[str], None] | None = None) -> None:
    """Draw run ``run_id`` and keep it current while anything about it can still change.

    While the run is queued or running, its attack is pending or its linked baseline is still
    training, a fragment redraws it every second; once nothing can change any more the page is
    rerun once and the static view takes over. ``on_new_run(run_id)`` is called when the view
    starts another run (Continue training).
    """
    try:
        record = store.get(run_id)
    except RunNotFound as err:
        st.warning(str(err), icon=":material/search_off:")
        return
    if needs_polling(record, store=store, queue=queue):
        _live_fragment(run_id, store, queue, key, on_new_run)
    else:
        render_run(run_id, store=store, queue=queue, key=key, on_new_run=on_new_run)


@st.fragment(run_every=POLL_S)
def _live_fragment(run_id: str, store: RunStore, queue: JobQueue | None, key: str,
                   on_new_run: Callable[[str], None] | None) -> None:
    record = render_run(run_id, store=store, queue=queue, key=key, on_new_run=on_new_run)
    if record is not None and not needs_polling(record, store=store, queue=queue):
        st.rerun()  # whole page: redraw without the timer


def render_run(run_id: str, *, store: RunStore, queue: JobQueue | None = None, key: str = "run",
               on_new_run: Callable[[str], None] | None = None) -> RunRecord | None:
    """Draw run ``run_id`` once: its progress when active, else its full result view.

    Returns the record drawn, or None (with a warning shown) when the run does not exist.
    """
    try:
        record = store.get(run_id)
    except RunNotFound as err:
        st.warning(str(err), icon=":material/search_off:")
        return None
    render_record(record, store=store, queue=queue, key=key, on_new_run=on_new_run)
    return record


def render_record(record: RunRecord, *, store: RunStore, queue: JobQueue | None = None, key: str = "run",
                  on_new_run: Callable[[str], None] | None = None) -> None:
    """Progress view for a queued/running run, result view for any other."""
    if record.active:
        render_progress(record, store=store, queue=queue, key=key)
    else:
        render_result(record, store=store, queue=queue, key=key, on_new_run=on_new_run)


def needs_polling(record: RunRecord, *, store: RunStore, queue: JobQueue | None) -> bool:
    """Whether the view of ``record`` can still change: active, attack pending in a live job, or baseline active."""
    if record.active:
        return True
    if attack_state(record, queue=queue) == "running":
        return True
    baseline_id = record.summary.get("baseline_run")
    if isinstance(baseline_id, str):
        try:
            return store.get(baseline_id).active
        except RunNotFound:
            return False
    return False


def attack_state(record: RunRecord, *, queue: JobQueue | None) -> str:
    """The membership attack of a stopped run: 'done', 'running', 'stalled' (pending, but its job is gone),
    'failed' or 'none' (never run: no step taken, or a run from before the attack existed)."""
    status = record.summary.get("mia_status")
    if record.summary.get("mia_auc") is not None or status == MIA_DONE:
        return "done"
    if status == MIA_PENDING:
        alive = _job_alive(record.id, queue) or _seconds_since(record.finished) < ATTACK_GRACE_S
        return "running" if alive else "stalled"
    return "failed" if status == MIA_FAILED else "none"


def _job_alive(run_id: str, queue: JobQueue | None) -> bool:
    return queue is not None and queue.position(run_id) is not None


def _seconds_since(stamp: str | None) -> float:
    moment = parse_time(stamp)
    return math.inf if moment is None else time.time() - moment


# ---------------------------------------------------------------------- header
def _state_key(record: RunRecord) -> str:
    if record.status == DONE:
        return record.stop_status if record.stop_status in STATE_BADGES else "finished"
    return record.status


def render_header(record: RunRecord) -> None:
    """Run name, state badge and a one-line summary of its settings."""
    label, color, icon = STATE_BADGES.get(_state_key(record), (record.status, "gray", ":material/help:"))
    title_col, badge_col = st.columns([5, 1], vertical_alignment="center")
    with title_col:
        st.markdown(f"#### {record.name}")
    with badge_col:
        st.badge(label, icon=icon, color=color, width="stretch")
    st.caption(f"Run `{record.id}` · " + config_line(record))
    status = epsilon_status(config=record.config, summary=record.summary)
    if status.caveats:
        headline = "; ".join([caveat.label for caveat in status.caveats if caveat.kind != "no_poisson"]
                             + ([status.bound_text()] if status.bound_text() else []))
        st.warning(f"**{headline}**  \n" + " ".join(status.explanations()), icon=":material/warning:")


def config_line(record: RunRecord) -> str:
    """Settings of a run in one short line: data, model, privacy, clipping, training knobs, device."""
    cfg, summary = record.config, record.summary
    parts = [f"{cfg.get('dataset')} · {cfg.get('model')}"]
    if cfg.get("private", True):
        if cfg.get("target_epsilon") is not None:
            parts.append(f"target ε {cfg['target_epsilon']:g}, δ {cfg.get('target_delta', 0):g}")
        elif cfg.get("noise_multiplier") is not None:
            parts.append(f"σ {cfg['noise_multiplier']:g}, δ {cfg.get('target_delta', 0):g}")
        if cfg.get("max_grad_norm") is not None:
            parts.append(f"C {cfg['max_grad_norm']:g}")
        if cfg.get("epsilon_limit") is not None:
            parts.append(f"ε limit {cfg['epsilon_limit']:g}")
    else:
        parts.append("no DP (baseline)")
    parent = (cfg.get("extra") or {}).get("resume_from")
    if cfg.get("epochs") is not None:  # a continuation's config holds the epochs it adds
        parts.append(f"{'+' if parent else ''}{cfg['epochs']} epoch{'s' if cfg['epochs'] != 1 else ''}")
    if cfg.get("batch_size") is not None:
        parts.append(f"batch {cfg['batch_size']}")
    if cfg.get("optimizer") is not None and cfg.get("lr") is not None:
        parts.append(f"{cfg['optimizer']} lr {cfg['lr']:g}")
    parts.append(f"seed {cfg.get('seed')}")
    if parent:
        parts.append(f"continues run {parent}")
    if record.device:
        parts.append(record.device)
    if summary.get("seconds") is not None:
        parts.append(f"{format_duration(summary['seconds'])} training")
    return " · ".join(parts)


# ---------------------------------------------------------------------- progress (queued / running)
def _samples(record: RunRecord) -> list[tuple[float, int]]:
    """Record this poll's (time, steps done) and return the recent samples for the ETA."""
    all_samples: dict[str, list[tuple[float, int]]] = st.session_state.setdefault(SAMPLES_KEY, {})
    samples = all_samples.setdefault(record.id, [])
    if not samples or samples[-1][1] != record.steps_done:
        samples.append((time.time(), record.steps_done))
        del samples[:-MAX_SAMPLES]
    return samples


def render_progress(record: RunRecord, *, store: RunStore, queue: JobQueue | None = None,
                    key: str = "run") -> None:
    """Queue position or progress bar with elapsed time and ETA, Cancel, and the live charts."""
    render_header(record)
    if record.status == QUEUED:
        position = queue.position(record.id) if queue is not None else None
        if position:
            ahead = position - 1 + (1 if queue is not None and queue.running() else 0)
            text = (f"Waiting in the queue: position {position}. "
                    + ("It starts as soon as the worker is free." if ahead == 0 else
                       f"{ahead} job{'s' if ahead != 1 else ''} ahead of it."))
        else:
            text = "Waiting to start."
        st.info(text, icon=":material/schedule:")
    else:
        progress = estimate_progress(record, samples=_samples(record))
        if progress.total_steps:
            text = (f"Step {progress.steps_done:,} of {progress.total_steps:,} ({progress.fraction:.0%}) · "
                    f"elapsed {format_duration(progress.elapsed_s)} · ETA {format_duration(progress.eta_s)}")
            st.progress(progress.fraction or 0.0, text=text)
        else:
            st.progress(0.0, text=f"Preparing data and model · elapsed {format_duration(progress.elapsed_s)}")
        if record.cancel_requested:
            st.caption("Cancel requested: the run stops before its next step.")
    if st.button("Cancel run", key=f"{key}-cancel-{record.id}", icon=":material/stop_circle:",
                 disabled=record.cancel_requested, help="Stop this run before its next step. What it trained "
                 "so far is kept, with the ε it spent."):
        _cancel(record.id, store=store, queue=queue)
    if record.status == RUNNING:
        steps, epochs = _metrics(store, record.id)
        _live_numbers(record, steps, epochs)
        if steps.empty:
            st.caption(":material/hourglass_top: Loading the data, building the model and calibrating the noise; "
                       "the charts start with the first optimizer step.")
        else:
            render_charts(record, steps, epochs, store=store, key=f"{key}-live", live=True)


def _cancel(run_id: str, *, store: RunStore, queue: JobQueue | None) -> None:
    try:
        status = queue.cancel(run_id) if queue is not None else store.request_cancel(run_id)
    except DPExplorerError as err:
        st.error(str(err))
        return
    st.toast("Cancelled before it started." if status == CANCELLED else "Cancel requested: stopping after this step.",
             icon=":material/stop_circle:")
    st.rerun()


def _live_numbers(record: RunRecord, steps: pd.DataFrame, epochs: pd.DataFrame) -> None:
    cfg = record.config
    cols = st.columns(4)
    eps = _last(steps, "epsilon")
    target = cfg.get("target_epsilon")
    cols[0].metric("ε spent so far", ui.fmt(eps, ".2f") if cfg.get("private", True) else "∞",
                   help=HELP["epsilon"] + f" At δ = {cfg.get('target_delta', 0):g}."
                   + (f" The target is {target:g} after all epochs." if target is not None else ""))
    total_epochs = cfg.get("epochs")
    cols[1].metric("Epoch", f"{int(_last(steps, 'epoch') or 1)} of {total_epochs}" if total_epochs else "-",
                   help="The epoch the current step belongs to.")
    cols[2].metric("Test accuracy", ui.fmt(_last(epochs, "test_accuracy"), ".1%"),
                   help=HELP["accuracy"] + " Shown after the first epoch.")
    cols[3].metric("Clipped (last steps)", ui.fmt(_tail_mean(steps, "clip_fraction"), ".0%"),
                   help="Share of per-sample gradients clipped, averaged over the last 10 steps. "
                   "Around 50-80 % usually trains best.")


# ---------------------------------------------------------------------- result (any stopped run)
def render_result(record: RunRecord, *, store: RunStore, queue: JobQueue | None = None, key: str = "run",
                  on_new_run: Callable[[str], None] | None = None) -> None:
    """The full view of a stopped run: why it stopped, cards, checks, ROC, fixes, charts, explanations."""
    render_header(record)
    render_stop_reason(record)
    steps, epochs = _metrics(store, record.id)
    if record.status == FAILED and steps.empty:
        return  # nothing was trained: the error says it all
    st.download_button("Report (HTML)", data=lambda: report.run_report(store, record.id),
                       file_name=report.report_filename(record.id), mime="text/html", on_click="ignore",
                       icon=":material/description:", key=f"{key}-report-{record.id}",
                       help="This run in one HTML file that opens offline, for a review: its numbers, checks, "
                            "charts, settings and environment. Built when you click.")
    baseline, baseline_epochs = _baseline(store, record)
    summary = record.summary
    private = bool(record.config.get("private", True))
    final_epsilon = _final_epsilon(record, steps)
    test_accuracy = _number(summary.get("test_accuracy"), _last(epochs, "test_accuracy"))
    mia_auc = _number(summary.get("mia_auc"))

    attack = attack_state(record, queue=queue)
    render_cards(record, final_epsilon=final_epsilon, test_accuracy=test_accuracy, mia_auc=mia_auc,
                 baseline=baseline, attack=attack)
    if private and math.isfinite(final_epsilon):
        st.markdown(epsilon_sentence(final_epsilon, float(record.config.get("target_delta", 0.0))))
    elif not private:
        st.markdown(epsilon_sentence(math.inf, float(record.config.get("target_delta", 0.0))))
    if baseline is not None and baseline.active:
        st.caption(f":material/hourglass_top: The non-private baseline `{baseline.id}` is still training "
                   f"({ui.fmt(baseline.progress, '.0%')}); its accuracy appears here when it finishes.")
    fixes = summary.get("fixes") or []
    if fixes:
        with st.container(border=True):
            st.markdown(":material/build: **Model changed for DP:** " + "; ".join(f"`{fix}`" for fix in fixes))
            st.markdown(explain("batchnorm"))

    roc_col, checks_col = st.columns([3, 2], gap="large")
    with roc_col:
        render_roc(record, store=store, key=key, attack=attack)
    with checks_col:
        render_checks(record, final_epsilon=final_epsilon, test_accuracy=test_accuracy, mia_auc=mia_auc)

    render_charts(record, steps, epochs, store=store, key=f"{key}-final", baseline_epochs=baseline_epochs)
    render_explanations(private=private)
    render_continue(record, store=store, queue=queue, key=key, on_new_run=on_new_run,
                    final_epsilon=final_epsilon)


def render_stop_reason(record: RunRecord) -> None:
    """Why the run stopped, styled by outcome; a failed run shows its error message, never a traceback."""
    state = _state_key(record)
    reason = record.stop_reason or ""
    if record.status == FAILED:
        st.error(f"**Training failed.** {record.error_message or reason or 'No error message was stored.'}",
                 icon=":material/error:")
    elif state == "finished":
        st.success(reason or "Trained for all epochs.", icon=":material/check_circle:")
    elif state == "epsilon_limit":
        st.warning(reason or "Stopped at the ε limit.", icon=":material/front_hand:")
    elif state == "diverged":
        st.error(reason or "The loss diverged.", icon=":material/error:")
    elif record.status == CANCELLED:
        st.info(reason or "Cancelled.", icon=":material/cancel:")
    elif record.status == INTERRUPTED:
        st.warning(f"**Interrupted.** {reason}", icon=":material/power_off:")
    else:
        st.info(reason or record.status)


def render_cards(record: RunRecord, *, final_epsilon: float, test_accuracy: float | None, mia_auc: float | None,
                 baseline: RunRecord | None, attack: str = "done") -> None:
    """Five st.metric cards: ε spent, σ, test accuracy (gap to the baseline), MIA AUC, clipped share."""
    cfg, summary = record.config, record.summary
    private = bool(cfg.get("private", True))
    delta = cfg.get("target_delta", 0.0)
    accountant = (summary.get("accountant") or cfg.get("accountant") or "rdp").upper()
    cols = st.columns(5)
    if private:
        eps_help = (f"{HELP['epsilon']} Computed at δ = {delta:g} by the {accountant} accountant over "
                    f"{summary.get('steps', record.steps_done)} steps.")
        if cfg.get("target_epsilon") is not None:
            eps_help += f" Target: {cfg['target_epsilon']:g}."
        # Short notes: five cards share the row, and a longer note is cut off.
        note = (f"{accountant}, target {cfg['target_epsilon']:g}" if cfg.get("target_epsilon") is not None
                else f"{accountant} accountant")
        status = epsilon_status(config=cfg, summary=summary, epsilon=final_epsilon)
        if status.caveats:  # not a plain guarantee: the mark (and proven bound) replaces the accountant note
            note = status.short_note(".2f")
            eps_help += " " + " ".join(status.explanations())
        cols[0].metric(f"ε spent (δ = {delta:g})", ui.fmt(final_epsilon, ".2f"), help=eps_help,
                       delta=note, **NOTE, **CARD)
        clip_bound = f"C = {cfg['max_grad_norm']:g}" if cfg.get("max_grad_norm") is not None else None
        cols[1].metric("Noise σ", ui.fmt(_number(summary.get("noise_multiplier")), ".3f"),
                       help=HELP["sigma"] + (" Calibrated to reach the target ε after all epochs."
                                             if cfg.get("target_epsilon") is not None else " Set by hand."),
                       delta=clip_bound, **NOTE, **CARD)
    else:
        cols[0].metric("ε spent", "∞", help="No differential privacy: this baseline has no (ε, δ) guarantee.",
                       **CARD)
        cols[1].metric("Noise σ", "none", help="The baseline adds no noise and clips no gradients.", **CARD)

    gap, gap_help = None, " No non-private baseline with the same data, model and seed is stored yet."
    if baseline is not None and private:
        base_acc = _number(baseline.summary.get("test_accuracy"))
        if base_acc is not None and test_accuracy is not None:
            gap = f"{(test_accuracy - base_acc) * 100:+.1f} pp vs no DP"
            gap_help = (f" The non-private baseline (run {baseline.id}) reached {base_acc:.1%}; the gap, in "
                        "percentage points, is the accuracy privacy cost.")
        elif baseline.active:
            gap_help = f" The non-private baseline (run {baseline.id}) is still training."
    if not private:
        gap_help = ""
    cols[2].metric("Test accuracy", ui.fmt(test_accuracy, ".1%"), delta=gap, help=HELP["accuracy"] + gap_help,
                   **CARD)

    if mia_auc is not None:
        tpr = _number(summary.get("mia_tpr_at_1pct_fpr"))
        mia_value, mia_help = f"{mia_auc:.3f}", HELP["mia"] + (
            f" At a 1 % false-positive rate it finds {tpr:.1%} of the members." if tpr is not None else "")
    elif attack == "running":
        mia_value, mia_help = "…", "The attack runs right after training; it takes a few seconds."
    elif attack == "failed":
        mia_value, mia_help = "failed", f"The attack failed: {summary.get('mia_error', 'no message')}."
    else:
        mia_value, mia_help = "-", ATTACK_MESSAGES.get(attack, ATTACK_MESSAGES["none"])
    cols[3].metric("Attack AUC", mia_value, help=mia_help, **CARD)
    clip = _number(summary.get("final_clip_fraction"))
    cols[4].metric("Clipped gradients", ui.fmt(clip, ".0%") if private else "none",
                   help=HELP["clip"] + (f" Clipping bound C = {cfg['max_grad_norm']:g}."
                                        if cfg.get("max_grad_norm") is not None else ""),
                   **CARD)


def render_roc(record: RunRecord, *, store: RunStore, key: str = "run", attack: str = "done") -> None:
    """The loss-threshold attack's ROC curve (with the chance diagonal) from the run's roc.json."""
    try:
        roc = load_roc(store.artifacts_path(record.id))
    except DPExplorerError as err:
        st.error(str(err))
        return
    if roc is None:
        if attack == "failed":
            message = f"The membership attack failed: {record.summary.get('mia_error', 'no message')}"
        else:
            message = ATTACK_MESSAGES.get(attack, ATTACK_MESSAGES["none"])
        st.plotly_chart(_placeholder("Membership-inference ROC", message), key=f"{key}-roc-{record.id}")
        return
    log_axes = st.toggle("Log axes (the low false-positive regime)", key=f"{key}-roc-log-{record.id}",
                         help="A dangerous attack finds some members with almost no false alarms; log axes "
                              "show that corner.")
    bound = tradeoff.tradeoff_for_run(summary=record.summary, config=record.config,
                                      artifacts=store.artifacts_path(record.id))
    final_epsilon = _number(record.summary.get("final_epsilon"))
    figure = plots.roc_chart([("loss-threshold attack", roc["fpr"], roc["tpr"], roc.get("auc"))],
                             log_scale=log_axes, n_non_members=roc.get("n_non_members"),
                             title="Membership-inference ROC", bound=bound, bound_epsilon=final_epsilon)
    st.plotly_chart(figure, key=f"{key}-roc-{record.id}")
    empirical = _number(record.summary.get("mia_tpr_at_1pct_fpr"))
    if empirical is None:
        empirical = tradeoff.empirical_tpr_at(fpr=roc["fpr"], tpr=roc["tpr"])
    st.markdown(attack_bound_sentence(bound_tpr=bound.headline(), empirical_tpr=empirical, caveat=bound.caveat))
    st.caption(f"Loss-threshold attack on {roc.get('n_members', '?')} members and {roc.get('n_non_members', '?')} "
               "held-out examples: it calls an example a member when the model's loss on it is low. "
               "The dotted diagonal is guessing. " + BOUND_CAPTION)


def render_checks(record: RunRecord, *, final_epsilon: float, test_accuracy: float | None,
                  mia_auc: float | None) -> None:
    """The privacy gate's checks (as ``python -m dpcore check`` runs them) as pass/fail badges with what was measured.

    The ε checks use a proven bound (RDP for a GDP run); a reproducible run fails an extra check.
    """
    private = bool(record.config.get("private", True))
    checks = run_checks(record.config, {**record.summary, "test_accuracy": test_accuracy, "mia_auc": mia_auc},
                        final_epsilon=final_epsilon if private and math.isfinite(final_epsilon) else None)
    st.markdown("##### Checks")
    for check in checks:
        if check.passed is True:
            badge = ":green-badge[:material/check: pass]"
        elif check.passed is False:
            badge = ":red-badge[:material/close: fail]"
        else:
            badge = ":gray-badge[:material/remove: n/a]"
        value = check.value_text(epsilon_format=".2f")
        st.markdown(f"{badge} **{check.name}** · {value}  \n:gray[{check.description}]")
    if not record.config.get("private", True):
        st.caption("A non-private baseline fails the ε checks by design: it has no guarantee.")


LOSS_CAPTION = "Cross-entropy loss per step (nats): faint = each step, bold = rolling mean."


def render_charts(record: RunRecord, steps: pd.DataFrame, epochs: pd.DataFrame, *, store: RunStore,
                  key: str = "run", baseline_epochs: pd.DataFrame | None = None, live: bool = False) -> None:
    """ε and clip fraction per step, loss per step, train/test accuracy per epoch (with the baseline).

    ``live`` (a run in progress) stretches the step axes to the planned total, so the curves show how
    far the run has come.
    """
    cfg = record.config
    private = bool(cfg.get("private", True))
    runs_steps = [(record.name, steps)]
    x_max = record.total_steps if live and record.total_steps else None

    def per_step(figure: Any, name: str) -> None:
        if x_max:
            figure.update_xaxes(range=[0, x_max * 1.02], autorange=False)
        st.plotly_chart(figure, key=f"{key}-{name}-{record.id}")

    if baseline_epochs is None:
        _, baseline_epochs = _baseline(store, record)
    has_baseline = baseline_epochs is not None and not baseline_epochs.empty

    def accuracy() -> None:
        if epochs.empty:
            figure = _placeholder("Accuracy", "accuracy appears after the first epoch")
        else:
            figure = plots.accuracy_chart([(record.name, epochs)], baseline=baseline_epochs if has_baseline else None)
            last_epoch = int(epochs["epoch"].max())
            planned = int(cfg.get("epochs") or 0)
            if live and not (cfg.get("extra") or {}).get("resume_from") and planned > last_epoch:
                figure.update_xaxes(range=[0.5, planned + 0.5], autorange=False)
                last_epoch = planned
            if last_epoch <= 12:
                figure.update_xaxes(dtick=1)  # whole epochs, not 0.5 steps
        st.plotly_chart(figure, key=f"{key}-acc-{record.id}")
        st.caption("Test (solid, on held-out examples) and train (dashed) accuracy after each epoch"
                   + ("; dotted grey: the non-private baseline's test accuracy." if has_baseline else "."))

    if not private:
        left, right = st.columns(2, gap="large")
        with left:
            accuracy()
        with right:
            per_step(plots.loss_chart(runs_steps), "loss")
            st.caption(LOSS_CAPTION)
        return

    delta = cfg.get("target_delta")
    top_left, top_right = st.columns(2, gap="large")
    with top_left:
        per_step(plots.epsilon_chart(runs_steps, target_epsilon=cfg.get("target_epsilon"),
                                     epsilon_limit=cfg.get("epsilon_limit"), delta=delta), "eps")
        st.caption(f"ε spent after each step at δ = {delta:g} ({(cfg.get('accountant') or 'rdp').upper()} "
                   "accountant). Dashed: the target; red: the hard limit. Shading: strong, moderate, weak, "
                   "very weak privacy.")
    with top_right:
        per_step(plots.clip_fraction_chart(runs_steps), "clip")
        bound = cfg.get("max_grad_norm")
        st.caption("Share of per-sample gradients longer than " + (f"C = {bound:g}" if bound is not None else "C")
                   + " in each step, clipped before the noise is added. Green band: the 50–80 % that usually "
                   "trains best.")
    bottom_left, bottom_right = st.columns(2, gap="large")
    with bottom_left:
        per_step(plots.loss_chart(runs_steps), "loss")
        st.caption(LOSS_CAPTION)
    with bottom_right:
        accuracy()


def render_explanations(*, private: bool) -> None:
    """Short expanders: epsilon and delta, the bands, clip fraction, the attack's AUC."""
    cols = st.columns(4)
    with cols[0].expander("What do ε and δ mean?", icon=":material/help:"):
        st.markdown(explain("epsilon"))
        st.markdown(explain("delta"))
    with cols[1].expander("How to read ε", icon=":material/help:"):
        st.markdown(explain("bands"))
        st.markdown(explain("accountants"))
    with cols[2].expander("Clip fraction", icon=":material/help:"):
        st.markdown(explain("max_grad_norm"))
        st.markdown(explain("clip_fraction"))
    with cols[3].expander("Membership attack AUC", icon=":material/help:"):
        st.markdown(explain("mia"))
        st.markdown(explain("auc"))
        if not private:
            st.markdown(explain("baseline"))


def render_continue(record: RunRecord, *, store: RunStore, queue: JobQueue | None, key: str,
                    on_new_run: Callable[[str], None] | None, final_epsilon: float) -> None:
    """"Continue training for N more epochs" for stopped private runs (uses ``JobQueue.resume``).

    Shows the ε already spent, the limit and what the extra epochs would bring the total to
    (``dpcore.jobs.resume.plan_resume``); runs that cannot be continued say why.
    """
    resume = getattr(queue, "resume", None)
    if resume is None or not record.config.get("private", True) or record.kind != "train":
        return
    if record.status not in (DONE, CANCELLED, INTERRUPTED):
        return
    from dpcore.jobs import resume as resuming

    problem = resuming.resume_problem(store, record.id)
    if problem is not None:
        st.caption(f":material/block: Cannot continue this run: {problem}.")
        return
    with st.container(border=True):
        st.markdown("##### :material/replay: Continue training")
        limit_now = record.config.get("epsilon_limit")
        delta = record.config.get("target_delta", 0)
        st.caption(f"This run has spent **ε = {ui.fmt(final_epsilon, '.2f')}** at δ = {delta:g}"
                   + (f" (hard limit {limit_now:g})" if limit_now is not None else " (no hard limit)")
                   + ". A continuation starts from its checkpoint, keeps σ and adds to that budget: the "
                     "continued model's guarantee is the total ε.")
        epochs_col, limit_col, button_col = st.columns([1, 1, 1], vertical_alignment="bottom")
        more = epochs_col.number_input("More epochs", min_value=1, max_value=1000, value=5, step=1,
                                       key=f"{key}-more-epochs-{record.id}",
                                       help="Epochs to train on top of the ones already done.")
        limit = limit_col.number_input("New ε limit (total)", min_value=0.0, max_value=1000.0, value=None,
                                       step=0.5, format="%.2f", key=f"{key}-more-limit-{record.id}",
                                       placeholder=f"keep {limit_now:g}" if limit_now is not None else "no limit",
                                       help="Hard stop on the total ε, including what was already spent. "
                                            "Leave empty to keep the run's own limit.")
        try:
            plan = resuming.plan_resume(store, record.id, epochs=int(more), epsilon_limit=limit)
        except DPExplorerError as err:
            st.error(str(err), icon=":material/error:")
            plan = None
        clicked = button_col.button("Continue training", key=f"{key}-continue-{record.id}", icon=":material/replay:",
                                    disabled=plan is None, width="stretch",
                                    help="Queue the continuation as a new run linked to this one.")
        if plan is not None:
            line = (f"{more} more epoch{'s' if more != 1 else ''} ({plan.more_steps:,} steps) bring the total to "
                    f"about **ε = {ui.fmt(plan.projected_epsilon, '.2f')}**")
            if plan.stops_at_limit:
                line += f"; the limit stops it at ε = {plan.epsilon_limit:g}"
            st.markdown(line + ".")
            if plan.over_target:
                st.warning(f"That is beyond this run's target ε = {plan.target_epsilon:g}.", icon=":material/warning:")
        if clicked and plan is not None:
            try:
                new_id = resume(record.id, epochs=int(more), epsilon_limit=limit)
            except DPExplorerError as err:
                st.error(str(err), icon=":material/error:")
                return
            if on_new_run is not None:
                on_new_run(new_id)
            st.rerun()


# ---------------------------------------------------------------------- data helpers
def _placeholder(title: str, message: str) -> Any:
    """An empty chart that says ``message``, without the meaningless default axes."""
    figure = plots.empty_figure(title, message)
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return figure


def _metrics(store: RunStore, run_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    try:
        return store.steps(run_id), store.epochs(run_id)
    except RunNotFound:
        return pd.DataFrame(), pd.DataFrame()


def _baseline(store: RunStore, record: RunRecord) -> tuple[RunRecord | None, pd.DataFrame | None]:
    """The run's non-private baseline and its epochs (None while it has no finished epochs)."""
    if not record.config.get("private", True):
        return None, None
    try:
        baseline = find_baseline(store, record.id)
        if baseline is None:
            return None, None
        epochs = store.epochs(baseline.id)
    except DPExplorerError:
        return None, None
    return baseline, epochs if not epochs.empty else None


def _final_epsilon(record: RunRecord, steps: pd.DataFrame) -> float:
    if not record.config.get("private", True):
        return math.inf
    value = _number(record.summary.get("final_epsilon"), _last(steps, "epsilon"))
    return math.nan if value is None else value


def _number(*values: Any) -> float | None:
    """The first value that is a finite number, as float; None if there is none."""
    for value in values:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def _last(frame: pd.DataFrame, column: str) -> float | None:
    if frame.empty or column not in frame.columns:
        return None
    values = frame[column].dropna()
    return _number(float(values.iloc[-1])) if len(values) else None


def _tail_mean(frame: pd.DataFrame, column: str, n: int = 10) -> float | None:
    if frame.empty or column not in frame.columns:
        return None
    values = frame[column].dropna().tail(n)
    return _number(float(values.mean())) if len(values) else None


__all__ = ["attack_state", "config_line", "live_run", "needs_polling", "render_progress", "render_record",
           "render_result", "render_run"]
