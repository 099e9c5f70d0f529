"""What the run view shows about one stored run, without Streamlit: its state, texts, live numbers and captions.

``pages/run_view.py`` draws these; the summary cards themselves come from ``dpcore.views.cards``.
Every function takes a ``StoredRun`` (``dpcore.store.records``) and plain numbers, and returns
text (markdown) or small values.
"""

from __future__ import annotations

import html
import math
import time
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from dpcore.engine.checkpoint import checkpoint_history
from dpcore.errors import DPExplorerError
from dpcore.jobs.resume import ResumePlan
from dpcore.jobs.training import MIA_DONE, MIA_FAILED, MIA_PENDING, find_baseline
from dpcore.privacy import tradeoff
from dpcore.privacy.bands import format_number
from dpcore.privacy.checks import Check
from dpcore.privacy.tradeoff import TradeoffCurve
from dpcore.store.records import StoredRun
from dpcore.store.runs import CANCELLED, DONE, FAILED, INTERRUPTED, QUEUED, RUNNING, RunNotFound
from dpcore.views import live as live_view
from dpcore.views import plots
from dpcore.views.cards import Card, summary_cards
from dpcore.views.explain import BOUND_CAPTION
from dpcore.views.help import ATTACK_MESSAGES, CARD_HELP
from dpcore.views.progress import Progress, format_duration, parse_time

ATTACK_GRACE_S = 60.0  # a run that ended this recently with its attack pending: the attack is still starting

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
LOSS_CAPTION = "Cross-entropy loss per step (nats): faint = each step, bold = rolling mean."
#: Expanders under a result: (title, explain() keys); the last one adds 'baseline' for a non-private run.
EXPLANATIONS = (("What do ε and δ mean?", ("epsilon", "delta")), ("How to read ε", ("bands", "accountants")),
                ("Clip fraction", ("max_grad_norm", "clip_fraction")), ("Membership attack AUC", ("mia", "auc")))


def state_key(run: StoredRun) -> str:
    """The key of ``STATE_BADGES`` for the run: its status, or for a finished run why it stopped."""
    if run.status == DONE:
        return run.stop_status if run.stop_status in STATE_BADGES else "finished"
    return run.status


def badge(run: StoredRun) -> tuple[str, str, str]:
    """(label, colour, icon) of the run's state badge."""
    return STATE_BADGES.get(state_key(run), (run.status, "gray", ":material/help:"))


def attack_state(run: StoredRun, *, job_alive: bool, now: float | None = None) -> str:
    """The membership attack of a stopped run: 'done', 'running', 'stalled' (pending, but its job is gone),
    'failed' or 'none' (never run: no step taken, or a run from before the attack existed).

    ``job_alive``: the run's job is still in the queue; ``now``: POSIX seconds (default: the clock).
    """
    status = run.summary.get("mia_status")
    if run.summary.get("mia_auc") is not None or status == MIA_DONE:
        return "done"
    if status == MIA_PENDING:
        finished = parse_time(run.finished)
        since = math.inf if finished is None else (time.time() if now is None else now) - finished
        return "running" if job_alive or since < ATTACK_GRACE_S else "stalled"
    return "failed" if status == MIA_FAILED else "none"


def caveat_warning(run: StoredRun) -> str | None:
    """Markdown warning when the run's ε is not a plain guarantee (GDP, reproducible, ...); None otherwise."""
    status = run.epsilon_status
    if not status.caveats:
        return None
    headline = "; ".join([caveat.label for caveat in status.caveats if caveat.kind != "no_poisson"]
                         + ([status.bound_text()] if status.bound_text() else []))
    return f"**{headline}**  \n" + " ".join(status.explanations())


def config_line(run: StoredRun) -> str:
    """Settings of a run in one short line: data, model, privacy, clipping, training knobs, device."""
    cfg = run.config
    parts = [f"{cfg.get('dataset')} · {cfg.get('model')}"]
    if run.private:
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
    parent = run.parent
    if cfg.get("epochs") is not None:  # a continuation's config holds the epochs it adds
        parts.append(f"{'+' if parent else ''}{cfg['epochs']} epoch{'s' if cfg['epochs'] != 1 else ''}")
    if cfg.get("batch_size") is not None:
        parts.append(f"batch {cfg['batch_size']}")
    if cfg.get("optimizer") is not None and cfg.get("lr") is not None:
        parts.append(f"{cfg['optimizer']} lr {cfg['lr']:g}")
    parts.append(f"seed {cfg.get('seed')}")
    if parent:
        parts.append(f"continues run {parent}")
    if run.device:
        parts.append(run.device)
    if run.summary.get("seconds") is not None:
        parts.append(f"{format_duration(run.summary['seconds'])} training")
    return " · ".join(parts)


