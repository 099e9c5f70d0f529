"""Self-contained HTML reports of one run, of runs side by side, or of a sweep, for reviews: one file that
opens offline.

A report holds the dataset and model, the config, epsilon and delta with the accountant and
sigma, accuracy against the non-private baseline, the membership-attack results and empirical
lower bounds, the seed's four checks, the guidance warnings and the environment (versions,
device, date), plus the dashboard's charts. plotly.js is inlined once (with the first chart);
nothing is fetched from the network.

>>> html = render_html("Example", [("Numbers", "<p>42</p>")])
>>> html.startswith("<!DOCTYPE html>") and "<p>42</p>" in html
True
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dpcore.attacks import ATTACKS
from dpcore.engine.checkpoint import checkpoint_history
from dpcore.errors import DPExplorerError
from dpcore.jobs import sweep as sweeps
from dpcore.jobs.training import find_baseline
from dpcore.privacy import tradeoff
from dpcore.privacy.caveats import EpsilonStatus, caveat_labels
from dpcore.store.artifacts import load_roc
from dpcore.store.records import StoredRun
from dpcore.store.runs import RunRecord
from dpcore.views import plots
from dpcore.views.cards import summary_cards
from dpcore.views.explain import BOUND_CAPTION, attack_bound_sentence, epsilon_sentence
from dpcore.views.report_compare import comparison_report
from dpcore.views.report_html import (
    Content,
    Figures,
    cards_html,
    caveats_html,
    checks_section,
    config_section,
    dataset_section,
    environment,
    environment_section,
    esc,
    explain_html,
    figures_html,
    fmt,
    guidance_for,
    guidance_section,
    html_table,
    render_html,
)
from dpcore.views.report_sweep import sweep_report

if TYPE_CHECKING:
    import pandas as pd

    from dpcore.store.runs import RunStore


#: Attack numbers a run's summary may hold: key -> (what it is, how to show it).
ATTACK_FIELDS: dict[str, tuple[str, str]] = {
    "mia_auc": ("loss-threshold attack AUC (0.5 = chance)", ".3f"),
    "mia_tpr_at_1pct_fpr": ("loss-threshold attack TPR at 1 % FPR", ".1%"),
    "mia_advantage": ("loss-threshold attack advantage, max(TPR - FPR)", ".3f"),
    "mia_epsilon_lower": ("ε lower bound from the loss attack (one model: an indication)", ".3f"),
    "empirical_epsilon_lower": ("empirical ε lower bound (attack lab, strongest attack)", ".3f"),
    "empirical_epsilon_attack": ("attack that gave the lower bound", "s"),
    "canary_epsilon_lower": ("ε lower bound from the one-run canary audit (compare with the canary run's ε below)",
                             ".3f"),
    "canary_accountant_epsilon": ("the canary run's own accountant ε: the one the canary bound must stay under "
                                  "(not this run's ε)", ".3f"),
    "canary_epsilon_power": ("canary audit power: the largest ε its guesses could certify were all right", ".3f"),
    "canary_mode": ("canary audit kind (white-box: gradient canaries; black-box: mislabelled examples)", "s"),
    "attack_models": ("reference models used by the attack lab", "d"),
}
# Per-attack numbers of the attack lab, ``<attack>_<measure>`` (see ``dpcore.jobs.attack.summary_fields``).
_ATTACK_PATTERN = re.compile(r"(?P<attack>.+)_(?P<measure>auc|tpr_at_1pct_fpr|epsilon_lower)$")
_ATTACK_MEASURES = {"auc": ("AUC", ".3f"), "tpr_at_1pct_fpr": ("TPR at 1 % FPR", ".1%"),
                    "epsilon_lower": ("ε lower bound", ".3f")}
_ATTACK_ALIASES = {"lira_auc", "lira_tpr_at_1pct_fpr"}  # copies of the online (else offline) LiRA numbers


# ---------------------------------------------------------------------- plain data for one run
@dataclass
class ReportRun:
    """What a run report needs, from the store (``from_record``) or from a fresh result (``from_result``)."""

    id: str | None
    name: str
    status: str
    config: dict[str, Any]
    summary: dict[str, Any]
    steps: pd.DataFrame | None = None
    epochs: pd.DataFrame | None = None
    stop_status: str | None = None
    stop_reason: str | None = None
    error: str | None = None
    created: str | None = None
    finished: str | None = None
    device: str | None = None
    roc: dict[str, Any] | None = None
    group: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    artifacts: Path | None = None
    accountant_history: list[tuple[float, float, int]] | None = None

    def tradeoff_bound(self) -> Any:
        """The most any membership attack can achieve on this run (``dpcore.privacy.tradeoff.TradeoffCurve``).

        From the accountant history of a fresh result, else the stored checkpoint or summary.
        """
        if self.accountant_history is not None and self.private:
            return tradeoff.tradeoff_from_history(self.accountant_history)
        return tradeoff.tradeoff_for_run(summary=self.summary, config=self.config,
                                         history=checkpoint_history(self.artifacts))

    @classmethod
    def from_record(cls, store: RunStore, record: RunRecord) -> ReportRun:
        """The run as stored: config, summary, metrics and the attack's ROC (``roc.json``) when present."""
        try:
            roc = load_roc(store.artifacts_path(record.id))
        except DPExplorerError:
            roc = None
        return cls(id=record.id, name=record.name, status=record.status, config=dict(record.config),
                   summary=dict(record.summary), steps=store.steps(record.id), epochs=store.epochs(record.id),
                   stop_status=record.stop_status, stop_reason=record.stop_reason, error=record.error_message,
                   created=record.created, finished=record.finished, device=record.device, roc=roc,
                   group=record.group, artifacts=store.artifacts_path(record.id))

    @classmethod
    def from_result(cls, result: Any, *, attack: Any = None, summary: Mapping[str, Any] | None = None,
                    name: str | None = None) -> ReportRun:
        """A run that was trained in this process (``dpcore.engine.result.RunResult``), not stored."""
        roc = None
        if attack is not None:
            roc = {"auc": float(attack.auc), **attack.roc_points()}
        return cls(id=None, name=name or result.config.label(), status="done", config=result.config.to_dict(),
                   summary={**result.summary(), **dict(summary or {})}, steps=result.history,
                   epochs=result.epochs, stop_status=result.status, stop_reason=result.stop_reason,
                   device=result.device, roc=roc,
                   accountant_history=[tuple(segment) for segment in getattr(result, "accountant_history", [])])

    def stored(self) -> StoredRun:
        """This run as a ``StoredRun`` (record data, config and summary; no store), for the summary cards."""
        record = RunRecord(id=self.id or "(not stored)", name=self.name, kind="train", group=self.group,
                           status=self.status, config=dict(self.config), stop_status=self.stop_status,
                           stop_reason=self.stop_reason, error=self.error, created=self.created or "",
                           finished=self.finished, device=self.device, summary=dict(self.summary))
        return StoredRun.from_record(record)

    @property
    def private(self) -> bool:
        """Whether the run used DP-SGD (as ``StoredRun.private`` reads it)."""
        return self.stored().private

    @property
    def final_epsilon(self) -> float:
        """Epsilon spent (inf for a non-private run, NaN when unknown), as ``StoredRun`` reads it."""
        return self.stored().final_epsilon

    @property
    def test_accuracy(self) -> float:
        """Test accuracy after the last epoch (fraction), NaN when unknown, as ``StoredRun`` reads it."""
        return self.stored().test_accuracy


