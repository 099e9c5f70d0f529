"""The Attack lab's texts, cards and decisions (no Streamlit): what ``pages/attack_lab.py`` draws.

Stored runs are read through ``StoredRun``; an attack result is the dict ``dpcore.jobs.attack``
stores (``dpcore.jobs.attack_results`` reads it). ε are in nats at the run's δ; rates and
accuracies are fractions; times in seconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from dpcore.attacks import ATTACKS
from dpcore.errors import DPExplorerError
from dpcore.jobs import attack as audit
from dpcore.jobs import attack_results
from dpcore.jobs.attack_pool import pool_cache_path
from dpcore.privacy import tradeoff
from dpcore.privacy.bands import format_number
from dpcore.store.records import StoredRun
from dpcore.store.runs import DONE, FAILED, RunRecord, RunStore
from dpcore.views import plots
from dpcore.views.cards import Card
from dpcore.views.explain import BOUND_CAPTION, attack_bound_sentence
from dpcore.views.progress import corrected_eta, estimate_progress, eta_text, format_duration
from dpcore.views.run_summary import attack_bound

DEFAULT_SETTINGS: dict[str, Any] = {"attacks": list(audit.DEFAULT_ATTACKS), "pool": "standard", "canary": False,
                                    "canary_mode": audit.DEFAULT_CANARY_MODE, "seed": 0,
                                    **{f"canaries_{mode}": n for mode, n in audit.DEFAULT_CANARIES_BY_MODE.items()}}


def default_settings() -> dict[str, Any]:
    """A fresh copy of the attack settings a session starts with (``DEFAULT_SETTINGS``; its lists not shared)."""
    return {name: list(value) if isinstance(value, list) else value for name, value in DEFAULT_SETTINGS.items()}


QUICK_DATASETS = ("synthetic", "digits", "breast-cancer")  # offline: a demo run never waits for a download
EVALUATIONS = {"target": "this run's model", "pool": "reference models (leave-one-out)"}
INTRO = ("Can an attacker tell which examples a model trained on? Run membership-inference attacks against a finished "
         "run and compare what they demonstrate with the accountant's guarantee.")
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
    "evaluate": ("This run's model: the real question, but its ROC rests on few non-members. Reference models "
                 "(leave-one-out): each reference model in turn is attacked with the others, giving many more members "
                 "and non-members and so resolvable low-FPR numbers for models trained this way. The ε bounds and the "
                 "score histogram are always this run's model's."),
    "cancel": "Stop after the reference model being trained now; nothing is stored and earlier results are kept.",
    "exposed": "The members this attack is most confident were in the training set.",
}
#: attack_history's number columns -> (title, None to keep the column's name; format)
HISTORY_NUMBERS = {"best AUC": (None, "%.3f"), "ε lower bound": (None, "%.2f"), "canary ε lower bound": (None, "%.2f"),
                   "canary power": (None, "%.2f"), "canary run's ε": (None, "%.2f"), "seconds": ("Seconds", "%.1f")}
CAPTIONS = {
    "tpr_table": ("Brackets: 95 % intervals (bootstrap for the AUC, Clopper-Pearson for TPRs). A TPR at FPR x is only "
                  "reported with an interval when there are at least 10/x non-members; otherwise the raw ROC value is "
                  "marked ≈. The ε lower bound column is each attack's threshold bound (Jagielski et al. 2020); "
                  "n in / out counts the members and non-members the numbers rest on."),
    "exposed": ("These are the examples whose membership leaks most: typically outliers, rare classes or mislabelled "
                "rows. DP-SGD bounds exactly this worst case."),
    "history": ("Newest first. The page above shows the newest finished result in full; earlier ones keep their "
                "headline numbers here. Lower bounds are in nats, at the run's δ."),
}


def duration_text(seconds: float | None) -> str:
    """Like ``format_duration`` but with a decimal under 10 s (runs here often take a second)."""
    return f"{seconds:.1f} s" if seconds is not None and seconds < 10 else format_duration(seconds)


def run_label(run: StoredRun) -> str:
    """The run picker's label: name, ε spent, test accuracy, whether it was attacked, id."""
    attacked = " · attacked" if run.summary.get("attack_created") else ""
    return (f"{run.name} · ε {format_number(run.final_epsilon, '.2f')} · test acc "
            f"{format_number(run.test_accuracy, '.1%')}{attacked} · {run.id}")