def queue_text(position: int | None, *, worker_busy: bool) -> str:
    """Where a queued run waits: its 1-based ``position`` (None: unknown) and whether a job runs now."""
    if not position:
        return "Waiting to start."
    ahead = position - 1 + (1 if worker_busy else 0)
    return (f"Waiting in the queue: position {position}. "
            + ("It starts as soon as the worker is free." if ahead == 0 else
               f"{ahead} job{'s' if ahead != 1 else ''} ahead of it."))


def progress_text(progress: Progress) -> tuple[float, str]:
    """(fraction done 0-1, one line with steps, elapsed time and ETA) for the progress bar."""
    if not progress.total_steps:
        return 0.0, f"Preparing data and model · elapsed {format_duration(progress.elapsed_s)}"
    return progress.fraction or 0.0, (
        f"Step {progress.steps_done:,} of {progress.total_steps:,} ({progress.fraction:.0%}) · elapsed "
        f"{format_duration(progress.elapsed_s)} · ETA {format_duration(progress.eta_s)}")


def live_cards(run: StoredRun, steps: pd.DataFrame, epochs: pd.DataFrame) -> list[Card]:
    """The four numbers of a running run: ε so far, epoch, test accuracy, clipped share of the last steps."""
    cfg, target, total = run.config, run.config.get("target_epsilon"), run.config.get("epochs")
    return [
        Card("ε spent so far", format_number(last(steps, "epsilon"), ".2f") if run.private else "∞",
             help=CARD_HELP["epsilon"] + f" At δ = {cfg.get('target_delta', 0):g}."
             + (f" The target is {target:g} after all epochs." if target is not None else "")),
        Card("Epoch", f"{int(last(steps, 'epoch') or 1)} of {total}" if total else "-",
             help="The epoch the current step belongs to."),
        Card("Test accuracy", format_number(last(epochs, "test_accuracy"), ".1%"),
             help=CARD_HELP["accuracy"] + " Shown after the first epoch."),
        Card("Clipped (last steps)", format_number(tail_mean(steps, "clip_fraction"), ".0%"),
             help="Share of per-sample gradients clipped, averaged over the last 10 steps. Around 50-80 % "
                  "usually trains best."),
    ]


def stop_message(run: StoredRun) -> tuple[str, str, str]:
    """(level 'error'/'success'/'warning'/'info', markdown text, icon) saying why the run stopped."""
    state, reason = state_key(run), run.stop_reason or ""
    if run.status == FAILED:
        return "error", f"**Training failed.** {run.error_message or reason or 'No error message was stored.'}", \
            ":material/error:"
    return {
        "finished": ("success", reason or "Trained for all epochs.", ":material/check_circle:"),
        "epsilon_limit": ("warning", reason or "Stopped at the ε limit.", ":material/front_hand:"),
        "diverged": ("error", reason or "The loss diverged.", ":material/error:"),
        CANCELLED: ("info", reason or "Cancelled.", ":material/cancel:"),
        INTERRUPTED: ("warning", f"**Interrupted.** {reason}", ":material/power_off:"),
    }.get(state, ("info", reason or run.status, ":material/info:"))


def check_line(check: Check) -> str:
    """One check as markdown: a pass/fail/n-a badge (amber 'advice' for an advisory check not met), its name,
    what was measured, and its description."""
    if check.passed is True:
        mark = ":green-badge[:material/check: pass]"
    elif check.passed is False and check.advisory:
        mark = ":orange-badge[:material/warning: advice]"
    elif check.passed is False:
        mark = ":red-badge[:material/close: fail]"
    else:
        mark = ":gray-badge[:material/remove: n/a]"
    return f"{mark} **{check.name}** · {check.value_text(epsilon_format='.2f')}  \n:gray[{check.description}]"