def attack_rows(summary: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(field, meaning, value) for every attack number in ``summary`` (known ones first)."""
    rows = []
    for key, (meaning, spec) in ATTACK_FIELDS.items():
        if summary.get(key) is not None:
            rows.append((key, meaning, fmt(summary[key], spec)))
    for key, value in summary.items():
        match = _ATTACK_PATTERN.fullmatch(key)
        if key in ATTACK_FIELDS or key in _ATTACK_ALIASES or match is None or not isinstance(value, (int, float)):
            continue
        attack = ATTACKS.get(match["attack"].replace("_", "-"))
        measure, spec = _ATTACK_MEASURES[match["measure"]]
        title = attack.title if attack is not None else match["attack"].replace("_", " ")
        rows.append((key, f"attack lab: {title} {measure}", fmt(value, spec)))
    return rows


# ---------------------------------------------------------------------- one run
def _summary_html(run: ReportRun, *, baseline: ReportRun | None, status: EpsilonStatus) -> str:
    """The summary: the five cards (``dpcore.views.cards``), the ε caveats and the ε sentence."""
    cards = summary_cards(run=run.stored(), baseline=baseline.stored() if baseline is not None else None)
    eps = run.final_epsilon
    delta = run.config.get("target_delta")
    sentence = epsilon_sentence(eps, delta or 0.0) if math.isfinite(eps) or not run.private else ""
    return cards_html(cards) + caveats_html(status) + f"<p>{esc(sentence)}</p>"


def _privacy_rows(run: ReportRun, status: EpsilonStatus) -> list[tuple[str, str]]:
    """The privacy table: mode, target and spent ε, whether it is a proven bound, δ, accountant, σ, C, q, steps."""
    config, summary, private = run.config, run.summary, run.private
    accountant = (summary.get("accountant") or config.get("accountant") or "rdp").upper()
    sigma = summary.get("noise_multiplier") or config.get("noise_multiplier")
    if not private:
        mode = "non-private baseline"
    else:
        mode = "target ε (σ calibrated)" if config.get("target_epsilon") is not None else "fixed σ"
    if status.bound is not None and status.bound_accountant:
        proven = f"ε = {fmt(status.bound, '.4f')} ({status.bound_accountant.upper()})"
    else:
        proven = status.bound_text() or "-"
    seeded = caveat_labels([c for c in status.caveats if c.kind == "reproducible"])
    return [
        ("mode", mode),
        ("target ε", fmt(config.get("target_epsilon"), "g")),
        ("ε spent", fmt(run.final_epsilon, ".4f")),
        ("ε is a proven bound", ("yes" if status.is_guarantee
                                 else "no: " + status.note(".4f", include_reproducible=False)) if private else "-"),
        ("proven bound (same schedule)", proven if private else "-"),
        ("noise and sampling", ("follow the seed: " + seeded if status.reproducible
                                else "secret (fresh OS entropy, never stored)") if private else "-"),
        ("δ", fmt(config.get("target_delta"), "g")),
        ("accountant", accountant if private else "-"),
        ("noise multiplier σ", fmt(sigma, ".4f") if private else "-"),
        ("max_grad_norm C", fmt(config.get("max_grad_norm"), "g") if private else "- (no clipping)"),
        ("sampling rate q", fmt(summary.get("sample_rate"), ".4g")),
        ("optimizer steps", fmt(summary.get("steps"), "d")),
        ("epochs done", fmt(summary.get("epochs_done"), "d")),
        ("ε limit (hard stop)", fmt(config.get("epsilon_limit"), "g")),
    ]


def _accuracy_rows(run: ReportRun, baseline: ReportRun | None) -> list[tuple[str, str]]:
    """Test and train accuracy beside the non-private baseline's, and the gap in percentage points."""
    accuracy = run.test_accuracy
    base_acc = baseline.test_accuracy if baseline is not None else math.nan
    gap = (accuracy - base_acc) if math.isfinite(base_acc) and math.isfinite(accuracy) else math.nan
    return [
        ("test accuracy", fmt(accuracy, ".2%")),
        ("train accuracy", fmt(run.summary.get("train_accuracy"), ".2%")),
        ("non-private baseline test accuracy", fmt(base_acc, ".2%")),
        ("baseline run", baseline.id or baseline.name if baseline is not None else "none stored"),
        ("accuracy cost of privacy", f"{fmt(-100 * gap, '.1f')} points" if math.isfinite(gap) else "-"),
    ]


def _status_rows(run: ReportRun) -> list[tuple[str, str]]:
    """The run's status, why it stopped, its times and (when any) its error and sweep."""
    rows = [("status", run.status), ("stop", run.stop_status or "-"), ("why it stopped", run.stop_reason or "-"),
            ("created", run.created or "-"), ("finished", run.finished or "-"),
            ("training time", f"{fmt(run.summary.get('seconds'), '.1f')} s"),
            ("grad sample mode", run.summary.get("grad_sample_mode") or "-")]
    if run.error:
        rows.append(("error", run.error))
    if run.group:
        rows.append(("sweep / group", run.group))
    return rows


def _training_figures(run: ReportRun, baseline: ReportRun | None) -> list[Any]:
    """ε and clipped share per step (private runs), loss per step, accuracy and the loss attack per epoch (with the
    baseline's)."""
    label, config = run.name, run.config
    figures, loss = [], []
    if run.steps is not None and not run.steps.empty:
        if run.private:
            figures.append(plots.epsilon_chart([(label, run.steps)], target_epsilon=config.get("target_epsilon"),
                                               epsilon_limit=config.get("epsilon_limit"),
                                               delta=config.get("target_delta")))
            figures.append(plots.clip_fraction_chart([(label, run.steps)]))
        loss.append(plots.loss_chart([(label, run.steps)]))
    if run.epochs is not None and not run.epochs.empty:
        base_epochs = baseline.epochs if baseline is not None and baseline.epochs is not None else None
        figures.append(plots.accuracy_chart([(label, run.epochs)], baseline=base_epochs))
        figures.append(plots.vulnerability_chart([(label, run.epochs)], baseline=base_epochs))  # beside accuracy
    return figures + loss


def _attack_parts(run: ReportRun) -> list[str | Figures]:
    """The attack numbers, how to read them and, with a stored ROC, the ROC charts under the DP bound."""
    rows = attack_rows(run.summary)
    text = (html_table(rows, ("field", "meaning", "value")) if rows
            else "<p>No attack results are stored for this run.</p>")
    parts: list[str | Figures] = [text + explain_html("auc", "lower_bound")]
    if run.roc is None or not run.roc.get("fpr"):
        return parts
    curve = [("loss attack", run.roc["fpr"], run.roc["tpr"], run.roc.get("auc"))]
    bound = run.tradeoff_bound()
    eps = run.final_epsilon
    bound_epsilon = eps if run.private and math.isfinite(eps) else None
    empirical = run.summary.get("mia_tpr_at_1pct_fpr")
    if not isinstance(empirical, (int, float)) or not math.isfinite(empirical):
        empirical = tradeoff.empirical_tpr_at(fpr=run.roc["fpr"], tpr=run.roc["tpr"])
    limit = attack_bound_sentence(bound_tpr=bound.headline(), empirical_tpr=empirical, caveat=bound.caveat)
    parts.append(f"<p><b>{esc(limit)}</b></p>")
    parts.append(Figures([plots.roc_chart(curve, bound=bound, bound_epsilon=bound_epsilon),
                          plots.roc_chart(curve, log_scale=True, n_non_members=run.roc.get("n_non_members"),
                                          bound=bound, bound_epsilon=bound_epsilon)],
                         "ROC of the loss-threshold attack. Left: linear axes; right: log axes, the "
                         "low false-positive regime where an attack is dangerous. " + BOUND_CAPTION))
    return parts


def run_report_html(run: ReportRun, *, baseline: ReportRun | None = None, env: Mapping[str, str] | None = None,
                    thresholds: Mapping[str, float] | None = None) -> str:
    """The HTML report of one run (compared with ``baseline``, a non-private run, when given).

    ``thresholds`` are the checks' (``max_epsilon``, ``max_auc``, ``min_accuracy``, ``allow_reproducible``).
    Returns one self-contained HTML document.
    """
    env = dict(env or environment(device=None))
    config, summary = run.config, run.summary
    status = run.stored().epsilon_status
    checks = run.stored().checks(**dict(thresholds or {}))
    sections: list[tuple[str, Content]] = [
        ("Summary", _summary_html(run, baseline=baseline, status=status)),
        ("Training", Figures(_training_figures(run, baseline), "ε spent and share of clipped gradients per step; "
                                                               "accuracy per epoch beside the loss attack's AUC "
                                                               "and TPR at 1 % FPR after each epoch (rising = the "
                                                               "model memorises its training examples; DP caps "
                                                               "it); loss per step. Dotted: the non-private "
                                                               "baseline.")),
        ("Dataset and model", dataset_section(config, summary)),
        ("Privacy", html_table(_privacy_rows(run, status)) + explain_html("epsilon", "delta")),
        ("Accuracy against the non-private baseline", html_table(_accuracy_rows(run, baseline))
         + explain_html("baseline")),
        ("Membership attacks and empirical lower bounds", _attack_parts(run)),
        ("Checks", checks_section(checks)),
        ("Guidance", guidance_section(guidance_for(config, summary))),
        ("Configuration", config_section(config)),
        ("Run", html_table(_status_rows(run))),
        ("Environment", environment_section(env, trained_on=run.device or summary.get("device"))),
    ]
    subtitle = f"Run {run.id or '(not stored)'} · generated {env.get('generated', '')} by DP Explorer"
    return render_html(f"DP Explorer report: {run.name}", sections, subtitle=subtitle)



def run_report(store: RunStore, run_id: str, *, thresholds: Mapping[str, float] | None = None) -> str:
    """The HTML report of stored run ``run_id`` (RunNotFound for an unknown id)."""
    record = store.get(run_id)
    run = ReportRun.from_record(store, record)
    baseline_record = find_baseline(store, run_id) if run.private else None
    baseline = ReportRun.from_record(store, baseline_record) if baseline_record is not None else None
    return run_report_html(run, baseline=baseline, env=environment(device=None), thresholds=thresholds)


# ---------------------------------------------------------------------- entry points
def report_for(store: RunStore, identifier: str) -> str:
    """The HTML report of a sweep (a stored sweep id), of runs side by side (run ids joined by commas,
    as in the Runs page's address ``?run=a,b``) or of one run."""
    if "," in identifier:
        return comparison_report(store, [part.strip() for part in identifier.split(",") if part.strip()])
    if sweeps.sweep_exists(store, identifier):
        return sweep_report(store, identifier)
    if sweeps.is_sweep_id(identifier):
        raise sweeps.SweepNotFound(f"no sweep {identifier!r} in {store.root}")
    return run_report(store, identifier)


def write_report(store: RunStore, identifier: str, path: str | Path) -> Path:
    """Write ``report_for(store, identifier)`` to ``path`` (UTF-8); return the path."""
    path = Path(path)
    text = report_for(store, identifier)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def report_filename(identifier: str) -> str:
    """A download file name for a report, e.g. 'dp-explorer-report-sw-20250101-120000-a1b2c3.html'."""
    return f"dp-explorer-report-{re.sub(r'[^A-Za-z0-9_.-]+', '_', identifier)}.html"


__all__ = [
    "ATTACK_FIELDS",
    "Figures",
    "ReportRun",
    "attack_rows",
    "comparison_report",
    "environment",
    "figures_html",
    "fmt",
    "render_html",
    "report_filename",
    "report_for",
    "run_report",
    "run_report_html",
    "sweep_report",
    "write_report",
]