def run_cards(run: StoredRun) -> list[Card]:
    """The picked run's four cards: accountant ε (with its caveat), test accuracy, members / non-members, time."""
    status = run.epsilon_status
    delta = run.target_delta if run.target_delta is not None else 1e-5
    return [
        Card("Accountant ε", format_number(run.final_epsilon, ".2f"), note=status.short_note(".2f"),
             help=f"{HELP['accountant']} δ = {delta:g}. " + " ".join(status.explanations())),
        Card("Test accuracy", format_number(run.test_accuracy, ".1%"),
             help="Accuracy on held-out non-members (the attacks' negatives)."),
        Card("Members / non-members", f"{run.summary.get('n_members', '-')} / {run.summary.get('n_non_members', '-')}",
             help="Training examples and held-out examples: the attack's positives and negatives."),
        Card("Training time", duration_text(run.summary.get("seconds")),
             help="Wall time of the run's training; each reference model costs about as much."),
    ]


def plan_text(run: StoredRun, *, n_models: int, needs_pool: bool, cached: bool, canary_mode: str | None,
              canaries: int, estimate: float | None) -> str:
    """What the chosen attacks will train and about how long they take (``canary_mode`` None: no canary audit)."""
    parts = []
    if needs_pool and cached:
        parts.append(f"reuses the {n_models} reference models already trained for this run")
    elif needs_pool:
        sigma = run.noise_multiplier
        parts.append(f"trains {n_models} reference models with this run's settings"
                     + (f" and its noise multiplier σ = {sigma:.3g} fixed (not re-calibrated)" if sigma else ""))
    if canary_mode is not None:
        parts.append(f"trains one {canary_mode} canary model with {canaries} canaries")
    text = "This " + " and ".join(parts) if parts else "These attacks need no extra training"
    text += f"; estimated time ≈ {format_duration(estimate)}." if estimate is not None else "."
    return text + " Reference models are cached with the run, so trying other attacks later is quick."


def pool_timing(store: RunStore, run: StoredRun, *, n_models: int, seed: int) -> dict[str, Any]:
    """``estimate_seconds``' pool arguments: ``cached`` (this pool is trained already), ``seconds_per_model``
    (what an earlier pool of this run measured, None when none did) and, when this machine's speed for the
    reference models can be measured (``audit.attack_speed``, once per process), ``speed`` and ``config``;
    empty when the run's files cannot be read."""
    try:
        cached = pool_cache_path(store, run.record, n_models=n_models, seed=seed).is_file()
        previous = attack_results.load_attack_result(store, run.id) or {}
    except DPExplorerError:
        return {}
    timing = {"cached": cached, "seconds_per_model": (previous.get("pool") or {}).get("seconds_per_model")}
    measured = audit.attack_speed(run.record)
    if measured is not None:
        timing["speed"], timing["config"] = measured
    return timing


def job_status(job: RunRecord, *, position: int | None, run_training: bool) -> tuple[str, str]:
    """An active attack job's line: ``("queued", text)`` or ``("running", progress bar text)``."""
    if job.status == "queued":
        return "queued", (f"Attack queued{f' (position {position})' if position else ''}; it starts when the worker "
                          "is free" + (" and the run has finished training." if run_training else "."))
    phase = job.summary.get("phase") or "starting"
    return "running", f"Attack running: {phase} ({job.progress or 0.0:.0%})" + job_eta_suffix(job)


def job_eta(job: RunRecord, *, now: float | None = None) -> float | None:
    """Seconds left of a running attack job (``corrected_eta``): the estimate made when it was queued
    (``summary['estimate_s']``) blended with the job's own time per reference model, which outweighs it as
    models finish. Timed from ``summary['work_started']`` (after any wait for the target's training), else
    from the job's start; None when neither an estimate nor progress is known."""
    progress = estimate_progress(job, now=now)
    elapsed = progress.elapsed_s
    work_started = job.summary.get("work_started")
    if isinstance(work_started, int | float) and job.active:
        elapsed = max(0.0, (time.time() if now is None else now) - float(work_started))
    return corrected_eta(estimate_s=job.summary.get("estimate_s"), elapsed_s=elapsed,
                         done=progress.steps_done, total=progress.total_steps or 0)