def epsilon_caption(run: StoredRun) -> str:
    """Caption of the ε-per-step chart."""
    return (f"ε spent after each step at δ = {run.config.get('target_delta'):g} "
            f"({(run.config.get('accountant') or 'rdp').upper()} accountant). Dashed: the target; red: the hard "
            "limit. Shading: strong, moderate, weak, very weak privacy. Dotted purple: ε published by real "
            "deployments (hover for δ and unit of privacy; Guide, section 3), not directly comparable with a run.")


def clip_caption(run: StoredRun) -> str:
    """Caption of the clipped-share chart."""
    bound = run.config.get("max_grad_norm")
    return ("Share of per-sample gradients longer than " + (f"C = {bound:g}" if bound is not None else "C")
            + " in each step, clipped before the noise is added. Green band: the 50–80 % that usually trains best.")


def roc_caption(roc: dict[str, Any]) -> str:
    """Caption of the attack's ROC chart (its member and non-member counts)."""
    return (f"Loss-threshold attack on {roc.get('n_members', '?')} members and {roc.get('n_non_members', '?')} "
            "held-out examples: it calls an example a member when the model's loss on it is low. The dotted "
            "diagonal is guessing. ")


def final_epsilon(run: StoredRun, steps: pd.DataFrame) -> float:
    """ε spent: the summary's, else the last logged; inf for a baseline, NaN when unknown."""
    if not run.private:
        return math.inf
    value = number(run.summary.get("final_epsilon"), last(steps, "epsilon"))
    return math.nan if value is None else value


def number(*values: Any) -> float | None:
    """The first value that is a finite number, as float; None if there is none."""
    for value in values:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def last(frame: pd.DataFrame, column: str) -> float | None:
    """The last non-missing value of ``column`` (None when there is none)."""
    if frame.empty or column not in frame.columns:
        return None
    values = frame[column].dropna()
    return number(float(values.iloc[-1])) if len(values) else None


def tail_mean(frame: pd.DataFrame, column: str, n: int = 10) -> float | None:
    """Mean of the last ``n`` non-missing values of ``column`` (None when there are none)."""
    if frame.empty or column not in frame.columns:
        return None
    values = frame[column].dropna().tail(n)
    return number(float(values.mean())) if len(values) else None


def continue_intro(run: StoredRun) -> str:
    """What continuing ``run`` means (markdown): from which checkpoint, and for a private run the ε it spent."""
    text = (f"Train **{run.name}** further from its checkpoint (epoch {run.summary.get('epochs_done', '?')}, "
            f"step {run.summary.get('steps', run.record.steps_done)}). The continuation is a new run; this one "
            "stays as it is.")
    if not run.private:
        return text + " No DP: the continuation trains without noise, like its parent (ε stays ∞)."
    limit = run.epsilon_limit
    return (text + f" It has spent **ε = {format_number(run.final_epsilon, '.2f')}** at δ = "
            f"{run.target_delta or 0:g}" + (f" (hard limit {limit:g})" if limit is not None else " (no hard limit)")
            + ". A continuation keeps σ and adds to that budget: the continued model's guarantee is the total ε.")


def continue_plan_text(plan: ResumePlan, *, epochs: int) -> tuple[str, str | None]:
    """(markdown line on the ε after ``epochs`` more epochs, warning when that passes the run's target ε or None)."""
    if not plan.config.private:
        return f"{epochs} more epoch{'s' if epochs != 1 else ''} ({plan.more_steps:,} steps) without noise.", None
    line = (f"ε spent so far **{format_number(plan.spent_epsilon, '.2f')}** → about "
            f"**{format_number(plan.final_epsilon, '.2f')}** after {epochs} more epoch{'s' if epochs != 1 else ''} "
            f"({plan.more_steps:,} steps; δ = {plan.config.target_delta:g}, σ = "
            f"{format_number(plan.noise_multiplier, '.2f')} kept)")
    if plan.stops_at_limit:
        line += f"; the ε limit {plan.epsilon_limit:g} stops it before all planned steps"
    warning = (f"This spends more than the run's target ε = {plan.target_epsilon:g}. The extra epochs get no fresh "
               "budget: the continued model's guarantee is the total ε." if plan.over_target else None)
    return line + ".", warning


# ---------------------------------------------------------------------- figures of the run view
def placeholder(title: str, message: str) -> go.Figure:
    """An empty chart that says ``message``, without the meaningless default axes."""
    figure = plots.empty_figure(title, message)
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return figure


def stretch_steps(figure: go.Figure, total_steps: int | None) -> go.Figure:
    """A per-step chart of a live run with its x axis stretched to the planned ``total_steps`` (no-op for None)."""
    if total_steps:
        figure.update_xaxes(range=[0, total_steps * 1.02], autorange=False)
    return figure


def accuracy_figure(run: StoredRun, epochs: pd.DataFrame, *, baseline_epochs: pd.DataFrame | None,
                    live: bool) -> go.Figure:
    """Train/test accuracy per epoch (with the baseline's), x axis to the planned epochs while ``live``."""
    if epochs.empty:
        return placeholder("Accuracy", "accuracy appears after the first epoch")
    figure = plots.accuracy_chart([(run.name, epochs)], baseline=baseline_epochs)
    last_epoch, planned = int(epochs["epoch"].max()), int(run.config.get("epochs") or 0)
    if live and not run.parent and planned > last_epoch:
        figure.update_xaxes(range=[0.5, planned + 0.5], autorange=False)
        last_epoch = planned
    if last_epoch <= 12:
        figure.update_xaxes(dtick=1)  # whole epochs, not 0.5 steps
    return figure


#: The run view's two vulnerability charts (stacked in the right column, the first beside accuracy):
#: (short name, epoch-table column, title).
VULNERABILITY_CHARTS = (("vuln-auc", "mia_auc", f"{plots.VULNERABILITY_TITLE}: attack AUC"),
                        ("vuln-tpr", "mia_tpr_at_1pct_fpr", f"{plots.VULNERABILITY_TITLE}: TPR at 1 % FPR"))


def vulnerability_figure(run: StoredRun, epochs: pd.DataFrame, *, metric: str, title: str,
                         baseline_epochs: pd.DataFrame | None, live: bool) -> go.Figure:
    """The loss attack's ``metric`` ('mia_auc' or 'mia_tpr_at_1pct_fpr') per epoch (with the baseline's), x axis
    to the planned epochs while ``live``. Runs stored before these numbers get a chart saying they were not measured."""
    if epochs.empty:
        return placeholder(title, "the attack's numbers appear after the first epoch")
    figure = plots.vulnerability_chart([(run.name, epochs)], baseline=baseline_epochs, metrics=(metric,),
                                       title=title)
    last_epoch, planned = int(epochs["epoch"].max()), int(run.config.get("epochs") or 0)
    if live and not run.parent and planned > last_epoch:
        figure.update_xaxes(range=[0.5, planned + 0.5], autorange=False, dtick=1 if planned <= 12 else None)
    return figure


def vulnerability_captions(*, has_baseline: bool) -> tuple[str, str]:
    """Captions of the two vulnerability charts (AUC, TPR at 1 % FPR): what they mean for a reader."""
    baseline = " Dotted grey: the non-private baseline." if has_baseline else ""
    return ("How well a simple attacker tells training examples from held-out ones by their loss, after each "
            "epoch (0.5 = a coin flip, 1 = always). Rising means the model is memorising its training examples; "
            "DP's clipping and noise cap how far it can rise. The last epoch is the run's attack AUC." + baseline,
            "The share of training examples the same attacker catches while wrongly accusing only 1 % of held-out "
            "ones (1 % = chance): the case that matters when an attacker must be sure about a few people. DP "
            "bounds it through ε." + baseline)