def job_eta_suffix(job: RunRecord, *, now: float | None = None) -> str:
    """' · about 40 s left' for a running job (``job_eta``); '' when unknown."""
    text = eta_text(job_eta(job, now=now))
    return f" · {text}" if text else ""


def no_runs_text(training: int) -> str:
    """What the page says while there is no finished run (``training``: runs still queued or training)."""
    if training:
        return f"{training} run(s) are still training; this page lists them once they finish."
    return "No finished runs to attack yet. Train one on the **Train** page, or start a quick one here."


def job_problem(jobs: Sequence[RunRecord], result: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """``("error" | "info", text)`` when the newest finished attack job failed or stopped after ``result``."""
    finished = [job for job in jobs if not job.active]
    if not finished:
        return None
    last = finished[0]
    if result is not None and (last.finished or "") <= (result.get("created") or ""):
        return None
    if last.status == FAILED:
        return "error", f"The last attack failed: {last.error_message}"
    if last.status != DONE:
        return "info", f"The last attack was {last.status}; nothing was stored."
    return None


def result_notice(*, busy: bool, has_result: bool) -> str | None:
    """What the results area says instead of (or above) results: None when it only shows the stored result.

    ``busy``: an attack job of the run is queued or running (its progress is drawn above, so the area
    never says "not attacked yet" then); ``has_result``: a previous attack's result is stored.
    """
    if busy:
        return ("The results below are from the previous attack; they are replaced when this one finishes."
                if has_result else None)
    return None if has_result else "This run has not been attacked yet: choose attacks above and press **Run attacks**."


def result_caption(result: Mapping[str, Any]) -> str:
    """When the result was computed, on how many reference models, how long it took and which attacks."""
    pool = result.get("pool")
    pool_text = (f"{pool['n_models']} reference models" + (" (cached)" if pool.get("cached") else "")
                 if pool else "no reference models")
    titles = ", ".join(entry["title"] for entry in result["attacks"].values())
    return (f"Computed {result['created'][:19].replace('T', ' ')} UTC · {pool_text} · took "
            f"{duration_text(result['seconds'])} · attacks: {titles}")


def headline_cards(result: Mapping[str, Any], evaluation: str = "target") -> list[Card]:
    """Four cards: the strongest attack's AUC and TPR at 10 % FPR in ``evaluation``, then the two ε bounds.

    On the reference models (``evaluation="pool"``) the strongest attack is the one with the best AUC
    there, which need not be the target's strongest.
    """
    ran = result["attacks"] if evaluation == "target" else result["pool_evaluation"]
    entries = {name: entry for name, entry in ran.items() if "auc" in entry}
    if evaluation == "target" and result["strongest_attack"] in entries:
        strongest = entries[result["strongest_attack"]]
    else:
        strongest = max(entries.values(), key=lambda entry: entry["auc"])
    where = "" if evaluation == "target" else " (reference models)"
    point = next((p for p in strongest["operating_points"] if math.isclose(p["target_fpr"], 0.1)), None)
    upper = attack_results.upper_bound(result)  # proven: for a GDP run the RDP bound, not GDP's approximation
    return [
        Card(f"AUC · {strongest['title']}{where}", f"{strongest['auc']:.3f}", help=HELP["auc"]),
        Card(f"TPR at 10 % FPR{where}", format_number(point["tpr"] if point else None, ".1%"), help=HELP["tpr"]),
        Card("Accountant ε (upper bound)", format_number(upper if upper is not None else math.inf, ".2f"),
             help=HELP["accountant"]),
        Card("Empirical ε (lower bound)", f"{result['epsilon']['lower_bound']:.2f}", help=HELP["lower"]),
    ]


@dataclass(frozen=True)
class RocView:
    """The two ROC charts of an attack result, the sentence comparing them with the DP bound (None
    without a bound) and their caption."""

    linear: go.Figure
    log: go.Figure
    bound_sentence: str | None
    caption: str


def roc_view(run: StoredRun, result: Mapping[str, Any], *, evaluation: str = "target") -> RocView:
    """ROC curves (linear and log-log) of every attack in ``evaluation`` ('target' or 'pool').

    The DP bound (the most any attack can achieve) is this run's, so it is drawn for the target only,
    never for the reference models (other schedules).
    """
    ran = result["attacks"] if evaluation == "target" else result["pool_evaluation"]
    n_non_members = max((e["n_non_members"] for e in ran.values() if "roc" in e), default=None)
    curves = attack_results.roc_curves(result, evaluation=evaluation)
    bound = attack_bound(run) if evaluation == "target" else None
    upper = attack_results.upper_bound(result) if bound is not None else None
    linear = plots.roc_chart(curves, title="ROC (linear axes)", bound=bound, bound_epsilon=upper)
    log = plots.roc_chart(curves, log_scale=True, n_non_members=n_non_members, bound=bound, bound_epsilon=upper,
                          title="ROC (log-log: the low-FPR regime)")
    sentence = None
    if bound is not None:
        strongest = max((tradeoff.empirical_tpr_at(fpr=fpr, tpr=tpr) for _, fpr, tpr, _ in curves), default=None)
        sentence = attack_bound_sentence(bound_tpr=bound.headline(), empirical_tpr=strongest, caveat=bound.caveat,
                                         attack="the strongest attack here")
    caption = ("Each curve trades catching members (TPR) against falsely accusing non-members (FPR); the dotted "
               f"diagonal is guessing. The log-log view starts at FPR = 1/{n_non_members}, the smallest rate these "
               "non-members can show." + (" " + BOUND_CAPTION if bound is not None else ""))
    return RocView(linear, log, sentence, caption)


def canary_cards(canary: Mapping[str, Any]) -> tuple[str, list[Card], str]:
    """The canary audit's title, its three cards (bound, power, its own run's ε) and its caption."""
    mode = canary.get("mode", "black-box")
    own = canary.get("accountant_epsilon")
    cards = [
        Card("Canary audit: ε lower bound", f"{canary['epsilon_lower']:.2f}",
             help=f"Holds with {100 * (1 - canary['alpha']):.0f} % confidence for the canary run."),
        Card("Audit power", format_number(canary.get("power"), ".2f"),
             help="The largest ε this audit could certify were every one of its guesses right: it cannot show that "
                  "a run spends more than this."),
        Card("Canary run's own ε (compare with this)", format_number(own if own is not None else math.inf, ".2f"),
             help="The accountant's ε of the run the canaries were trained in, at "
                  f"δ = {canary.get('delta', 0):g}: the upper bound this audit's lower bound must stay under."),
    ]
    caption = attack_results.canary_sentence(canary) + " " + canary.get("note", audit.CANARY_COMPARE_NOTE)
    return f"**One-run canary audit ({mode}, {canary['canaries']} canaries)**", cards, caption


def scores_caption(*, pooled: bool) -> str:
    """The caption under the score histogram (``pooled``: the result has a leave-one-out evaluation)."""
    return ("The further apart the two groups, the easier membership is to tell. Scores are this run's model's, "
            "higher = more likely a member" + (", whichever evaluation is chosen above." if pooled else "."))


def unknown_run_text(run_id: str, run: StoredRun | None) -> str:
    """Why the run named in the address is not offered (``run`` None: not in this runs directory)."""
    if run is None:
        return f"Run {run_id} is not in this runs directory (deleted, or a link from another machine?)."
    return f"Run {run_id} ({run.name}) is {run.status}, not a finished training run: there is nothing to attack."


def waiting_text(run: StoredRun, *, attack_queued: bool) -> str:
    """The run in the address is still training: what the page does meanwhile."""
    return (f"**{run.name}** is {run.status}; the Attack lab opens it here when it finishes"
            + (" (its attack job is queued behind it)." if attack_queued else "."))