def chart_specs(run: StoredRun, steps: pd.DataFrame, epochs: pd.DataFrame, *, baseline_epochs: pd.DataFrame | None,
                live: bool = False) -> list[tuple[go.Figure, str, str]]:
    """The run view's charts as (figure, short name, caption), in drawing order (two per row; always even).

    ε and clip fraction per step (private runs); then train/test accuracy per epoch and loss per step on the
    left, the loss attack's AUC and TPR at 1 % FPR per epoch on the right (``VULNERABILITY_CHARTS``), the
    epoch charts with the baseline's. ``live`` stretches the step axes to the planned total steps.
    """
    runs_steps, total = [(run.name, steps)], run.record.total_steps if live else None
    has_baseline = baseline_epochs is not None
    auc, tpr = (vulnerability_figure(run, epochs, metric=metric, title=title, baseline_epochs=baseline_epochs,
                                     live=live) for _, metric, title in VULNERABILITY_CHARTS)
    (auc_name, _, _), (tpr_name, _, _) = VULNERABILITY_CHARTS
    auc_caption, tpr_caption = vulnerability_captions(has_baseline=has_baseline)
    charts = [(accuracy_figure(run, epochs, baseline_epochs=baseline_epochs, live=live), "acc",
               accuracy_caption(has_baseline=has_baseline)), (auc, auc_name, auc_caption),
              (stretch_steps(plots.loss_chart(runs_steps), total), "loss", LOSS_CAPTION), (tpr, tpr_name, tpr_caption)]
    if run.private:
        charts = [(stretch_steps(plots.epsilon_chart(runs_steps, target_epsilon=run.config.get("target_epsilon"),
                                                     epsilon_limit=run.config.get("epsilon_limit"),
                                                     delta=run.config.get("target_delta")), total), "eps",
                   epsilon_caption(run)),
                  (stretch_steps(plots.clip_fraction_chart(runs_steps), total), "clip", clip_caption(run)),
                  *charts]
    return charts


def live_chart_specs(run: StoredRun, steps: pd.DataFrame, epochs: pd.DataFrame, *,
                     baseline_epochs: pd.DataFrame | None) -> list[tuple[go.Figure, str, str]]:
    """``chart_specs(..., live=True)`` of the downsampled ``steps``, built once for every session watching.

    Kept in ``dpcore.views.live.FIGURES`` by (run id, last step, epochs, total steps, baseline epochs), so
    it is built again only when new rows arrive. The figures are shared: callers must not modify them.
    """
    return shared_chart_specs(run, steps, epochs, baseline_epochs=baseline_epochs, live=True)


def chart_key(run: StoredRun, steps: pd.DataFrame, epochs: pd.DataFrame, *, baseline_epochs: pd.DataFrame | None,
              live: bool) -> tuple:
    """What ``chart_specs`` draws from, as a hashable key: the run's id, status, name and summary, the number of
    rows and last step shown, the planned total (live) and the baseline's epochs."""
    last_step = int(steps["step"].iloc[-1]) if not steps.empty else None
    return ("live" if live else "result", run.id, run.status, run.name, len(steps), last_step, len(epochs),
            run.record.total_steps if live else None, repr(sorted(run.summary.items())),
            None if baseline_epochs is None else (len(baseline_epochs), repr(baseline_epochs.tail(1).to_numpy())))


def shared_chart_specs(run: StoredRun, steps: pd.DataFrame, epochs: pd.DataFrame, *,
                       baseline_epochs: pd.DataFrame | None, live: bool) -> list[tuple[go.Figure, str, str]]:
    """``chart_specs`` built once for every session showing ``run`` in the same state (``chart_key``), kept in
    ``dpcore.views.live.FIGURES``.

    Twenty sessions showing one run (a class watching a demo) then build its six figures once, not twenty times
    per redraw: building them was the largest cost of the server's reruns (py-spy). The figures are shared:
    callers must not modify them.
    """
    key = chart_key(run, steps, epochs, baseline_epochs=baseline_epochs, live=live)
    return live_view.FIGURES.get(key, lambda: chart_specs(run, steps, epochs, baseline_epochs=baseline_epochs,
                                                       live=live))


def charts_html(charts: list[tuple[go.Figure, str, str]], *, columns: int = 2) -> str:
    """``(figure, name, caption)`` charts as ONE line of HTML: static SVG (``plots.figure_svg``) with its caption
    under it, ``columns`` to a row (one on a narrow screen). Markdown passes it through as one HTML block."""
    cells = "".join(
        f'<figure data-chart="{html.escape(name, quote=True)}" style="margin:0;min-width:0">'
        f'{plots.figure_svg(figure, width=520)}<figcaption style="font-size:0.85rem;opacity:0.7;margin-top:0.25rem">'
        f'{html.escape(caption)}</figcaption></figure>' for figure, name, caption in charts)
    return (f'<div class="dpx-charts" style="display:grid;grid-template-columns:repeat(auto-fit,'
            f'minmax(max(18rem,calc(100%/{columns} - 2rem)),1fr));gap:1.25rem 2rem;margin:0.5rem 0">{cells}</div>')


def live_charts_html(run: StoredRun, steps: pd.DataFrame, epochs: pd.DataFrame, *,
                     baseline_epochs: pd.DataFrame | None) -> str:
    """The running run's charts (``chart_specs(live=True)``) as static SVG in one HTML block (``charts_html``).

    While a run trains its charts are redrawn every few seconds in every watching browser; six interactive
    plotly charts cost a browser about ten times what the same charts cost as static SVG. Built once per new
    rows for all sessions (``live.FIGURES``); the stopped run's view draws the interactive charts.
    """
    key = ("svg", *chart_key(run, steps, epochs, baseline_epochs=baseline_epochs, live=True))
    return live_view.FIGURES.get(key, lambda: charts_html(shared_chart_specs(
        run, steps, epochs, baseline_epochs=baseline_epochs, live=True)))


def roc_figure(run: StoredRun, roc: dict[str, Any], *, bound: TradeoffCurve, log_scale: bool = False) -> go.Figure:
    """The loss-threshold attack's ROC (``run.roc()``) with the chance diagonal and the trade-off ``bound``."""
    return plots.roc_chart([("loss-threshold attack", roc["fpr"], roc["tpr"], roc.get("auc"))], log_scale=log_scale,
                           n_non_members=roc.get("n_non_members"), title="Membership-inference ROC", bound=bound,
                           bound_epsilon=number(run.summary.get("final_epsilon")), width=360)


def result_cards(run: StoredRun, steps: pd.DataFrame, epochs: pd.DataFrame, *, baseline: StoredRun | None,
                 attack: str) -> list[Card]:
    """The five summary cards of a stopped run: its final ε and test accuracy (stored, else the last logged), its
    ``baseline``'s accuracy beside its own (``baseline_of(run)[0]``), and the attack's state ``attack``
    ('done', 'running', ...)."""
    return summary_cards(run=run, final_epsilon=final_epsilon(run, steps), baseline=baseline,
                         test_accuracy=number(run.summary.get("test_accuracy"), last(epochs, "test_accuracy")),
                         attack=attack)


def result_charts_html(run: StoredRun, steps: pd.DataFrame, epochs: pd.DataFrame, *,
                       baseline_epochs: pd.DataFrame | None) -> str:
    """A stopped run's ROC (when its attack ran) and charts, with its baseline's ``baseline_epochs``
    (``baseline_of(run)[1]``), as static SVG in one HTML block (``charts_html``).

    For the Watch page, where an audience looks at a result that twenty browsers draw at once; built once for all
    sessions (``live.FIGURES``). The Runs page draws the same charts interactive.
    """
    roc = run.roc()

    def build() -> str:
        charts = shared_chart_specs(run, steps, epochs, baseline_epochs=baseline_epochs, live=False)
        if roc is not None:
            figure = roc_figure(run, roc, bound=attack_bound(run))
            charts = [(figure, "roc", roc_caption(roc) + BOUND_CAPTION), *charts]
        return charts_html(charts)

    key = ("svg", roc is not None, *chart_key(run, steps, epochs, baseline_epochs=baseline_epochs, live=False))
    return live_view.FIGURES.get(key, build)


def accuracy_caption(*, has_baseline: bool) -> str:
    """Caption of the accuracy chart."""
    return ("Test (solid, on held-out examples) and train (dashed) accuracy after each epoch"
            + ("; dotted grey: the non-private baseline's test accuracy." if has_baseline else "."))


def attack_bound(run: StoredRun) -> TradeoffCurve:
    """The best any membership attack can do against ``run`` (its accountant history when stored)."""
    return tradeoff.tradeoff_for_run(summary=run.summary, config=run.config,
                                     history=checkpoint_history(run.artifacts))


# ---------------------------------------------------------------------- data the run view reads
REPORT_HELP = ("This run in one HTML file that opens offline, for a review: its numbers, checks, charts, settings "
               "and environment. Built when you click.")
PREPARING_CAPTION = (":material/hourglass_top: Loading the data, building the model and calibrating the noise; the "
                     "charts start with the first optimizer step.")


def metrics(run: StoredRun) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The run's (per-step, per-epoch) metric tables; empty frames when the run is gone."""
    try:
        return run.steps_frame(), run.epochs_frame()
    except RunNotFound:
        return pd.DataFrame(), pd.DataFrame()


#: ``find_baseline`` results shared by every session for a few seconds, keyed by the store's ``finished_stamp``.
BASELINES = live_view.SharedCache(max_items=256, ttl_s=5.0)


def cached_find_baseline(run: StoredRun) -> Any:
    """``find_baseline(run.store, run.id)`` (a RunRecord or None), computed at most once per 5 s for all sessions.

    Found again at once when a run finishes (or one is deleted) or the run's baseline link changes: the key holds
    ``RunStore.finished_stamp()`` and ``run.baseline_run``. A linked baseline's record (its progress) may be up to
    5 s old.
    """
    store = run.store
    link = run.baseline_run if isinstance(run.baseline_run, str) else None
    key = (str(store.root), run.id, link, store.finished_stamp())
    return BASELINES.get(key, lambda: find_baseline(store, run.id))


def baseline_of(run: StoredRun) -> tuple[StoredRun | None, pd.DataFrame | None]:
    """The run's linked (or matching) non-private baseline and its epochs (None while it has no finished epochs)."""
    if not run.private or run.store is None:
        return None, None
    try:
        record = cached_find_baseline(run)
        if record is None:
            return None, None
        baseline = StoredRun.from_record(record, store=run.store)
        epochs = baseline.epochs_frame()
    except DPExplorerError:
        return None, None
    return baseline, epochs if not epochs.empty else None


def attack_message(run: StoredRun, attack: str) -> str:
    """Why a run has no ROC to show, by attack state ('failed', 'running', 'stalled', 'none')."""
    if attack == "failed":
        return f"The membership attack failed: {run.summary.get('mia_error', 'no message')}"
    return ATTACK_MESSAGES.get(attack, ATTACK_MESSAGES["none"])


def empirical_tpr(run: StoredRun, roc: dict[str, Any]) -> float:
    """The attack's TPR at 1 % FPR: the summary's, else read off the ROC curve."""
    stored = number(run.summary.get("mia_tpr_at_1pct_fpr"))
    return stored if stored is not None else tradeoff.empirical_tpr_at(fpr=roc["fpr"], tpr=roc["tpr"])


def explanations(run: StoredRun) -> list[tuple[str, tuple[str, ...]]]:
    """The explanation expanders under a result: (title, ``explain()`` topics); a baseline adds 'baseline'."""
    *rest, (title, topics) = EXPLANATIONS
    return [*rest, (title, topics + (() if run.private else ("baseline",)))]


def offers_continue(run: StoredRun) -> bool:
    """Whether the run view offers "Continue training": a stopped private training run."""
    return run.private and run.kind == "train" and run.status in (DONE, CANCELLED, INTERRUPTED)


__all__ = [
    "EXPLANATIONS",
    "LOSS_CAPTION",
    "PREPARING_CAPTION",
    "REPORT_HELP",
    "STATE_BADGES",
    "VULNERABILITY_CHARTS",
    "accuracy_caption",
    "accuracy_figure",
    "attack_bound",
    "attack_message",
    "attack_state",
    "badge",
    "baseline_of",
    "cached_find_baseline",
    "caveat_warning",
    "chart_key",
    "chart_specs",
    "charts_html",
    "check_line",
    "clip_caption",
    "config_line",
    "continue_intro",
    "continue_plan_text",
    "empirical_tpr",
    "epsilon_caption",
    "explanations",
    "final_epsilon",
    "last",
    "live_cards",
    "live_chart_specs",
    "live_charts_html",
    "metrics",
    "number",
    "offers_continue",
    "placeholder",
    "progress_text",
    "queue_text",
    "result_cards",
    "result_charts_html",
    "roc_caption",
    "roc_figure",
    "shared_chart_specs",
    "state_key",
    "stop_message",
    "stretch_steps",
    "tail_mean",
    "vulnerability_captions",
    "vulnerability_figure",
]
